"""Limits the contract sets on a request: list lengths are capped, and a chat schema may only
refer inside itself (remote `$ref` and base `$id` are a 400)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rawinfer.contract import ChatInputs, ChatParams, TextInputs, VisionInputs
from rawinfer.contract.base import MAX_MESSAGES, MAX_PROMPTS, MAX_TEXTS
from rawinfer.contract.errors import InvalidRequest

REMOTE = [
    {"$ref": "http://127.0.0.1:8765/x"},
    {"type": "object", "properties": {"a": {"$ref": "file:///etc/passwd"}}},
    {"allOf": [{"$ref": "ftp://example.com/s.json"}]},
    {"items": [{"$dynamicRef": "https://example.com/s"}]},
    {"$id": "https://example.com/root", "type": "object"},
    {"$ref": "other.json#/a"},  # relative to a base the server would have to pick
]


@pytest.mark.parametrize("schema", REMOTE)
def test_remote_references_are_refused(schema):
    with pytest.raises(InvalidRequest) as e:
        ChatParams.model_validate({"schema": schema})
    assert "parameters.schema" in e.value.message


def test_local_references_and_keywords_as_property_names_are_kept():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"name": {"type": "string"}},
        "type": "object",
        "properties": {"$ref": {"$ref": "#/$defs/name"}, "$id": {"type": "integer"}},
    }
    assert ChatParams.model_validate({"schema": schema}).json_schema == schema


def test_unevaluated_with_pattern_properties_is_refused():
    both = {
        "type": "object",
        "allOf": [{"patternProperties": {"^(a|aa)+$": {}}}],
        "unevaluatedProperties": False,
    }
    with pytest.raises(InvalidRequest) as e:
        ChatParams.model_validate({"schema": both})
    assert "unevaluatedProperties" in e.value.message and "additionalProperties" in e.value.message
    alone = {"type": "object", "patternProperties": {"^x-": {}}, "additionalProperties": False}
    assert ChatParams.model_validate({"schema": alone}).json_schema == alone


def test_list_lengths_are_capped():
    TextInputs(texts=["a"] * MAX_TEXTS)
    with pytest.raises(ValidationError, match="at most"):
        TextInputs(texts=["a"] * (MAX_TEXTS + 1))
    with pytest.raises(ValidationError, match="at most"):
        ChatInputs(prompts=["a"] * (MAX_PROMPTS + 1))
    with pytest.raises(ValidationError, match="at most"):
        VisionInputs(prompts=["a"] * (MAX_PROMPTS + 1), image_url="https://example.com/a.png")
    many = [{"role": "user", "content": "a"}] * (MAX_MESSAGES + 1)
    with pytest.raises(ValidationError, match="at most"):
        ChatInputs(messages=many)
