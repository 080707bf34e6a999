"""The ingress's side of the semantic cache (no Ray: the cache deployment, the embedder and the
model are async callables taking and returning plain data). Design notes:
docs/notes/cache.md#the-ingress-client."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from rawinfer.cache.exact import ExactLRU, deterministic, exact_key
from rawinfer.cache.judge import Judge
from rawinfer.cache.keys import cache_key, combine
from rawinfer.contract.errors import from_wire, is_wire_error
from rawinfer.core.settings import SemanticCacheSettings

log = logging.getLogger("rawinfer.semantic_cache")
Call = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
CACHED_FIELDS = ("data", "tokens_used", "model")
REPORT_EVERY_S = 1.0  # how often a replica tells the cache what its own exact LRU served


@dataclass(frozen=True)
class CachePlan:
    partition: str
    namespace: str
    label: str  # the target (metrics, stats)
    texts: tuple[str, ...]
    delta: float
    exact_key: str | None = None  # deterministic: the exact tier's key
    semantic: bool = True  # greedy, or sampled answers allowed: the semantic tier too

    @property
    def where(self) -> dict[str, str]:
        return {"partition": self.partition, "namespace": self.namespace, "label": self.label}


class SemanticCacheClient:
    def __init__(self, settings: SemanticCacheSettings, cache: Call, embed: Embed, judge: Judge):
        self.settings, self.cache, self.embed, self.judge = settings, cache, embed, judge
        self.pending: set[asyncio.Task] = set()
        s = settings
        self.local = (
            ExactLRU(s.exact_local_entries, s.exact_local_bytes, ttl_s=s.exact_local_ttl_s)
            if s.exact and s.exact_local_entries
            else None
        )
        self.rng = random.Random(s.seed)
        self._reports: dict[tuple[str, str, str], collections.Counter] = {}
        self._flush: asyncio.Task | None = None
        self._flush_waiting = False
        self.dropped = 0  # background work refused at max_background_tasks

    def plan(
        self,
        *,
        enabled: bool,
        max_error_rate: float | None,
        task: str,
        stream: bool,
        namespace: str,
        label: str,
        payload: dict[str, Any],
    ) -> CachePlan | None:
        if not enabled or stream or task not in ("chat", "vision"):
            return None
        params = payload.get("parameters") or {}
        temperature = float(params.get("temperature", 1.0))
        semantic = temperature == 0 or self.settings.allow_temperature_above_zero
        exact = self.settings.exact and deterministic(params)
        if not (semantic or exact):
            return None
        key = cache_key(namespace, label, task, payload)
        if not key.texts:
            return None
        delta = self.settings.default_max_error_rate if max_error_rate is None else max_error_rate
        return CachePlan(
            key.partition,
            namespace,
            label,
            key.texts,
            float(delta),
            exact_key(key.partition, key.texts) if exact else None,
            semantic,
        )

    async def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        out = await self.cache(req)
        if is_wire_error(out):
            raise from_wire(out)
        return out

    async def _vector(self, texts: tuple[str, ...]) -> list[float]:
        return combine(await self.embed(list(texts)))

    async def execute(
        self, plan: CachePlan, fresh: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        if plan.exact_key is not None:
            hit = await self._exact(plan, fresh)
            if hit is not None:
                return hit
        if not plan.semantic:
            result = await fresh()
            self._remember(plan, result)
            return {**result, "cache_hit": False}
        try:
            async with asyncio.timeout(self.settings.call_timeout_s):
                vector = await self._vector(plan.texts)
                where = plan.where  # another embedder's dimension: the store starts afresh
                found = await self._ask(
                    {"op": "lookup", **where, "vector": vector, "delta": plan.delta}
                )
        except Exception as e:  # the cache is an optimisation: answer uncached
            log.warning(
                "semantic cache unavailable (%s: %s); answering uncached", type(e).__name__, e
            )
            return await fresh()
        if found["action"] == "exploit":
            return {**{k: found["response"].get(k) for k in CACHED_FIELDS}, "cache_hit": True}
        result = await fresh()
        self._remember(plan, result)
        answer = {k: result.get(k) for k in CACHED_FIELDS}
        self._background(self._learn(where, vector, found, answer))
        return {**result, "cache_hit": False}

    # ---------------------------------------------------------------- exact tier
    async def _exact(self, plan: CachePlan, fresh) -> dict[str, Any] | None:
        """The cached answer of an exact repeat, from this replica's LRU or the shared tier."""
        key = plan.exact_key
        response = self.local.get(key) if self.local is not None else None
        if response is not None:
            self._report(plan, hits=1)
        else:
            try:
                async with asyncio.timeout(self.settings.call_timeout_s):
                    found = await self._ask({"op": "exact_get", "key": key, **plan.where})
            except Exception as e:
                log.warning("exact tier unavailable (%s: %s)", type(e).__name__, e)
                return None
            if not found.get("found"):
                return None
            response = found["response"]
            if self.local is not None:
                self.local.put(key, plan.namespace, response)
        if self.rng.random() < self.settings.exact_audit_fraction:
            self._background(self._audit(plan, response, fresh))
        return {**{k: response.get(k) for k in CACHED_FIELDS}, "cache_hit": True}

    def _remember(self, plan: CachePlan, result: dict[str, Any]) -> None:
        """A fresh answer to a deterministic request: held here and in the shared tier."""
        if plan.exact_key is None:
            return
        answer = {k: result.get(k) for k in CACHED_FIELDS}
        if self.local is not None:
            self.local.put(plan.exact_key, plan.namespace, answer)
        put = {"op": "exact_put", "key": plan.exact_key, **plan.where, "response": answer}
        self._background(self._quietly(put))

    async def _quietly(self, req: dict[str, Any]) -> None:
        try:
            await self._ask(req)
        except Exception as e:
            log.warning("exact tier: %s failed (%s)", req.get("op"), type(e).__name__)

    async def _audit(self, plan: CachePlan, cached: dict[str, Any], fresh) -> None:
        """Off the request path: the model answers an exact hit too, and the judge compares."""
        try:
            result = await fresh()
            correct = await self.judge(result.get("data") or {}, cached.get("data") or {})
        except Exception:
            log.warning("exact tier: an audit failed", exc_info=True)
            return
        self._report(plan, audits=1, audit_incorrect=0 if correct else 1)

    def _report(self, plan: CachePlan, **counts: int) -> None:
        where = (plan.partition, plan.namespace, plan.label)
        self._reports.setdefault(where, collections.Counter()).update(counts)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._send_reports())
            self.pending.add(self._flush)
            self._flush.add_done_callback(self.pending.discard)

    async def _send_reports(self, wait_s: float = REPORT_EVERY_S) -> None:
        self._flush_waiting = wait_s > 0
        try:
            await asyncio.sleep(wait_s)  # cancelled here only (close() sends at once)
        finally:
            self._flush_waiting = False
        reports, self._reports = self._reports, {}
        for (partition, namespace, label), counts in reports.items():
            where = {"partition": partition, "namespace": namespace, "label": label}
            await self._quietly({"op": "exact_report", **where, **counts})

    def forget(self, namespace: str) -> int:
        """This replica's exact answers of a namespace dropped (the cache was cleared)."""
        return self.local.clear(namespace) if self.local is not None else 0

    def _background(self, coro) -> None:
        """Off the request path, bounded: past `max_background_tasks` the work is dropped (the
        cache learns less from a flood instead of holding a task per request)."""
        if len(self.pending) >= self.settings.max_background_tasks:
            coro.close()
            self.dropped += 1
            if self.dropped in (1, 10) or self.dropped % 1000 == 0:
                log.warning(
                    "semantic cache: %d background tasks dropped (max_background_tasks=%d)",
                    self.dropped,
                    self.settings.max_background_tasks,
                )
            return
        task = asyncio.get_running_loop().create_task(coro)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _learn(
        self,
        where: dict[str, Any],
        vector: list[float],
        found: dict[str, Any],
        answer: dict[str, Any],
    ) -> None:
        """Off the request path: judge an explored answer, or add a missed one as an entry."""
        try:
            if found["action"] == "miss":
                added = await self._ask(
                    {"op": "add", **where, "vector": vector, "response": answer}
                )
                if added.get("added"):
                    return
                found = {**added, "tau": 1.0}  # a concurrent miss added it first: judge against it
            correct = await self.judge(answer["data"], found["response"].get("data") or {})
            await self._ask(
                {
                    "op": "observe",
                    **where,
                    "entry_id": found["entry_id"],
                    "similarity": found["similarity"],
                    "correct": bool(correct),
                    "tau": found["tau"],
                    **({} if correct else {"vector": vector, "response": answer}),
                }
            )
        except Exception:
            log.warning("semantic cache: could not record an observation", exc_info=True)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Lets the background observations finish (the replica's shutdown)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while (work := self.pending - {self._flush}) and loop.time() < end:
            await asyncio.wait(work, timeout=end - loop.time())
        if self._reports:  # the counts still waiting for the next report go now
            if self._flush is not None and self._flush_waiting:
                self._flush.cancel()
            await self._send_reports(0)
