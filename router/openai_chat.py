"""OpenAI's `POST /v1/chat/completions` over the gateway's chat and vision tasks, streamed as
OpenAI's chunks or answered whole."""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from rawinfer.contract.base import MAX_MESSAGES
from rawinfer.contract.errors import OPENAI_TYPES, InvalidRequest, RawInferError
from router.errors import status_of
from router.gateway import Gateway, Prepared, parse_json
from router.openai_compat import body_of, run, usage
from router.state import state_of

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
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
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
    b: ChatCompletionsBody = body_of(
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
    # the n runs share the request's state: the ledger and metrics get all choices' tokens
    state_of(request.scope).tokens = dict(totals)
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
