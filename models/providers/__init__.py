"""Cloud providers proxied by light CPU deployments: one adapter class per provider name.

`ADAPTERS[name](settings)` builds an adapter from a `ProviderSettings` (or its subclass named by
the adapter's `settings_model`, e.g. `GoogleSettings`) or from a plain dict of the same fields.
The SDKs are imported when an adapter first calls its provider, not here.
"""

from __future__ import annotations

from models.providers.anthropic import AnthropicAdapter
from models.providers.base import ProviderAdapter, ProviderSettings
from models.providers.google import GoogleAdapter, GoogleSettings
from models.providers.openai import OpenAIAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    cls.name: cls for cls in (OpenAIAdapter, GoogleAdapter, AnthropicAdapter)
}

__all__ = [
    "ADAPTERS",
    "AnthropicAdapter",
    "GoogleAdapter",
    "GoogleSettings",
    "OpenAIAdapter",
    "ProviderAdapter",
    "ProviderSettings",
]
