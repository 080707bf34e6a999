"""Fuzzing from the OpenAPI document the running service serves (/openapi.json, router/openapi.py).

Schemathesis generates valid and invalid requests for every route and sends them over real HTTP
to the session `service`: once with a valid key and its namespace, once without any key. Any 5xx,
any response that does not match the document (status, content type, body schema), or any error
that is not in the contract's error body (OpenAI's on the OpenAI-compatible routes) fails.

Bounded for `make test` (RAWINFER_FUZZ_EXAMPLES per route and mode, default 25); `make fuzz` runs
longer.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from helpers import SECRET
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from router.openapi import OPENAI_ROUTES

EXAMPLES = int(os.environ.get("RAWINFER_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=False,
    print_blob=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzz_key(service):
    """A key and namespace of their own, so the fuzzer's traffic and usage rows touch no one
    else's."""
    from rawinfer.tenancy.store import Store

    store = Store(service.database_url)
    ns = store.create_namespace("fuzz-ns")
    _, secret = store.create_key("fuzz", namespaces=["fuzz-ns"])
    return {"Authorization": f"Bearer {secret}", "X-Namespace": ns.name}


def check_body(case, response) -> None:
    """The error body of the contract (or of OpenAI on its routes); never a trace or a key."""
    text = response.text
    assert "Traceback" not in text and not SECRET.search(text), text[:500]
    if response.status_code < 400:
        return
    body = response.json()
    if case.operation.path in OPENAI_ROUTES:
        assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body
        return
    assert set(body) == {"success", "status", "error", "request_id"}, body
    assert body["success"] is False and body["status"] == response.status_code, body
    assert set(body["error"]) == {"type", "message", "details"} and body["error"]["message"], body
    echoed = response.headers.get("x-request-id") or [None]  # schemathesis: name -> list of values
    assert echoed == [body["request_id"]], (echoed, body)


# HTTP framing, not API: a generated `Content-Length: abc` is refused by Serve's HTTP server
# (uvicorn) with its own text/plain 400 before any route runs; test_broken_framing covers it.
FRAMING = {"content-length", "transfer-encoding", "connection", "host", "expect", "te", "upgrade"}


def call(case, service, headers: dict[str, str] | None):
    for name in [h for h in (case.headers or {}) if h.lower() in FRAMING]:
        del case.headers[name]
    if headers is None:  # no key at all: drop whatever auth the generator put in
        for name in [h for h in (case.headers or {}) if h.lower() == "authorization"]:
            del case.headers[name]
    response = case.call(base_url=service.url, headers=headers, timeout=90)
    # /readyz answers 503 (its own body, declared) while a deployment is down: not a fault
    case.validate_response(
        response, checks=CHECKS[1:] if case.operation.path == "/readyz" else CHECKS
    )
    check_body(case, response)
    return response


def fuzz(service, headers: dict[str, str] | None, expect=None) -> None:
    """Every operation the served document declares, with valid and invalid generated data.
    Failures of all operations are collected, then reported together."""
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    failures = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @FUZZ
            def run(case):
                response = call(case, service, headers)
                if expect is not None:
                    expect(case, response)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (a route without parameters or body)
                continue
            except Exception as e:  # noqa: BLE001 (hypothesis' shrunk failure, with its example)
                failures.append(
                    f"{op.method.upper()} {op.path} [{mode.value}]: {type(e).__name__}: "
                    f"{str(e)[:1500]}"
                )
    assert not failures, "\n\n".join(failures)


def test_fuzz_with_a_valid_key(service, fuzz_key):
    fuzz(service, fuzz_key)


def test_fuzz_without_a_key(service):
    def unauthenticated(case, response):
        if case.operation.path not in ("/healthz", "/readyz"):
            assert response.status_code in (400, 401, 404, 405, 413), (
                case.operation.path,
                response.status_code,
            )

    fuzz(service, None, unauthenticated)


def test_document_describes_every_route(service):
    """Every route the app serves is in the document with its body and error responses, so the
    fuzzer above really reaches past the routing layer."""
    import httpx

    doc = httpx.get(service.url + "/openapi.json", timeout=30).json()
    assert {
        "/v1/inference",
        "/v1/embeddings",
        "/v1/chat/completions",
        "/v1/audio/transcriptions",
    } <= set(doc["paths"])
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert {"400", "401", "500", "503"} <= set(op["responses"]), (method, path)
            if method == "post" and not path.startswith("/v1/admin"):
                assert "requestBody" in op, path
    assert "InferenceRequest" in doc["components"]["schemas"]


def test_broken_framing_is_refused_and_the_next_request_served(service):
    """A malformed Content-Length never reaches a route: the HTTP server answers 400 and closes
    that connection; the service goes on answering."""
    import socket
    from urllib.parse import urlsplit

    import httpx

    url = urlsplit(service.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/inference HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n{}")
        head = sock.recv(4096).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 400"), head
    assert httpx.get(service.url + "/healthz", timeout=30).status_code == 200
