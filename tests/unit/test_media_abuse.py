"""The media fetcher against hostile servers: a gzip bomb is cut at the cap without inflating
it whole; cloud-control-plane and site-local addresses are refused."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rawinfer.contract.errors import InvalidRequest, PayloadTooLarge
from rawinfer.core.settings import MediaSettings
from router.media import MediaFetcher, address_refusal

CAP = 1024 * 1024
BOMB = gzip.compress(b"\0" * (200 * CAP), compresslevel=9)  # ~200 KB that inflate to 200 MiB
SMALL = b"RIFF" + bytes(range(256)) * 40


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body, enc = {
            "/bomb": (BOMB, "gzip"),
            "/small.gz": (gzip.compress(SMALL), "gzip"),
            "/br": (b"x" * 100, "br"),
            "/plain": (SMALL, None),
        }[self.path]
        self.send_response(200)
        if enc:
            self.send_header("Content-Encoding", enc)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def fetch(url: str) -> bytes:
    f = MediaFetcher(MediaSettings(max_bytes=CAP, allow_cidrs=["127.0.0.0/8"]))
    return asyncio.run(f.fetch(url))


def test_a_gzip_bomb_is_cut_at_the_cap_without_inflating_it(server):
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            fetch(f"{server}/bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * CAP  # the whole bomb would be 200 MiB


def test_compressed_and_plain_bodies_arrive_as_sent(server):
    assert fetch(f"{server}/small.gz") == SMALL
    assert fetch(f"{server}/plain") == SMALL


def test_an_encoding_we_cannot_bound_is_refused(server):
    with pytest.raises(InvalidRequest, match="Content-Encoding"):
        fetch(f"{server}/br")


@pytest.mark.parametrize("addr", ["168.63.129.16", "fec0::1", "fec0:1234::5"])
def test_control_plane_and_site_local_addresses_are_refused(addr):
    assert address_refusal(ipaddress.ip_address(addr)) is not None
