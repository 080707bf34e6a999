"""Ray Serve deployment for text embeddings: one engine per replica, concurrent requests batched
into one forward pass with `@serve.batch`, autoscaled on ongoing requests. Resources, autoscaling
and batching are defaults here, overridden per deployment in serve_config.yaml."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field
from ray import serve

from deployments.base import BatchSettings, EngineOptions, engine_defaults, guarded
from models.text_embedding import TextEmbeddingEngine
from rawinfer.contract import TextEmbeddingParams
from rawinfer.core.catalog import resolve_model_path
from rawinfer.core.deadline import Deadline

_ENGINE = engine_defaults(TextEmbeddingEngine)
BATCH = BatchSettings(max_batch_size=32, batch_wait_timeout_s=0.005)


class TextEmbeddingOptions(EngineOptions):
    device: str = _ENGINE["device"]
    e5_prefixes: bool = Field(_ENGINE["e5_prefixes"], description="E5 query:/passage: prefixes")
    max_texts: int = Field(_ENGINE["max_texts"], ge=1, description="texts per request")
    encode_batch_size: int = Field(_ENGINE["encode_batch_size"], ge=1)
    torch_threads: int | None = Field(_ENGINE["torch_threads"], ge=1)


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    health_check_period_s=2,
)
class TextEmbeddingDeployment:
    def __init__(self, spec: dict[str, Any]):
        opts = TextEmbeddingOptions.model_validate(spec.get("options") or {})
        self.engine = TextEmbeddingEngine(
            resolve_model_path(spec["model_path"], spec["cache_dir"]),
            served_model=spec["served_model"],
            **opts.model_dump(),
        )
        self.engine.load()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        BATCH.over(user_config).apply(self._batched)

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        p = TextEmbeddingParams.model_validate(request["parameters"])
        prepared = await asyncio.to_thread(
            self.engine.prepare, request["texts"], **p.model_dump(), single=request["single"]
        )
        deadline = Deadline.of(request)
        out = await self._batched((prepared, deadline))
        if out is None:  # its deadline passed before the batch ran: its caller has had a 504
            deadline.check(f"{self.engine.served_model}'s embedding")
        return out

    @serve.batch(**BATCH.model_dump())
    async def _batched(self, batch: list) -> list[dict[str, Any] | None]:
        """One encode for the batch's live requests; it stops when none of them waits any more
        (a request past its deadline gets None, and its caller raises)."""
        live = [(prepared, d) for prepared, d in batch if not d.passed()]
        texts = [t for prepared, _ in live for t in prepared.texts]
        rows = (
            await asyncio.to_thread(
                self.engine.encode, texts, Deadline.latest([d for _, d in live])
            )
            if live
            else None
        )
        out, start = {}, 0
        for prepared, _ in live:
            end = start + len(prepared.texts)
            out[id(prepared)] = self.engine.finish(prepared, rows[start:end])
            start = end
        return [out.get(id(prepared)) for prepared, _ in batch]


DEPLOYMENT = TextEmbeddingDeployment
OPTIONS = TextEmbeddingOptions
