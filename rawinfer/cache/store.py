"""Cached entries, partitioned, with nearest-neighbour search, LRU eviction and snapshots. Design
notes: docs/notes/cache.md#the-store."""

from __future__ import annotations

import collections
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import hnswlib
import numpy as np
import orjson

from rawinfer.cache.policy import PRIORS, Fit
from rawinfer.core.vectors import l2_normalize

SNAPSHOT_VERSION = 1


@dataclass
class Entry:
    id: int
    partition: str
    namespace: str
    label: str  # the target, for metrics and stats
    vector: np.ndarray  # unit-norm float32
    response: dict[str, Any]  # {"data", "tokens_used", "model"}: what a hit answers with
    observations: list[tuple[float, int]] = field(default_factory=lambda: list(PRIORS))
    created_at: float = field(default_factory=time.time)
    fit: Fit | None = None  # the policy's fit of `observations`, dropped when they change

    def observe(self, similarity: float, correct: bool) -> None:
        self.observations.append((round(float(similarity), 3), int(bool(correct))))
        self.fit = None


def unit(vector: Any) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if v.size == 0 or not np.isfinite(n) or n == 0.0:
        raise ValueError("a cache vector must be non-empty, finite and non-zero")
    return l2_normalize(v)


class Partition:
    def __init__(self, key: str, dim: int, m: int, ef_construction: int, ef: int):
        self.key, self.dim = key, dim
        self.index = hnswlib.Index(space="cosine", dim=dim)
        self.index.init_index(
            max_elements=16, M=m, ef_construction=ef_construction, allow_replace_deleted=True
        )
        self.index.set_ef(ef)
        self.live: set[int] = set()

    def add(self, entry: Entry) -> None:
        if len(self.live) >= self.index.get_max_elements():
            self.index.resize_index(2 * self.index.get_max_elements())
        self.index.add_items(entry.vector[None, :], [entry.id], replace_deleted=True)
        self.live.add(entry.id)

    def remove(self, entry_id: int) -> None:
        if entry_id in self.live:
            self.index.mark_deleted(entry_id)
            self.live.discard(entry_id)

    def nearest(self, vector: np.ndarray) -> tuple[int, float] | None:
        if not self.live:
            return None
        labels, distances = self.index.knn_query(vector[None, :], k=1)
        return int(labels[0][0]), float(1.0 - distances[0][0])


