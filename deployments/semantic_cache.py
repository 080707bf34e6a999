"""The shared semantic cache as a Serve deployment: one replica (the one cache every ingress
replica asks), a sliver of CPU, plain data in and out (rawinfer/cache/cache.py holds the state).
Snapshots at start, every `snapshot_interval_s` when changed, and on shutdown; metrics with the
`ray_` prefix (docs/notes/engines.md#semantic-cache)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from rawinfer.cache.cache import SemanticCache
from rawinfer.cache.store import SemanticStore
from rawinfer.contract.errors import InvalidRequest, to_wire
from rawinfer.core.settings import SemanticCacheSettings

log = logging.getLogger("rawinfer.semantic_cache")


class SemanticCacheConfig(BaseModel):
    """What the app builder binds (router/builder.py)."""

    model_config = ConfigDict(extra="forbid")

    settings: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)
    snapshot_path: Path


class CacheMetrics:
    """Labelled by namespace and target only: a partition id is unbounded, never a label."""

    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Gauge

        tags = ("namespace", "target")
        self.lookups = Counter(
            "rawinfer_semantic_cache_lookups_total",
            tag_keys=(*tags, "result"),
            description="Cache lookups by result: hit (served cached), miss, explore; exact_hit, "
            "exact_miss (the exact tier, hits served by an ingress replica's own LRU included).",
        )
        self.observations = Counter(
            "rawinfer_semantic_cache_observations_total",
            tag_keys=(*tags, "verdict"),
            description="Explored requests, and audited exact hits, judged against the cached "
            "answer.",
        )
        self.error_rate = Gauge(
            "rawinfer_semantic_cache_error_rate",
            tag_keys=tags,
            description="Estimated rate of wrong semantic answers served, per target.",
        )
        self.entries = Gauge(
            "rawinfer_semantic_cache_entries",
            tag_keys=("tier",),
            description="Entries held, all partitions.",
        )

    def record(self, cache: SemanticCache, req: dict[str, Any], out: dict[str, Any]) -> None:
        op = req.get("op")
        if op not in ("lookup", "observe", "exact_get", "exact_report") or "partition" not in req:
            return
        tags = {"namespace": str(req.get("namespace", "-")), "target": str(req.get("label", "-"))}
        if op == "lookup":
            result = {"exploit": "hit", "miss": "miss", "explore": "explore"}.get(
                out.get("action"), "miss"
            )
            self.lookups.inc(tags={**tags, "result": result})
        elif op == "exact_get":
            result = "exact_hit" if out.get("found") else "exact_miss"
            self.lookups.inc(tags={**tags, "result": result})
        elif op == "exact_report":
            if req.get("hits"):
                self.lookups.inc(int(req["hits"]), tags={**tags, "result": "exact_hit"})
            bad = int(req.get("audit_incorrect") or 0)
            good = int(req.get("audits") or 0) - bad
            for verdict, n in (("correct", good), ("incorrect", bad)):
                if n > 0:
                    self.observations.inc(n, tags={**tags, "verdict": verdict})
        else:
            self.observations.inc(
                tags={**tags, "verdict": "correct" if req.get("correct") else "incorrect"}
            )
        c = cache.by_label.get((tags["namespace"], tags["target"]))
        if c and c["lookups"]:
            self.error_rate.set(c["estimated_errors"] / c["lookups"], tags=tags)
        self.entries.set(len(cache.store), tags={"tier": "semantic"})
        self.entries.set(len(cache.exact), tags={"tier": "exact"})


@serve.deployment(
    name="semantic_cache",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0.02},
    max_ongoing_requests=1000,
    health_check_period_s=2,
)
class SemanticCacheDeployment:
    def __init__(self, config: dict[str, Any]):
        typed = SemanticCacheConfig.model_validate(config)
        self.settings, self.path = typed.settings, typed.snapshot_path
        self.cache = self._load()
        self.saved_version = self.cache.version
        self.metrics = CacheMetrics()
        self._task: asyncio.Task | None = None

    def _load(self) -> SemanticCache:
        if self.path.exists():
            try:
                cache = SemanticCache.restore(self.path, self.settings)
                log.info("semantic cache restored: %d entries from %s", len(cache.store), self.path)
                return cache
            except Exception as e:  # a torn or foreign file must not keep the cache from starting
                log.warning(
                    "semantic cache snapshot %s unreadable (%s): starting empty",
                    self.path,
                    type(e).__name__,
                )
        return SemanticCache(self.settings)

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._snapshots(), name="semantic-cache-snapshots"
            )

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.settings.snapshot_interval_s)
            try:
                await self.snapshot()
            except Exception:  # never let the loop die; the next round tries again
                log.exception("semantic cache snapshot failed")

    async def snapshot(self, force: bool = False) -> bool:
        if self.cache.version == self.saved_version and not force:
            return False
        version, arrays = self.cache.version, self.cache.store.snapshot_arrays()
        await asyncio.to_thread(SemanticStore.write_snapshot, self.path, arrays)
        self.saved_version = version
        return True

    async def check_health(self) -> None:
        self._start()

    async def __call__(self, req: dict[str, Any]) -> dict[str, Any]:
        """`{"op": "lookup"|"observe"|"add"|"exact_get"|"exact_put"|"exact_report"|"clear"|
        "stats"|"snapshot", ...}` (see SemanticCache)."""
        self._start()
        try:
            if req.get("op") == "snapshot":
                return {"written": await self.snapshot(force=True), "path": str(self.path)}
            out = self.cache.handle(req)
        except (TypeError, ValueError, KeyError) as e:
            return to_wire(InvalidRequest(f"bad semantic cache call: {e}"))
        self.metrics.record(self.cache, req, out)
        return out

    async def __del__(self):
        """Serve's graceful shutdown: write what changed since the last snapshot."""
        if self._task is not None:
            self._task.cancel()
        try:
            await self.snapshot()
        except Exception:
            log.exception("semantic cache: final snapshot failed")
