"""The media fetcher's caps, the origin's answers, and base64 media."""

from __future__ import annotations

import asyncio
import base64
import socket
import time

import pytest
from test_media import AUDIO, fetch, fetcher, loopback_only, servers  # noqa: F401  (fixtures)

from rawinfer.contract.errors import InvalidRequest, PayloadTooLarge


def test_declared_oversize_body_refused_early(servers):
    a, _ = servers
    start = time.monotonic()
    with pytest.raises(PayloadTooLarge):
        fetch(
            fetcher(allow_cidrs=["127.0.0.0/8"], max_bytes=1000, fetch_timeout_s=2.5), f"{a}/big-cl"
        )
    assert time.monotonic() - start < 2.0  # did not wait for the stalled body


def test_undeclared_oversize_body_cut_at_cap(servers):
    a, _ = servers
    with pytest.raises(PayloadTooLarge, match="larger than"):
        fetch(fetcher(allow_cidrs=["127.0.0.0/8"], max_bytes=1000), f"{a}/big-nocl")
    assert (
        len(fetch(fetcher(allow_cidrs=["127.0.0.0/8"], max_bytes=60_000), f"{a}/big-nocl"))
        == 50_000
    )


def test_slow_body_hits_total_time_cap(servers):
    a, _ = servers
    start = time.monotonic()
    with pytest.raises(InvalidRequest, match="timed out"):
        fetch(fetcher(allow_cidrs=["127.0.0.0/8"], fetch_timeout_s=1.0), f"{a}/slow")
    assert time.monotonic() - start < 3.0


def test_origin_error_status_and_empty_body(servers):
    a, _ = servers
    f = fetcher(allow_cidrs=["127.0.0.0/8"])
    with pytest.raises(InvalidRequest, match="answered HTTP status 404"):
        fetch(f, f"{a}/missing.wav")
    with pytest.raises(InvalidRequest, match="empty"):
        fetch(f, f"{a}/empty")


def test_connection_refused_is_a_clean_400():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(InvalidRequest, match="Could not connect"):
        fetch(fetcher(allow_cidrs=["127.0.0.0/8"]), f"http://127.0.0.1:{port}/a.wav")


# ------------------------------------------------------------------ base64


def test_base64_forms():
    f = fetcher()
    raw = base64.b64encode(AUDIO).decode()
    assert f.decode_base64(raw) == AUDIO
    assert f.decode_base64("data:audio/wav;base64," + raw) == AUDIO
    assert f.decode_base64("\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))) == AUDIO
    assert (
        f.decode_base64(base64.urlsafe_b64encode(b"\xfb\xff" * 10).decode().rstrip("="))
        == b"\xfb\xff" * 10
    )
    assert asyncio.run(f.fetch("data:audio/wav;base64," + raw)) == AUDIO


@pytest.mark.parametrize(
    "data", ["not base64!!", "QUJD$", "A", "", "data:audio/wav,plain", "data:nocomma", "é" * 8]
)
def test_invalid_base64_refused(data):
    with pytest.raises(InvalidRequest):
        fetcher().decode_base64(data)


def test_oversize_base64_refused_before_decoding():
    f = fetcher(max_bytes=1000)
    assert len(f.decode_base64(base64.b64encode(b"a" * 1000).decode())) == 1000  # exactly at cap
    with pytest.raises(PayloadTooLarge):
        f.decode_base64(base64.b64encode(b"a" * 1001).decode())
    with pytest.raises(PayloadTooLarge):
        f.decode_base64("!" * 10_000_000)  # refused from its length, although it is not base64
    with pytest.raises(PayloadTooLarge):
        asyncio.run(f.load(None, "data:audio/wav;base64," + base64.b64encode(b"b" * 2000).decode()))
