"""A light CPU deployment proxying one cloud provider (openai, google, anthropic) through its
adapter in models/providers (official SDKs). It holds no model: a small CPU fraction and a high
`max_ongoing_requests`, since every request mostly waits on the network.

Credentials are read here, in the replica, from Settings (`RAWINFER_PROVIDERS__<NAME>__API_KEY`,
or `..._API_KEY_FILE` for a mounted secret): they never travel in deployment arguments, the
Serve config or a handle call. Catalog `options` may set non-secret fields (base_url, timeout_s,
max_retries, ...); the environment wins for credentials.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from deployments.base import guarded
from models.providers import ADAPTERS
from rawinfer.core.settings import Settings

DEADLINE_MARGIN_S = 0.5  # the adapter answers 504 itself just before the ingress would give up


@serve.deployment(
    ray_actor_options={"num_cpus": 0.05},
    max_ongoing_requests=512,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 128},
    health_check_period_s=2,
)
class ProviderDeployment:
    def __init__(self, spec: dict[str, Any]):
        name = spec["provider"]
        config = {**spec.get("options", {}), **Settings().providers.get(name, {})}
        self.adapter = ADAPTERS[name](config)

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        deadline = max(float(request.get("timeout_s") or 60.0) - DEADLINE_MARGIN_S, 0.1)
        return await self.adapter.run(request, deadline)
