"""The ingress's side of the semantic cache (no Ray: the cache deployment, the embedder and the
model are async callables taking and returning plain data).

`plan()` (at prepare time) decides whether a request uses the cache and computes its partition
(rawinfer/cache/keys.py): chat and vision requests with `enable_semantic_cache: true`,
not streaming, and greedy (`temperature: 0`) unless `allow_temperature_above_zero`. A request
with several prompts is one cache entry (its vector combines the prompts'; keys.py).

`execute(plan, fresh)`: embed the prompts, ask the cache. Exploit: answer with the cached data
and `cache_hit: true` (its `tokens_used` are the cached answer's; the rate limiter is not
charged, the usage ledger counts them as cached). Explore or miss: `fresh()` calls the model and
its answer is returned; then, in a background task off the request path, the answer is judged
against the cached one and the observation recorded (explore), or added as an entry (miss).
A failing cache or embedder never fails a request: it is logged and the model answers uncached.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from rawinfer.cache.judge import Judge
from rawinfer.cache.keys import cache_key, combine
from rawinfer.contract.errors import from_wire, is_wire_error
from rawinfer.core.settings import SemanticCacheSettings

log = logging.getLogger("rawinfer.semantic_cache")
Call = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
CACHED_FIELDS = ("data", "tokens_used", "model")


@dataclass(frozen=True)
class CachePlan:
    partition: str
    namespace: str
    label: str  # the target (metrics, stats)
    texts: tuple[str, ...]
    delta: float


class SemanticCacheClient:
    def __init__(self, settings: SemanticCacheSettings, cache: Call, embed: Embed, judge: Judge):
        self.settings, self.cache, self.embed, self.judge = settings, cache, embed, judge
        self.pending: set[asyncio.Task] = set()

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
        temperature = float((payload.get("parameters") or {}).get("temperature", 1.0))
        if temperature > 0 and not self.settings.allow_temperature_above_zero:
            return None
        key = cache_key(namespace, label, task, payload)
        if not key.texts:
            return None
        delta = self.settings.default_max_error_rate if max_error_rate is None else max_error_rate
        return CachePlan(key.partition, namespace, label, key.texts, float(delta))

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
        try:
            async with asyncio.timeout(self.settings.call_timeout_s):
                vector = await self._vector(plan.texts)
                where = {
                    "partition": f"{plan.partition}:{len(vector)}",
                    "namespace": plan.namespace,
                    "label": plan.label,
                }
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
        answer = {k: result.get(k) for k in CACHED_FIELDS}
        self._background(self._learn(where, vector, found, answer))
        return {**result, "cache_hit": False}

    def _background(self, coro) -> None:
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
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=timeout_s)
