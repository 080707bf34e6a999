"""Ray Serve deployments wrapping the engines in models/. REGISTRY maps a catalog backend's
`engine` to its deployment class, imported on first look-up (each replica imports only its own
engine's libraries); `options_model` gives the typed model of a backend's catalog `options`."""

from __future__ import annotations

import importlib
from typing import Any


class _Registry(dict):
    """engine -> deployment class; values given as "module:attribute" are imported on first use."""

    def __getitem__(self, engine: str) -> Any:
        value = super().__getitem__(engine)
        if isinstance(value, str):
            module, _, attr = value.partition(":")
            value = getattr(importlib.import_module(module), attr)
            super().__setitem__(engine, value)
        return value

    def get(self, engine: str, default: Any = None) -> Any:
        return self[engine] if engine in self else default


REGISTRY = _Registry(
    {
        "chat": "deployments.chat:ChatDeployment",
        "clip": "deployments.clip:ClipDeployment",
        "plugin": "deployments.plugin:PluginDeployment",
        "provider": "deployments.provider:ProviderDeployment",
        "text_embedding": "deployments.text_embedding:TextEmbeddingDeployment",
        "transcription": "deployments.transcription:TranscriptionDeployment",
    }
)

_OPTIONS = {
    "chat": "deployments.chat:ChatOptions",
    "clip": "deployments.clip:ClipOptions",
    "plugin": "deployments.plugin:PluginOptions",
    "text_embedding": "deployments.text_embedding:TextEmbeddingOptions",
    "transcription": "deployments.transcription:TranscriptionOptions",
}


def options_model(engine: str, provider: str = "local") -> Any:
    """The pydantic model a backend's `options` must validate against (unknown keys refused)."""
    if engine == "provider":
        from deployments.provider import provider_options

        return provider_options(provider)
    module, _, attr = _OPTIONS[engine].partition(":")
    return getattr(importlib.import_module(module), attr)
