"""The app builder serve_config.yaml names (`import_path: router.builder:build_app`).

`build_app(args)` reads Settings once (args override the environment), loads the catalog, binds
one deployment per configured backend (deployments.REGISTRY picks the class by `engine`) and the
ingress with handles to them. Everything the replicas receive is plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT, Settings
from rawinfer.plugins.discovery import deployment_options, with_plugins
from router.app import Ingress


def build_app(args: dict[str, Any] | None = None):
    """Serve's app builder (`import_path: router.builder:build_app`; `args:` in serve_config)."""
    from deployments import REGISTRY
    from deployments.limiter import RateLimiterDeployment
    from models.providers import ADAPTERS
    from models.providers.base import catalog_models

    args = dict(args or {})
    settings = Settings(**args.get("settings", {}))
    path = Path(args.get("catalog") or settings.catalog_path)
    catalog = load_catalog(path if path.is_absolute() else REPO_ROOT / path)
    # plugins (entry points and plugins_dirs): one deployment each; failures are listed, not raised
    catalog = with_plugins(catalog, settings.plugins_dirs)
    backends = {}
    for name, spec in catalog.backends.items():
        if spec.configured:
            data = spec.model_dump(mode="json") | {"cache_dir": str(settings.cache_dir)}
            if (
                spec.engine == "plugin"
            ):  # plugins embed through the service's text-embedding deployment
                backends[name] = (
                    REGISTRY[spec.engine]
                    .options(name=name, **deployment_options(spec))
                    .bind(data, backends.get(settings.plugins_embedding_backend))
                )
            else:
                if spec.engine == "provider":  # the catalog's model -> tasks table, checked there
                    data["models"] = catalog_models(catalog, name)
                backends[name] = REGISTRY[spec.engine].options(name=name).bind(data)
    # which cloud providers have credentials (the keys themselves stay in each provider replica)
    ready = {
        name: cls.settings_model.model_validate(settings.providers.get(name, {})).key() is not None
        for name, cls in ADAPTERS.items()
    }
    limiter = (
        RateLimiterDeployment.bind({"window_s": settings.limits.window_s})
        if settings.limits.enabled
        else None
    )
    return Ingress.bind(
        settings.model_dump(mode="json", exclude={"providers"}),
        catalog.model_dump(mode="json"),
        backends,
        ready,
        limiter,
        semantic_cache_deployment(settings, backends),
    )


def semantic_cache_deployment(settings: Settings, backends: dict[str, Any]):
    """The shared semantic cache (deployments/semantic_cache.py), if enabled and embedding runs."""
    from deployments.semantic_cache import SemanticCacheDeployment

    s = settings.semantic_cache
    if not s.enabled or s.embedding_backend not in backends:
        return None
    path = s.snapshot_path or settings.cache_dir / "semantic-cache.npz"
    return SemanticCacheDeployment.bind(
        {"settings": s.model_dump(mode="json"), "snapshot_path": str(path)}
    )
