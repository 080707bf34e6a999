"""Shared by the hostile-input suites (tests/test_hostile*.py): raw HTTP for what httpx refuses
to send, and the check that the service is healthy after each case."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest

E5 = {"inference_name": "multilingual_e5_large_instruct_v1"}
CLIP = {"inference_name": "laion_clip_vit_l_14_v1"}
TINY = {"provider": "local", "model": "whisper-tiny.en"}
CHAT = {"provider": "local", "model": "smollm2-135m-instruct"}
VISION = {"provider": "openai", "model": "gpt-4o-mini"}


@pytest.fixture(scope="module")
def http(service):
    with service.client(timeout=60) as c:
        yield c


@pytest.fixture(autouse=True)
def stays_healthy(http, service):
    """After every case: /healthz 200 and a normal request succeeds."""
    yield
    assert http.get("/healthz").status_code == 200
    r = http.post(
        "/v1/inference", json={**E5, "inputs": {"text": "still here"}}, headers=service.headers()
    )
    assert r.status_code == 200 and r.json()["data"]["dimensions"] == 384, r.text


def post(http, service, body, headers=None):
    return http.post("/v1/inference", json=body, headers=headers or service.headers())


def raw(service, request: bytes, timeout: float = 20) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (what httpx refuses to send) and parse the answer."""
    u = urlparse(service.url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return int(lines[0].split()[1]), headers, body


def _expected(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + len(sep) + int(line.split(b":")[1])
    return 1 << 62  # read to close


def raw_post(
    service,
    path: str,
    headers: dict[str, bytes],
    body: bytes = b"",
    content_length: int | None = None,
):
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Connection: close",
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body) if content_length is None else content_length).encode(),
    ]
    lines += [k.encode() + b": " + v for k, v in headers.items()]
    return raw(service, b"\r\n".join(lines) + b"\r\n\r\n" + body)
