"""The semantic cache as one object: the store, vCache's policy and per-partition statistics. The
Serve deployment (deployments/semantic_cache.py) holds one; every method is synchronous, fast and
takes and returns plain data, so calls through the deployment apply one at a time (the reference
implementation's serialised update queue). Design notes: docs/notes/cache.md#the-cache-object."""

from __future__ import annotations

import collections
import random
from pathlib import Path
from typing import Any

from rawinfer.cache.exact import ExactLRU
from rawinfer.cache.policy import Action, VerifiedPolicy
from rawinfer.cache.store import SemanticStore
from rawinfer.core.settings import SemanticCacheSettings


def store_options(s: SemanticCacheSettings) -> dict[str, Any]:
    return {
        "m": s.hnsw_m,
        "ef_construction": s.hnsw_ef_construction,
        "ef": s.hnsw_ef,
        "namespace_max_entries": s.namespace_max_entries,
    }


class SemanticCache:
    def __init__(
        self,
        settings: SemanticCacheSettings | None = None,
        store: SemanticStore | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = s = settings or SemanticCacheSettings()
        self.store = store or SemanticStore(s.max_entries, **store_options(s))
        self.policy = VerifiedPolicy(s.min_observations, rng or random.Random(s.seed))
        self.exact = ExactLRU(s.exact_max_entries, s.exact_max_bytes, s.exact_namespace_max_entries)
        self.stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.labels: dict[str, tuple[str, str]] = {}  # partition -> (namespace, target)
        # (namespace, target) -> the same counts over its partitions (metrics: no partition label)
        self.by_label: dict[tuple[str, str], collections.Counter] = collections.defaultdict(
            collections.Counter
        )
        self.version = 0  # bumped by every change (the deployment snapshots when it moved)

    @classmethod
    def restore(
        cls,
        path: str | Path,
        settings: SemanticCacheSettings | None = None,
        rng: random.Random | None = None,
    ) -> "SemanticCache":
        s = settings or SemanticCacheSettings()
        store = SemanticStore.restore(path, s.max_entries, **store_options(s))
        cache = cls(s, store, rng)
        for e in store:
            cache.labels[e.partition] = (e.namespace, e.label)
        return cache

    def _count(self, partition: str, namespace: str, label: str, **inc: float) -> None:
        self.labels[partition] = (namespace, label)
        self.stats[partition].update(inc)
        self.by_label[(namespace, label)].update(inc)

    # ---------------------------------------------------------------- protocol
    def lookup(
        self, partition: str, namespace: str, label: str, vector: list[float], delta: float
    ) -> dict[str, Any]:
        found = self.store.nearest(partition, vector)
        if found is None:
            self._count(partition, namespace, label, lookups=1, misses=1)
            return {"action": "miss"}
        entry, similarity = found
        decision = self.policy.decide(similarity, delta, entry.observations, entry.fit)
        entry.fit = decision.fit or entry.fit
        out = {
            "entry_id": entry.id,
            "similarity": similarity,
            "tau": decision.tau,
            "response": entry.response,
        }
        if decision.action is Action.exploit:
            self.store.touch(entry.id)
            self._count(partition, namespace, label, lookups=1, hits=1)
            return {"action": "exploit", **out}
        self._count(partition, namespace, label, lookups=1, explores=1)
        return {"action": "explore", **out}

    def observe(
        self,
        partition: str,
        namespace: str,
        label: str,
        entry_id: int,
        similarity: float,
        correct: bool,
        tau: float,
        vector: list[float] | None = None,
        response: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        entry = self.store.get(entry_id)
        if entry is None or entry.partition != partition:
            return {
                "applied": False,
                "reason": "evicted",
            }  # as the reference: the update is dropped
        entry.observe(similarity, correct)
        entry.fit = self.policy.refit(
            entry.observations
        )  # here, so that lookups (the hit path) need not fit
        self.store.touch(entry_id)
        weight = (1 - tau) / tau if 0 < tau < 1 else 0.0
        self._count(
            partition,
            namespace,
            label,
            observations=1,
            incorrect=0 if correct else 1,
            estimated_errors=0.0 if correct else weight,
        )
        self.version += 1
        added = None
        if not correct and vector is not None and response is not None:
            added = self.store.add(partition, namespace, label, vector, response).id
        return {"applied": True, "added": added}

    def add(
        self,
        partition: str,
        namespace: str,
        label: str,
        vector: list[float],
        response: dict[str, Any],
    ) -> dict[str, Any]:
        found = self.store.nearest(partition, vector)
        if found is not None and found[1] >= self.settings.dedupe_similarity:
            entry, similarity = found
            return {
                "added": False,
                "entry_id": entry.id,
                "similarity": similarity,
                "response": entry.response,
            }
        entry = self.store.add(partition, namespace, label, vector, response)
        self.labels[partition] = (namespace, label)
        self.version += 1
        return {"added": True, "entry_id": entry.id}

    # ---------------------------------------------------------------- exact tier
    def exact_get(self, key: str, partition: str, namespace: str, label: str) -> dict[str, Any]:
        response = self.exact.get(key)
        if response is None:
            self._count(partition, namespace, label, exact_misses=1)
            return {"found": False}
        self._count(partition, namespace, label, exact_hits=1)
        return {"found": True, "response": response}

    def exact_put(
        self, key: str, partition: str, namespace: str, label: str, response: dict[str, Any]
    ) -> dict[str, Any]:
        self.labels[partition] = (namespace, label)
        return {"added": self.exact.put(key, namespace, response)}

    def exact_report(
        self,
        partition: str,
        namespace: str,
        label: str,
        hits: int = 0,
        audits: int = 0,
        audit_incorrect: int = 0,
    ) -> dict[str, Any]:
        """What an ingress replica's own LRU served, and the audits it judged."""
        self._count(
            partition,
            namespace,
            label,
            exact_hits=int(hits),
            exact_audits=int(audits),
            exact_audit_incorrect=int(audit_incorrect),
        )
        return {"applied": True}

    def clear(self, namespace: str, tier: str | None = None) -> dict[str, Any]:
        """Every entry of a namespace, or only those of one tier (`exact` or `semantic`)."""
        if tier not in (None, "exact", "semantic"):
            raise ValueError(f"tier must be exact or semantic, not {tier!r}")
        n = self.exact.clear(namespace) if tier != "semantic" else 0
        if tier == "exact":
            self.version += 1
            return {"namespace": namespace, "cleared": n}
        n += self.store.clear_namespace(namespace)
        for p in [p for p, (ns, _) in self.labels.items() if ns == namespace]:
            self.labels.pop(p, None)
            self.stats.pop(p, None)
        for k in [k for k in self.by_label if k[0] == namespace]:
            del self.by_label[k]
        self.version += 1
        return {"namespace": namespace, "cleared": n}

    def partition_stats(self, namespace: str | None = None) -> list[dict[str, Any]]:
        entries = collections.Counter(e.partition for e in self.store)
        out = []
        for p, (ns, label) in sorted(self.labels.items()):
            if namespace is not None and ns != namespace:
                continue
            c = self.stats.get(p, collections.Counter())
            lookups = c["lookups"]
            out.append(
                {
                    "partition": p,
                    "namespace": ns,
                    "target": label,
                    "entries": entries.get(p, 0),
                    "lookups": lookups,
                    "hits": c["hits"],
                    "misses": c["misses"],
                    "explores": c["explores"],
                    "observations": c["observations"],
                    "incorrect": c["incorrect"],
                    "estimated_error_rate": round(c["estimated_errors"] / lookups, 6)
                    if lookups
                    else 0.0,
                    "exact_hits": c["exact_hits"],
                    "exact_misses": c["exact_misses"],
                    "exact_audits": c["exact_audits"],
                    "exact_audit_incorrect": c["exact_audit_incorrect"],
                }
            )
        return out

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """One call through the deployment: `{"op": lookup|observe|add|clear|stats, ...}`."""
        op = req.get("op")
        args = {k: v for k, v in req.items() if k != "op"}
        if op == "lookup":
            return self.lookup(**args)
        if op == "observe":
            return self.observe(**args)
        if op == "add":
            return self.add(**args)
        if op == "exact_get":
            return self.exact_get(**args)
        if op == "exact_put":
            return self.exact_put(**args)
        if op == "exact_report":
            return self.exact_report(**args)
        if op == "clear":
            return self.clear(args["namespace"], args.get("tier"))
        if op == "stats":  # entries: the namespace's when one is given; total_entries: all
            parts = self.partition_stats(args.get("namespace"))
            mine = (
                len(self.store)
                if args.get("namespace") is None
                else sum(p["entries"] for p in parts)
            )
            return {
                "entries": mine,
                "total_entries": len(self.store),
                "max_entries": self.store.max_entries,
                "evicted": self.store.evicted,
                "exact_entries": self.exact.entries(args["namespace"])
                if args.get("namespace") is not None
                else len(self.exact),
                "exact_bytes": self.exact.bytes,
                "partitions": parts,
            }
        raise ValueError(f"unknown semantic cache op {op!r}")
