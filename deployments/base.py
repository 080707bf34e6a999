"""What every backend deployment shares: errors cross the handle as plain data; typed engine
options (`EngineOptions`, defaults from the engine's signature) and `@serve.batch` settings."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from rawinfer.contract.errors import InferenceFailed, RawInferError, to_wire

log = logging.getLogger("rawinfer.backend")


class EngineOptions(BaseModel):
    """A backend's catalog `options`, typed: unknown keys are refused (a typo fails the replica
    at start, not silently)."""

    model_config = ConfigDict(extra="forbid")


def engine_defaults(engine: type) -> dict[str, Any]:
    """The defaults of an engine's keyword parameters: the one place they are written (the
    options models read them from here)."""
    return {
        name: p.default
        for name, p in inspect.signature(engine.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


class BatchSettings(BaseModel):
    """`@serve.batch` settings (Serve's `user_config`: serve_config.yaml may override them)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(ge=1)
    batch_wait_timeout_s: float = Field(ge=0)

    def over(self, user_config: dict[str, Any] | None) -> "BatchSettings":
        """These defaults with `user_config`'s values over them, validated."""
        return BatchSettings.model_validate(self.model_dump() | dict(user_config or {}))

    def apply(self, *methods: Any) -> None:
        for method in methods:
            method.set_max_batch_size(self.max_batch_size)
            method.set_batch_wait_timeout_s(self.batch_wait_timeout_s)


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
