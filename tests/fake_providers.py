"""Local stand-ins for the cloud providers, on 127.0.0.1 (tests never reach the internet).

Each fake is a threaded HTTP server that speaks its provider's documented wire format, checks the
provider's auth header, records every request (`requests`: method, path, headers, JSON body or
multipart form and files) and answers like the provider. It can be told to answer differently
for the next requests: `reply(status, body, headers, times)` (an error, a 429 with retry-after,
a 5xx N times then normal service) or `hang(seconds, times)` (accept and never answer in time).
The harness at the end builds adapters pointed at the fakes and runs them (`make`, `run`, `fails`).

- FakeOpenAI:    POST /v1/chat/completions, /v1/embeddings, /v1/audio/transcriptions and
                 /v1/audio/translations (multipart); `Authorization: Bearer`; errors
                 {"error": {"message", "type", "code"}} (its 401 echoes the key it got, as a
                 careless provider might, so tests prove we never pass it on).
- FakeAnthropic: POST /v1/messages; the key as `x-api-key` or `Authorization: Bearer` (what
                 the installed SDK sends) + `anthropic-version`; errors
                 {"type": "error", "error": {"type", "message"}}.
- FakeGemini:    POST /v1beta/models/{model}:generateContent; `x-goog-api-key`; a bad key is
                 400 INVALID_ARGUMENT with reason API_KEY_INVALID, as Gemini answers.
- FakeVertex:    POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:predict;
                 `Authorization: Bearer <token>` or `x-goog-api-key`; 1408-d embeddings.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fake_base import MM_DIMS  # noqa: F401  (the tests' import point)
from fake_cloud import FakeAnthropic, FakeGemini, FakeVertex, google_error  # noqa: F401
from fake_openai import FakeOpenAI

from models.providers import ADAPTERS
from rawinfer.contract.errors import RawInferError

OPENAI_KEY = "sk-test-openai-SECRET0123456789"
ANTHROPIC_KEY = "sk-ant-test-SECRET0123456789"
GOOGLE_KEY = "AIzaTEST-google-SECRET-0123456789"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY)


class Fakes:
    """One running fake per provider API (Gemini and Vertex are separate hosts, as in life)."""

    def __init__(self):
        self.openai, self.anthropic = FakeOpenAI(OPENAI_KEY), FakeAnthropic(ANTHROPIC_KEY)
        self.gemini, self.vertex = FakeGemini(GOOGLE_KEY), FakeVertex(GOOGLE_KEY)
        self.all = (self.openai, self.anthropic, self.gemini, self.vertex)


def make(name: str, fakes: Fakes, **over):
    base = {
        "openai": {"api_key": OPENAI_KEY, "base_url": fakes.openai.url + "/v1"},
        "anthropic": {"api_key": ANTHROPIC_KEY, "base_url": fakes.anthropic.url},
        "google": {
            "api_key": GOOGLE_KEY,
            "base_url": fakes.gemini.url,
            "vertex_project": "proj-1",
            "vertex_location": "europe-west4",
            "vertex_base_url": fakes.vertex.url,
            "vertex_auth": "api_key",
        },
    }[name]
    return ADAPTERS[name](
        {**base, "timeout_s": 10, "backoff_base_s": 0.01, "backoff_max_s": 0.05, **over}
    )


def run(adapter, request: dict, deadline: float = 10.0) -> dict:
    async def go():
        try:
            return await adapter.run(request, deadline)
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def fails(adapter, request: dict, deadline: float = 10.0) -> tuple[RawInferError, float]:
    t0 = time.monotonic()
    with pytest.raises(RawInferError) as info:
        run(adapter, request, deadline)
    return info.value, time.monotonic() - t0


def chat(model="gpt-4o-mini", prompts=("What is AI?",), **parameters) -> dict:
    return {
        "task": "chat",
        "model": model,
        "inputs": {"prompts": list(prompts)},
        "parameters": parameters,
    }
