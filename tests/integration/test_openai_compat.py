"""The OpenAI-compatible routes, driven by the official `openai` client with only base_url and
api_key changed (the key's one namespace is the default: no custom header)."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import openai
import pytest
from helpers import CLIP, LIBRIVOX, REFS, wer

CHAT = "local/smollm2-135m-instruct"
E5 = "multilingual_e5_large_instruct_v1"


@pytest.fixture(scope="module")
def client(service):
    return openai.OpenAI(
        base_url=service.url + "/v1", api_key=service.keys["a"], max_retries=0, timeout=300
    )


def test_chat_equals_the_raw_endpoint_and_offline_vllm(client, offline_vllm):
    prompt = "What is the capital of France?"
    r = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=32
    )
    assert r.choices[0].message.content == offline_vllm[prompt]["text"]
    assert r.choices[0].finish_reason in ("stop", "length") and r.model == "smollm2-135m-instruct"
    assert r.usage.prompt_tokens == offline_vllm[prompt]["prompt_tokens"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # max_completion_tokens is the newer name for max_tokens; n asks for several choices
    r = client.chat.completions.create(
        model="instruct_chat_v1",
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_completion_tokens=32,
        n=2,
    )
    assert [c.message.content for c in r.choices] == [offline_vllm[prompt]["text"]] * 2


def test_streaming_chat_with_usage(client):
    kw = dict(
        model=CHAT,
        messages=[{"role": "user", "content": "Count from one to five."}],
        temperature=0,
        max_tokens=40,
    )
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full and len(chunks) >= 4
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_json_schema_output(client):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 20}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Answer in JSON: what colour is the sky?"}],
        temperature=0,
        max_tokens=80,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_embeddings_float_and_base64(client, service):
    texts = ["machine learning", "cooking pasta"]
    floats = client.embeddings.create(model=E5, input=texts, encoding_format="float")
    default = client.embeddings.create(
        model=E5, input=texts
    )  # the client asks for base64 and decodes it
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 384
    assert np.allclose(floats.data[1].embedding, default.data[1].embedding, atol=1e-6)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    raw = (
        service.client()
        .post(
            "/v1/inference",
            headers=service.headers(),
            json={"inference_name": E5, "inputs": {"text": texts[0]}},
        )
        .json()
    )
    assert np.allclose(floats.data[0].embedding, raw["data"]["embedding"], atol=1e-6)
    single = client.embeddings.create(
        model="local/all-minilm-l6-v2", input="machine learning", dimensions=384
    )
    assert np.allclose(single.data[0].embedding, floats.data[0].embedding, atol=1e-6)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=E5, input="x", dimensions=128)


def test_transcription_formats(client):
    with open(LIBRIVOX / f"{CLIP}.wav", "rb") as f:
        audio = f.read()
    r = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", audio))
    assert wer(REFS[CLIP], r.text) <= 0.1
    v = client.audio.transcriptions.create(
        model="whisper-1",
        file=("clip.wav", audio),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert v.language == "en" and v.duration > 6 and v.segments and len(v.words) >= 15
    srt = client.audio.transcriptions.create(
        model="local/whisper-tiny.en", file=("clip.wav", audio), response_format="srt"
    )
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = client.audio.transcriptions.create(
        model="local/whisper-tiny.en", file=("clip.wav", audio), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT") and "." in vtt.split("-->")[0]
    text = client.audio.transcriptions.create(
        model="local/whisper-tiny.en", file=("clip.wav", audio), response_format="text"
    )
    assert wer(REFS[CLIP], text) <= 0.1


def test_translations_render_other_languages_in_english(client, tmp_path):
    """whisper's translate task through the official client's `audio.translations`."""
    import subprocess

    wav = tmp_path / "de.wav"
    german = "Guten Morgen. Ich möchte heute ein Buch kaufen."
    subprocess.run(["espeak-ng", "-v", "de", "-s", "120", "-w", str(wav), german], check=True)
    heard = client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb")).text
    assert "Morgen" in heard and "Buch" in heard
    english = client.audio.translations.create(model="whisper-1", file=wav.open("rb")).text
    assert "morning" in english.lower() and "book" in english.lower(), english
    verbose = client.audio.translations.create(
        model="whisper-1", file=wav.open("rb"), response_format="verbose_json"
    )
    assert verbose.language == "de" and "book" in verbose.text.lower()
    with pytest.raises(openai.BadRequestError, match="English-only"):
        client.audio.translations.create(model="local/whisper-tiny.en", file=wav.open("rb"))
    with pytest.raises(openai.BadRequestError, match="no `language`"):
        client.audio.translations.create(
            model="whisper-1", file=wav.open("rb"), extra_body={"language": "de"}
        )


def test_models_list(client):
    ids = {m.id for m in client.models.list()}
    assert {CHAT, E5, "openai/whisper-1", "instruct_chat_v1"} <= ids


def test_typed_errors(client, service):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert "unknown model" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "x"}], max_tokens=-3
        )
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=CHAT, input="x")  # a chat model cannot embed
    bad = openai.OpenAI(base_url=service.url + "/v1", api_key="sk_" + "B" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    elsewhere = openai.OpenAI(
        base_url=service.url + "/v1",
        api_key=service.keys["a"],
        max_retries=0,
        default_headers={"X-Namespace": "no-such-namespace"},
    )
    with pytest.raises(openai.NotFoundError):
        elsewhere.models.list()
    forbidden = openai.OpenAI(
        base_url=service.url + "/v1",
        api_key=service.keys["a"],
        max_retries=0,
        default_headers={"X-Namespace": "team-b"},
    )
    with pytest.raises(openai.PermissionDeniedError):
        forbidden.models.list()
    unrestricted = openai.OpenAI(
        base_url=service.url + "/v1", api_key=service.keys["all"], max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as e:
        unrestricted.models.list()  # a key for several namespaces must name one
    assert "X-Namespace" in e.value.message


def test_malformed_multipart_is_a_4xx_and_a_key_comes_first(service):
    """Found by the fuzzer: a broken multipart body to the transcription route was a 500."""
    import httpx

    boundary = "e6f48b9bacb6642c261d270914899100"
    body = f"--{boundary}\r\n2.8e+104--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with httpx.Client(base_url=service.url, timeout=60) as c:
        r = c.post("/v1/audio/transcriptions", content=body, headers=headers)
        assert r.status_code == 401, r.text  # no key: 401 whatever the body
        r = c.post(
            "/v1/audio/transcriptions", content=body, headers={**headers, **service.headers()}
        )
        assert r.status_code == 400, r.text
        assert (
            r.json()["error"]["type"] == "invalid_request_error"
            and "multipart" in r.json()["error"]["message"]
        )
        assert c.get("/healthz").status_code == 200
