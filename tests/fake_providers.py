"""Local stand-ins for the cloud providers, on 127.0.0.1 (tests never reach the internet): one
threaded HTTP server per wire format (fake_openai: FakeOpenAI; fake_cloud: FakeAnthropic,
FakeGemini, FakeVertex; fake_base: what they share), and the harness that builds adapters
pointed at them with the catalog's model table (`make`, `run`, `fails`, `models_for`)."""

from __future__ import annotations

import asyncio
import time

import pytest
from fake_base import MM_DIMS  # noqa: F401  (the tests' import point)
from fake_cloud import FakeAnthropic, FakeGemini, FakeVertex, google_error  # noqa: F401
from fake_openai import FakeOpenAI

from models.providers import ADAPTERS
from models.providers.base import catalog_models
from rawinfer.contract.errors import RawInferError
from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT

OPENAI_KEY = "sk-test-openai-SECRET0123456789"
ANTHROPIC_KEY = "sk-ant-test-SECRET0123456789"
GOOGLE_KEY = "AIzaTEST-google-SECRET-0123456789"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY)

CATALOG = load_catalog(REPO_ROOT / "catalog.yaml")
# names the tests call beyond the catalog's cloud targets: OpenAI's own whisper-1 (the catalog
# routes that name to the local whisper), a newer Claude, Vertex's versioned model name
TEST_MODELS = {
    "openai": {"whisper-1": ["transcription"]},
    "anthropic": {"claude-sonnet-4-5": ["chat", "vision"]},
    "google": {"multimodalembedding@001": ["multimodal_embedding"]},
}


def models_for(name: str) -> dict[str, list[str]]:
    """The model -> tasks table a provider deployment is given: the catalog's, plus TEST_MODELS."""
    return {**catalog_models(CATALOG, name), **TEST_MODELS[name]}


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
        {**base, "timeout_s": 10, "backoff_base_s": 0.01, "backoff_max_s": 0.05, **over},
        models=models_for(name),
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
