"""Hostile input over real HTTP against the session `service`: every case gets the contract's 4xx
(or OpenAI's error body on the OpenAI-compatible routes) and the service stays healthy: after each
test /healthz answers 200 and a normal embedding request succeeds.

This extends, and does not repeat, what the feature tests already refuse (tests/test_api_*.py,
tests/test_media.py: the fetcher's own rules, a few bad bodies, audio URL refusals, the basic
auth/namespace errors): here the same rules are driven through every route and every URL field,
with the nastier forms (bombs, deep JSON, raw header bytes, IPv6 spellings, redirects).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from helpers import assert_error
from hostile_helpers import CHAT, CLIP, E5, TINY, VISION, http, post, raw_post, stays_healthy  # noqa: F401 (fixtures)

MEDIA_CAP = 1024 * 1024  # and media.max_bytes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------------------ size


def test_chunked_body_without_length_is_cut_at_the_cap(http, service):
    def chunks():
        for _ in range(40):
            yield b" " * (128 * 1024)  # 5 MiB of whitespace, no Content-Length

    r = http.post(
        "/v1/inference",
        content=chunks(),
        headers={**service.headers(), "Content-Type": "application/json"},
    )
    assert_error(r, 413, "PayloadTooLargeError")


def test_declared_huge_length_is_refused_before_the_body(service):
    auth = service.headers()
    status, headers, body = raw_post(
        service,
        "/v1/inference",
        {k: v.encode() for k, v in auth.items()},
        b"{}",
        content_length=10**12,
    )
    assert status == 413, body[:300]
    assert json.loads(body)["error"]["type"] == "PayloadTooLargeError"


@pytest.mark.parametrize(
    "target,field",
    [
        (TINY, "audio_base64"),
        (CLIP, "image_base64"),
        (CLIP, "video_base64"),
        (VISION, "image_base64"),
    ],
)
def test_base64_media_over_the_media_cap(http, service, target, field):
    inputs = {field: b64(b"\0" * (MEDIA_CAP + 4096))}
    if target is VISION:
        inputs["prompts"] = ["what is this?"]
    assert_error(post(http, service, {**target, "inputs": inputs}), 413, "PayloadTooLargeError")
    data_url = "data:audio/wav;base64," + inputs[field]
    key = field.replace("_base64", "_url")
    assert_error(
        post(
            http,
            service,
            {
                **target,
                "inputs": {**{k: v for k, v in inputs.items() if k != field}, key: data_url},
            },
        ),
        413,
    )


def test_openai_transcription_upload_over_the_media_cap(http, service):
    r = http.post(
        "/v1/audio/transcriptions",
        headers=service.headers(),
        data={"model": "whisper-1"},
        files={"file": ("big.wav", b"\0" * (MEDIA_CAP + 10), "audio/wav")},
    )
    assert r.status_code == 413 and set(r.json()) == {"error"}, r.text


# ------------------------------------------------------------------------------ JSON shape


def deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [900, 5000, 200_000])
def test_deeply_nested_json_in_every_json_route(http, service, depth):
    h = {**service.headers(), "Content-Type": "application/json"}
    nested = deep(depth)
    bodies = {
        "/v1/inference": '{"inference_name": "multilingual_e5_large_instruct_v1",'
        ' "inputs": {"text": %s}}' % nested,
        "/v1/embeddings": '{"model": "all-minilm-l6-v2", "input": %s}' % nested,
        "/v1/chat/completions": '{"model": "local/smollm2-135m-instruct", "messages": %s}' % nested,
    }
    for path, body in bodies.items():
        r = http.post(path, content=body.encode(), headers=h)
        assert r.status_code in (400, 413), (path, r.status_code, r.text[:300])
        if path == "/v1/inference":
            assert_error(r, r.status_code)
    admin = {"Authorization": f"Bearer {service.keys['admin']}", "Content-Type": "application/json"}
    r = http.post("/v1/admin/orgs", content=('{"name": %s}' % nested).encode(), headers=admin)
    assert_error(r, r.status_code)
    assert r.status_code in (400, 404, 405, 413)


def test_deeply_nested_json_schema_for_chat(http, service):
    """A valid JSON body whose `schema` parameter nests 960 levels deep (under the JSON parser's
    limit, over what a recursive schema checker copes with)."""
    schema = '{"type": "object", "properties": {"a": ' * 480 + '{"type": "string"}' + "}}" * 480
    body = (
        '{"provider": "local", "model": "smollm2-135m-instruct", "inputs": {"prompts": ["hi"]}, '
        '"parameters": {"max_tokens": 4, "schema": %s}}' % schema
    )
    r = http.post(
        "/v1/inference",
        content=body.encode(),
        headers={**service.headers(), "Content-Type": "application/json"},
    )
    assert (
        "nested too deeply" in assert_error(r, 400)["error"]["message"]
    )  # was a 500 (RecursionError)


def test_huge_lists(http, service):
    assert_error(post(http, service, {**E5, "inputs": {"texts": ["a"] * 200_000}}), 400)
    assert_error(post(http, service, {**CHAT, "inputs": {"prompts": ["hi"] * 5000}}), 400)
    messages = [{"role": "user", "content": "hi"}] * 20_000
    assert_error(
        post(
            http,
            service,
            {**CHAT, "inputs": {"messages": messages}, "parameters": {"max_tokens": 4}},
        ),
        400,
    )
    r = http.post(
        "/v1/embeddings",
        json={"model": "all-minilm-l6-v2", "input": ["a"] * 100_000},
        headers=service.headers(),
    )
    assert r.status_code == 400 and set(r.json()) == {"error"}, r.text[:300]


def test_one_huge_text(http, service):
    text = "word " * 300_000  # 1.5 MB, one text
    err = assert_error(post(http, service, {**E5, "inputs": {"text": text}}), 400)
    assert "truncate" in err["error"]["message"]
    r = post(http, service, {**E5, "inputs": {"text": text}, "parameters": {"truncate": True}})
    assert r.status_code == 200 and r.json()["data"]["dimensions"] == 384


WAV_B64 = base64.b64encode(
    Path(
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
    ).read_bytes()
).decode()

WRONG_TYPES = [
    ("provider number", {"provider": 5, "model": "m", "inputs": {"text": "x"}}),
    ("model list", {"provider": "local", "model": ["all-minilm-l6-v2"], "inputs": {"text": "x"}}),
    ("inference_name object", {"inference_name": {"a": 1}, "inputs": {"text": "x"}}),
    ("feature_uri number", {"feature_uri": 1.5, "inputs": {"text": "x"}}),
    ("inputs null", {**E5, "inputs": None}),
    ("inputs string", {**E5, "inputs": "x"}),
    ("parameters list", {**E5, "inputs": {"text": "x"}, "parameters": [1]}),
    ("parameters null", {**E5, "inputs": {"text": "x"}, "parameters": None}),
    ("cache flag string", {**E5, "inputs": {"text": "x"}, "enable_semantic_cache": "yes"}),
    ("cache rate string", {**E5, "inputs": {"text": "x"}, "semantic_cache_max_error_rate": "low"}),
    ("cache rate negative", {**E5, "inputs": {"text": "x"}, "semantic_cache_max_error_rate": -0.1}),
    ("texts of numbers", {**E5, "inputs": {"texts": [1, 2]}}),
    ("texts string", {**E5, "inputs": {"texts": "abc"}}),
    ("texts nested", {**E5, "inputs": {"texts": [["a"]]}}),
    ("truncate int", {**E5, "inputs": {"text": "x"}, "parameters": {"truncate": 1}}),
    ("prompts string", {**CHAT, "inputs": {"prompts": "hi"}}),
    ("prompts of objects", {**CHAT, "inputs": {"prompts": [{"a": 1}]}}),
    ("system number", {**CHAT, "inputs": {"prompts": ["hi"], "system": 5}}),
    ("messages string", {**CHAT, "inputs": {"messages": "hi"}}),
    ("message role number", {**CHAT, "inputs": {"messages": [{"role": 5, "content": "hi"}]}}),
    (
        "message content object",
        {**CHAT, "inputs": {"messages": [{"role": "user", "content": {"a": 1}}]}},
    ),
    (
        "temperature string",
        {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"temperature": "hot"}},
    ),
    (
        "max_tokens float",
        {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"max_tokens": 1.5}},
    ),
    (
        "max_tokens huge",
        {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"max_tokens": 10**30}},
    ),
    (
        "max_tokens negative",
        {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"max_tokens": -1}},
    ),
    ("seed huge", {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"seed": 2**64}}),
    ("stop number", {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"stop": 5}}),
    ("schema string", {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"schema": "object"}}),
    (
        "schema invalid",
        {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"schema": {"type": 12}}},
    ),
    pytest.param(
        "stream string", {**CHAT, "inputs": {"prompts": ["hi"]}, "parameters": {"stream": "yes"}}
    ),
    ("audio_base64 number", {**TINY, "inputs": {"audio_base64": 12345}}),
    ("audio_url list", {**TINY, "inputs": {"audio_url": ["http://127.0.0.2/a.wav"]}}),
    (
        "beam_size string",
        {**TINY, "inputs": {"audio_base64": "AAAA"}, "parameters": {"beam_size": "five"}},
    ),
    (
        "beam_size huge",
        {**TINY, "inputs": {"audio_base64": "AAAA"}, "parameters": {"beam_size": 10**9}},
    ),
    pytest.param(
        "word_timestamps string",
        {**TINY, "inputs": {"audio_base64": WAV_B64}, "parameters": {"word_timestamps": "on"}},
    ),
    pytest.param(
        "vad_filter string",
        {**TINY, "inputs": {"audio_base64": WAV_B64}, "parameters": {"vad_filter": "yes"}},
    ),
    ("image_base64 object", {**CLIP, "inputs": {"image_base64": {"data": "x"}}}),
    ("image_url number", {**CLIP, "inputs": {"image_url": 7}}),
    ("max_frames string", {**CLIP, "inputs": {"text": "x"}, "parameters": {"max_frames": "many"}}),
    ("interval_sec huge", {**CLIP, "inputs": {"text": "x"}, "parameters": {"interval_sec": 1e308}}),
]


@pytest.mark.parametrize(
    "label,body",
    WRONG_TYPES,
    ids=[c.values[0] if hasattr(c, "marks") else c[0] for c in WRONG_TYPES],
)
def test_wrong_types_in_every_field(http, service, label, body):
    assert_error(post(http, service, body), 400, "BadRequestError")


@pytest.mark.parametrize(
    "label,raw_body",
    [
        (
            "invalid utf-8 inside a string",
            b'{"inference_name": "multilingual_e5_large_instruct_v1",'
            b' "inputs": {"text": "a\xff\xfeb"}}',
        ),
        (
            "overlong utf-8",
            b'{"inference_name": "multilingual_e5_large_instruct_v1",'
            b' "inputs": {"text": "\xc0\xaf"}}',
        ),
        (
            "lone surrogate escape",
            b'{"inference_name": "multilingual_e5_large_instruct_v1",'
            b' "inputs": {"text": "a\\ud800b"}}',
        ),
        (
            "NaN literal",
            b'{"provider": "local", "model": "smollm2-135m-instruct",'
            b' "inputs": {"prompts": ["hi"]}, "parameters": {"temperature": NaN}}',
        ),
        (
            "huge exponent",
            b'{"provider": "local", "model": "smollm2-135m-instruct",'
            b' "inputs": {"prompts": ["hi"]}, "parameters": {"temperature": 1e999}}',
        ),
        (
            "utf-16 body",
            '{"inference_name": "multilingual_e5_large_instruct_v1",'
            ' "inputs": {"text": "x"}}'.encode("utf-16"),
        ),
    ],
)
def test_undecodable_text(http, service, label, raw_body):
    r = http.post(
        "/v1/inference",
        content=raw_body,
        headers={**service.headers(), "Content-Type": "application/json"},
    )
    assert_error(r, 400)


def test_control_characters_in_text_are_just_text(http, service):
    r = post(
        http, service, {**E5, "inputs": {"texts": ["a\u0000b", "\u202e\u200b", "\U0001f600" * 50]}}
    )
    assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize(
    "target,field", [(CLIP, "image_base64"), (CLIP, "video_base64"), (VISION, "image_base64")]
)
@pytest.mark.parametrize(
    "data",
    [
        "!!!!",
        "YWJj$ZGVm",
        "A",
        "====",
        "data:image/png;base64",
        "data:image/png,rawbytes",
        "\u00e9\u00e9\u00e9\u00e9",
    ],
)
def test_base64_that_is_not_base64(http, service, target, field, data):
    inputs = {field: data, **({"prompts": ["what?"]} if target is VISION else {})}
    assert_error(post(http, service, {**target, "inputs": inputs}), 400)


# ------------------------------------------------------------------------------ bombs