class SemanticStore:
    def __init__(
        self,
        max_entries: int = 10_000,
        *,
        m: int = 16,
        ef_construction: int = 100,
        ef: int = 64,
        namespace_max_entries: int | None = None,
    ):
        self.max_entries = max_entries
        self.namespace_max_entries = namespace_max_entries  # None: only the global bound
        self._hnsw = (m, ef_construction, ef)
        self.entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()  # LRU first
        # namespace -> its entry ids, least recently used first (the per-namespace quota)
        self.by_namespace: dict[str, collections.OrderedDict[int, None]] = {}
        self.partitions: dict[str, Partition] = {}
        self.next_id = 1
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self.entries.values()))

    # ---------------------------------------------------------------- lookups
    def nearest(self, partition: str, vector: Any) -> tuple[Entry, float] | None:
        """The partition's nearest entry to `vector` and its cosine similarity (None: empty)."""
        part = self.partitions.get(partition)
        if part is None:
            return None
        v = unit(vector)
        if v.size != part.dim:
            return None
        found = part.nearest(v)
        if found is None:
            return None
        return self.entries[found[0]], min(1.0, max(-1.0, found[1]))

    def get(self, entry_id: int) -> Entry | None:
        return self.entries.get(entry_id)

    def touch(self, entry_id: int) -> None:
        entry = self.entries.get(entry_id)
        if entry is not None:
            self.entries.move_to_end(entry_id)
            self.by_namespace[entry.namespace].move_to_end(entry_id)

    def namespace_entries(self, namespace: str) -> int:
        return len(self.by_namespace.get(namespace, ()))

    # ---------------------------------------------------------------- changes
    def add(
        self,
        partition: str,
        namespace: str,
        label: str,
        vector: Any,
        response: dict[str, Any],
        observations: list[tuple[float, int]] | None = None,
        created_at: float | None = None,
        entry_id: int | None = None,
    ) -> Entry:
        v = unit(vector)
        part = self.partitions.get(partition)
        if part is not None and part.dim != v.size:  # another embedder: start the partition afresh
            self._drop_partition(partition)
            part = None
        quota = self.namespace_max_entries
        while quota is not None and self.namespace_entries(namespace) >= quota:
            self._evict(next(iter(self.by_namespace[namespace])))  # its own oldest, not another's
        while len(self.entries) >= self.max_entries:
            self._evict(next(iter(self.entries)))
        part = self.partitions.get(partition)  # an eviction may have emptied and dropped it
        if part is None:
            part = self.partitions[partition] = Partition(partition, v.size, *self._hnsw)
        entry = Entry(
            self.next_id if entry_id is None else entry_id, partition, namespace, label, v, response
        )
        if observations is not None:
            entry.observations = [(float(s), int(c)) for s, c in observations]
        if created_at is not None:
            entry.created_at = created_at
        self.next_id = max(self.next_id, entry.id + 1)
        part.add(entry)
        self.entries[entry.id] = entry
        self.by_namespace.setdefault(namespace, collections.OrderedDict())[entry.id] = None
        return entry

    def remove(self, entry_id: int) -> None:
        entry = self.entries.pop(entry_id, None)
        if entry is None:
            return
        mine = self.by_namespace.get(entry.namespace)
        if mine is not None:
            mine.pop(entry_id, None)
            if not mine:
                del self.by_namespace[entry.namespace]
        part = self.partitions.get(entry.partition)
        if part is not None:
            part.remove(entry_id)
            if not part.live:
                del self.partitions[entry.partition]

    def _evict(self, entry_id: int) -> None:
        self.remove(entry_id)
        self.evicted += 1

    def _drop_partition(self, partition: str) -> None:
        for e in [e for e in self.entries.values() if e.partition == partition]:
            self.remove(e.id)

    def clear_namespace(self, namespace: str) -> int:
        doomed = list(self.by_namespace.get(namespace, ()))
        for entry_id in doomed:
            self.remove(entry_id)
        return len(doomed)

    # ---------------------------------------------------------------- snapshots
    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """Everything in plain arrays (cheap: call it on the owner's loop, write them elsewhere)."""
        entries = list(self.entries.values())  # LRU order, restored as such
        meta = {
            "version": SNAPSHOT_VERSION,
            "next_id": self.next_id,
            "entries": [
                {
                    "id": e.id,
                    "partition": e.partition,
                    "namespace": e.namespace,
                    "label": e.label,
                    "dim": int(e.vector.size),
                    "response": e.response,
                    "observations": e.observations,
                    "created_at": e.created_at,
                }
                for e in entries
            ],
        }
        vectors = (
            np.concatenate([e.vector for e in entries]) if entries else np.zeros(0, np.float32)
        )
        return {
            "meta": np.frombuffer(orjson.dumps(meta), dtype=np.uint8),
            "vectors": vectors.astype(np.float32),
        }

    @staticmethod
    def write_snapshot(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def snapshot(self, path: str | Path) -> None:
        self.write_snapshot(path, self.snapshot_arrays())

    @classmethod
    def restore(
        cls, path: str | Path, max_entries: int = 10_000, **hnsw: int | None
    ) -> "SemanticStore":
        """A store holding the snapshot's entries (the most recently used ones when it holds more
        than `max_entries`). Raises ValueError for a file that is not a snapshot of this version."""
        store = cls(max_entries, **hnsw)
        with np.load(path, allow_pickle=False) as z:
            meta = orjson.loads(z["meta"].tobytes())
            vectors = z["vectors"]
        if meta.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"{path} is a semantic cache snapshot of version {meta.get('version')}, "
                f"not {SNAPSHOT_VERSION}"
            )
        offset, rows = 0, []
        for e in meta["entries"]:
            rows.append((e, vectors[offset : offset + e["dim"]]))
            offset += e["dim"]
        for e, vector in rows[-max_entries:]:
            # ids kept: observations in flight during a restart still find their entry
            store.add(
                e["partition"],
                e["namespace"],
                e["label"],
                vector,
                e["response"],
                [tuple(o) for o in e["observations"]],
                e["created_at"],
                entry_id=e["id"],
            )
        store.next_id = max(store.next_id, meta["next_id"])
        return store
