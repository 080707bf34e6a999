"""Unit checks (no Ray) behind the reliability suites: the OpenAPI document the fuzzer works from,
a database outage at the key store as a 503, and the request id's sanitising."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from rawinfer.contract.errors import Unavailable
from rawinfer.tenancy.store import Store
from router.auth import Authenticator
from router.logs import request_id_from


def test_openapi_document_declares_bodies_headers_and_error_shapes():
    from router.app import api

    doc = api.openapi()
    paths = doc["paths"]
    inference = paths["/v1/inference"]["post"]
    assert inference["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceRequest"
    }
    assert {p["name"] for p in inference["parameters"]} >= {"X-Namespace", "X-Request-Id"}
    assert inference["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    assert paths["/v1/embeddings"]["post"]["responses"]["401"]["content"]["application/json"][
        "schema"
    ]["$ref"].endswith("/OpenAIError")
    assert (
        "multipart/form-data" in paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    )
    assert "422" not in str(
        {m: op["responses"] for item in paths.values() for m, op in item.items()}
    )
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))
    schemas = doc["components"]["schemas"]
    assert {
        "InferenceRequest",
        "InferenceResponse",
        "ErrorBody",
        "ErrorDetail",
        "OpenAIError",
    } <= set(schemas)
    assert schemas["InferenceRequest"]["additionalProperties"] is False
    # a valid schema document: schemathesis loads it and sees every operation
    import schemathesis

    ops = [r.ok() for r in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert {(o.method.upper(), o.path) for o in ops} >= {
        ("POST", "/v1/inference"),
        ("GET", "/healthz"),
        ("GET", "/v1/models"),
    }


def test_key_store_outage_is_503_not_500(tmp_path):
    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    store.create_schema()
    store.create_namespace("team")
    _, secret = store.create_key("k", namespaces=["team"])
    auth = Authenticator(store, ttl_s=0.0)
    assert asyncio.run(auth(f"Bearer {secret}", "team"))[1].name == "team"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("ALTER TABLE api_keys RENAME TO api_keys_away")  # the key table is unreachable
    try:
        with pytest.raises(Unavailable):
            asyncio.run(auth(f"Bearer {secret}", "team"))
    finally:
        con.execute("ALTER TABLE api_keys_away RENAME TO api_keys")
        con.close()
    assert asyncio.run(auth(f"Bearer {secret}", "team"))[1].name == "team"  # and back


@pytest.mark.parametrize(
    "header", ["a b", "x" * 129, "caf\u00e9", "id\r\nX-Injected: 1", "", None, "<script>"]
)
def test_unsafe_request_ids_are_replaced(header):
    rid = request_id_from(header)
    assert rid.startswith("req_") and rid != header


def test_safe_request_id_is_kept():
    assert request_id_from("trace-1.2:3_x") == "trace-1.2:3_x"


def test_proxy_middleware_replaces_an_unsafe_request_id_before_serve_echoes_it():
    from router.proxy import SafeRequestId, middlewares

    seen = []

    async def app(scope, receive, send):
        seen.append([v for k, v in scope["headers"] if k == b"x-request-id"])

    mw = SafeRequestId(app)
    for raw, keep in (
        (b"good-id.1", True),
        (b"x" * 5000, False),
        (b"\xe9\xff", False),
        (b"a b", False),
    ):
        scope = {
            "type": "http",
            "headers": [(b"host", b"h"), (b"x-request-id", raw), (b"x-request-id", b"second")],
        }
        asyncio.run(mw(scope, None, None))
        (value,) = seen.pop()
        assert (value == raw) if keep else (value.startswith(b"req_") and len(value) < 64)
    asyncio.run(mw({"type": "http", "headers": [(b"host", b"h")]}, None, None))
    assert seen.pop() == []  # absent: Serve generates one
    assert len(middlewares()) == 1


def test_a_schema_nested_too_deeply_is_a_400_not_a_recursion_error():
    from rawinfer.contract import ChatParams
    from rawinfer.contract.errors import InvalidRequest
    from router.gateway import validated

    schema: dict = {"type": "string"}
    for _ in range(480):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        validated(ChatParams, {"schema": schema}, "parameters")
