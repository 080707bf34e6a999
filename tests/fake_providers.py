"""Local stand-ins for the cloud providers, on 127.0.0.1 (tests never reach the internet).

Each fake is a threaded HTTP server that speaks its provider's documented wire format, checks the
provider's auth header, records every request (`requests`: method, path, headers, JSON body or
multipart form and files) and answers like the provider. It can be told to answer differently
for the next requests: `reply(status, body, headers, times)` (an error, a 429 with retry-after,
a 5xx N times then normal service) or `hang(seconds, times)` (accept and never answer in time).
The harness at the end builds adapters pointed at the fakes and runs them (`make`, `run`, `fails`).

- FakeOpenAI:    POST /v1/chat/completions, /v1/embeddings, /v1/audio/transcriptions and
                 /v1/audio/translations (multipart); `Authorization: Bearer`; errors
                 {"error": {"message", "type", "code"}} (its 401 echoes the key it got, as a
                 careless provider might, so tests prove we never pass it on).
- FakeAnthropic: POST /v1/messages; the key as `x-api-key` or `Authorization: Bearer` (what
                 the installed SDK sends) + `anthropic-version`; errors
                 {"type": "error", "error": {"type", "message"}}.
- FakeGemini:    POST /v1beta/models/{model}:generateContent; `x-goog-api-key`; a bad key is
                 400 INVALID_ARGUMENT with reason API_KEY_INVALID, as Gemini answers.
- FakeVertex:    POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:predict;
                 `Authorization: Bearer <token>` or `x-goog-api-key`; 1408-d embeddings.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import http.server
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from models.providers import ADAPTERS
from rawinfer.contract.errors import RawInferError

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


def _openai_error(status: int, message: str, type_: str, code: str | None = None) -> Reply:
    return Reply(
        status, {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return str(content)


class FakeOpenAI(FakeProvider):
    def authorized(self, req):
        return req.headers.get("authorization") == f"Bearer {self.key}"

    def unauthorized(self, req):
        got = req.headers.get("authorization", "").removeprefix("Bearer ")
        return _openai_error(
            401,
            f"Incorrect API key provided: {got}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    def route(self, req):
        if req.path == "/v1/chat/completions":
            return self.chat(req.json)
        if req.path == "/v1/embeddings":
            return self.embeddings(req.json)
        if req.path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
            return self.audio(req)
        return _openai_error(404, f"Invalid URL (POST {req.path})", "invalid_request_error")

    def chat(self, body):
        if not body.get("model") or not body.get("messages"):
            return _openai_error(400, "you must provide a model parameter", "invalid_request_error")
        last = _text_of(body["messages"][-1]["content"])
        schema = (body.get("response_format") or {}).get("type") == "json_schema"
        content = json.dumps(self.structured) if schema else f"echo: {last}"
        prompt = sum(words(_text_of(m["content"])) for m in body["messages"])
        return Reply(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body["model"] + "-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "logprobs": None,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": words(content),
                    "total_tokens": prompt + words(content),
                },
            },
        )

    def embeddings(self, body):
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t, 16)}
            for i, t in enumerate(texts)
        ]
        n = sum(words(t) for t in texts)
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": n, "total_tokens": n},
            },
        )

    def audio(self, req):
        if "file" not in req.files or req.form.get("model") != ["whisper-1"]:
            return _openai_error(400, "file and model are required", "invalid_request_error")
        if req.form.get("response_format") != ["verbose_json"]:
            return Reply(200, {"text": "hello world"})
        translate = req.path.endswith("translations")
        out = {
            "task": "translate" if translate else "transcribe",
            "language": "english",
            "duration": 3.52,
            "text": " Hello world. Good morning.",
            "segments": [
                {
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": 1.5,
                    "text": " Hello world.",
                    "tokens": [1, 2],
                    "temperature": 0.0,
                    "avg_logprob": -0.2,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.01,
                },
                {
                    "id": 1,
                    "seek": 0,
                    "start": 1.5,
                    "end": 3.52,
                    "text": " Good morning.",
                    "tokens": [3, 4],
                    "temperature": 0.0,
                    "avg_logprob": -0.2,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.01,
                },
            ],
        }
        if "word" in req.form.get("timestamp_granularities[]", []):
            out["words"] = [
                {"word": w, "start": s, "end": e}
                for w, s, e in (
                    ("Hello", 0.0, 0.6),
                    ("world.", 0.7, 1.4),
                    ("Good", 1.6, 2.2),
                    ("morning.", 2.3, 3.4),
                )
            ]
        return Reply(200, out)


# ------------------------------------------------------------------------------ Anthropic


class FakeAnthropic(FakeProvider):
    def authorized(self, req):  # the API's x-api-key, or the Bearer form the installed SDK sends
        return self.key in (
            req.headers.get("x-api-key"),
            req.headers.get("authorization", "").removeprefix("Bearer "),
        )

    def unauthorized(self, req):
        return Reply(
            401,
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            },
        )

    def route(self, req):
        if req.path != "/v1/messages":
            return Reply(
                404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}
            )
        body = req.json
        if "anthropic-version" not in req.headers:
            return Reply(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "anthropic-version: header is required",
                    },
                },
            )
        if not body.get("max_tokens"):
            return Reply(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "max_tokens: Field required",
                    },
                },
            )
        last = _text_of(body["messages"][-1]["content"])
        if body.get("tool_choice", {}).get("type") == "tool":
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": body["tool_choice"]["name"],
                    "input": self.structured,
                }
            ]
            stop, n_out = "tool_use", 7
        else:
            content = [{"type": "text", "text": f"echo: {last}"}]
            stop, n_out = "end_turn", words(f"echo: {last}")
        n_in = sum(words(_text_of(m["content"])) for m in body["messages"]) + words(
            body.get("system") or ""
        )
        return Reply(
            200,
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": n_in, "output_tokens": n_out},
            },
        )


# ------------------------------------------------------------------------------ Google


def google_error(status: int, message: str, state: str, details: list | None = None) -> dict:
    return {
        "error": {"code": status, "message": message, "status": state, "details": details or []}
    }


class FakeGemini(FakeProvider):
    PATH = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")

    def authorized(self, req):
        return req.headers.get("x-goog-api-key") == self.key

    def unauthorized(self, req):
        return Reply(
            400,
            google_error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            ),
        )

    def route(self, req):
        m = self.PATH.match(req.path)
        if not m:
            return Reply(404, google_error(404, "not found", "NOT_FOUND"))
        body = req.json
        last = " ".join(p.get("text", "") for p in body["contents"][-1]["parts"])
        cfg = body.get("generationConfig") or {}
        text = (
            json.dumps(self.structured)
            if cfg.get("responseMimeType") == "application/json"
            else f"echo: {last}"
        )
        n_in = sum(words(p.get("text", "")) for c in body["contents"] for p in c["parts"])
        return Reply(
            200,
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": n_in,
                    "candidatesTokenCount": words(text),
                    "totalTokenCount": n_in + words(text),
                },
                "modelVersion": m.group(1) + "-001",
                "responseId": "r1",
            },
        )


class FakeVertex(FakeProvider):
    PATH = re.compile(
        r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):predict$"
    )

    def __init__(self, key: str, token: str = "ya29.fake-access-token"):
        self.token = token
        super().__init__(key)

    def authorized(self, req):
        return (
            req.headers.get("authorization") == f"Bearer {self.token}"
            or req.headers.get("x-goog-api-key") == self.key
        )

    def unauthorized(self, req):
        return Reply(
            401,
            google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
        )

    def route(self, req):
        if not self.PATH.match(req.path):
            return Reply(404, google_error(404, "not found", "NOT_FOUND"))
        instances = req.json.get("instances") or []
        if len(instances) != 1:
            return Reply(
                400, google_error(400, "exactly one instance is allowed", "INVALID_ARGUMENT")
            )
        inst = instances[0]
        if "text" in inst:
            pred = {"textEmbedding": vector(inst["text"], MM_DIMS)}
        elif "image" in inst:
            pred = {"imageEmbedding": vector(inst["image"]["bytesBase64Encoded"], MM_DIMS)}
        elif "video" in inst:
            cfg = inst["video"].get("videoSegmentConfig") or {}
            step = float(cfg.get("intervalSec", 16))
            start, end = (
                float(cfg.get("startOffsetSec", 0)),
                min(float(cfg.get("endOffsetSec", 120)), VIDEO_SECONDS),
            )
            segs, t = [], start
            while t < end:
                segs.append(
                    {
                        "startOffsetSec": int(t),
                        "endOffsetSec": int(min(t + step, end)),
                        "embedding": vector(f"seg{t}", MM_DIMS),
                    }
                )
                t += step
            pred = {"videoEmbeddings": segs}
        else:
            return Reply(400, google_error(400, "unsupported instance", "INVALID_ARGUMENT"))
        return Reply(200, {"predictions": [pred], "deployedModelId": "1234"})


# ------------------------------------------------------------------------------ harness

OPENAI_KEY = "sk-test-openai-SECRET0123456789"
ANTHROPIC_KEY = "sk-ant-test-SECRET0123456789"
GOOGLE_KEY = "AIzaTEST-google-SECRET-0123456789"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY)


class Fakes:
    """One running fake per provider API (Gemini and Vertex are separate hosts, as in life)."""

    def __init__(self):
        self.openai, self.anthropic = FakeOpenAI(OPENAI_KEY), FakeAnthropic(ANTHROPIC_KEY)
        self.gemini, self.vertex = FakeGemini(GOOGLE_KEY), FakeVertex(GOOGLE_KEY)
        self.all = (self.openai, self.anthropic, self.gemini, self.vertex)


def make(name: str, fakes: Fakes, **over):
    base = {
        "openai": {"api_key": OPENAI_KEY, "base_url": fakes.openai.url + "/v1"},
        "anthropic": {"api_key": ANTHROPIC_KEY, "base_url": fakes.anthropic.url},
        "google": {
            "api_key": GOOGLE_KEY,
            "base_url": fakes.gemini.url,
            "vertex_project": "proj-1",
            "vertex_location": "europe-west4",
            "vertex_base_url": fakes.vertex.url,
            "vertex_auth": "api_key",
        },
    }[name]
    return ADAPTERS[name](
        {**base, "timeout_s": 10, "backoff_base_s": 0.01, "backoff_max_s": 0.05, **over}
    )


def run(adapter, request: dict, deadline: float = 10.0) -> dict:
    async def go():
        try:
            return await adapter.run(request, deadline)
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def fails(adapter, request: dict, deadline: float = 10.0) -> tuple[RawInferError, float]:
    t0 = time.monotonic()
    with pytest.raises(RawInferError) as info:
        run(adapter, request, deadline)
    return info.value, time.monotonic() - t0


def chat(model="gpt-4o-mini", prompts=("What is AI?",), **parameters) -> dict:
    return {
        "task": "chat",
        "model": model,
        "inputs": {"prompts": list(prompts)},
        "parameters": parameters,
    }
