"""One request's state at the ingress: what the gateway learns as it serves the request, and what
the metrics, the usage ledger and the response headers read after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, MutableMapping

from rawinfer.core.catalog import price_on

SCOPE_KEY = "rawinfer"  # where the state lives in the ASGI scope's "state" dict


@dataclass
class RequestState:
    request_id: str | None = None
    key_id: str | None = None  # set once the key is checked: only such requests are metered
    org_id: str | None = None
    namespace: str | None = None
    target: str | None = None
    backend: str | None = None
    task: str | None = None
    tokens: dict[str, int] = field(default_factory=dict)  # prompt, completion, total
    audio_seconds: float = 0.0
    media_bytes: int = 0
    cache_hit: bool | None = None  # None: the semantic cache was not consulted
    prices: tuple[Any, ...] = ()  # the target's price table (rawinfer.core.catalog.Price)
    release: Callable[[], None] | None = None  # the key's in-flight slot, freed by finish()
    rate_headers: dict[str, str] | None = None  # X-RateLimit-* for the response

    def authenticated(self, key: Any, namespace: Any) -> None:
        self.key_id, self.org_id, self.namespace = key.id, key.org_id, namespace.id

    def finish(self) -> None:
        """The request is over (its response sent or abandoned): free what it held."""
        release, self.release = self.release, None
        if release is not None:
            release()

    def cost(self, day: date) -> float:
        """What the request cost at the target's price on `day`: the tokens and audio the model
        spent (a cache hit spent none), 0 when the target has no price."""
        price = price_on(self.prices, day)
        if price is None or self.cache_hit:
            return 0.0
        prompt, completion = self.tokens.get("prompt", 0), self.tokens.get("completion", 0)
        return price.cost(prompt, completion, self.audio_seconds)


def state_of(scope: MutableMapping[str, Any]) -> RequestState:
    """The request's state, made on first use (an ASGI scope, or a Starlette request's scope)."""
    holder = scope.setdefault("state", {})
    state = holder.get(SCOPE_KEY)
    if state is None:
        state = holder[SCOPE_KEY] = RequestState()
    return state
