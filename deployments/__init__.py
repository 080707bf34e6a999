"""Ray Serve deployments wrapping the engines in models/. REGISTRY maps a catalog backend's
`engine` to its deployment class; the app builder binds one deployment per configured backend.

The registry imports a deployment's module when its engine is first looked up, not here: every
replica imports this package (Serve unpickles its class by module path), and each should import
only its own engine's libraries (a provider proxy never needs torch, vLLM or PyAV)."""

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
