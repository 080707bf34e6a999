"""The ingress's view of plugins for GET /v1/inference/models: whether each plugin deployment's
`load()` succeeded (asked from its replica), and the plugins that were found but not served
(import error, invalid manifest, name clash: `Catalog.plugin_errors`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping

from rawinfer.contract.errors import is_wire_error
from rawinfer.core.catalog import BackendSpec, Catalog

STATUS_TIMEOUT_S = 5.0


async def load_status(catalog: Catalog, backends: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """backend name -> `{"ready": bool, "error": str | None}` of every running plugin deployment."""
    names = [n for n, b in catalog.backends.items() if b.engine == "plugin" and n in backends]

    async def one(name: str) -> dict[str, Any]:
        try:
            r = await asyncio.wait_for(backends[name]({"op": "status"}), STATUS_TIMEOUT_S)
        except Exception as e:  # Unavailable from the handle wrapper, a timeout
            return {
                "ready": False,
                "error": getattr(e, "message", None) or "its deployment does not answer",
            }
        if is_wire_error(r):
            return {"ready": False, "error": r["error"].get("message")}
        return dict(r.get("data") or {})

    return dict(zip(names, await asyncio.gather(*(one(n) for n in names))))


def describe(backend: BackendSpec, status: dict[str, Any] | None) -> dict[str, Any]:
    """What a plugin target's listing entry adds: its manifest summary, and its load error."""
    name, _, version = backend.served_model.partition("@")
    extra: dict[str, Any] = {
        "plugin": {
            "name": name,
            "version": version,
            "description": backend.options.get("description", ""),
            "tasks": backend.options.get("plugin_tasks", []),
            "outputs": backend.options.get("outputs", []),
        }
    }
    if status is not None and not status.get("ready", False):
        extra.update(status="unavailable", error=status.get("error") or "not loaded")
    return extra


def _source(source: str) -> str:
    """A folder as its last two path parts (no server paths in a response)."""
    return "/".join(Path(source).parts[-2:]) if source.startswith("/") else source


def failed_entries(catalog: Catalog) -> list[dict[str, Any]]:
    return [
        {
            "provider": None,
            "model": None,
            "inference_name": e.get("inference_name"),
            "feature_uris": e.get("feature_uris", []),
            "tasks": ["plugin"],
            "served_by": None,
            "status": "unavailable",
            "error": e.get("error"),
            "plugin": {
                "name": e.get("name"),
                "version": e.get("version"),
                "source": _source(e.get("source", "")),
            },
        }
        for e in catalog.plugin_errors
    ]
