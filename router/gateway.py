"""The ingress's request path, free of Ray and of the web framework.

auth -> parse -> validate -> resolve -> task -> payload -> backend call (with deadline) -> response.
Backends are async callables taking and returning plain data (router/app.py wraps Serve handles
into them). Raises rawinfer.contract.errors classes; router/errors.py turns them into statuses.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import orjson
from pydantic import BaseModel, ValidationError

from rawinfer.cache.client import CachePlan, SemanticCacheClient
from rawinfer.contract import InferenceRequest, Task, detect_task
from rawinfer.contract.errors import (
    DeadlineExceeded,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    Unavailable,
    from_wire,
    is_wire_error,
)
from rawinfer.core.catalog import Catalog
from rawinfer.core.settings import Settings
from rawinfer.tenancy.keys import KeyInfo, NamespaceInfo
from rawinfer.tenancy.limits import REQUESTS, KeyConcurrency, LocalLimiter, subjects_for
from rawinfer.tenancy.store import Store
from router import plugins
from router.auth import Authenticator
from router.errors import invalid
from router.logs import request_id_var
from router.media import MediaFetcher
from router.resolution import Addressing, CatalogIndex, Target, resolve
from router.state import RequestState
from router.tasks import TASKS, check_provider_spend, plugin_task, provider_payload

log = logging.getLogger("rawinfer.ingress")
GRACE_S = 2.0  # the ingress's backstop after the deadline that engines enforce themselves
Backend = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # may also have .stream(payload)


@dataclass(frozen=True)
class Prepared:
    target: Target
    task: Task
    payload: dict[str, Any]
    stream: bool
    namespace: NamespaceInfo
    state: RequestState  # what metrics, the usage ledger and the response headers read
    admission: Any = None  # the rate limiter's admission, settled with the real tokens
    cache: CachePlan | None = (
        None  # the semantic cache's plan (rawinfer/cache/client.py); None: uncached
    )


def parse_json(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    if not body:
        raise InvalidRequest("request body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"request body is not valid JSON: {str(e).split(':')[0]}")


def validated(model: type[BaseModel], obj: Any, where: str) -> Any:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{where or 'body'} must be a JSON object")
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise invalid(e, where) from None
    except RecursionError:  # e.g. a `schema` parameter nested past what a recursive checker walks
        raise InvalidRequest(f"{where or 'body'} is nested too deeply; flatten it") from None


class Gateway:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        backends: Mapping[str, Backend],
        store: Store,
        providers_ready: Mapping[str, bool] | None = None,
        limiter: LocalLimiter | None = None,
        semantic_cache: Backend | None = None,
    ):
        self.settings = settings
        self.index = CatalogIndex(catalog)
        self.backends = backends
        self.auth = Authenticator(store, settings.auth_cache_ttl_s)
        self.concurrency = KeyConcurrency(settings.limits.key_max_concurrent)
        self.media = MediaFetcher(settings.media)
        self.providers_ready = dict(providers_ready or {})
        self.limiter = limiter
        self.cache = self._cache_client(semantic_cache) if semantic_cache is not None else None

    def _refuse_unready(self, target: Target) -> None:
        if not target.configured:
            note = self.index.catalog.backends[target.backend].note
            raise InvalidRequest(
                f"{target.address} is not configured on this server"
                + (f": {note}" if note else ""),
                {"backend": target.backend},
            )
        if target.engine == "provider" and not self.providers_ready.get(target.provider, False):
            raise InvalidRequest(
                f"the {target.provider} provider has no credentials on this server, so "
                f"{target.address} cannot be used; ask the operator to configure it",
                {"provider": target.provider},
            )

    def _call_meta(self) -> dict[str, Any]:
        """What every backend call carries besides its task payload: the deadline engines enforce
        themselves (aborting their work) and a unique id for engine-side request tracking."""
        return {
            "timeout_s": self.settings.request_timeout_s,
            "request_id": f"{request_id_var.get()}-{uuid.uuid4().hex[:8]}",
        }

    async def call(self, target: Target, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.call_backend(target.backend, payload, target.address)

    async def call_backend(
        self, name: str, payload: dict[str, Any], address: str | None = None
    ) -> dict[str, Any]:
        """One backend call within the request deadline: a timeout is a 504, an error the backend
        returned as plain data is raised as its exception."""
        backend = self.backends.get(name)
        if backend is None:
            raise Unavailable(
                f"{address or name} is in the catalog but its deployment is not running"
            )
        try:
            result = await asyncio.wait_for(
                backend({**payload, **self._call_meta()}), self.settings.request_timeout_s + GRACE_S
            )
        except asyncio.TimeoutError:
            raise DeadlineExceeded(
                f"{address or name} did not answer within {self.settings.request_timeout_s:g} s"
            ) from None
        if is_wire_error(result):
            raise from_wire(result)
        return result

    async def prepare(
        self,
        req: InferenceRequest,
        key: KeyInfo,
        ns: NamespaceInfo,
        state: RequestState | None = None,
    ) -> Prepared:
        """Resolution, the key's target rights, task detection, validation, the rate limit and media
        loading: everything before the backend. `state` (the HTTP request's state) receives what
        metrics, the usage ledger and the rate-limit headers need."""
        if state is None:
            state = RequestState()
        elif state.release is None:  # an HTTP request: released when its response ends
            state.release = self.concurrency.enter(key.id)
        state.authenticated(key, ns)
        target = resolve(
            Addressing(req.provider, req.model, req.inference_name, req.feature_uri), self.index
        )
        state.target, state.backend = target.address, target.backend
        state.prices = target.prices
        if not key.may_target(target.address, target.backend, req.inference_name):
            raise Forbidden(f"this API key may not use {target.address}")
        self._refuse_unready(target)
        # a plugin's inputs and parameters are its own models (rawinfer/plugins), not a task's
        plugin = target.engine == "plugin"
        task = Task.plugin if plugin else detect_task(req.inputs, target.tasks)
        state.task = task.value
        spec = (
            plugin_task(self.index.catalog.backends[target.backend].model_path, target.served_model)
            if plugin
            else TASKS.get(task)
        )
        if spec is None:
            raise InvalidRequest(f"task {task.value} is not served by this server yet")
        inputs = validated(spec.inputs, req.inputs, "inputs")
        params = validated(spec.params, req.parameters, "parameters")
        if target.engine == "provider":
            check_provider_spend(task, inputs, params, self.settings.limits)
        admission = None
        if self.limiter is not None:
            admission = await self.limiter.acquire(subjects_for(key, ns, self.settings.limits))
            state.rate_headers = admission.headers()
        try:
            build = provider_payload if target.engine == "provider" else spec.build
            payload = await build(inputs, params, self.media, task=task, model=target.model)
        except BaseException:
            await self.settle(admission, {})
            raise
        state.media_bytes = sum(
            len(v)
            for v in (
                payload.get("audio"),
                payload.get("media"),
                (payload.get("inputs") or {}).get("media"),
            )
            if isinstance(v, bytes)
        )
        stream = bool(getattr(params, "stream", False))
        plan = (
            self.cache.plan(
                enabled=req.enable_semantic_cache,
                max_error_rate=req.semantic_cache_max_error_rate,
                task=task.value,
                stream=stream,
                namespace=ns.id,
                payload=payload,
                label=f"{target.provider}/{target.served_model}",
            )
            if self.cache is not None
            else None
        )
        return Prepared(target, task, payload, stream, ns, state, admission, plan)

    async def settle(self, admission: Any, tokens: dict[str, Any] | None) -> None:
        """Charge a finished request's real tokens to its rate limits (once)."""
        if admission is not None and not admission.settled:
            await self.limiter.settle(admission, int((tokens or {}).get("total") or 0))

    def _response(self, p: Prepared, result: dict[str, Any]) -> dict[str, Any]:
        p.state.tokens = result.get("tokens_used") or {}
        if (result.get("usage") or {}).get("audio_seconds"):
            p.state.audio_seconds = result["usage"]["audio_seconds"]
        if "cache_hit" in result:
            p.state.cache_hit = bool(result["cache_hit"])
        log.info(
            "served",
            extra={
                "target": p.target.address,
                "backend": p.target.backend,
                "namespace": p.namespace.id,
                "task": p.task.value,
            },
        )
        return {
            "data": result["data"],
            "provider": p.target.provider,
            "model": result.get("model") or p.target.served_model,
            "tokens_used": result.get("tokens_used"),
            "cache_hit": bool(result.get("cache_hit", False)),
        }

    async def execute(self, p: Prepared) -> dict[str, Any]:
        result = None
        try:
            if p.cache is not None and self.cache is not None:
                result = await self.cache.execute(p.cache, lambda: self.call(p.target, p.payload))
            else:
                result = await self.call(p.target, p.payload)
            return self._response(p, result)
        finally:  # a cached answer's tokens are not charged to the rate limits again
            await self.settle(
                p.admission,
                None if (result or {}).get("cache_hit") else (result or {}).get("tokens_used"),
            )

    # ---------------------------------------------------------------- semantic cache
    def _cache_client(self, cache: Backend) -> SemanticCacheClient:
        from rawinfer.cache.judge import make_judge

        s = self.settings.semantic_cache
        return SemanticCacheClient(
            s,
            cache,
            self._embed,
            make_judge(
                s.judge, embed=self._embed, ask=self._ask_judge, similarity=s.judge_similarity
            ),
        )

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        """The semantic cache's prompt embeddings (the text-embedding backend, truncating)."""
        out = await self.call_backend(
            self.settings.semantic_cache.embedding_backend,
            {
                "texts": texts,
                "single": False,
                "parameters": {"normalize": True, "input_type": "query", "truncate": True},
            },
        )
        return out["data"]["embeddings"]

    async def _ask_judge(self, prompt: str) -> str:
        """The LLM judge's question to the judge chat backend (greedy, a few tokens)."""
        from rawinfer.contract import ChatParams

        params = ChatParams(temperature=0, max_tokens=4).model_dump(by_alias=True)
        out = await self.call_backend(
            self.settings.semantic_cache.judge_backend, {"prompts": [prompt], "parameters": params}
        )
        return out["data"]["responses"][0]["text"]

    async def stream(self, p: Prepared) -> AsyncIterator[dict[str, Any]]:
        """Events for a streaming request: `{"delta": str}`..., then `{"final": response body}`.
        Errors before the first event raise (a normal error response); later ones end the stream
        with `{"error": <contract error>}` (see router/app.py)."""
        backend = self.backends.get(p.target.backend)
        if backend is None or not hasattr(backend, "stream"):
            raise Unavailable(f"{p.target.address} cannot stream right now")
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_s + GRACE_S
        events = backend.stream({**p.payload, **self._call_meta()}).__aiter__()
        try:
            async for event in self._events(p, events, deadline):
                yield event
        finally:
            await self.settle(p.admission, p.state.tokens)

    async def _events(self, p: Prepared, events, deadline: float) -> AsyncIterator[dict[str, Any]]:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                event = await asyncio.wait_for(events.__anext__(), max(remaining, 0.001))
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                await events.aclose()
                raise DeadlineExceeded(
                    f"{p.target.address} did not finish within "
                    f"{self.settings.request_timeout_s:g} s"
                ) from None
            if is_wire_error(event):
                raise from_wire(event)
            if "final" in event:
                yield {"final": self._response(p, event["final"])}
                return
            tokens = event.pop("tokens", None)
            if tokens:  # so far: a stream cut before its final event is billed what it produced
                p.state.tokens = {**tokens, "total": sum(tokens.values())}
            yield event

    async def admit_read(self, key: KeyInfo, ns: NamespaceInfo, state: RequestState) -> None:
        """A read route (usage, model listings) is metered as an inference is: the key's
        in-flight slot and its request limits (not its tokens). It leaves no usage record: the
        ledger holds inference work, and reading it does not change it (docs/tenancy.md)."""
        if state.release is None:
            state.release = self.concurrency.enter(key.id)
        if self.limiter is not None:
            subjects = subjects_for(key, ns, self.settings.limits)
            admission = await self.limiter.acquire([s for s in subjects if s.kind == REQUESTS])
            state.rate_headers = admission.headers()
            await self.settle(admission, {})

    async def list_models(
        self, authorization: str | None, namespace: str | None, state: RequestState
    ) -> dict[str, Any]:
        key, ns = await self.auth(authorization, namespace)
        await self.admit_read(key, ns, state)
        self.plugin_status = await plugins.load_status(self.index.catalog, self.backends)
        return {"namespace": ns.id, "data": self.listing()}

    plugin_status: Mapping[
        str, dict[str, Any]
    ] = {}  # plugin backend -> its load status (list_models)

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for t in self.index.catalog.targets:
            b = self.index.catalog.backends[t.backend]
            if not b.configured:
                status = "not_configured"
            elif b.engine == "provider" and not self.providers_ready.get(b.provider, False):
                status = "unavailable: no credentials"
            else:
                status = "available" if t.backend in self.backends else "unavailable"
            out.append(
                {
                    "provider": t.provider,
                    "model": t.model,
                    "inference_name": t.inference_name,
                    "feature_uris": t.feature_uris,
                    "tasks": [x.value for x in b.tasks],
                    "served_by": {"provider": b.provider, "model": b.served_model},
                    "status": status,
                    **({"note": b.note} if b.note and not b.configured else {}),
                    **(
                        plugins.describe(b, self.plugin_status.get(t.backend))
                        if b.engine == "plugin"
                        else {}
                    ),
                }
            )
        return out + plugins.failed_entries(self.index.catalog)
