"""One generic Serve deployment for plugins (rawinfer/plugins): the app builder binds it once per
plugin, named by its inference name, with the manifest's resources (`ray_actor_options`) and
batching (`user_config`: max_batch_size, batch_wait_timeout_s; serve_config.yaml may override).

A plugin whose `load()` raises does not fail its replica: Serve would mark the deployment
DEPLOY_FAILED and with it the whole application. The replica stays up, keeps the error, answers
every call with an Unavailable (503) naming the plugin and its load error, and reports it to the
ingress's listing (`{"op": "status"}`). A plugin raising in `infer` fails that request only.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.base import guarded
from rawinfer.contract.errors import RawInferError, from_wire, is_wire_error, to_wire
from rawinfer.plugins.runner import PluginRunner

EMBED_CHUNK = 256  # texts per call: the text-embedding deployment's max_texts
EMBED_TIMEOUT_S = 60.0


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
            ).result(timeout_s=EMBED_TIMEOUT_S)
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
        self.runner = PluginRunner(
            spec["model_path"],
            cache_dir=spec["cache_dir"],
            embedder=embedder,
            plugin_dir=spec.get("options", {}).get("plugin_dir"),
            label=spec["served_model"],
        )
        self.runner.load()
        self.served_model = spec["served_model"]
        self.reconfigure(spec.get("options", {}).get("batch", {}))

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self._batched.set_max_batch_size(int(user_config.get("max_batch_size", 8)))
        self._batched.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.01)))

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "status":
            return {"data": self.runner.status}
        if self.runner.plugin is None:
            raise self.runner.unavailable()
        result = await self._batched(
            {"inputs": request.get("inputs"), "parameters": request.get("parameters")}
        )
        if isinstance(result, RawInferError):
            return to_wire(result)
        return {"data": result, "model": self.served_model, "tokens_used": None}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batched(self, batch: list[dict[str, Any]]) -> list[Any]:
        return await self.runner.run(batch)
