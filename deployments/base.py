"""What every backend deployment shares: errors cross the handle as plain data."""

from __future__ import annotations

import functools
import logging
from typing import Any, Awaitable, Callable

from rawinfer.contract.errors import InferenceFailed, RawInferError, to_wire

log = logging.getLogger("rawinfer.backend")


def guarded(method: Callable[..., Awaitable[dict[str, Any]]]):
    """Wraps a deployment's entry point: a RawInferError becomes its wire form, anything else an
    InferenceFailed that names the backend (the trace is logged here, never returned)."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except RawInferError as e:
            return to_wire(e)
        except Exception:
            log.exception("inference failed in %s", type(self).__name__)
            return to_wire(
                InferenceFailed(f"inference failed inside the model ({type(self).__name__})")
            )

    return wrapper
