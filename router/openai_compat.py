"""OpenAI-compatible routes over the same path as POST /v1/inference.

Each route turns an OpenAI request into the contract's InferenceRequest and runs it through the
gateway (same auth, resolution, validation, backends), then answers in OpenAI's shapes and
OpenAI's error body (`{"error": {"message", "type", "param", "code"}}`) with the statuses of
router/errors.py, so the official `openai` client raises its own typed errors.
"""

from __future__ import annotations

import base64
import functools
import logging
import time
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.responses import PlainTextResponse, Response

from rawinfer.contract import InferenceRequest
from rawinfer.contract.errors import (
    OPENAI_TYPES,
    InferenceFailed,
    InvalidRequest,
    PayloadTooLarge,
    RawInferError,
)
from router.errors import error_headers, invalid, status_of
from router.gateway import Gateway, Prepared, parse_json
from router.resolution import addressing_for_model

log = logging.getLogger("rawinfer.openai")


def openai_error(exc: RawInferError) -> Response:
    status, _ = status_of(exc)
    body = {
        "error": {
            "message": exc.message,
            "type": OPENAI_TYPES.get(status, "api_error"),
            "param": None,
            "code": None,
        }
    }
    return Response(
        orjson.dumps(body, default=str),
        status_code=status,
        media_type="application/json",
        headers=error_headers(exc),
    )


def openai_errors(route):
    """Every failure of an OpenAI-compatible route in OpenAI's error body."""

    @functools.wraps(route)
    async def wrapper(*args, **kwargs):
        try:
            return await route(*args, **kwargs)
        except RawInferError as e:
            return openai_error(e)
        except Exception:
            log.exception("unhandled error on an OpenAI-compatible route")
            return openai_error(
                InferenceFailed("internal error; the request id identifies it in the server logs")
            )

    return wrapper


def _body(model: type[BaseModel], obj: Any) -> Any:
    if not isinstance(obj, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise invalid(e, "") from None


async def run(
    gateway: Gateway,
    request: Request,
    model: str,
    inputs: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[Prepared, dict[str, Any]]:
    """The OpenAI request as the contract's request, prepared (and executed unless it streams)."""
    key, ns = await gateway.auth(
        request.headers.get("authorization"), request.headers.get("x-namespace"), key_default=True
    )
    state = request.scope.setdefault("state", {})
    state.update(key_id=key.id, org_id=key.org_id, namespace=ns.id)
    addr = addressing_for_model(model, gateway.index)
    req = InferenceRequest(
        provider=addr.provider,
        model=addr.model,
        inference_name=addr.inference_name,
        feature_uri=addr.feature_uri,
        inputs=inputs,
        parameters=parameters,
    )
    prepared = await gateway.prepare(req, key, ns, state)
    if prepared.stream:
        return prepared, {}
    return prepared, await gateway.execute(prepared)


def usage(tokens: dict[str, int] | None) -> dict[str, int]:
    t = tokens or {}
    return {
        "prompt_tokens": t.get("prompt", 0),
        "completion_tokens": t.get("completion", 0),
        "total_tokens": t.get("total", 0),
    }


# --------------------------------------------------------------------------------- embeddings


class EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


async def embeddings(gateway: Gateway, request: Request, body: bytes) -> Response:
    b: EmbeddingsBody = _body(EmbeddingsBody, parse_json(body, gateway.settings.max_body_bytes))
    inputs = {"text": b.input} if isinstance(b.input, str) else {"texts": b.input}
    _, out = await run(gateway, request, b.model, inputs, {})
    data = out["data"]
    rows = [data["embedding"]] if "embedding" in data else list(data["embeddings"])
    if b.dimensions is not None and b.dimensions != data["dimensions"]:
        raise InvalidRequest(
            f"{out['model']} makes {data['dimensions']}-dimensional vectors and cannot "
            f"shorten them to {b.dimensions}; leave `dimensions` out"
        )

    def encode(row) -> Any:
        arr = np.asarray(row, dtype="<f4")
        return base64.b64encode(arr.tobytes()).decode() if b.encoding_format == "base64" else arr

    t = usage(out["tokens_used"])
    return Response(
        orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": encode(r)}
                    for i, r in enumerate(rows)
                ],
                "model": out["model"],
                "usage": {"prompt_tokens": t["prompt_tokens"], "total_tokens": t["total_tokens"]},
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        ),
        media_type="application/json",
    )


