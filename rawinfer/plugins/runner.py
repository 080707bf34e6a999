"""Running one plugin: load it once (keeping a load error instead of raising), run a batch of
requests through its `infer`, validate what comes back. Plain Python, no Ray: the Serve deployment
(deployments/plugin.py), `rawinfer plugins check` and the unit tests share it.

Results are per request: the data (the validated Outputs as plain JSON-able data) or a
RawInferError. A batch whose `infer` raises is run again one request at a time, so one request's
bad input fails that request only.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from rawinfer.contract.errors import InvalidRequest, PluginFailed, RawInferError, Unavailable
from rawinfer.core.deadline import NEVER, Deadline
from rawinfer.plugins.api import _DEADLINE, Plugin, PluginContext
from rawinfer.plugins.discovery import load_reference

log = logging.getLogger("rawinfer.plugins")


def field_errors(e: ValidationError, where: str) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(p) for p in (where, *err["loc"]) if p != ""),
            "message": err["msg"].removeprefix("Value error, "),
        }
        for err in e.errors(include_input=False, include_url=False)
    ][:50]


class PluginRunner:
    def __init__(
        self,
        ref: str,
        *,
        cache_dir: Path | str,
        plugin_dir: Path | str | None = None,
        label: str | None = None,
        embedder: Callable[[list[str]], Any] | None = None,
    ):
        self.ref, self.label = ref, label or ref
        self.embedder = embedder  # PluginContext.embed's backend (the service's text embedding)
        self.cache_dir, self.plugin_dir = Path(cache_dir), Path(plugin_dir) if plugin_dir else None
        self.plugin: Plugin | None = None
        self.load_error: str | None = None

    def load(self) -> None:
        """Imports and loads the plugin; a failure is kept in `load_error`, never raised."""
        try:
            cls = load_reference(self.ref)
            m = cls.manifest
            self.label = m.ref
            plugin = cls()
            plugin.load(
                PluginContext(
                    m.name,
                    m.version,
                    self.cache_dir,
                    self.plugin_dir,
                    device="cuda" if m.resources.num_gpus > 0 else "cpu",
                    embedder=self.embedder,
                )
            )
            self.plugin = plugin
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            log.exception("plugin %s failed to load", self.label)
            self.load_error = f"{type(e).__name__}: {e}"[:500]

    @property
    def status(self) -> dict[str, Any]:
        return {"plugin": self.label, "ready": self.plugin is not None, "error": self.load_error}

    def unavailable(self) -> Unavailable:
        return Unavailable(
            f"plugin {self.label} failed to load: {self.load_error}",
            {"plugin": self.label, "load_error": self.load_error},
        )

    async def run(self, requests: list[dict[str, Any]]) -> list[dict[str, Any] | RawInferError]:
        """Each request is `{"inputs": {...}, "parameters": {...}}` (already validated at the
        ingress; validated again here into the plugin's models), with an optional "deadline"
        (a Deadline): a request past it is not run; `infer` sees the latest of the batch's
        through api.time_left() / api.check_deadline()."""
        if self.plugin is None:
            return [self.unavailable() for _ in requests]
        m = self.plugin.manifest
        out: list[Any] = [None] * len(requests)
        ok: list[int] = []
        inputs, params, deadlines = [], [], []
        for i, r in enumerate(requests):
            deadline = r.get("deadline") or NEVER
            try:
                deadline.check(f"plugin {self.label}")  # it waited in the batch queue too long
            except RawInferError as e:
                out[i] = e
                continue
            try:
                inputs.append(m.Inputs.model_validate(r.get("inputs") or {}))
                params.append(m.Parameters.model_validate(r.get("parameters") or {}))
                deadlines.append(deadline)
                ok.append(i)
            except ValidationError as e:
                errors = field_errors(e, "inputs")
                out[i] = InvalidRequest(
                    f"{errors[0]['field']}: {errors[0]['message']}", {"errors": errors}
                )
        if ok:
            token = _DEADLINE.set(Deadline.latest(deadlines))  # to_thread copies the context
            try:
                results = await self._infer(inputs, params)
            except Exception as e:
                if len(ok) == 1:
                    results = [self._failure(e)]
                else:  # find the request that broke the batch: the others still succeed
                    results = [await self._one(x, p) for x, p in zip(inputs, params)]
            finally:
                _DEADLINE.reset(token)
            for i, res in zip(ok, results):
                out[i] = res
        return out

    async def _infer(
        self, inputs: list[BaseModel], params: list[BaseModel]
    ) -> list[dict[str, Any] | RawInferError]:
        infer = self.plugin.infer
        if inspect.iscoroutinefunction(infer):
            raw = await infer(inputs, params)
        else:
            raw = await asyncio.to_thread(infer, inputs, params)
        if not isinstance(raw, (list, tuple)) or len(raw) != len(inputs):
            got = f"{len(raw)} items" if isinstance(raw, (list, tuple)) else type(raw).__name__
            raise _BadOutputs(
                PluginFailed(
                    f"plugin {self.label} returned {got} for a batch of {len(inputs)}: "
                    "infer must return one Outputs per input",
                    {"plugin": self.label},
                )
            )
        return [self._validate(o) for o in raw]

    async def _one(self, x: BaseModel, p: BaseModel) -> dict[str, Any] | RawInferError:
        try:
            return (await self._infer([x], [p]))[0]
        except Exception as e:
            return self._failure(e)

    def _validate(self, o: Any) -> dict[str, Any] | RawInferError:
        model = self.plugin.manifest.Outputs
        try:
            value = o.model_dump() if isinstance(o, BaseModel) else o
            return model.model_validate(value).model_dump(mode="json")
        except (ValidationError, ValueError, TypeError) as e:
            errors = (
                field_errors(e, "outputs")
                if isinstance(e, ValidationError)
                else [{"field": "outputs", "message": str(e)[:200]}]
            )
            return PluginFailed(
                f"plugin {self.label} returned outputs that do not match its Outputs model "
                f"({errors[0]['field']}: {errors[0]['message']})",
                {"plugin": self.label, "errors": errors},
            )

    def _failure(self, e: Exception) -> RawInferError:
        if isinstance(e, _BadOutputs):
            return e.error
        if isinstance(e, RawInferError):
            return e  # the plugin's own InvalidRequest etc.
        log.error("plugin %s raised during inference", self.label, exc_info=e)
        return PluginFailed(
            f"plugin {self.label} failed during inference ({type(e).__name__}); "
            "the server log has the details",
            {"plugin": self.label, "exception": type(e).__name__},
        )


class _BadOutputs(Exception):
    def __init__(self, error: PluginFailed):
        super().__init__(error.message)
        self.error = error
