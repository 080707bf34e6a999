"""What a chat (or vision) request's cache partition is, and which texts are embedded.

Nothing crosses a partition: it is a hash of the namespace, the resolved target (backend and the
model that answers), the task, every parameter that changes the output (temperature, max_tokens,
top_p, stop, seed, schema: all of the task's parameters except `stream`, defaults filled in, so
leaving one out equals sending its default) and the prompt's structure:

- `prompts` (each answered on its own): the whole request is one cache entry. The system prompt
  and the number of prompts are in the partition; each prompt is embedded and the entry's vector
  is their unit vectors concatenated and scaled by 1/√n, so the cosine similarity of two requests
  is the mean of their prompts' similarities, position by position.
- `messages` (one conversation): every message but the last, with roles, is in the partition
  (the history must match exactly); the last message is embedded.
- media (vision): the bytes' SHA-256 is in the partition.

The exact tier (exact.py) keys on the same partition. A vector of another dimension (another
embedder) makes the store start the partition afresh (store.py).
"""

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
