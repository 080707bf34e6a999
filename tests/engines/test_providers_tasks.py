"""Provider adapters against the wire-format fakes: every task each provider serves, both ways."""

from __future__ import annotations

import base64
import json
import time

from fake_providers import (
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    chat,
    fails,
    make,
    run,
)
from test_providers import MP3, MP4, PNG, _clean, fakes, unit  # noqa: F401  (fixtures)

from rawinfer.contract.errors import InvalidRequest, ProviderError, Unavailable


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
