"""Cloud providers through POST /v1/inference: the service's provider deployments talk to local
fake servers that speak each provider's wire format (tests/fake_providers.py); credentials come
from the service's environment, as in production."""

from __future__ import annotations

import asyncio
import base64
import glob
import io

import numpy as np
import pytest
from fake_providers import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY
from helpers import assert_error
from PIL import Image

KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY)


@pytest.fixture(scope="module")
def http(service):
    with service.client() as c:
        yield c


@pytest.fixture(autouse=True)
def _clean(fakes):
    for f in fakes.all:
        f.reset()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def media(media_server):
    url, folder, _ = media_server
    (folder / "photo.png").write_bytes(png())
    from test_clip_engine import RED, make_video

    (folder / "clip.mp4").write_bytes(make_video(colors=(RED,), each_s=1.0))
    return url


def post(http, service, body):
    r = http.post("/v1/inference", json=body, headers=service.headers())
    assert not any(k in r.text for k in KEYS)
    return r


def test_openai_chat_seed_row(http, service, fakes):
    r = post(
        http,
        service,
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "inputs": {"prompts": ["What is AI?"]},
            "parameters": {"temperature": 0.7, "max_tokens": 500},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provider"] == "openai" and body["data"]["responses"][0]["text"]
    assert (
        body["tokens_used"]["total"]
        == body["tokens_used"]["prompt"] + body["tokens_used"]["completion"]
        > 0
    )
    sent = fakes.openai.requests[-1]
    assert (
        sent.path == "/v1/chat/completions"
        and sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    )
    assert sent.json["model"] == "gpt-4o-mini" and sent.json["temperature"] == 0.7
    assert sent.json["max_completion_tokens"] == 500
    assert sent.json["messages"][-1] == {"role": "user", "content": "What is AI?"}


def test_openai_vision_seed_row_sends_the_fetched_image(http, service, fakes, media):
    r = post(
        http,
        service,
        {
            "provider": "openai",
            "model": "gpt-4o",
            "parameters": {"temperature": 0.5},
            "inputs": {"prompts": ["Describe this image"], "image_url": f"{media}/photo.png"},
        },
    )
    assert r.status_code == 200, r.text
    parts = fakes.openai.requests[-1].json["messages"][-1]["content"]
    image = [p for p in parts if p["type"] == "image_url"][0]["image_url"]["url"]
    assert (
        image == "data:image/png;base64," + base64.b64encode(png()).decode()
    )  # our bytes, not our URL
    assert "127.0.0.2" not in str(fakes.openai.requests[-1].json)


def test_openai_embeddings_seed_row(http, service, fakes):
    r = post(
        http,
        service,
        {
            "provider": "openai",
            "model": "text-embedding-3-large",
            "inputs": {"text": "machine learning"},
        },
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (
        len(data["embedding"]) == data["dimensions"]
        and abs(np.linalg.norm(data["embedding"]) - 1) < 1e-5
    )
    assert fakes.openai.requests[-1].json["model"] == "text-embedding-3-large"
    texts = post(
        http,
        service,
        {"provider": "openai", "model": "text-embedding-3-small", "inputs": {"texts": ["a", "b"]}},
    )
    assert len(texts.json()["data"]["embeddings"]) == 2


@pytest.mark.parametrize("kind", ["text", "image_url", "image_base64", "video_url", "video_base64"])
def test_google_multimodal_seed_rows(http, service, fakes, media, kind):
    value = {
        "text": "machine learning",
        "image_url": f"{media}/photo.png",
        "image_base64": base64.b64encode(png()).decode(),
        "video_url": f"{media}/clip.mp4",
    }.get(kind)
    if kind == "video_base64":
        from test_clip_engine import RED, make_video

        value = base64.b64encode(make_video(colors=(RED,), each_s=1.0)).decode()
    r = post(
        http,
        service,
        {"provider": "google", "model": "multimodalembedding", "inputs": {kind: value}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["provider"] == "google"
        and body["data"]["dimensions"] == 1408
        and body["tokens_used"] is None
    )
    if kind.startswith("video"):
        assert body["data"]["segments"] and all(
            len(s["embedding"]) == 1408 for s in body["data"]["segments"]
        )
    sent = fakes.vertex.requests[-1]
    assert sent.headers["x-goog-api-key"] == GOOGLE_KEY and sent.path.endswith(
        "multimodalembedding@001:predict"
    )


def test_gemini_and_claude_chat_with_schema(http, service, fakes):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer"],
    }
    for provider, model, fake in (
        ("google", "gemini-2.0-flash", fakes.gemini),
        ("anthropic", "claude-sonnet-4-20250514", fakes.anthropic),
    ):
        r = post(
            http,
            service,
            {
                "provider": provider,
                "model": model,
                "inputs": {"prompts": ["Capital of France?"], "system": "Be brief."},
                "parameters": {"temperature": 0, "max_tokens": 64, "schema": schema},
            },
        )
        assert r.status_code == 200, (provider, r.text)
        assert r.json()["data"]["responses"][0]["parsed"]["answer"] == "Paris"
        assert fake.requests[-1].json is not None


def test_provider_errors_map_to_502_without_leaking_keys(http, service, fakes):
    fakes.openai.reply(
        400,
        {
            "error": {
                "message": "Invalid value for temperature",
                "type": "invalid_request_error",
                "code": None,
            }
        },
    )
    err = assert_error(
        post(
            http,
            service,
            {"provider": "openai", "model": "gpt-4o-mini", "inputs": {"prompts": ["x"]}},
        ),
        502,
    )
    assert "Invalid value for temperature" in str(err["error"]["details"])
    fakes.openai.reply(
        401,
        {
            "error": {
                "message": f"Incorrect API key provided: {OPENAI_KEY}",
                "type": "invalid_request_error",
            }
        },
    )
    err = assert_error(
        post(
            http,
            service,
            {"provider": "openai", "model": "gpt-4o-mini", "inputs": {"prompts": ["x"]}},
        ),
        502,
    )
    assert "credentials" in err["error"]["message"]


def test_provider_429_is_retried_honouring_retry_after(http, service, fakes):
    fakes.anthropic.reply(
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        headers={"retry-after": "0"},
        times=2,
    )
    r = post(
        http,
        service,
        {
            "provider": "anthropic",
            "model": "claude-3-5-haiku-20241022",
            "inputs": {"prompts": ["x"]},
        },
    )
    assert r.status_code == 200, r.text
    assert len(fakes.anthropic.requests) == 3


def test_wrong_task_for_a_cloud_model_is_400(http, service):
    err = assert_error(
        post(
            http,
            service,
            {"provider": "openai", "model": "text-embedding-3-large", "inputs": {"prompts": ["x"]}},
        ),
        400,
    )
    assert err["error"]["details"]["supported_tasks"] == ["text_embedding"]


def test_keys_never_reach_the_logs(http, service):
    post(
        http, service, {"provider": "openai", "model": "gpt-4o-mini", "inputs": {"prompts": ["x"]}}
    )
    logs = glob.glob("/tmp/ray/session_latest/logs/**/*", recursive=True)
    assert logs
    for path in logs:
        try:
            text = open(path, errors="ignore").read()
        except (IsADirectoryError, PermissionError, OSError):
            continue
        assert not any(k in text for k in KEYS), path


def test_listing_shows_providers_available(http, service):
    listing = http.get("/v1/inference/models", headers=service.headers()).json()["data"]
    status = {f"{e['provider']}/{e['model']}": e["status"] for e in listing if e["provider"]}
    assert (
        status["openai/gpt-4o"]
        == status["google/multimodalembedding"]
        == status["anthropic/claude-sonnet-4-20250514"]
        == "available"
    )


def test_the_openai_adapter_speaks_to_our_own_openai_routes(service, fakes):
    """The OpenAI adapter pointed at this service's OpenAI-compatible routes: a real server
    speaking the protocol (gpt-4o-mini is then proxied on to the fake OpenAI)."""
    from models.providers import ADAPTERS

    adapter = ADAPTERS["openai"](
        {"api_key": service.keys["a"], "base_url": service.url + "/v1", "timeout_s": 60}
    )

    async def go():
        try:
            chat = await adapter.run(
                {
                    "task": "chat",
                    "model": "gpt-4o-mini",
                    "inputs": {"prompts": ["hello"]},
                    "parameters": {"max_tokens": 16},
                },
                60,
            )
            emb = await adapter.run(
                {
                    "task": "text_embedding",
                    "model": "text-embedding-3-small",
                    "inputs": {"texts": ["a", "b"]},
                    "parameters": {},
                },
                60,
            )
            return chat, emb
        finally:
            await adapter.aclose()

    chat, emb = asyncio.run(go())
    assert chat["data"]["responses"][0]["text"] and chat["tokens_used"]["total"] > 0
    assert len(emb["data"]["embeddings"]) == 2
    assert fakes.openai.requests[-1].json["model"] == "text-embedding-3-small"


def test_prompts_times_max_tokens_toward_a_provider_is_capped(http, service, fakes):
    """limits.provider_max_output_tokens (65,536 by default): 256 prompts x 4,096 tokens would let
    one request spend a million output tokens of the operator's account; it is a 400 naming the
    limit, and no upstream call is made. Under the cap the same prompts are answered."""
    body = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputs": {"prompts": [f"question {i}" for i in range(32)]},
        "parameters": {"max_tokens": 4096},
    }
    r = post(http, service, body)
    assert_error(r, 400)
    err = r.json()["error"]
    assert err["details"] == {"limit": 65536, "prompts": 32, "max_tokens": 4096}
    assert "max_tokens" in err["message"] and fakes.openai.requests == []
    r = post(http, service, {**body, "parameters": {"max_tokens": 2048}})  # exactly the cap
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]["responses"]) == 32 and len(fakes.openai.requests) == 32


def test_upstream_calls_per_request_are_capped(http, service, fakes):
    """limits.provider_max_calls (64): each chat prompt, and each text of a Vertex multimodal
    embedding, is one upstream call; more in one request is a 400 before any call is made."""
    before_openai, before_vertex = len(fakes.openai.requests), len(fakes.vertex.requests)
    chat = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputs": {"prompts": [f"q{i}" for i in range(65)]},
        "parameters": {"max_tokens": 1},
    }
    r = post(http, service, chat)
    assert_error(r, 400)
    assert r.json()["error"]["details"] == {"limit": 64, "prompts": 65}
    vertex = {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"texts": [f"text {i}" for i in range(65)]},
    }
    r = post(http, service, vertex)
    assert_error(r, 400)
    assert r.json()["error"]["details"] == {"limit": 64, "texts": 65}
    assert len(fakes.openai.requests) == before_openai  # refused before any upstream call
    assert len(fakes.vertex.requests) == before_vertex
    r = post(http, service, {**vertex, "inputs": {"texts": ["a", "b", "c"]}})
    assert r.status_code == 200 and len(r.json()["data"]["embeddings"]) == 3, r.text
    assert len(fakes.vertex.requests) == before_vertex + 3
