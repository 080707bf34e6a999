"""Cloud-provider adapters against local fakes of each provider's wire format (tests/fake_providers).

Checks both sides: what the adapter sent (path, auth header, model, messages, image parts, audio
upload, Vertex instances) and what came back (the contract's data shapes, `parsed`, tokens), and
how provider failures map onto the service's errors (never a 500, never a key in sight).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time

import pytest
from fake_providers import (
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    KEYS,
    MM_DIMS,
    OPENAI_KEY,
    Fakes,
    chat,
    fails,
    google_error,
    make,
    run,
)

from models.providers import ADAPTERS, GoogleSettings, ProviderSettings
from rawinfer.contract import Task, detect_task
from rawinfer.contract.errors import DeadlineExceeded, InvalidRequest, ProviderError, Unavailable

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
MP3 = b"ID3\x04\x00" + bytes(64)
MEDIA = {"image": PNG, "video": MP4, "audio": MP3}

# every example row of seed/raw-inference-endpoint.txt that names a cloud provider
SEED_ROWS = [
    {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputs": {"prompts": ["What is AI?"]},
        "parameters": {"temperature": 0.7, "max_tokens": 500},
    },
    {
        "provider": "openai",
        "model": "text-embedding-3-large",
        "inputs": {"text": "machine learning"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"text": "machine learning"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"image_url": "https://example.com/image.jpg"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"image_base64": "<base64-encoded-image>"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"video_url": "https://example.com/video.mp4"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"video_base64": "<base64-encoded-video>"},
        "parameters": {},
    },
    {
        "provider": "openai",
        "model": "whisper-1",
        "inputs": {"audio_url": "https://example.com/audio.mp3"},
        "parameters": {},
    },
    {
        "provider": "openai",
        "model": "gpt-4o",
        "inputs": {
            "prompts": ["Describe this image"],
            "image_url": "https://example.com/image.jpg",
        },
        "parameters": {"temperature": 0.5},
    },
]


@pytest.fixture(scope="module")
def fakes():
    env = pytest.MonkeyPatch()  # tests talk to loopback only: no proxy in the way
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.delenv(var, raising=False)
    f = Fakes()
    # the SDKs' first call pays for lazy imports and model building (~0.5 s): pay it here, not
    # inside the short deadlines of the timing tests
    for name, model in (
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5"),
        ("google", "gemini-2.5-flash"),
    ):
        run(make(name, f), chat(model))
    run(
        make("google", f),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    yield f
    for x in f.all:
        x.stop()
    env.undo()


@pytest.fixture(autouse=True)
def _clean(fakes):
    for x in fakes.all:
        x.reset()


def ingress(row: dict, adapter) -> dict:
    """What the ingress hands an adapter: the task detected, media fetched as bytes."""
    inputs = dict(row["inputs"])
    task = detect_task(inputs, {Task(t) for t in adapter.tasks_for(row["model"])})
    for key in [k for k in inputs if k.endswith(("_url", "_base64"))]:
        kind = key.split("_")[0]
        del inputs[key]
        inputs.update(media=MEDIA[kind], media_kind=kind, mime=None, filename=None)
    return {
        "task": task.value,
        "model": row["model"],
        "inputs": inputs,
        "parameters": row["parameters"],
    }


def unit(v) -> bool:
    return abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-6


# ------------------------------------------------------------------------------ seed rows


@pytest.mark.parametrize(
    "row", SEED_ROWS, ids=lambda r: f"{r['provider']}-{r['model']}-{next(iter(r['inputs']))}"
)
def test_seed_rows(fakes, row):
    adapter = make(row["provider"], fakes)
    req = ingress(row, adapter)
    out = run(adapter, req)
    data, task = out["data"], req["task"]
    if row["provider"] == "openai":
        sent = fakes.openai.requests[-1]
        assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    else:
        sent = fakes.vertex.requests[-1]
        assert sent.headers["x-goog-api-key"] == GOOGLE_KEY
        assert (
            sent.path
            == "/v1/projects/proj-1/locations/europe-west4/publishers/google/models/multimodalembedding@001:predict"
        )
        assert out["model"] == "multimodalembedding@001" and out["tokens_used"] is None
    if task in ("chat", "vision"):
        assert sent.path == "/v1/chat/completions" and sent.json["model"] == row["model"]
        assert sent.json["temperature"] == row["parameters"]["temperature"]
        assert sent.json["max_completion_tokens"] == row["parameters"].get("max_tokens", 256)
        assert "top_p" not in sent.json and "seed" not in sent.json and "stop" not in sent.json
        content = sent.json["messages"][-1]["content"]
        if task == "vision":
            assert content[0] == {"type": "text", "text": "Describe this image"}
            assert (
                content[1]["image_url"]["url"]
                == "data:image/png;base64," + base64.b64encode(PNG).decode()
            )
        else:
            assert sent.json["messages"] == [{"role": "user", "content": "What is AI?"}]
        prompt = row["inputs"]["prompts"][0]
        assert data == {"responses": [{"text": f"echo: {prompt}", "finish_reason": "stop"}]}
        assert out["model"] == row["model"] + "-2024-07-18"
        n = len(prompt.split())
        assert out["tokens_used"] == {"prompt": n, "completion": n + 1, "total": 2 * n + 1}
    elif task == "text_embedding":
        assert sent.json == {
            "model": "text-embedding-3-large",
            "input": ["machine learning"],
            "encoding_format": "float",
        }
        assert data["dimensions"] == len(data["embedding"]) == 16 and unit(data["embedding"])
        assert out["tokens_used"] == {"prompt": 2, "completion": 0, "total": 2}
    elif task == "transcription":
        assert sent.path == "/v1/audio/transcriptions"
        assert sent.form["model"] == ["whisper-1"] and sent.form["response_format"] == [
            "verbose_json"
        ]
        assert sent.files["file"] == ("audio.mp3", "audio/mpeg", MP3)
        assert data == {
            "text": "Hello world. Good morning.",
            "language": "en",
            "duration": 3.52,
            "segments": [
                {"start": 0.0, "end": 1.5, "text": "Hello world."},
                {"start": 1.5, "end": 3.52, "text": "Good morning."},
            ],
        }
        assert out["tokens_used"] is None and out["model"] == "whisper-1"
    elif "text" in row["inputs"]:
        assert sent.json == {"instances": [{"text": "machine learning"}]}
        assert data["dimensions"] == MM_DIMS == len(data["embedding"]) and unit(data["embedding"])
    elif "image_url" in row["inputs"] or "image_base64" in row["inputs"]:
        assert sent.json == {
            "instances": [{"image": {"bytesBase64Encoded": base64.b64encode(PNG).decode()}}]
        }
        assert data["dimensions"] == MM_DIMS and unit(data["embedding"]) and "segments" not in data
    else:
        assert sent.json == {
            "instances": [{"video": {"bytesBase64Encoded": base64.b64encode(MP4).decode()}}]
        }
        assert [(s["start"], s["end"]) for s in data["segments"]] == [(0, 16), (16, 32), (32, 40)]
        assert all(
            len(s["embedding"]) == MM_DIMS and unit(s["embedding"]) for s in data["segments"]
        )
        mean = [sum(s["embedding"][i] for s in data["segments"]) / 3 for i in range(MM_DIMS)]
        norm = math.sqrt(sum(x * x for x in mean))
        assert unit(data["embedding"]) and all(
            abs(a - b / norm) < 1e-9 for a, b in zip(data["embedding"], mean)
        )


def test_registry_and_settings():
    assert set(ADAPTERS) == {"openai", "google", "anthropic"}
    s = ProviderSettings(api_key=OPENAI_KEY)
    assert OPENAI_KEY not in repr(s) and OPENAI_KEY not in str(s.model_dump())
    g = ADAPTERS["google"](
        ProviderSettings(api_key=GOOGLE_KEY)
    )  # a plain ProviderSettings is widened
    assert isinstance(g.settings, GoogleSettings) and g.settings.key() == GOOGLE_KEY
    assert g.tasks_for("gemini-2.5-flash") == {"chat", "vision"}
    assert g.tasks_for("multimodalembedding") == {"multimodal_embedding"}
    o, a = ADAPTERS["openai"](), ADAPTERS["anthropic"]()
    assert o.tasks_for("text-embedding-3-small") == {"text_embedding"} and o.tasks_for(
        "whisper-1"
    ) == {"transcription"}
    assert o.tasks_for("gpt-4o") == {"chat", "vision"} and o.tasks_for("gpt-3.5-turbo") == {"chat"}
    assert a.tasks_for("claude-sonnet-4-5") == {"chat", "vision"} and a.tasks_for("gpt-4o") == set()


# ------------------------------------------------------------------------------ chat details


def test_openai_prompts_concurrent_system_schema_and_tokens(fakes):
    fakes.openai.delay_s = 0.5
    prompts = ["one", "two words", "three more words", "four words right here"]
    t0 = time.monotonic()
    out = run(
        make("openai", fakes),
        {
            "task": "chat",
            "model": "gpt-4o-mini",
            "inputs": {"prompts": prompts, "system": "be brief"},
            "parameters": {"top_p": 0.5, "seed": 7, "stop": "END"},
        },
    )
    assert fakes.openai.peak_in_flight >= 2 and time.monotonic() - t0 < 0.5 * len(
        prompts
    )  # concurrently
    assert [r["text"] for r in out["data"]["responses"]] == [
        f"echo: {p}" for p in prompts
    ]  # in order
    sent = sorted(fakes.openai.requests, key=lambda r: len(r.json["messages"][1]["content"]))
    for r, p in zip(sent, prompts):
        assert r.json["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": p},
        ]
        assert r.json["top_p"] == 0.5 and r.json["seed"] == 7 and r.json["stop"] == ["END"]
        assert "temperature" not in r.json
    prompt = sum(2 + len(p.split()) for p in prompts)
    completion = sum(1 + len(p.split()) for p in prompts)
    assert out["tokens_used"] == {
        "prompt": prompt,
        "completion": completion,
        "total": prompt + completion,
    }

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer", "confidence"],
        "additionalProperties": False,
    }
    out = run(make("openai", fakes), chat(schema=schema))
    assert fakes.openai.requests[-1].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert out["data"]["responses"][0]["parsed"] == {"answer": "Paris", "confidence": 0.9}
    fakes.openai.structured = {"answer": 3}
    err, _ = fails(make("openai", fakes), chat(schema=schema))
    assert isinstance(err, ProviderError) and "parameters.schema" in err.message


def test_messages_mode_per_provider(fakes):
    msgs = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you"},
    ]
    req = {"task": "chat", "inputs": {"messages": msgs}, "parameters": {}}
    out = run(make("openai", fakes), {**req, "model": "gpt-4o"})
    assert fakes.openai.requests[-1].json["messages"] == msgs and len(out["data"]["responses"]) == 1
    run(make("anthropic", fakes), {**req, "model": "claude-sonnet-4-5"})
    sent = fakes.anthropic.requests[-1].json
    assert sent["system"] == "sys" and sent["messages"] == msgs[1:]
    run(make("google", fakes), {**req, "model": "gemini-2.5-flash"})
    sent = fakes.gemini.requests[-1].json
    assert sent["systemInstruction"]["parts"] == [{"text": "sys"}]
    assert [(c["role"], c["parts"][0]["text"]) for c in sent["contents"]] == [
        ("user", "hi"),
        ("model", "hello"),
        ("user", "how are you"),
    ]


def test_anthropic_chat_vision_and_forced_tool_schema(fakes):
    out = run(
        make("anthropic", fakes),
        chat("claude-sonnet-4-5", ["What is AI?"], temperature=0.2, stop=["x", "y"], max_tokens=99),
    )
    sent = fakes.anthropic.requests[-1]
    assert sent.path == "/v1/messages" and "anthropic-version" in sent.headers
    assert ANTHROPIC_KEY in (
        sent.headers.get("x-api-key"),
        sent.headers.get("authorization", "")[7:],
    )
    assert (
        sent.json["max_tokens"] == 99
        and sent.json["temperature"] == 0.2
        and sent.json["stop_sequences"] == ["x", "y"]
    )
    assert "top_p" not in sent.json and "tools" not in sent.json
    assert out["data"]["responses"] == [{"text": "echo: What is AI?", "finish_reason": "stop"}]
    assert (
        out["tokens_used"] == {"prompt": 3, "completion": 4, "total": 7}
        and out["model"] == "claude-sonnet-4-5"
    )

    vision = {
        "task": "vision",
        "model": "claude-sonnet-4-5",
        "parameters": {},
        "inputs": {
            "prompts": ["a", "b"],
            "media": PNG,
            "media_kind": "image",
            "mime": "image/jpeg",
        },
    }
    out = run(make("anthropic", fakes), vision)
    for r in fakes.anthropic.requests[-2:]:
        img, text = r.json["messages"][0]["content"]
        assert img == {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",  # sniffed, not the hint
                "data": base64.b64encode(PNG).decode(),
            },
        }
        assert text["type"] == "text" and text["text"] in ("a", "b") and r.json["max_tokens"] == 256
    assert [r["text"] for r in out["data"]["responses"]] == ["echo: a", "echo: b"]

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    out = run(make("anthropic", fakes), chat("claude-sonnet-4-5", schema=schema))
    sent = fakes.anthropic.requests[-1].json
    assert sent["tools"][0]["name"] == "output" and sent["tools"][0]["input_schema"] == schema
    assert sent["tool_choice"] == {"type": "tool", "name": "output"}
    item = out["data"]["responses"][0]
    assert (
        item["parsed"] == {"answer": "Paris", "confidence": 0.9}
        and json.loads(item["text"]) == item["parsed"]
    )

    fakes.anthropic.structured = {"value": ["a", "b"]}  # a non-object root is wrapped and unwrapped
    out = run(
        make("anthropic", fakes),
        chat("claude-sonnet-4-5", schema={"type": "array", "items": {"type": "string"}}),
    )
    assert (
        fakes.anthropic.requests[-1].json["tools"][0]["input_schema"]["properties"]["value"]["type"]
        == "array"
    )
    assert out["data"]["responses"][0]["parsed"] == ["a", "b"]


def test_gemini_chat_vision_schema(fakes):
    out = run(
        make("google", fakes),
        chat("gemini-2.5-flash", ["What is AI?"], temperature=0.1, seed=3, max_tokens=64),
    )
    sent = fakes.gemini.requests[-1]
    assert (
        sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        and sent.headers["x-goog-api-key"] == GOOGLE_KEY
    )
    assert sent.json["generationConfig"] == {"temperature": 0.1, "seed": 3, "maxOutputTokens": 64}
    assert out == {
        "data": {"responses": [{"text": "echo: What is AI?", "finish_reason": "stop"}]},
        "model": "gemini-2.5-flash-001",
        "tokens_used": {"prompt": 3, "completion": 4, "total": 7},
    }
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    out = run(
        make("google", fakes),
        {
            "task": "vision",
            "model": "gemini-2.5-flash",
            "parameters": {"schema": schema},
            "inputs": {"prompts": ["Describe"], "media": PNG, "media_kind": "image"},
        },
    )
    sent = fakes.gemini.requests[-1].json
    assert sent["generationConfig"]["responseMimeType"] == "application/json"
    assert sent["generationConfig"]["responseJsonSchema"] == schema
    image, text = sent["contents"][0]["parts"]
    assert (
        base64.urlsafe_b64decode(image["inlineData"]["data"]) == PNG
    )  # the SDK sends URL-safe base64 and text == {"text": "Describe"}
    assert out["data"]["responses"][0]["parsed"] == {"answer": "Paris", "confidence": 0.9}


def test_openai_transcription_options_and_translation(fakes):
    req = {
        "task": "transcription",
        "model": "whisper-1",
        "parameters": {"language": "en", "word_timestamps": True},
        "inputs": {
            "media": MP3,
            "media_kind": "audio",
            "mime": "audio/mpeg",
            "filename": "talk.m4a",
        },
    }
    out = run(make("openai", fakes), req)
    sent = fakes.openai.requests[-1]
    assert sent.files["file"][0] == "talk.m4a" and sent.form["language"] == ["en"]
    assert sent.form["timestamp_granularities[]"] == ["word", "segment"]
    assert [w["word"] for w in out["data"]["segments"][1]["words"]] == ["Good", "morning."]
    run(make("openai", fakes), {**req, "parameters": {"task": "translate", "beam_size": 3}})
    sent = fakes.openai.requests[-1]
    assert sent.path == "/v1/audio/translations" and "language" not in sent.form
    err, _ = fails(make("openai", fakes), {**req, "parameters": {"language": "klingon"}})
    assert isinstance(err, InvalidRequest) and not fakes.openai.requests[2:]


def test_multimodal_texts_and_video_options(fakes):
    g = make("google", fakes)
    out = run(
        g,
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"texts": ["a cat", "a dog"]},
            "parameters": {"normalize": False},
        },
    )
    assert sorted(r.json["instances"][0]["text"] for r in fakes.vertex.requests) == [
        "a cat",
        "a dog",
    ]
    assert len(out["data"]["embeddings"]) == 2 and not unit(out["data"]["embeddings"][0])
    out = run(
        make("google", fakes),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding@001",
            "parameters": {"interval_sec": 8, "max_frames": 3},
            "inputs": {"media": MP4, "media_kind": "video"},
        },
    )
    assert fakes.vertex.requests[-1].json["instances"][0]["video"]["videoSegmentConfig"] == {
        "intervalSec": 8,
        "startOffsetSec": 0,
        "endOffsetSec": 24,
    }
    assert [(s["start"], s["end"]) for s in out["data"]["segments"]] == [(0, 8), (8, 16), (16, 24)]
    err, _ = fails(
        make("google", fakes),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "parameters": {"interval_sec": 2},
            "inputs": {"media": MP4, "media_kind": "video"},
        },
    )
    assert isinstance(err, InvalidRequest)


def test_vertex_adc_credentials(fakes, monkeypatch):
    import google.auth
    from google.auth import exceptions

    class Creds:
        token, valid = None, False

        def refresh(self, request):
            self.token, self.valid = fakes.vertex.token, True

    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (Creds(), "proj-1"))
    g = make("google", fakes, api_key=None, vertex_auth="adc")
    assert g.available_for("multimodalembedding") and not g.available_for("gemini-2.5-flash")
    run(
        g,
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert fakes.vertex.requests[-1].headers["authorization"] == f"Bearer {fakes.vertex.token}"

    def missing(scopes=None):
        raise exceptions.DefaultCredentialsError("no ADC")

    monkeypatch.setattr(google.auth, "default", missing)
    err, _ = fails(
        make("google", fakes, api_key=None, vertex_auth="adc"),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert isinstance(err, Unavailable)


# ------------------------------------------------------------------------------ errors

ERROR_400 = {
    "openai": (
        lambda f: f.openai,
        {
            "error": {
                "message": "Invalid value for 'temperature'.",
                "type": "invalid_request_error",
                "code": "invalid_value",
            }
        },
        "gpt-4o-mini",
    ),
    "anthropic": (
        lambda f: f.anthropic,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Invalid value for 'temperature'.",
            },
        },
        "claude-sonnet-4-5",
    ),
    "google": (
        lambda f: f.gemini,
        google_error(400, "Invalid value for 'temperature'.", "INVALID_ARGUMENT"),
        "gemini-2.5-flash",
    ),
}


@pytest.mark.parametrize("provider", sorted(ERROR_400))
def test_provider_400_is_502_with_its_message(fakes, provider):
    fake, body, model = ERROR_400[provider]
    fake(fakes).reply(400, body)
    err, _ = fails(make(provider, fakes), chat(model))
    assert isinstance(err, ProviderError)
    assert err.details["provider"] == provider and err.details["provider_status"] == 400
    assert err.details["provider_message"] == "Invalid value for 'temperature'."
    assert "Invalid value" in err.message and len(fake(fakes).requests) == 1  # not retried


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
def test_refused_credentials_never_echo_a_key(fakes, provider, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = {
        "openai": "sk-wrong-openai-KEY-0123456789",
        "anthropic": "sk-ant-wrong-KEY-0123456789",
        "google": "AIzaWRONG-google-KEY-0123456789",
    }[provider]
    err, _ = fails(make(provider, fakes, api_key=wrong), chat(ERROR_400[provider][2]))
    assert (
        isinstance(err, ProviderError)
        and "credentials" in err.message
        and "operator" in err.message
    )
    assert (
        "provider_message" not in err.details
    )  # OpenAI's fake echoes the key it got: it must not pass
    assert (
        err.__cause__ is None and err.__context__ is None
    )  # no SDK exception (holding the body) chained
    for secret in (wrong, *KEYS):
        assert (
            secret not in repr(err.details)
            and secret not in err.message
            and secret not in caplog.text
        )
        assert all(secret not in r.getMessage() for r in caplog.records)


def test_keys_in_provider_messages_are_redacted(fakes, caplog):
    caplog.set_level(logging.DEBUG)
    fakes.openai.reply(
        403,
        {
            "error": {
                "message": f"key {OPENAI_KEY} may not use gpt-5; also sk-proj-abcdef123456",
                "type": "permission_error",
                "code": None,
            }
        },
    )
    err, _ = fails(make("openai", fakes), chat())
    assert isinstance(err, ProviderError) and err.details["provider_status"] == 403
    assert (
        "may not use gpt-5" in err.details["provider_message"]
        and "sk-" not in err.details["provider_message"]
    )
    fakes.openai.reply(
        429,
        {"error": {"message": "slow down", "type": "rate_limit"}},
        {"retry-after": "0"},
        times=2,
    )
    run(make("openai", fakes), chat())
    assert (
        "retry 1/3" in caplog.text
        and OPENAI_KEY not in caplog.text
        and "sk-proj" not in caplog.text
    )


def test_429_retried_honouring_retry_after(fakes):
    fakes.openai.reply(
        429,
        {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        },
        {"retry-after": "0.6"},
    )
    t0 = time.monotonic()
    out = run(make("openai", fakes, backoff_max_s=0.01), chat())
    assert time.monotonic() - t0 >= 0.6 and len(fakes.openai.requests) == 2
    assert out["data"]["responses"][0]["text"] == "echo: What is AI?"
    # Anthropic's 529 overloaded and a retry-after-ms header; Gemini's RetryInfo detail
    fakes.anthropic.reply(
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"retry-after-ms": "300"},
    )
    t0 = time.monotonic()
    run(make("anthropic", fakes), chat("claude-sonnet-4-5"))
    assert time.monotonic() - t0 >= 0.3 and len(fakes.anthropic.requests) == 2
    fakes.gemini.reply(
        429,
        google_error(
            429,
            "Resource exhausted",
            "RESOURCE_EXHAUSTED",
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.4s"}],
        ),
    )
    t0 = time.monotonic()
    run(make("google", fakes), chat("gemini-2.5-flash"))
    assert time.monotonic() - t0 >= 0.4 and len(fakes.gemini.requests) == 2


def test_429_exhausted_and_persistent_503_are_502(fakes):
    fakes.openai.reply(
        429,
        {"error": {"message": "Rate limit reached", "type": "requests"}},
        {"retry-after": "0.01"},
        times=9,
    )
    err, _ = fails(make("openai", fakes, max_retries=2), chat())
    assert isinstance(err, ProviderError) and "rate-limited" in err.message
    assert (
        err.details["provider_status"] == 429
        and err.details["retries"] == 2
        and len(fakes.openai.requests) == 3
    )
    fakes.openai.reset()
    fakes.vertex.reply(
        503, google_error(503, "The service is currently unavailable.", "UNAVAILABLE"), times=9
    )
    err, _ = fails(
        make("google", fakes),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert isinstance(err, ProviderError) and err.details["provider_status"] == 503
    assert (
        err.details["provider_message"] == "The service is currently unavailable."
        and len(fakes.vertex.requests) == 4
    )


def test_5xx_then_success_and_unreadable_bodies(fakes):
    fakes.openai.reply(502, b"<html>bad gateway</html>", times=2)
    out = run(make("openai", fakes), chat())
    assert (
        len(fakes.openai.requests) == 3
        and out["data"]["responses"][0]["text"] == "echo: What is AI?"
    )
    fakes.anthropic.reply(200, {"unexpected": True})  # a 200 we cannot read: 502, never a 500
    err, _ = fails(make("anthropic", fakes), chat("claude-sonnet-4-5"))
    assert isinstance(err, ProviderError)
    fakes.vertex.reply(200, {"predictions": []})
    err, _ = fails(
        make("google", fakes),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert isinstance(err, ProviderError)


def test_connection_refused_is_retried_then_502(fakes):
    err, _ = fails(make("openai", fakes, base_url="http://127.0.0.1:9/v1", max_retries=1), chat())
    assert (
        isinstance(err, ProviderError)
        and "connection failed" in err.message
        and "127.0.0.1" not in err.message
    )


def test_retries_stop_at_the_deadline(fakes):
    fakes.openai.reply(
        503, {"error": {"message": "overloaded", "type": "server_error"}}, times=1000
    )
    err, took = fails(
        make("openai", fakes, max_retries=100, backoff_base_s=0.1, backoff_max_s=0.3),
        chat(),
        deadline=1.0,
    )
    assert (
        isinstance(err, DeadlineExceeded) and took < 1.0 + 0.5 and len(fakes.openai.requests) >= 2
    )
    assert err.details["provider_status"] == 503
    fakes.openai.reset()
    fakes.openai.reply(
        429, {"error": {"message": "later", "type": "requests"}}, {"retry-after": "30"}
    )
    err, took = fails(
        make("openai", fakes), chat(), deadline=2.0
    )  # a wait past the deadline is not started
    assert isinstance(err, DeadlineExceeded) and took < 1.5 and len(fakes.openai.requests) == 1


HANG = {
    "openai": (lambda f: f.openai, chat()),
    "anthropic": (lambda f: f.anthropic, chat("claude-sonnet-4-5")),
    "google": (lambda f: f.gemini, chat("gemini-2.5-flash")),
    "vertex": (
        lambda f: f.vertex,
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    ),
}


@pytest.mark.parametrize("which", sorted(HANG))
def test_hang_is_504_at_the_deadline(fakes, which):
    fake, req = HANG[which]
    fake(fakes).hang(10)
    err, took = fails(make("google" if which == "vertex" else which, fakes), req, deadline=0.8)
    assert (
        isinstance(err, DeadlineExceeded) and 0.75 < took < 0.8 + 0.6
    )  # margin: a loaded 2-CPU box
    assert len(fake(fakes).requests) == 1


def test_per_call_timeout_is_504_without_retry(fakes):
    fakes.openai.hang(10)
    err, took = fails(make("openai", fakes, timeout_s=0.5), chat(), deadline=5)
    assert isinstance(err, DeadlineExceeded) and took < 1.5 and len(fakes.openai.requests) == 1


# ------------------------------------------------------------------------------ configuration


def test_credentials_and_availability(fakes, tmp_path):
    for name in ADAPTERS:
        bare = ADAPTERS[name]({"base_url": "http://127.0.0.1:9"})
        assert bare.available is False
    err, _ = fails(ADAPTERS["openai"]({"base_url": fakes.openai.url + "/v1"}), chat())
    assert isinstance(err, Unavailable) and not fakes.openai.requests
    secret = tmp_path / "openai-key"
    secret.write_text(OPENAI_KEY + "\n")
    from_file = make("openai", fakes, api_key=None, api_key_file=str(secret))
    assert from_file.available and OPENAI_KEY not in repr(from_file.settings)
    run(from_file, chat())
    assert fakes.openai.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    (tmp_path / "empty").write_text("\n")
    assert not ADAPTERS["anthropic"]({"api_key_file": str(tmp_path / "empty")}).available
    with pytest.raises(ValueError, match="api_key_file"):
        ADAPTERS["anthropic"]({"api_key_file": str(tmp_path / "missing")})
    gemini_only = ADAPTERS["google"]({"api_key": GOOGLE_KEY})
    assert gemini_only.available and not gemini_only.available_for("multimodalembedding")
    err, _ = fails(
        gemini_only,
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert isinstance(err, Unavailable)


def test_bad_requests_are_400(fakes):
    o = make("openai", fakes)
    for req in (
        chat("zzz-unknown-model"),
        {**chat(), "task": "transcription"},
        chat(temperature=5),
        chat(foo=1),
        chat(prompts=[]),
        {
            "task": "vision",
            "model": "gpt-4o",
            "parameters": {},
            "inputs": {"prompts": ["x"], "media": b"not an image", "media_kind": "image"},
        },
    ):
        err, _ = fails(o, req)
        assert isinstance(err, InvalidRequest), req
    assert not fakes.openai.requests
