"""What a chat (or vision) request's cache partition is, and which texts are embedded. Design notes:
docs/notes/cache.md#partitions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class CacheKey:
    partition: str
    texts: tuple[str, ...]


def cache_key(namespace: str, target: str, task: str, payload: dict[str, Any]) -> CacheKey:
    """`payload` is what the backend receives: local chat `{prompts|messages, system?, parameters}`
    or a provider's `{task, model, inputs: {...}, parameters}`."""
    inputs = payload["inputs"] if isinstance(payload.get("inputs"), dict) else payload
    params = {k: v for k, v in (payload.get("parameters") or {}).items() if k != "stream"}
    if inputs.get("messages"):
        messages = [{"role": m["role"], "content": m["content"]} for m in inputs["messages"]]
        texts = (messages[-1]["content"],)
        shape: dict[str, Any] = {"history": messages[:-1], "last_role": messages[-1]["role"]}
    else:
        texts = tuple(inputs.get("prompts") or ())
        shape = {"system": inputs.get("system"), "prompts": len(texts)}
    media = inputs.get("media")
    if isinstance(media, (bytes, bytearray)):
        shape["media"] = hashlib.sha256(media).hexdigest()
        shape["media_kind"] = inputs.get("media_kind")
    blob = orjson.dumps(
        {
            "namespace": namespace,
            "target": target,
            "task": task,
            "parameters": params,
            "shape": shape,
        },
        option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
    )
    return CacheKey(hashlib.sha256(blob).hexdigest()[:32], texts)


def combine(vectors: list[list[float]]) -> list[float]:
    """One vector for a request's prompts: unit vectors concatenated, scaled by 1/√n."""
    import numpy as np

    from rawinfer.core.vectors import l2_normalize

    rows = l2_normalize(vectors)  # may be a read-only array from Ray's object store
    return (rows.reshape(-1) / np.sqrt(len(rows))).tolist()
