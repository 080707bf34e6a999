"""The ingress's HTTP plumbing: a capped body read, JSON responses and Server-Sent Events."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rawinfer.contract.errors import PayloadTooLarge, RawInferError
from router.errors import error_body


async def read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {cap}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"request body is over the limit of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def sse_event(event: str, data: Any) -> bytes:
    return (
        b"event: "
        + event.encode()
        + b"\ndata: "
        + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
        + b"\n\n"
    )


async def sse_response(events: AsyncIterator[dict[str, Any]], t0: float, rid: str) -> Response:
    """Server-Sent Events: `event: delta` per text delta, then `event: final` with the full
    response object. The first event is awaited before answering, so a request that fails early
    gets a normal error response; a failure after that ends the stream with `event: error`
    carrying the contract's error body."""
    first = await events.__anext__()

    async def body():
        event = first
        try:
            while True:
                if "final" in event:
                    final = event["final"]
                    final["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
                    final["request_id"] = rid
                    yield sse_event("final", final)
                    return
                yield sse_event("delta", event)
                event = await events.__anext__()
        except StopAsyncIteration:
            return
        except RawInferError as e:
            yield sse_event("error", error_body(e, rid)[1])
        finally:
            await events.aclose()  # client gone or done: stop the generation upstream

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
