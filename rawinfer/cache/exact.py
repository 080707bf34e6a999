"""The exact tier: a deterministic request (temperature 0 or a fixed seed) answered from a hash of
its normalised prompt within its partition (keys.py: namespace, target, every output-changing
parameter). A bounded LRU, by entries and bytes, with a per-namespace entry quota; each ingress
replica holds a small one (entries expire after `ttl_s`, so a clear reaches it) and the cache
deployment the shared one (docs/cache.md#the-exact-tier)."""

from __future__ import annotations

import collections
import hashlib
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

import orjson


def normalise(text: str) -> str:
    """Unicode NFC, outer whitespace stripped, inner runs of whitespace as one space. Case and
    punctuation are kept: they can change the answer."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def exact_key(partition: str, texts: tuple[str, ...] | list[str]) -> str:
    blob = orjson.dumps([partition, [normalise(t) for t in texts]])
    return hashlib.sha256(blob).hexdigest()


def deterministic(parameters: dict[str, Any]) -> bool:
    """Whether a request's answer is fixed by its input: greedy, or sampled with a fixed seed."""
    temperature = parameters.get("temperature", 1.0)
    return float(temperature if temperature is not None else 1.0) == 0.0 or (
        parameters.get("seed") is not None
    )


@dataclass
class _Held:
    namespace: str
    response: dict[str, Any]
    size: int
    expires: float


class ExactLRU:
    """Not thread-safe: one owner (an event loop)."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        max_namespace_entries: int | None = None,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_entries, self.max_bytes, self.ttl_s, self.clock = (
            max_entries,
            max_bytes,
            ttl_s,
            clock,
        )
        self.max_namespace_entries = max_namespace_entries or max_entries
        self._held: collections.OrderedDict[str, _Held] = collections.OrderedDict()
        self._per_namespace: collections.Counter[str] = collections.Counter()
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._held)

    def entries(self, namespace: str) -> int:
        return self._per_namespace[namespace]

    def get(self, key: str) -> dict[str, Any] | None:
        held = self._held.get(key)
        if held is None:
            return None
        if held.expires <= self.clock():
            self._drop(key)
            return None
        self._held.move_to_end(key)
        return held.response

    def put(self, key: str, namespace: str, response: dict[str, Any]) -> bool:
        """False when the answer alone is over the byte bound (it is not held)."""
        size = len(key) + len(orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY))
        if size > self.max_bytes:
            return False
        if key in self._held:
            self._drop(key)
        expires = float("inf") if self.ttl_s is None else self.clock() + self.ttl_s
        self._held[key] = _Held(namespace, response, size, expires)
        self._per_namespace[namespace] += 1
        self.bytes += size
        while self._per_namespace[namespace] > self.max_namespace_entries:
            self._evict(next(k for k, h in self._held.items() if h.namespace == namespace))
        while len(self._held) > self.max_entries or self.bytes > self.max_bytes:
            self._evict(next(iter(self._held)))
        return True

    def clear(self, namespace: str) -> int:
        keys = [k for k, h in self._held.items() if h.namespace == namespace]
        for k in keys:
            self._drop(k)
        return len(keys)

    def _evict(self, key: str) -> None:
        self._drop(key)
        self.evicted += 1

    def _drop(self, key: str) -> None:
        held = self._held.pop(key)
        self.bytes -= held.size
        self._per_namespace[held.namespace] -= 1
        if not self._per_namespace[held.namespace]:
            del self._per_namespace[held.namespace]
