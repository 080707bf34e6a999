"""Typed configuration, read once.

`Settings()` reads `RAWINFER_*` environment variables (nested with `__`, e.g.
`RAWINFER_MEDIA__MAX_BYTES`) when it is constructed, never at import. The app builder constructs
it once in the driver and hands plain data to every deployment; tests construct their own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rawinfer.ledger import LedgerSettings
from rawinfer.limits import LimitSettings
from rawinfer.semantic_cache.config import SemanticCacheSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


class MediaSettings(BaseModel):
    """Caps and rules for media given by URL or base64 (shared by every media task)."""

    max_bytes: int = Field(50 * 1024 * 1024, description="cap on a fetched or decoded media body")
    fetch_timeout_s: float = Field(20.0, description="total time to fetch one URL, redirects included")
    connect_timeout_s: float = 5.0
    max_redirects: int = 5
    allow_cidrs: list[str] = Field(
        default_factory=list,
        description="networks (e.g. 127.0.0.0/8) that URL fetches may reach although they are "
        "loopback/private/link-local; empty in production",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAWINFER_", env_nested_delimiter="__", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{REPO_ROOT / '.rawinfer' / 'rawinfer.db'}",
        description="SQLAlchemy URL of the keys/namespaces/usage store",
    )
    catalog_path: Path = Field(default_factory=lambda: REPO_ROOT / "catalog.yaml")
    cache_dir: Path = Field(
        default_factory=lambda: REPO_ROOT / ".rawinfer" / "cache",
        description="where one-time model preparation writes (joined whisper, converted GGUF) and the "
        "semantic cache's snapshot",
    )
    request_timeout_s: float = Field(60.0, gt=0)
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    auth_cache_ttl_s: float = Field(5.0, ge=0, description="how long a key lookup is reused; revocation takes effect within it")
    plugins_dirs: list[Path] = Field(
        default_factory=lambda: [REPO_ROOT / "plugins"],
        description="folders searched for plugin folders (docs/plugins.md), besides the `rawinfer.plugins` "
        "entry points; e.g. RAWINFER_PLUGINS_DIRS='[\"/srv/plugins\"]'",
    )
    plugins_embedding_backend: str = Field(
        "text_embedding", description="the catalog backend that answers plugins' `context.embed()` (docs/plugins.md)")
    media: MediaSettings = Field(default_factory=MediaSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings, description="rate-limit defaults (None: unlimited)")
    usage: LedgerSettings = Field(default_factory=LedgerSettings, description="the usage ledger's buffering")
    semantic_cache: SemanticCacheSettings = Field(
        default_factory=SemanticCacheSettings, description="the shared semantic cache (vCache) for chat and vision")
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per cloud provider: api_key (or api_key_file, a mounted secret), base_url, timeout_s, "
        "max_retries, ... (models.providers.base.ProviderSettings); e.g. RAWINFER_PROVIDERS__OPENAI__API_KEY. "
        "Read by each provider deployment itself: never passed between processes",
    )