# --------------------------------------------------------------------------------- transcriptions


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitles(segments: list[dict[str, Any]], fmt: str) -> str:
    sep = "," if fmt == "srt" else "."
    cues = []
    for i, s in enumerate(segments, 1):
        head = f"{i}\n" if fmt == "srt" else ""
        cues.append(
            f"{head}{_stamp(s['start'], sep)} --> {_stamp(s['end'], sep)}\n{s['text'].strip()}\n"
        )
    return ("WEBVTT\n\n" if fmt == "vtt" else "") + "\n".join(cues)


TRANSCRIPTION_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


async def transcriptions(gateway: Gateway, request: Request) -> Response:
    # the key first, as everywhere: a request without one is a 401 whatever its body (the lookup is cached)
    await gateway.auth(
        request.headers.get("authorization"), request.headers.get("x-namespace"), key_default=True
    )
    cap = gateway.settings.media.max_bytes
    try:
        form = await request.form(max_part_size=cap)
    except (
        MultiPartException,
        StarletteHTTPException,
    ) as e:  # Starlette: 400 inside an app, else its own
        reason = str(getattr(e, "detail", None) or getattr(e, "message", None) or "malformed")
        if "maximum size" in reason:
            raise PayloadTooLarge(f"a multipart field is over the limit of {cap} bytes") from None
        raise InvalidRequest(
            f"the multipart body could not be read ({reason[:120]}); send multipart/form-data "
            "with the audio in the field `file`"
        ) from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidRequest("send the audio as the multipart field `file`")
    audio = await upload.read(cap + 1)
    if len(audio) > cap:
        raise PayloadTooLarge(f"the audio file is over the limit of {cap} bytes")
    model = form.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("send the multipart field `model` (e.g. whisper-1)")
    fmt = form.get("response_format") or "json"
    if fmt not in TRANSCRIPTION_FORMATS:
        raise InvalidRequest(f"response_format must be one of {', '.join(TRANSCRIPTION_FORMATS)}")
    granularities = set(
        form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    )
    if granularities - {"word", "segment"}:
        raise InvalidRequest("timestamp_granularities may hold only 'word' and 'segment'")
    params: dict[str, Any] = {"word_timestamps": "word" in granularities}
    if form.get("language"):
        params["language"] = form.get("language")
    _, out = await run(
        gateway, request, model, {"audio_base64": base64.b64encode(audio).decode()}, params
    )
    data = out["data"]
    if fmt == "text":
        return PlainTextResponse(data["text"] + "\n")
    if fmt in ("srt", "vtt"):
        return PlainTextResponse(
            subtitles(data["segments"], fmt),
            media_type="text/vtt" if fmt == "vtt" else "text/plain",
        )
    if fmt == "json":
        return Response(orjson.dumps({"text": data["text"]}), media_type="application/json")
    verbose = {
        "task": "transcribe",
        "language": data["language"],
        "duration": data["duration"],
        "text": data["text"],
        "segments": [
            {"id": i, "start": s["start"], "end": s["end"], "text": s["text"]}
            for i, s in enumerate(data["segments"])
        ],
    }
    if "word" in granularities:
        verbose["words"] = [w for s in data["segments"] for w in s.get("words", [])]
    return Response(orjson.dumps(verbose), media_type="application/json")


# --------------------------------------------------------------------------------- models


async def models(gateway: Gateway, request: Request) -> Response:
    await gateway.auth(
        request.headers.get("authorization"), request.headers.get("x-namespace"), key_default=True
    )
    now = int(time.time())
    ids = []
    for t in gateway.index.catalog.targets:
        owner = gateway.index.catalog.backends[t.backend].provider
        if t.provider is not None:
            ids.append((f"{t.provider}/{t.model}", owner))
        if t.inference_name is not None:
            ids.append((t.inference_name, owner))
    return Response(
        orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": i, "object": "model", "created": now, "owned_by": o} for i, o in ids
                ],
            }
        ),
        media_type="application/json",
    )


# --------------------------------------------------------------------------------- chat


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `name` and friends are accepted and unused
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]


class ChatCompletionsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=8)
    response_format: dict[str, Any] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None


def _text(content: str | list[ContentPart]) -> str:
    return (
        content
        if isinstance(content, str)
        else "".join(p.text or "" for p in content if p.type == "text")
    )


