"""Ray Serve deployment for text embeddings: one engine per replica, concurrent requests
batched into one forward pass with `@serve.batch`, autoscaled on ongoing requests.

Resources, autoscaling and batching are defaults here and overridden per deployment in
serve_config.yaml (Serve's own `deployments:` section; `user_config` carries batch settings).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from deployments.base import guarded
from models.text_embedding import TextEmbeddingEngine
from rawinfer.core.catalog import resolve_model_path


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    health_check_period_s=2,
)
class TextEmbeddingDeployment:
    def __init__(self, spec: dict[str, Any]):
        opts = spec.get("options", {})
        self.engine = TextEmbeddingEngine(
            resolve_model_path(spec["model_path"], spec["cache_dir"]),
            served_model=spec["served_model"],
            device=opts.get("device", "cpu"),
            e5_prefixes=opts.get("e5_prefixes", False),
            max_texts=opts.get("max_texts", 256),
            encode_batch_size=opts.get("encode_batch_size", 64),
            torch_threads=opts.get("torch_threads"),
        )
        self.engine.load()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self._batched.set_max_batch_size(int(user_config.get("max_batch_size", 32)))
        self._batched.set_batch_wait_timeout_s(
            float(user_config.get("batch_wait_timeout_s", 0.005))
        )

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        p = request["parameters"]
        prepared = await asyncio.to_thread(
            self.engine.prepare,
            request["texts"],
            normalize=p.get("normalize", True),
            input_type=p.get("input_type"),
            truncate=p.get("truncate", False),
            single=request["single"],
        )
        return await self._batched(prepared)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, batch: list) -> list[dict[str, Any]]:
        texts = [t for prepared in batch for t in prepared.texts]
        rows = await asyncio.to_thread(self.engine.encode, texts)
        out, start = [], 0
        for prepared in batch:
            end = start + len(prepared.texts)
            out.append(self.engine.finish(prepared, rows[start:end]))
            start = end
        return out
