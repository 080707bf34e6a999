"""Ray Serve deployments wrapping the engines in models/. A catalog backend's `engine` names its
module here, `deployments/<engine>.py`, which defines `DEPLOYMENT` (the class) and `OPTIONS` (the
typed model of the backend's catalog `options`); REGISTRY imports a module on first look-up, so
each replica imports only its own engine's libraries. The other modules are the service's own."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

SERVICE_MODULES = frozenset({"base", "limiter", "semantic_cache"})  # not engines
ENGINES = frozenset(m.name for m in pkgutil.iter_modules(__path__)) - SERVICE_MODULES


class _Registry(dict):
    """engine -> deployment class, imported from `deployments.<engine>` on first use."""

    def __init__(self, engines):
        super().__init__({e: None for e in engines})

    def __getitem__(self, engine: str) -> Any:
        value = super().__getitem__(engine)
        if value is None:
            value = importlib.import_module(f"deployments.{engine}").DEPLOYMENT
            super().__setitem__(engine, value)
        return value

    def get(self, engine: str, default: Any = None) -> Any:
        return self[engine] if engine in self else default


REGISTRY = _Registry(sorted(ENGINES))


def options_model(engine: str, provider: str = "local") -> Any:
    """The pydantic model a backend's `options` must validate against (unknown keys refused)."""
    if engine not in ENGINES:
        raise KeyError(engine)
    options = importlib.import_module(f"deployments.{engine}").OPTIONS
    return options(provider) if engine == "provider" else options