def _images(content: str | list[ContentPart]) -> list[str]:
    return (
        []
        if isinstance(content, str)
        else [str((p.image_url or {}).get("url", "")) for p in content if p.type == "image_url"]
    )


def chat_request(b: ChatCompletionsBody) -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAI chat body -> the contract's (inputs, parameters). Text-only conversations are
    `messages`; one user message with one image part is the vision task."""
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "temperature": b.temperature,
            "top_p": b.top_p,
            "stop": b.stop,
            "seed": b.seed,
            "max_tokens": b.max_completion_tokens
            if b.max_completion_tokens is not None
            else b.max_tokens,
        }.items()
        if v is not None
    }
    if b.stream:
        params["stream"] = True
    rf = b.response_format or {"type": "text"}
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema object")
        params["schema"] = schema
    elif rf.get("type") == "json_object":
        params["schema"] = {"type": "object"}
    elif rf.get("type") != "text":
        raise InvalidRequest("response_format.type must be text, json_object or json_schema")
    images = [u for m in b.messages for u in _images(m.content)]
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}
        for m in b.messages
    ]
    if not images:
        return {"messages": messages}, params
    users = [m for m in messages if m["role"] == "user"]
    if len(images) != 1 or len(users) != 1 or any(m["role"] == "assistant" for m in messages):
        raise InvalidRequest(
            "image input takes one user message with one image (optionally a system message)"
        )
    inputs: dict[str, Any] = {"prompts": [users[0]["content"]]}
    inputs["image_base64" if images[0].startswith("data:") else "image_url"] = images[0]
    system = [m["content"] for m in messages if m["role"] == "system"]
    if system:
        inputs["system"] = "\n".join(system)
    return inputs, params


def _completion_id() -> str:
    import uuid

    return "chatcmpl-" + uuid.uuid4().hex


async def chat_completions(gateway: Gateway, request: Request, body: bytes) -> Response:
    b: ChatCompletionsBody = _body(
        ChatCompletionsBody, parse_json(body, gateway.settings.max_body_bytes)
    )
    if b.stream and b.n != 1:
        raise InvalidRequest("stream takes n=1")
    inputs, params = chat_request(b)
    cid, created = _completion_id(), int(time.time())
    if b.stream:
        prepared, _ = await run(gateway, request, b.model, inputs, params)
        include_usage = bool((b.stream_options or {}).get("include_usage"))
        return await _stream_chat(gateway, prepared, cid, created, include_usage)
    import asyncio

    outs = await asyncio.gather(
        *(run(gateway, request, b.model, inputs, params) for _ in range(b.n))
    )
    choices, totals = [], {"prompt": 0, "completion": 0, "total": 0}
    for i, (_, out) in enumerate(outs):
        resp = out["data"]["responses"][0]
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": resp["text"]},
                "finish_reason": resp["finish_reason"],
                "logprobs": None,
            }
        )
        for k in totals:
            totals[k] += (out["tokens_used"] or {}).get(k, 0)
    return Response(
        orjson.dumps(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": outs[0][1]["model"],
                "choices": choices,
                "usage": usage(totals),
            }
        ),
        media_type="application/json",
    )


async def _stream_chat(
    gateway: Gateway, prepared: Prepared, cid: str, created: int, include_usage: bool
) -> Response:
    from starlette.responses import StreamingResponse

    events = gateway.stream(prepared)
    first = await events.__anext__()  # early failures answer as a normal error
    model = prepared.target.served_model

    def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    async def gen():
        event = first
        try:
            yield chunk({"role": "assistant", "content": ""})
            while "final" not in event:
                yield chunk({"content": event["delta"]})
                event = await events.__anext__()
            final = event["final"]
            yield chunk({}, final["data"]["responses"][0]["finish_reason"])
            if include_usage:
                body = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage(final["tokens_used"]),
                }
                yield b"data: " + orjson.dumps(body) + b"\n\n"
            yield b"data: [DONE]\n\n"
        except StopAsyncIteration:
            yield b"data: [DONE]\n\n"
        except RawInferError as e:
            status, _ = status_of(e)
            yield (
                b"data: "
                + orjson.dumps(
                    {
                        "error": {
                            "message": e.message,
                            "type": OPENAI_TYPES.get(status, "api_error"),
                            "param": None,
                            "code": status,
                        }
                    }
                )
                + b"\n\n"
            )
        finally:
            await events.aclose()

    return StreamingResponse(
        gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
