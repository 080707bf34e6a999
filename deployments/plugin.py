"""One generic Serve deployment for plugins (rawinfer/plugins), bound once per plugin with the
manifest's resources and batching. A plugin whose `load()` raises keeps its replica up and answers
503 with the error (docs/notes/engines.md#plugins); one raising in `infer` fails that request."""

from __future__ import annotations

import uuid
from typing import Any, Callable

import numpy as np
from pydantic import Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.base import EngineOptions, engine_defaults, guarded
from models.text_embedding import TextEmbeddingEngine
from rawinfer.contract.errors import RawInferError, from_wire, is_wire_error, to_wire
from rawinfer.core.deadline import Deadline
from rawinfer.plugins.api import Batching, Resources, time_left
from rawinfer.plugins.runner import PluginRunner

# texts per call: the text-embedding engine's default max_texts
EMBED_CHUNK = engine_defaults(TextEmbeddingEngine)["max_texts"]
EMBED_TIMEOUT_S = 60.0


class PluginOptions(EngineOptions):
    """What discovery puts in a plugin backend's options (rawinfer/plugins/discovery.py)."""

    plugin_dir: str | None = Field(None, description="the plugin's folder; None: an entry point")
    resources: Resources = Field(default_factory=Resources)
    batch: Batching = Field(default_factory=Batching)
    description: str = ""
    plugin_tasks: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)


def remote_embedder(handle: DeploymentHandle, label: str) -> Callable[[list[str]], np.ndarray]:
    """PluginContext.embed through the service's text-embedding deployment: blocking (a plain
    plugin `infer` runs in a worker thread), normalised rows, long texts truncated to the
    model's window, chunked to that deployment's per-request cap."""

    def embed(texts: list[str]) -> np.ndarray:
        rows = []
        for i in range(0, len(texts), EMBED_CHUNK):
            out = handle.remote(
                {
                    "texts": texts[i : i + EMBED_CHUNK],
                    "single": False,
                    "parameters": {"normalize": True, "input_type": None, "truncate": True},
                    "timeout_s": EMBED_TIMEOUT_S,
                    "request_id": f"plugin-{label}-{uuid.uuid4().hex[:8]}",
                }
            ).result(timeout_s=max(min(EMBED_TIMEOUT_S, time_left()), 0.01))
            if is_wire_error(out):
                raise from_wire(out)
            rows.append(np.asarray(out["data"]["embeddings"], dtype=np.float32))
        return np.concatenate(rows)

    return embed


@serve.deployment(
    ray_actor_options={"num_cpus": 0.05},
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 16},
    health_check_period_s=2,
)
class PluginDeployment:
    def __init__(self, spec: dict[str, Any], text_embedding: DeploymentHandle | None = None):
        embedder = (
            remote_embedder(text_embedding, spec["served_model"])
            if text_embedding is not None
            else None
        )
        opts = PluginOptions.model_validate(spec.get("options") or {})
        self.runner = PluginRunner(
            spec["model_path"],
            cache_dir=spec["cache_dir"],
            embedder=embedder,
            plugin_dir=opts.plugin_dir,
            label=spec["served_model"],
        )
        self.runner.load()
        self.served_model = spec["served_model"]
        self.reconfigure(opts.batch.model_dump())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batch = Batching.model_validate(user_config or {})
        self._batched.set_max_batch_size(batch.max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "status":
            return {"data": self.runner.status}
        if self.runner.plugin is None:
            raise self.runner.unavailable()
        result = await self._batched(
            {
                "inputs": request.get("inputs"),
                "parameters": request.get("parameters"),
                "deadline": Deadline.of(request),
            }
        )
        if isinstance(result, RawInferError):
            return to_wire(result)
        return {"data": result, "model": self.served_model, "tokens_used": None}

    @serve.batch(**Batching().model_dump())
    async def _batched(self, batch: list[dict[str, Any]]) -> list[Any]:
        return await self.runner.run(batch)


DEPLOYMENT = PluginDeployment
OPTIONS = PluginOptions
