"""A light CPU deployment proxying one cloud provider (openai, google, anthropic) through its
adapter in models/providers. Credentials are read here, in the replica, from Settings: they never
travel in deployment arguments, the Serve config or a handle (docs/notes/engines.md#providers)."""

from __future__ import annotations

from typing import Any

from ray import serve

from deployments.base import guarded
from models.providers import ADAPTERS, ProviderSettings
from rawinfer.core.settings import Settings

DEADLINE_MARGIN_S = 0.5  # the adapter answers 504 itself just before the ingress would give up
DEFAULT_TIMEOUT_S = 60.0  # a request that names no timeout


def provider_options(provider: str) -> type[ProviderSettings]:
    """The options model of a provider backend: its adapter's settings (unknown keys refused).
    Catalog `options` may set the non-secret fields; the environment wins for credentials."""
    return ADAPTERS[provider].settings_model


@serve.deployment(
    ray_actor_options={"num_cpus": 0.05},
    max_ongoing_requests=512,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 128},
    health_check_period_s=2,
)
class ProviderDeployment:
    def __init__(self, spec: dict[str, Any]):
        """`spec`: the catalog backend; `spec["models"]`, when given, the catalog's table of
        model -> tasks for this backend (models.providers.base.catalog_models)."""
        name = spec["provider"]
        config = {**(spec.get("options") or {}), **Settings().providers.get(name, {})}
        self.adapter = ADAPTERS[name](
            provider_options(name).model_validate(config), models=spec.get("models")
        )

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        timeout_s = float(request.get("timeout_s") or DEFAULT_TIMEOUT_S)
        return await self.adapter.run(request, max(timeout_s - DEADLINE_MARGIN_S, 0.1))


DEPLOYMENT = ProviderDeployment
OPTIONS = provider_options  # called with the provider name
