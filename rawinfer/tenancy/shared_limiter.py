"""The shared limiter: the authoritative per-subject counters every ingress replica leases from
(one replica, deployments/limiter.py). Design: docs/notes/tenancy.md."""

from __future__ import annotations

import time
from typing import Any, Callable

from rawinfer.tenancy.limits import Grant, Subject, window_of


class SharedLimiter:
    """The authoritative per-subject window counters (single-threaded: one event loop)."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.time):
        # wall-clock windows: a restarted limiter keeps the same boundaries (its counts restart)
        self.window_s, self.clock = window_s, clock
        self._slots: dict[str, list[int]] = {}  # name -> [window, used]
        self._last_prune = 0.0

    def _window(self, name: str, now: float) -> tuple[int, float]:
        return window_of(name, now, self.window_s)

    def _slot(self, name: str, now: float) -> tuple[list[int], float]:
        w, reset = self._window(name, now)
        slot = self._slots.get(name)
        if slot is None or slot[0] != w:
            slot = self._slots[name] = [w, 0]
        if now - self._last_prune > self.window_s:
            self._prune(now)
        return slot, reset

    def _prune(self, now: float) -> None:
        self._last_prune = now
        for name in [n for n, s in self._slots.items() if s[0] != self._window(n, now)[0]]:
            del self._slots[name]

    def acquire(self, subject: Subject, cost: int = 1, now: float | None = None) -> Grant:
        """Takes `cost` units if that many are left (cost 0: admit while anything is left)."""
        slot, reset = self._slot(subject.name, self.clock() if now is None else now)
        left = subject.limit - slot[1]
        if left > 0 and left >= cost:
            slot[1] += cost
            return Grant(True, subject.limit, subject.limit - slot[1], reset, 0.0, slot[0])
        return Grant(False, subject.limit, max(left, 0), reset, reset, slot[0])

    def lease(self, subject: Subject, n: int, now: float | None = None) -> tuple[int, Grant]:
        """Up to n units now (at most half of what is left, at least 1 while any is left)."""
        slot, reset = self._slot(subject.name, self.clock() if now is None else now)
        left = subject.limit - slot[1]
        granted = 0 if left <= 0 else min(max(n, 1), max(1, left // 2))
        slot[1] += granted
        rest = max(subject.limit - slot[1], 0)
        return granted, Grant(
            granted > 0, subject.limit, rest, reset, 0.0 if granted else reset, slot[0]
        )

    def give_back(self, name: str, window: int, n: int, now: float | None = None) -> None:
        slot = self._slots.get(name)
        if slot is not None and slot[0] == window and n > 0:
            slot[1] = max(0, slot[1] - n)

    def debit(self, name: str, window: int, amount: int, now: float | None = None) -> None:
        """Charges tokens used after admission: to the current window, also when the request was
        admitted in an earlier one (a request that ends after its window still pays, now)."""
        if amount > 0:
            slot, _ = self._slot(name, self.clock() if now is None else now)
            slot[1] += amount

    def used(self, name: str) -> int:
        slot = self._slots.get(name)
        return slot[1] if slot else 0

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Plain data in and out: what the Serve deployment (and LocalLimiter) speak."""
        op = req["op"]
        if op == "batch":
            return {"results": [self.handle(r) for r in req["ops"]]}
        if op in ("lease", "acquire"):
            sub = Subject(**req["subject"])
            if op == "lease":
                granted, g = self.lease(sub, int(req["n"]))
            else:
                g = self.acquire(sub, int(req.get("cost", 1)))
                granted = int(req.get("cost", 1)) if g.allowed else 0
            return {
                "granted": granted,
                "allowed": g.allowed,
                "limit": g.limit,
                "remaining": g.remaining,
                "reset_s": g.reset_s,
                "retry_after_s": g.retry_after_s,
                "window": g.window,
            }
        if op == "give_back":
            self.give_back(req["name"], int(req["window"]), int(req["n"]))
        elif op == "debit":
            self.debit(req["name"], int(req["window"]), int(req["amount"]))
        else:
            raise ValueError(f"unknown limiter op {op!r}")
        return {"ok": True}
