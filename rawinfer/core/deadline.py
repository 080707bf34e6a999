"""A request's time budget inside a replica: engines call `check()` in their loops (per frame,
per segment, per batch), so work stops once the caller has had its 504 instead of running on."""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from rawinfer.contract.errors import DeadlineExceeded


class Deadline:
    """The remaining budget on the monotonic clock; `budget_s` None: no deadline."""

    def __init__(self, budget_s: float | None):
        self.budget_s = None if budget_s is None else float(budget_s)
        self.at = math.inf if budget_s is None else time.monotonic() + float(budget_s)

    @classmethod
    def of(cls, request: Mapping[str, Any]) -> "Deadline":
        """The deadline a backend call carries (`timeout_s`, set by the gateway)."""
        timeout = request.get("timeout_s")
        return cls(None if timeout is None else float(timeout))

    @classmethod
    def latest(cls, deadlines: list["Deadline"]) -> "Deadline":
        """For a batch of requests: work goes on while any of them still waits."""
        out = cls(None)
        out.at = max((d.at for d in deadlines), default=math.inf)
        return out

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def check(self, what: str) -> None:
        """Raises DeadlineExceeded once the budget is spent."""
        if time.monotonic() >= self.at:
            raise DeadlineExceeded(
                f"{what} did not finish within the request's {self.budget_s:g} s; it was stopped"
                if self.budget_s is not None
                else f"{what} did not finish within the request's deadline; it was stopped",
                {"deadline_s": self.budget_s},
            )


NEVER = Deadline(None)
