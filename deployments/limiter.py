"""The shared rate limiter as a Serve deployment: one replica (the single authority for every
window; a restart resets the counters), a sliver of CPU, plain data in and out. Every ingress
replica reaches it through a handle and spends leased units locally (rawinfer/tenancy/limits.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from ray import serve

from rawinfer.core.settings import LimitSettings
from rawinfer.tenancy.limits import SharedCall
from rawinfer.tenancy.shared_limiter import SharedLimiter


class LimiterConfig(BaseModel):
    """What the app builder binds: the window of LimitSettings (its default, when not given)."""

    model_config = ConfigDict(extra="forbid")

    window_s: float = LimitSettings.model_fields["window_s"].default


@serve.deployment(
    name="rate_limiter",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0.02},
    max_ongoing_requests=1000,
    health_check_period_s=2,
)
class RateLimiterDeployment:
    def __init__(self, config: dict[str, Any] | None = None):
        self.state = SharedLimiter(window_s=LimiterConfig.model_validate(config or {}).window_s)

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        """`{"op": "lease"|"acquire"|"give_back"|"debit"|"batch", ...}` (see
        SharedLimiter.handle)."""
        return self.state.handle(request)


def shared_caller(handle) -> SharedCall:
    """The async callable a LocalLimiter takes, over this deployment's handle."""

    async def call(request: dict[str, Any]) -> dict[str, Any]:
        return await handle.remote(request)

    return call
