"""Abuse: nothing unauthenticated costs a body read or a parse (issue #18)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

POST_ROUTES = ["/v1/inference", "/v1/chat/completions", "/v1/embeddings"]


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_malformed_body_without_a_key_is_a_401(service, path):
    with service.client() as c:
        r = c.post(path, content=b'{"model": 1', headers={"Content-Type": "application/json"})
        assert r.status_code == 401, r.text
        r = c.post(path, json={"model": 1})
        assert r.status_code == 401, r.text


@pytest.mark.parametrize("path", POST_ROUTES)
def test_the_key_is_checked_before_the_body_arrives(service, path):
    """Headers that promise 10 MB and no body: the answer is a 401 at once, not after a wait
    for a body that never comes."""
    u = urlsplit(service.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer sk_{'x' * 40}\r\nContent-Length: 10000000\r\n\r\n".encode()
        )
        t0, got = time.monotonic(), b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    assert got.startswith(b"HTTP/1.1 401"), got[:200]
    assert time.monotonic() - t0 < 5


def test_a_valid_key_still_reads_the_body(service):
    r = httpx.post(
        service.url + "/v1/embeddings",
        headers=service.headers(),
        json={"model": "multilingual_e5_large_instruct_v1", "input": "hello"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 384


@pytest.fixture()
def listener():
    """A loopback socket that records whether anything connected to it."""
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    hits: list[bytes] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                hits.append(conn.recv(1024))

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/schema.json", hits
    stop.set()
    t.join(2)
    srv.close()


def test_a_remote_schema_ref_is_refused_and_never_fetched(service, listener):
    url, hits = listener
    bodies = [
        (
            "/v1/inference",
            {
                "provider": "local",
                "model": "smollm2-135m-instruct",
                "inputs": {"prompts": ["hi"]},
                "parameters": {"max_tokens": 4, "schema": {"$ref": url}},
            },
        ),
        (
            "/v1/chat/completions",
            {
                "model": "local/smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"properties": {"a": {"$ref": url}}}},
                },
            },
        ),
    ]
    with service.client() as c:
        for path, body in bodies:
            r = c.post(path, headers=service.headers(), json=body)
            assert r.status_code == 400, r.text
            assert "$ref" in r.text
    time.sleep(0.5)
    assert hits == []


def _transcribe(service, files, data):
    return httpx.post(
        service.url + "/v1/audio/transcriptions",
        headers=service.headers(),
        files=files,
        data=data,
        timeout=60,
    )


def test_transcription_uploads_are_capped_before_parsing(service):
    wav = ("a.wav", b"RIFF" + b"\0" * 1000, "audio/wav")
    padded = {"model": "whisper-1", **{f"pad{i}": "x" * (2 * 1024 * 1024) for i in range(20)}}
    r = _transcribe(service, {"file": wav}, padded)  # twenty 2 MB fields: 40 MB of padding
    assert r.status_code == 413, r.text
    many = {"model": "whisper-1", **{f"f{i}": "x" for i in range(30)}}
    r = _transcribe(service, {"file": wav}, many)
    assert r.status_code == 400 and "at most" in r.json()["error"]["message"], r.text
    r = _transcribe(service, [("file", wav), ("file", wav)], {"model": "whisper-1"})
    assert r.status_code == 400, r.text
