"""The admin API on a port of its own (`Settings.admin_port`): a uvicorn server inside each
ingress replica serving the ingress's own FastAPI app, restricted to `/v1/admin/*` and
`/healthz`. Serve's proxy binds one port for every application, so this is the second listener
beside it; the public port then answers 404 on `/v1/admin`. Replicas of one node share the port
(SO_REUSEPORT). Design notes: docs/security.md#admin-port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from router.errors import error_response, for_status
from router.logs import request_id_from

log = logging.getLogger("rawinfer.admin")
ADMIN_SCOPE_KEY = "rawinfer.admin_listener"  # set in the ASGI scope of a request on the admin port
ADMIN_PATHS = ("/v1/admin/", "/healthz")


class AdminOnly:
    """ASGI: the admin routes only, each request marked as arriving on the admin port."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # what Serve's proxy does on the public port: one request id, echoed in X-Request-Id
        headers = [(k, v) for k, v in scope.get("headers") or () if k != b"x-request-id"]
        given = dict(scope.get("headers") or ()).get(b"x-request-id")
        rid = request_id_from(given.decode("latin-1") if given else None)
        scope["headers"] = [*headers, (b"x-request-id", rid.encode())]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        if not scope["path"].startswith(ADMIN_PATHS):
            response = error_response(
                for_status(404, f"no route {scope['path']} on the admin port"), rid
            )
            return await response(scope, receive, send_with_id)
        scope[ADMIN_SCOPE_KEY] = True
        await self.app(scope, receive, send_with_id)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the replica's signals stay Ray's
        yield


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a port in use fails the replica with a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # every ingress replica of a node
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def start(app, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task]:
    """Serves `app`'s admin routes on host:port from the running loop (the replica's)."""
    sock = bind(host, port)
    config = uvicorn.Config(
        AdminOnly(app),
        lifespan="off",
        log_level="warning",
        access_log=False,
        log_config=None,
        proxy_headers=False,  # nothing here trusts a forwarded address
        limit_concurrency=64,  # past it a 503 from uvicorn, not an unbounded queue
    )
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    log.info("admin API listening on %s:%d", host, port)
    return server, task
