"""The contract's error body and response, from the one status table (rawinfer.contract.errors).
Anything else that escapes is a 500 with a generic message: the trace goes to the log only."""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from rawinfer.contract.errors import (
    STATUS,
    InferenceFailed,
    InvalidRequest,
    Overloaded,
    RateLimited,
    RawInferError,
    status_of,
)  # noqa: F401
from rawinfer.tenancy.limits import denial_headers

_BY_STATUS = {status: (cls, name) for cls, (status, name, _) in STATUS.items()}


def for_status(status: int, message: str) -> RawInferError:
    """The exception for a status that a framework produced (e.g. Starlette's 404/405)."""
    cls, _ = _BY_STATUS.get(
        status, (InvalidRequest if 400 <= status < 500 else InferenceFailed, "")
    )
    return cls(message)


def error_body(exc: RawInferError, request_id: str) -> tuple[int, dict[str, Any]]:
    status, kind = status_of(exc)
    return status, {
        "success": False,
        "status": status,
        "error": {"type": kind, "message": exc.message, "details": exc.details},
        "request_id": request_id,
    }


def error_response(exc: RawInferError, request_id: str) -> Response:
    status, body = error_body(exc, request_id)
    # Serve's proxy echoes X-Request-Id on every response; the body carries it too.
    return Response(
        orjson.dumps(body, default=str),
        status_code=status,
        headers=error_headers(exc),
        media_type="application/json",
    )


def error_headers(exc: RawInferError) -> dict[str, str]:
    """A 429 carries Retry-After and the X-RateLimit-* headers of the limit that was hit; an
    overloaded backend's 503 carries Retry-After."""
    if isinstance(exc, RateLimited):
        return denial_headers(exc)
    if isinstance(exc, Overloaded):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return {}


def invalid(e: ValidationError, where: str) -> InvalidRequest:
    """A pydantic error as a 400 that lists each bad field and what is wrong with it. The
    offending values are not echoed back (they may be large, or secret)."""
    problems = []
    for err in e.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in (where, *err["loc"]) if p != "")
        msg = err["msg"].removeprefix("Value error, ")
        problems.append({"field": loc or where, "message": msg})
    first = problems[0] if problems else {"field": where, "message": "invalid"}
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InvalidRequest(f"{first['field']}: {first['message']}{more}", {"errors": problems[:50]})
