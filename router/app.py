"""The FastAPI ingress as a Ray Serve deployment, and the app builder serve_config.yaml names.

`build_app(args)` reads Settings once (args override the environment), loads the catalog, binds
one deployment per configured backend (deployments.REGISTRY picks the class) and the ingress
with handles to them. Everything the replicas receive is plain data.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from ray import serve
from ray.exceptions import RayActorError, RayError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from deployments.limiter import shared_caller
from rawinfer.catalog import Catalog, load_catalog
from rawinfer.errors import InvalidRequest, PayloadTooLarge, RawInferError, Unavailable
from rawinfer.settings import REPO_ROOT, Settings
from rawinfer.store import Store
from rawinfer import admin
from rawinfer.ledger import UsageLedger, usage_row
from rawinfer.limits import LocalLimiter
from rawinfer.plugins.discovery import deployment_options, with_plugins
from router import admin_routes
from router import openai_compat as oai
from router.contract import InferenceRequest
from router.errors import error_body, error_response, for_status
from router.gateway import Backend, Gateway, parse_json, validated
from router.metrics import Metrics, RequestObserver
from router.logs import current_request_id, request_id_from, request_id_var, setup_logging
from router.openapi import describe

log = logging.getLogger("rawinfer.ingress")
api = FastAPI(title="rawinfer", version="0.1.0",
              description="Raw inference: one endpoint for chat, embeddings, transcription and vision.")
api.add_middleware(RequestObserver)
api.openapi = lambda: describe(api)  # the document fuzzing holds the service to (router/openapi.py)


def _state(request: Request) -> dict[str, Any]:
    """The ASGI scope's state dict (what the metrics middleware reads after the response)."""
    return request.scope.setdefault("state", {})


