"""The FastAPI ingress as a Ray Serve deployment: the routes, wired to the gateway
(router/gateway.py). The app builder is router/builder.py."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from deployments.limiter import shared_caller
from rawinfer.contract import InferenceRequest
from rawinfer.contract.errors import InvalidRequest, RawInferError, Unavailable
from rawinfer.core.catalog import Catalog
from rawinfer.core.settings import Settings
from rawinfer.tenancy import admin
from rawinfer.tenancy.ledger import UsageLedger
from rawinfer.tenancy.limits import LocalLimiter
from rawinfer.tenancy.store import Store
from rawinfer.tenancy.usage import usage_row
from router import admin_listener, admin_routes, openai_audio, openai_chat
from router import openai_compat as oai
from router.errors import error_response, for_status
from router.gateway import Gateway, parse_json, validated
from router.handles import IDEMPOTENT_ENGINES, handle_backend
from router.http import json_response, read_body, sse_response
from router.logs import current_request_id, request_id_from, request_id_var, setup_logging
from router.metrics import Metrics, RequestObserver
from router.openapi import describe
from router.state import RequestState, state_of

log = logging.getLogger("rawinfer.ingress")
READYZ_CACHE_S = 1.0  # how long one serve.status() answers /readyz
api = FastAPI(
    title="rawinfer",
    version="0.1.0",
    description="Raw inference: one endpoint for chat, embeddings, transcription and vision.",
)
api.add_middleware(RequestObserver)
api.openapi = lambda: describe(api)  # the document fuzzing holds the service to (router/openapi.py)


def _rid(request: Request) -> str:
    state = state_of(request.scope)
    if state.request_id is None:
        state.request_id = request_id_from(request.headers.get("x-request-id"))
    request_id_var.set(state.request_id)
    return state.request_id


@api.exception_handler(RawInferError)
async def _known(request: Request, exc: RawInferError) -> Response:
    return error_response(exc, _rid(request))


@api.exception_handler(RequestValidationError)
async def _validation(request: Request, exc: RequestValidationError) -> Response:
    return error_response(
        InvalidRequest("request does not match the API: " + str(exc.errors()[0].get("msg", ""))),
        _rid(request),
    )


@api.exception_handler(StarletteHTTPException)
async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    messages = {
        404: f"no route {request.url.path}",
        405: f"method {request.method} not allowed on {request.url.path}",
    }
    return error_response(
        for_status(exc.status_code, messages.get(exc.status_code, str(exc.detail))), _rid(request)
    )


@api.exception_handler(SQLAlchemyError)
async def _database(request: Request, exc: SQLAlchemyError) -> Response:
    if isinstance(
        exc, (OperationalError, InterfaceError, PoolTimeout)
    ):  # down, locked, pool exhausted: not the client's doing
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(
            Unavailable("the database is not reachable right now; retry shortly"), _rid(request)
        )
    return await _unexpected(request, exc)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(
        for_status(500, "internal error; the request id identifies it in the server logs"),
        _rid(request),
    )


@serve.deployment(
    name="ingress",
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=256,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 64},
)
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        settings: dict[str, Any],
        catalog: dict[str, Any],
        backends: dict[str, DeploymentHandle],
        providers_ready: dict[str, bool] | None = None,
        rate_limiter: DeploymentHandle | None = None,
        semantic_cache: DeploymentHandle | None = None,
    ):
        setup_logging()
        self.settings = Settings(**settings)
        self.store = store = Store(self.settings.database_url)
        store.create_schema()
        self.ledger = UsageLedger.from_settings(
            store, self.settings.usage, self.settings.cache_dir.parent / "usage-spool"
        )
        limiter = (
            LocalLimiter.from_settings(shared_caller(rate_limiter), self.settings.limits)
            if rate_limiter is not None and self.settings.limits.enabled
            else None
        )
        metrics = Metrics()
        RequestObserver.observers = [metrics.observe, self._record_usage]
        self.app_name = serve.get_replica_context().app_name
        self._status_lock, self._status = asyncio.Lock(), None
        cat = Catalog.model_validate(catalog)
        engines = {n: b.engine for n, b in cat.backends.items()}
        callers = {
            name: handle_backend(
                name, h, metrics.replica_lost, retry=engines.get(name) in IDEMPOTENT_ENGINES
            )
            for name, h in backends.items()
        }
        self.admin_throttle = admin_routes.AdminThrottle(self.settings.limits.admin_rpm)
        self.cache_call = (
            handle_backend("semantic_cache", semantic_cache, metrics.replica_lost)
            if semantic_cache is not None
            else None
        )
        self.gateway = Gateway(
            self.settings, cat, callers, store, providers_ready, limiter, self.cache_call
        )
        self.admin_server = None
        if self.settings.admin_port is not None:  # the admin API on its own port only
            self.admin_server, _ = admin_listener.start(
                api, self.settings.admin_host, self.settings.admin_port
            )

    def _record_usage(self, route: str, status: int, seconds: float, state: RequestState) -> None:
        """Every authenticated request goes to the usage ledger (off the request path)."""
        if state.key_id is None:
            return
        self.ledger.record(
            usage_row(
                request_id=current_request_id(),
                org_id=state.org_id,
                key_id=state.key_id,
                namespace_id=state.namespace,
                target=state.target,
                backend=state.backend,
                task=state.task,
                status=status,
                prompt_tokens=state.tokens.get("prompt", 0),
                completion_tokens=state.tokens.get("completion", 0),
                audio_seconds=state.audio_seconds,
                media_bytes=state.media_bytes,
                cache_hit=bool(state.cache_hit),
                latency_ms=round(seconds * 1000, 3),
                cost=state.cost(datetime.now(timezone.utc).date()) if status < 400 else 0.0,
            )
        )

    async def __del__(self):
        """Serve's graceful shutdown: flush the usage ledger, hand leased rate units back."""
        if self.admin_server is not None:
            self.admin_server.should_exit = True
        if self.gateway.cache is not None:  # observations still being judged
            await self.gateway.cache.close()
        await self.ledger.close()
        if self.gateway.limiter is not None:
            await self.gateway.limiter.close()

    async def _openai_key(self, request: Request) -> None:
        """The key checked on headers before the body is read (the lookup is cached, so the
        route's own check later costs nothing): no unauthenticated request is parsed."""
        await self.gateway.auth(
            request.headers.get("authorization"),
            request.headers.get("x-namespace"),
            key_default=True,
        )

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    async def _serve_status(self):
        """serve.status(), asked at most once a second whatever the /readyz rate (one caller
        asks, the others wait for its answer)."""
        async with self._status_lock:
            now = time.monotonic()
            if self._status is None or now - self._status[0] > READYZ_CACHE_S:
                self._status = (now, await asyncio.to_thread(serve.status))
            return self._status[1]

    @api.get("/readyz")
    async def readyz(self) -> Response:
        """200 when every deployment of the app is healthy; 503 naming those that are not."""
        app = (await self._serve_status()).applications.get(self.app_name)
        deployments = {
            name: str(getattr(d.status, "value", d.status))
            for name, d in (app.deployments if app else {}).items()
        }
        not_ready = sorted(n for n, s in deployments.items() if s != "HEALTHY")
        body = {
            "ready": bool(deployments) and not not_ready,
            "deployments": deployments,
            "not_ready": not_ready,
        }
        return json_response(body, 200 if body["ready"] else 503)

    @api.post("/v1/inference")
    async def inference(self, request: Request) -> Response:
        t0 = time.perf_counter()
        rid = _rid(request)
        # the key first, on headers alone: an unauthenticated request costs no body read
        key, ns = await self.gateway.auth(
            request.headers.get("authorization"), request.headers.get("x-namespace")
        )
        body = await read_body(request, self.settings.max_body_bytes)
        state = state_of(request.scope)
        state.authenticated(key, ns)
        req = validated(InferenceRequest, parse_json(body, self.settings.max_body_bytes), "")
        prepared = await self.gateway.prepare(req, key, ns, state)
        if prepared.stream:
            return await sse_response(self.gateway.stream(prepared), t0, rid)
        out = await self.gateway.execute(prepared)
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        out["request_id"] = rid
        return json_response(out)

    # OpenAI-compatible routes (router/openai_*.py): same gateway, OpenAI's shapes and errors
    @api.post("/v1/chat/completions")
    @oai.openai_errors
    async def chat_completions(self, request: Request) -> Response:
        _rid(request)
        await self._openai_key(request)
        return await openai_chat.chat_completions(
            self.gateway, request, await read_body(request, self.settings.max_body_bytes)
        )

    @api.post("/v1/embeddings")
    @oai.openai_errors
    async def embeddings(self, request: Request) -> Response:
        _rid(request)
        await self._openai_key(request)
        return await oai.embeddings(
            self.gateway, request, await read_body(request, self.settings.max_body_bytes)
        )

    @api.post("/v1/audio/translations")
    @oai.openai_errors
    async def translations(self, request: Request) -> Response:
        _rid(request)
        return await openai_audio.translations(self.gateway, request)

    @api.post("/v1/audio/transcriptions")
    @oai.openai_errors
    async def transcriptions(self, request: Request) -> Response:
        _rid(request)
        return await openai_audio.transcriptions(self.gateway, request)

    @api.get("/v1/models")
    @oai.openai_errors
    async def openai_models(self, request: Request) -> Response:
        _rid(request)
        return await oai.models(self.gateway, request)

    @api.get("/v1/usage")
    async def usage(self, request: Request) -> Response:
        """The caller's namespace's usage: `?from=&to=&group_by=key|target|task|status|day`."""
        rid = _rid(request)
        key, ns = await self.gateway.auth(
            request.headers.get("authorization"), request.headers.get("x-namespace")
        )
        await self.gateway.admit_read(key, ns, state_of(request.scope))  # aggregates: metered
        q = request.query_params
        out = await admin.usage(self.store, ns.id, q.get("from"), q.get("to"), q.get("group_by"))
        return json_response({**out, "request_id": rid})

    @api.api_route("/v1/admin/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def admin_api(self, request: Request, path: str) -> Response:
        """Organisations, namespaces, keys, limits and usage; admin keys only."""
        rid = _rid(request)
        if self.admin_server is not None and not request.scope.get(admin_listener.ADMIN_SCOPE_KEY):
            raise for_status(404, f"no route {request.url.path}")  # served on the admin port
        actor = await self.gateway.auth.key(request.headers.get("authorization"))
        admin.require_admin(actor)
        self.admin_throttle.check(actor.id)
        status, out = await admin_routes.dispatch(
            self.store,
            actor,
            request.method,
            path,
            request.query_params,
            await read_body(request, self.settings.max_body_bytes),
            self.settings.max_body_bytes,
            cache=self.cache_call,
        )
        cache_cleared = path.strip("/") == "cache" and request.method == "DELETE"
        if cache_cleared and self.gateway.cache and request.query_params.get("tier") != "semantic":
            self.gateway.cache.forget(out["namespace"])  # the others' copies expire (docs/cache.md)
        return json_response({**out, "request_id": rid}, status)

    @api.get("/v1/inference/models")
    async def models(self, request: Request) -> Response:
        rid = _rid(request)
        out = await self.gateway.list_models(
            request.headers.get("authorization"),
            request.headers.get("x-namespace"),
            state_of(request.scope),
        )
        out["request_id"] = rid
        return json_response(out)
