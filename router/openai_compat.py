"""OpenAI-compatible routes over the same path as POST /v1/inference: what they share (OpenAI's
error body from the one status table, the request run through the gateway), embeddings and the
model list. Chat is router/openai_chat.py, audio router/openai_audio.py."""

from __future__ import annotations

import base64
import functools
import logging
import time
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from rawinfer.contract import InferenceRequest
from rawinfer.contract.base import MAX_TEXTS
from rawinfer.contract.errors import OPENAI_TYPES, InferenceFailed, InvalidRequest, RawInferError
from router.errors import error_headers, invalid, status_of
from router.gateway import Gateway, Prepared, parse_json
from router.resolution import addressing_for_model
from router.state import state_of

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


def body_of(model: type[BaseModel], obj: Any) -> Any:
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
    state = state_of(request.scope)
    state.authenticated(key, ns)
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
    input: str | Annotated[list[str], Field(max_length=MAX_TEXTS)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


async def embeddings(gateway: Gateway, request: Request, body: bytes) -> Response:
    b: EmbeddingsBody = body_of(EmbeddingsBody, parse_json(body, gateway.settings.max_body_bytes))
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


async def models(gateway: Gateway, request: Request) -> Response:
    key, ns = await gateway.auth(
        request.headers.get("authorization"), request.headers.get("x-namespace"), key_default=True
    )
    await gateway.admit_read(key, ns, state_of(request.scope))
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
