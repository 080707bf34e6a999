"""Assertions shared by the tests."""
from __future__ import annotations

import re

import httpx

SECRET = re.compile(r"sk_[A-Za-z0-9_-]{20,}")


def assert_error(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    """The contract's error body, with this status."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"success", "status", "error", "request_id"}, body
    assert body["success"] is False and body["status"] == status
    assert set(body["error"]) == {"type", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if type_:
        assert body["error"]["type"] == type_
    assert "Traceback" not in r.text and not SECRET.search(r.text), r.text  # no trace, no key
    assert r.headers.get("x-request-id") == body["request_id"]
    return body
