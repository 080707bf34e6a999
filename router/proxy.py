"""Middleware for Serve's HTTP proxy: replaces an unsafe client `X-Request-Id` before the proxy
echoes it (docs/notes/router.md#request-ids-at-the-proxy)."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from router.logs import request_id_from

PROXY_ENV = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "router.proxy:middlewares"}
_HEADER = b"x-request-id"


def safe_request_id(raw: bytes | None) -> str | None:
    """The id to use for a raw header value: the value itself when safe, else a new one."""
    if raw is None:
        return None  # Serve generates one
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        value = None
    return request_id_from(value)


class SafeRequestId:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            given = [v for k, v in scope["headers"] if k.lower() == _HEADER]
            if given:
                headers = [(k, v) for k, v in scope["headers"] if k.lower() != _HEADER]
                headers.append((_HEADER, safe_request_id(given[0]).encode()))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def middlewares() -> list[Middleware]:
    """Serve's proxy callback (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH)."""
    return [Middleware(SafeRequestId)]
