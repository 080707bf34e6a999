"""What every fake provider server shares: the threaded HTTP server, request records, scripted
replies (`reply`, `hang`), and the test keys. The fakes: fake_openai.py, fake_cloud.py."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import http.server
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MM_DIMS = 1408
VIDEO_SECONDS = 40.0  # every fake video "lasts" this long


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, tuple[str | None, str, bytes]] = field(
        default_factory=dict
    )  # name -> (filename, type, bytes)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


def words(text: str) -> int:
    return len(text.split())


def vector(seed: str, dims: int) -> list[float]:
    """A deterministic, not normalised vector."""
    digest = hashlib.sha256(seed.encode()).digest()
    return [((digest[i % 32] + i) % 17) + 1.0 for i in range(dims)]


class _Handler(http.server.BaseHTTPRequestHandler):
    fake: "FakeProvider"

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        req = Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
        ctype = req.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            req.json = json.loads(raw or b"null")
        elif ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
            )
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename() is not None:
                    req.files[name] = (
                        part.get_filename(),
                        part.get_content_type(),
                        part.get_payload(decode=True),
                    )
                else:
                    req.form.setdefault(name, []).append(part.get_payload(decode=True).decode())
        reply = self.fake._answer(req)
        if reply.hang_s:
            self.fake._stopping.wait(reply.hang_s)
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header(
                "content-type",
                "application/json" if not isinstance(reply.body, bytes) else "text/html",
            )
            self.send_header("content-length", str(len(payload)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (hang tests)
            pass

    def log_message(self, *args):
        pass


class FakeProvider:
    """A provider on 127.0.0.1:<free port>. Subclasses: `authorized`, `unauthorized`, `route`."""

    def __init__(self, key: str):
        self.key = key
        self.requests: list[Received] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.structured: Any = {
            "answer": "Paris",
            "confidence": 0.9,
        }  # what a schema'd answer holds
        self.delay_s = 0.0
        self.in_flight = self.peak_in_flight = 0  # requests being answered at once (with delay_s)
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
        self.structured = {"answer": "Paris", "confidence": 0.9}
        self.delay_s = 0.0
        self.in_flight = self.peak_in_flight = 0  # requests being answered at once (with delay_s)

    def reply(
        self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        """The next `times` requests get this answer instead of the normal one."""
        with self._lock:
            self._script.extend(Reply(status, body, dict(headers or {})) for _ in range(times))

    def hang(self, seconds: float = 30.0, times: int = 1) -> None:
        with self._lock:
            self._script.extend(Reply(200, {}, {}, hang_s=seconds) for _ in range(times))

    def _answer(self, req: Received) -> Reply:
        with self._lock:
            self.requests.append(req)
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted
        if self.delay_s:
            with self._lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            time.sleep(self.delay_s)
            with self._lock:
                self.in_flight -= 1
        if not self.authorized(req):
            return self.unauthorized(req)
        return self.route(req)

    def authorized(self, req: Received) -> bool:
        raise NotImplementedError

    def unauthorized(self, req: Received) -> Reply:
        raise NotImplementedError

    def route(self, req: Received) -> Reply:
        raise NotImplementedError


# ------------------------------------------------------------------------------ OpenAI
