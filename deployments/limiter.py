"""The shared rate limiter as a Serve deployment: one replica, a sliver of CPU, plain data in and
out. It holds rawinfer.limits.SharedLimiter's counters; every ingress replica reaches it through a
handle and spends leased units locally (rawinfer.limits.LocalLimiter). One replica is the point:
it is the single authority for every window (a restart resets the counters, see limits.py).
"""

from __future__ import annotations

from typing import Any

from ray import serve

from rawinfer.tenancy.limits import SharedCall
from rawinfer.tenancy.shared_limiter import SharedLimiter


@serve.deployment(
    name="rate_limiter",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0.02},
    max_ongoing_requests=1000,
    health_check_period_s=2,
)
class RateLimiterDeployment:
    def __init__(self, config: dict[str, Any] | None = None):
        self.state = SharedLimiter(window_s=float((config or {}).get("window_s", 60.0)))

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        """`{"op": "lease"|"acquire"|"give_back"|"debit"|"batch", ...}` (see SharedLimiter.handle)."""
        return self.state.handle(request)


def shared_caller(handle) -> SharedCall:
    """The async callable a LocalLimiter takes, over this deployment's handle."""

    async def call(request: dict[str, Any]) -> dict[str, Any]:
        return await handle.remote(request)

    return call