def _rid(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = request_id_from(request.headers.get("x-request-id"))
    request_id_var.set(rid)
    return rid


@api.exception_handler(RawInferError)
async def _known(request: Request, exc: RawInferError) -> Response:
    return error_response(exc, _rid(request))


@api.exception_handler(RequestValidationError)
async def _validation(request: Request, exc: RequestValidationError) -> Response:
    return error_response(InvalidRequest("request does not match the API: " + str(exc.errors()[0].get("msg", ""))), _rid(request))


@api.exception_handler(StarletteHTTPException)
async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    messages = {404: f"no route {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    return error_response(for_status(exc.status_code, messages.get(exc.status_code, str(exc.detail))), _rid(request))


@api.exception_handler(SQLAlchemyError)
async def _database(request: Request, exc: SQLAlchemyError) -> Response:
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):  # down, locked, pool exhausted: not the client's doing
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(Unavailable("the database is not reachable right now; retry shortly"), _rid(request))
    return await _unexpected(request, exc)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(for_status(500, "internal error; the request id identifies it in the server logs"), _rid(request))


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


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


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
                    yield _sse("final", final)
                    return
                yield _sse("delta", event)
                event = await events.__anext__()
        except StopAsyncIteration:
            return
        except RawInferError as e:
            yield _sse("error", error_body(e, rid)[1])
        finally:
            await events.aclose()  # client gone or done: stop the generation upstream

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


REPLICA_RETRIES = 3  # times one request is sent again after the replica handling it died


def handle_backend(name: str, handle: DeploymentHandle, on_retry: Callable[[str], None] | None = None) -> Backend:
    """A Serve handle as the gateway's plain-data backend callable; Ray failures become 503s, and a
    request whose replica died is sent again (`on_retry(name)` counts it)."""

    async def replica_lost(attempt: int, give_up: bool, message: str) -> None:
        """Called while handling the RayActorError: a 503, or a short pause before sending again."""
        if give_up:
            log.exception("backend %s: replica lost (attempt %d)", name, attempt + 1)
            raise Unavailable(message) from None
        log.warning("backend %s: replica lost mid-request, retrying (%d/%d)", name, attempt + 1, REPLICA_RETRIES)
        if on_retry:
            on_retry(name)
        await asyncio.sleep(0.05 * (attempt + 1))

    async def call(payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(REPLICA_RETRIES + 1):
            response = handle.remote(payload)
            try:
                return await response
            except BackPressureError:
                raise Unavailable(f"{name} is overloaded; retry shortly") from None
            except RayActorError:
                # the replica died (killed, OOM, node lost) before answering: inference has no side
                # effects, so the request goes again; Serve's router has dropped the dead replica and
                # sends it to another one, or holds it until the replacement is up (the gateway's
                # request deadline bounds the wait)
                await replica_lost(attempt, attempt == REPLICA_RETRIES, f"{name} is not available right now; retry shortly")
            except RayError:
                log.exception("backend %s failed", name)
                raise Unavailable(f"{name} is not available right now; retry shortly") from None
            except BaseException:
                response.cancel()  # timeout or client gone: stop the work in the replica
                raise
        raise AssertionError("unreachable")

    async def stream(payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for attempt in range(REPLICA_RETRIES + 1):
            gen, sent = handle.options(stream=True, method_name="stream").remote(payload), False
            try:
                async for event in gen:
                    sent = True
                    yield event
                return
            except BackPressureError:
                raise Unavailable(f"{name} is overloaded; retry shortly") from None
            except RayActorError:  # once events went out, a retry would repeat them
                await replica_lost(attempt, sent or attempt == REPLICA_RETRIES, f"{name} failed while streaming; retry")
            except RayError:
                log.exception("backend %s failed while streaming", name)
                raise Unavailable(f"{name} failed while streaming; retry") from None
            finally:
                gen.cancel()

    call.stream = stream
    return call


@serve.deployment(name="ingress", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 64})
@serve.ingress(api)
class Ingress:
    def __init__(self, settings: dict[str, Any], catalog: dict[str, Any], backends: dict[str, DeploymentHandle],
                 providers_ready: dict[str, bool] | None = None, rate_limiter: DeploymentHandle | None = None,
                 semantic_cache: DeploymentHandle | None = None):
        setup_logging()
        self.settings = Settings(**settings)
        self.store = store = Store(self.settings.database_url)
        store.create_schema()
        self.ledger = UsageLedger.from_settings(store, self.settings.usage, self.settings.cache_dir.parent / "usage-spool")
        limiter = (LocalLimiter.from_settings(shared_caller(rate_limiter), self.settings.limits)
                   if rate_limiter is not None and self.settings.limits.enabled else None)
        metrics = Metrics()
        RequestObserver.observers = [metrics.observe, self._record_usage]
        self.app_name = serve.get_replica_context().app_name
        callers = {name: handle_backend(name, h, metrics.replica_lost) for name, h in backends.items()}
        self.cache_call = (handle_backend("semantic_cache", semantic_cache, metrics.replica_lost)
                           if semantic_cache is not None else None)
        self.gateway = Gateway(self.settings, Catalog.model_validate(catalog), callers, store, providers_ready, limiter,
                               self.cache_call)

    def _record_usage(self, route: str, status: int, seconds: float, state: dict[str, Any]) -> None:
        """Every authenticated request goes to the usage ledger (off the request path)."""
        if "key_id" not in state:
            return
        tokens = state.get("tokens") or {}
        self.ledger.record(usage_row(
            request_id=current_request_id(), org_id=state.get("org_id"), key_id=state["key_id"],
            namespace_id=state.get("namespace"), target=state.get("target"), backend=state.get("backend"),
            task=state.get("task"), status=status, prompt_tokens=tokens.get("prompt", 0),
            completion_tokens=tokens.get("completion", 0), audio_seconds=state.get("audio_seconds", 0.0),
            media_bytes=state.get("media_bytes", 0), cache_hit=bool(state.get("cache_hit", False)),
            latency_ms=round(seconds * 1000, 3)))

    async def __del__(self):
        """Serve's graceful shutdown: flush the usage ledger, hand leased rate units back."""
        if self.gateway.cache is not None:  # observations still being judged
            await self.gateway.cache.close()
        await self.ledger.close()
        if self.gateway.limiter is not None:
            await self.gateway.limiter.close()

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> Response:
        """200 when every deployment of the app is healthy; 503 naming those that are not."""
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(self.app_name)
        deployments = {name: str(getattr(d.status, "value", d.status)) for name, d in (app.deployments if app else {}).items()}
        not_ready = sorted(n for n, s in deployments.items() if s != "HEALTHY")
        body = {"ready": bool(deployments) and not not_ready, "deployments": deployments, "not_ready": not_ready}
        return _json(body, 200 if body["ready"] else 503)

    @api.post("/v1/inference")
    async def inference(self, request: Request) -> Response:
        t0 = time.perf_counter()
        rid = _rid(request)
        body = await read_body(request, self.settings.max_body_bytes)
        key, ns = await self.gateway.auth(request.headers.get("authorization"), request.headers.get("x-namespace"))
        _state(request).update(key_id=key.id, org_id=key.org_id, namespace=ns.id)
        req = validated(InferenceRequest, parse_json(body, self.settings.max_body_bytes), "")
        prepared = await self.gateway.prepare(req, key, ns, _state(request))
        if prepared.stream:
            return await sse_response(self.gateway.stream(prepared), t0, rid)
        out = await self.gateway.execute(prepared)
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        out["request_id"] = rid
        return _json(out)

    # OpenAI-compatible routes (router/openai_compat.py): same gateway, OpenAI's shapes and errors
    @api.post("/v1/chat/completions")
    @oai.openai_errors
    async def chat_completions(self, request: Request) -> Response:
        _rid(request)
        return await oai.chat_completions(self.gateway, request, await read_body(request, self.settings.max_body_bytes))

    @api.post("/v1/embeddings")
    @oai.openai_errors
    async def embeddings(self, request: Request) -> Response:
        _rid(request)
        return await oai.embeddings(self.gateway, request, await read_body(request, self.settings.max_body_bytes))

    @api.post("/v1/audio/transcriptions")
    @oai.openai_errors
    async def transcriptions(self, request: Request) -> Response:
        _rid(request)
        return await oai.transcriptions(self.gateway, request)

    @api.get("/v1/models")
    @oai.openai_errors
    async def openai_models(self, request: Request) -> Response:
        _rid(request)
        return await oai.models(self.gateway, request)

    @api.get("/v1/usage")
    async def usage(self, request: Request) -> Response:
        """The caller's namespace's usage: `?from=&to=&group_by=key|target|task|status|day`."""
        rid = _rid(request)
        _, ns = await self.gateway.auth(request.headers.get("authorization"), request.headers.get("x-namespace"))
        q = request.query_params
        out = await admin.usage(self.store, ns.id, q.get("from"), q.get("to"), q.get("group_by"))
        return _json({**out, "request_id": rid})

    @api.api_route("/v1/admin/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def admin_api(self, request: Request, path: str) -> Response:
        """Organisations, namespaces, keys, limits and usage; admin keys only."""
        rid = _rid(request)
        admin.require_admin(await self.gateway.auth.key(request.headers.get("authorization")))
        status, out = await admin_routes.dispatch(self.store, request.method, path, request.query_params,
                                                  await read_body(request, self.settings.max_body_bytes),
                                                  self.settings.max_body_bytes, cache=self.cache_call)
        return _json({**out, "request_id": rid}, status)

    @api.get("/v1/inference/models")
    async def models(self, request: Request) -> Response:
        rid = _rid(request)
        out = await self.gateway.list_models(request.headers.get("authorization"), request.headers.get("x-namespace"))
        out["request_id"] = rid
        return _json(out)


def build_app(args: dict[str, Any] | None = None):
    """Serve's app builder (`import_path: router.app:build_app`; `args:` in serve_config.yaml)."""
    from deployments import REGISTRY

    from deployments.limiter import RateLimiterDeployment
    from models.providers import ADAPTERS

    args = dict(args or {})
    settings = Settings(**args.get("settings", {}))
    path = Path(args.get("catalog") or settings.catalog_path)
    catalog = load_catalog(path if path.is_absolute() else REPO_ROOT / path)
    # plugins (entry points and plugins_dirs): one deployment each; failures are listed, not raised
    catalog = with_plugins(catalog, settings.plugins_dirs)
    backends = {}
    for name, spec in catalog.backends.items():
        if spec.configured:
            data = spec.model_dump(mode="json") | {"cache_dir": str(settings.cache_dir)}
            if spec.engine == "plugin":  # plugins embed through the service's text-embedding deployment
                backends[name] = REGISTRY[spec.engine].options(name=name, **deployment_options(spec)).bind(
                    data, backends.get(settings.plugins_embedding_backend))
            else:
                backends[name] = REGISTRY[spec.engine].options(name=name).bind(data)
    # which cloud providers have credentials (the keys themselves stay in each provider replica)
    ready = {name: cls.settings_model.model_validate(settings.providers.get(name, {})).key() is not None
             for name, cls in ADAPTERS.items()}
    limiter = RateLimiterDeployment.bind({"window_s": settings.limits.window_s}) if settings.limits.enabled else None
    return Ingress.bind(settings.model_dump(mode="json", exclude={"providers"}), catalog.model_dump(mode="json"),
                        backends, ready, limiter, semantic_cache_deployment(settings, backends))


def semantic_cache_deployment(settings: Settings, backends: dict[str, Any]):
    """The shared semantic cache (deployments/semantic_cache.py), when enabled and its embedder runs."""
    from deployments.semantic_cache import SemanticCacheDeployment

    s = settings.semantic_cache
    if not s.enabled or s.embedding_backend not in backends:
        return None
    path = s.snapshot_path or settings.cache_dir / "semantic-cache.npz"
    return SemanticCacheDeployment.bind({"settings": s.model_dump(mode="json"), "snapshot_path": str(path)})
