"""The shared media fetcher against real HTTP servers on loopback.

Network rule: these tests only ever send traffic to loopback. The `loopback_only` guard below
fails any test that tries to connect elsewhere, so the refusals of 10.x, 169.254.x... are proven
to happen before a connection is attempted.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.settings import MediaSettings
from router.media import MediaFetcher, address_refusal

AUDIO = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
).read_bytes()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def _send(
        self, status: int, body: bytes = b"", headers: dict | None = None, length: int | None = None
    ):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        try:
            if url.path == "/audio.wav":
                self._send(200, AUDIO, {"Content-Type": "audio/wav"}, length=len(AUDIO))
            elif url.path == "/host":
                body = self.headers.get("Host", "").encode()
                self._send(200, body, length=len(body))
            elif url.path == "/big-cl":  # claims a huge body, sends 10 bytes, then stalls
                self._send(200, b"x" * 10, length=10**10)
                self.wfile.flush()
                time.sleep(3)
            elif url.path == "/big-nocl":  # no Content-Length: body ends when the connection closes
                self._send(200)
                for _ in range(50):
                    self.wfile.write(b"y" * 1000)
            elif url.path == "/slow":
                self._send(200, length=100)
                for _ in range(100):
                    self.wfile.write(b"z")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif url.path == "/redirect":
                self._send(302, headers={"Location": q["to"][0]}, length=0)
            elif url.path == "/loop":
                self._send(302, headers={"Location": "/loop"}, length=0)
            elif url.path == "/empty":
                self._send(200, length=0)
            else:
                self._send(404, b"not found", length=9)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _serve(host: str):
    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers():
    a, b = _serve("127.0.0.1"), _serve("127.0.0.2")
    yield f"http://127.0.0.1:{a.server_address[1]}", f"http://127.0.0.2:{b.server_address[1]}"
    for s in (a, b):
        s.shutdown()
        s.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail the test if anything connects to a non-loopback address."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            attempts.append(host)
            raise AssertionError(f"test tried to connect to non-loopback {host}")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    assert not attempts


def fetcher(**kw) -> MediaFetcher:
    kw.setdefault("fetch_timeout_s", 5.0)
    return MediaFetcher(MediaSettings(**kw))


def fetch(f: MediaFetcher, url: str) -> bytes:
    return asyncio.run(f.fetch(url))


# ------------------------------------------------------------------ allowed fetches


def test_fetch_from_allowed_loopback(servers):
    a, _ = servers
    assert fetch(fetcher(allow_cidrs=["127.0.0.0/8"]), f"{a}/audio.wav") == AUDIO


def test_hostname_is_kept_in_host_header_while_connection_goes_to_checked_ip(servers):
    port = urlparse(servers[0]).port
    body = fetch(fetcher(allow_cidrs=["127.0.0.0/8", "::1/128"]), f"http://localhost:{port}/host")
    assert body == f"localhost:{port}".encode()


def test_ipv6_loopback_when_allowed():
    class V6Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    server = V6Server(("::1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        f = fetcher(allow_cidrs=["::1/128"])
        assert fetch(f, f"http://[::1]:{port}/host") == f"[::1]:{port}".encode()
        with pytest.raises(InvalidRequest, match="loopback"):  # ::1 allowed does not allow 127/8
            fetch(f, f"http://127.0.0.1:{port}/host")
    finally:
        server.shutdown()
        server.server_close()


def test_redirect_between_allowed_hosts_is_followed(servers):
    a, b = servers
    assert fetch(fetcher(allow_cidrs=["127.0.0.0/8"]), f"{b}/redirect?to={a}/audio.wav") == AUDIO


def test_load_picks_url_or_base64(servers):
    f = fetcher(allow_cidrs=["127.0.0.0/8"])
    assert asyncio.run(f.load(f"{servers[0]}/audio.wav", None)) == AUDIO
    assert asyncio.run(f.load(None, base64.b64encode(AUDIO).decode())) == AUDIO
    for url, b64 in [(None, None), ("http://x/", "AAAA"), ("", "")]:
        with pytest.raises(InvalidRequest):
            asyncio.run(f.load(url, b64))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An https server on 127.0.0.1 whose self-signed certificate names only DNS:localhost."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], ssl.create_default_context(cafile=str(cert))
    server.shutdown()
    server.server_close()


def test_https_pinned_to_ip_still_verifies_the_hostname(tls_server):
    port, trust = tls_server
    f = MediaFetcher(MediaSettings(allow_cidrs=["127.0.0.0/8", "::1/128"]), verify=trust)
    # connected to the IP, but SNI and the certificate check use "localhost": it verifies
    assert asyncio.run(f.fetch(f"https://localhost:{port}/audio.wav")) == AUDIO
    # the same server by IP: the certificate does not name 127.0.0.1, so verification fails
    with pytest.raises(InvalidRequest, match="TLS"):
        asyncio.run(f.fetch(f"https://127.0.0.1:{port}/audio.wav"))
    # the system's CAs do not trust a self-signed certificate
    with pytest.raises(InvalidRequest, match="TLS"):
        asyncio.run(
            MediaFetcher(MediaSettings(allow_cidrs=["127.0.0.0/8"])).fetch(
                f"https://localhost:{port}/audio.wav"
            )
        )


# ------------------------------------------------------------------ refusals before connecting


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1/a.wav", "loopback"),
        ("http://10.0.0.1/a.wav", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/a.wav", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.wav", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 of 169.254.169.254
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one integer
    ],
)
def test_non_public_addresses_are_refused(url, reason):
    with pytest.raises(InvalidRequest) as err:
        fetch(fetcher(), url)
    assert reason in err.value.message


def test_hostname_resolving_to_loopback_is_refused_without_echoing_the_ip(servers):
    port = urlparse(servers[0]).port
    with pytest.raises(InvalidRequest) as err:
        fetch(fetcher(), f"http://localhost:{port}/audio.wav")
    assert "resolves to a loopback address" in err.value.message
    assert "127.0.0.1" not in err.value.message


def test_allow_list_is_exact(servers):
    a, _ = servers  # 127.0.0.1 is loopback but outside 127.0.0.2/32
    with pytest.raises(InvalidRequest, match="loopback"):
        fetch(fetcher(allow_cidrs=["127.0.0.2/32"]), f"{a}/audio.wav")


def test_redirect_to_a_refused_host_is_refused(servers):
    a, b = servers
    f = fetcher(allow_cidrs=["127.0.0.2/32"])
    assert fetch(f, f"{b}/audio.wav") == AUDIO  # the first host itself is fine
    with pytest.raises(InvalidRequest) as err:
        fetch(f, f"{b}/redirect?to={a}/audio.wav")
    assert "redirected" in err.value.message and "loopback" in err.value.message
    assert "127.0.0.1" not in err.value.message


def test_redirect_to_metadata_and_file_urls_refused(servers):
    _, b = servers
    f = fetcher(allow_cidrs=["127.0.0.2/32"])
    with pytest.raises(InvalidRequest, match="link-local"):
        fetch(f, f"{b}/redirect?to=http://169.254.169.254/latest/meta-data/")
    with pytest.raises(InvalidRequest, match="only http and https"):
        fetch(f, f"{b}/redirect?to=file:///etc/passwd")


def test_too_many_redirects(servers):
    _, b = servers
    with pytest.raises(InvalidRequest, match="redirected more than 2 times"):
        fetch(fetcher(allow_cidrs=["127.0.0.0/8"], max_redirects=2), f"{b}/loop")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://x/file", "gopher://x/", "x", "//127.0.0.1/"]
)
def test_other_schemes_refused(url):
    with pytest.raises(InvalidRequest):
        fetch(fetcher(), url)


def test_address_refusal_table():
    allow = [ipaddress.ip_network("127.0.0.0/8")]
    assert address_refusal(ipaddress.ip_address("8.8.8.8")) is None
    assert address_refusal(ipaddress.ip_address("2606:4700::1111")) is None
    assert address_refusal(ipaddress.ip_address("64:ff9b::808:808")) is None  # NAT64 of a public v4
    assert address_refusal(ipaddress.ip_address("127.0.0.5"), allow) is None
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.5"), allow) is None
    assert address_refusal(ipaddress.ip_address("::1"), allow) == "a loopback address"
    assert address_refusal(ipaddress.ip_address("::ffff:8.8.8.8")) is None


# ------------------------------------------------------------------ caps and origin answers
