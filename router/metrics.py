"""The service's own Prometheus metrics, recorded at the ingress with `ray.serve.metrics` (names
get Ray's `ray_` prefix), and the ASGI middleware that records every request after its response
started. See docs/operations.md for what is exported."""

from __future__ import annotations

import time

from router.state import RequestState, state_of

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]


class Metrics:
    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Histogram

        self.requests = Counter(
            "rawinfer_requests_total",
            description="Requests by route, target, namespace and status.",
            tag_keys=("route", "target", "namespace", "status"),
        )
        self.latency = Histogram(
            "rawinfer_request_latency_ms",
            description="Server-side latency in milliseconds.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("route", "target"),
        )
        self.tokens = Counter(
            "rawinfer_tokens_total",
            description="Tokens by target and kind (prompt, completion; cached_prompt, "
            "cached_completion for semantic cache hits).",
            tag_keys=("target", "kind"),
        )
        self.cache = Counter(
            "rawinfer_cache_total",
            description="Semantic cache lookups by target and result.",
            tag_keys=("target", "result"),
        )
        self.retries = Counter(
            "rawinfer_backend_retries_total",
            description="Requests sent again because the replica handling them died.",
            tag_keys=("backend",),
        )

    def replica_lost(self, backend: str) -> None:
        self.retries.inc(tags={"backend": backend})

    def observe(self, route: str, status: int, seconds: float, state: RequestState) -> None:
        target = state.target or "-"
        tags = {"route": route, "target": target, "namespace": state.namespace or "-"}
        self.requests.inc(tags={**tags, "status": str(status)})
        self.latency.observe(seconds * 1000, tags={"route": route, "target": target})
        cached = (
            "cached_" if state.cache_hit else ""
        )  # served from the semantic cache: no model work
        for kind, n in state.tokens.items():
            if kind in ("prompt", "completion") and n:
                self.tokens.inc(n, tags={"target": target, "kind": cached + kind})
        if state.cache_hit is not None:
            result = "hit" if state.cache_hit else "miss"
            self.cache.inc(tags={"target": target, "result": result})


class RequestObserver:
    """Pure ASGI middleware: adds the rate-limit headers the gateway left in the request state to
    the response, and after it hands (route, status, seconds, state) to each observer (metrics,
    the usage ledger), set once the replica starts."""

    observers: list = []

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                extra = state_of(scope).rate_headers
                if extra and status[0] != 429:
                    message["headers"] = list(message.get("headers", [])) + [
                        (k.lower().encode(), v.encode()) for k, v in extra.items()
                    ]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state_of(scope).finish()  # the key's in-flight slot, even when the client went away
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            for observe in self.observers:
                observe(route, status[0], time.perf_counter() - t0, state_of(scope))
