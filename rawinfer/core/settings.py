"""Typed configuration, read once.

`Settings()` reads `RAWINFER_*` environment variables (nested with `__`, e.g.
`RAWINFER_MEDIA__MAX_BYTES`) when it is constructed, never at import. The app builder constructs
it once in the driver and hands plain data to every deployment; tests construct their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_NAMESPACE = "dev"  # the namespace of the development key `make run` creates


class LimitSettings(BaseModel):
    """Defaults for keys and namespaces that set no limit of their own (None: unlimited)."""

    enabled: bool = True
    key_rpm: int | None = Field(None, ge=0)
    key_tpm: int | None = Field(None, ge=0)
    namespace_rpm: int | None = Field(None, ge=0)
    namespace_tpm: int | None = Field(None, ge=0)
    window_s: float = Field(60.0, gt=0)
    lease_fraction: float = Field(
        0.1, gt=0, le=1, description="largest lease, as a share of the limit"
    )
    idle_return_s: float = Field(
        1.0, gt=0, description="unspent leased units idle this long go back"
    )
    call_timeout_s: float = Field(
        1.0, gt=0, description="longest wait for the shared limiter; then fail_open decides"
    )
    deny_cache_s: float = Field(0.2, ge=0, description="a denial is reused locally this long")
    fail_open: bool = True
    key_max_concurrent: int | None = Field(
        64,
        ge=1,
        description="requests one key may have in flight on one ingress replica (None: no cap); "
        "past it, a 429 at once",
    )
    provider_max_output_tokens: int | None = Field(
        65_536,
        ge=1,
        description="prompts x max_tokens one chat or vision request may ask of a cloud provider "
        "(what it can spend at once; None: no cap); past it, a 400",
    )
    provider_max_calls: int | None = Field(
        64,
        ge=1,
        description="upstream calls one request may make to a cloud provider (a chat prompt is "
        "one call, a Vertex multimodal text is one call; None: no cap); past it, a 400",
    )
    admin_rpm: int = Field(
        120,
        ge=1,
        description="admin API calls one admin key may make a minute, per ingress replica",
    )


class LedgerSettings(BaseModel):
    max_buffer: int = Field(
        10_000, ge=1, description="rows kept in memory; more go to the spool file"
    )
    flush_interval_s: float = Field(1.0, gt=0)
    batch_size: int = Field(500, ge=1)
    retry_max_s: float = Field(30.0, gt=0, description="longest wait between database retries")
    spool_dir: Path | None = Field(
        None,
        description="default: usage-spool/ beside the cache_dir; a persistent "
        "local disk in production (a pod's volume), one per replica host",
    )


class SemanticCacheSettings(BaseModel):
    enabled: bool = Field(
        True, description="deploy the shared cache; requests opt in with enable_semantic_cache"
    )
    default_max_error_rate: float = Field(
        0.02, ge=0, le=1, description="δ when a request leaves it null"
    )
    allow_temperature_above_zero: bool = Field(
        False,
        description="cache sampled (temperature > 0) requests too; "
        "off: only greedy requests use the cache",
    )
    max_entries: int = Field(
        10_000, ge=1, description="entries over all partitions; the least recently used go first"
    )
    snapshot_path: Path | None = Field(
        None, description="default: semantic-cache.npz in Settings.cache_dir"
    )
    snapshot_interval_s: float = Field(
        60.0, gt=0, description="how often a changed cache is written to its snapshot"
    )
    judge: Literal["exact", "embedding", "llm"] = Field(
        "exact",
        description="how a fresh answer is compared with the cached one: normalised exact match, "
        "embedding similarity (judge_similarity), or an LLM asked through the judge_backend "
        "chat deployment",
    )
    judge_similarity: float = Field(
        0.95, ge=0, le=1, description="the embedding judge's cosine threshold"
    )
    judge_backend: str = Field("chat", description="chat backend the LLM judge asks")
    embedding_backend: str = Field(
        "text_embedding", description="text-embedding backend that embeds prompts"
    )
    min_observations: int = Field(
        4,
        ge=0,
        description="observations an entry needs (besides vCache's two priors) before it may "
        "be served; "
        "the reference implementation's 6 includes the priors",
    )
    seed: int | None = Field(
        None, description="seed of the explore/exploit draws (tests); None: random"
    )
    dedupe_similarity: float = Field(
        0.9999,
        gt=0,
        le=1,
        description="a new entry this close to an existing one in its partition is not added "
        "(concurrent misses of one prompt); the pair is judged and recorded as an "
        "observation instead",
    )
    namespace_max_entries: int | None = Field(
        None,
        ge=1,
        description="entries one namespace may hold in the semantic tier; a namespace at its "
        "quota evicts its own least recently used entry, never another's (None: only max_entries)",
    )
    max_background_tasks: int = Field(
        256,
        ge=1,
        description="judging, learning and exact-tier writes each ingress replica runs off the "
        "request path at once; past it new ones are dropped and counted (the cache learns less, "
        "no request waits)",
    )
    hnsw_m: int = Field(16, ge=2)
    hnsw_ef: int = Field(64, ge=1, description="search breadth (hnswlib ef)")
    hnsw_ef_construction: int = Field(100, ge=1)
    call_timeout_s: float = Field(
        5.0,
        gt=0,
        description="cap on the embedding and lookup before a request goes to the model uncached",
    )
    exact: bool = Field(
        True,
        description="the exact tier: a deterministic request (temperature 0 or a fixed seed) whose "
        "normalised prompt was answered before in its partition is answered from that",
    )
    exact_max_entries: int = Field(100_000, ge=1, description="the shared exact tier's entries")
    exact_max_bytes: int = Field(256 * 2**20, ge=1, description="the shared exact tier's bytes")
    exact_namespace_max_entries: int | None = Field(
        None, ge=1, description="entries one namespace may hold in the exact tier (None: no quota)"
    )
    exact_local_entries: int = Field(
        2048, ge=0, description="each ingress replica's own exact LRU (0: ask the shared tier)"
    )
    exact_local_bytes: int = Field(32 * 2**20, ge=1)
    exact_local_ttl_s: float = Field(
        10.0,
        gt=0,
        description="how long an ingress replica keeps an exact answer (a clear "
        "reaches every replica within this)",
    )
    exact_audit_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="exact hits also answered by the model, off the request path, and judged: "
        "the audited error in the cache stats",
    )


class MediaSettings(BaseModel):
    """Caps and rules for media given by URL or base64 (shared by every media task)."""

    max_bytes: int = Field(50 * 1024 * 1024, description="cap on a fetched or decoded media body")
    fetch_timeout_s: float = Field(
        20.0, description="total time to fetch one URL, redirects included"
    )
    connect_timeout_s: float = 5.0
    max_redirects: int = 5
    allow_cidrs: list[str] = Field(
        default_factory=list,
        description="networks (e.g. 127.0.0.0/8) that URL fetches may reach although they are "
        "loopback/private/link-local; empty in production",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAWINFER_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{REPO_ROOT / '.rawinfer' / 'rawinfer.db'}",
        description="SQLAlchemy URL of the keys/namespaces/usage store",
    )
    catalog_path: Path = Field(default_factory=lambda: REPO_ROOT / "catalog.yaml")
    cache_dir: Path = Field(
        default_factory=lambda: REPO_ROOT / ".rawinfer" / "cache",
        description="where one-time model preparation writes (joined whisper, converted GGUF) "
        "and the "
        "semantic cache's snapshot",
    )
    dev_key_file: Path = Field(
        default_factory=lambda: REPO_ROOT / ".rawinfer" / "dev-key",
        description="the development key `make run` creates (rawinfer dev-init); `rawinfer batch` "
        "uses it against a local service when no key variable is set",
    )
    admin_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve /v1/admin on this port of its own (each ingress replica listens on it) "
        "and answer 404 for it on the public port; None: admin shares the public port",
    )
    admin_host: str = Field(
        "127.0.0.1", description="the address the admin port binds (0.0.0.0 in a pod)"
    )
    request_timeout_s: float = Field(60.0, gt=0)
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    auth_cache_ttl_s: float = Field(
        5.0, ge=0, description="how long a key lookup is reused; revocation takes effect within it"
    )
    plugins_dirs: list[Path] = Field(
        default_factory=lambda: [REPO_ROOT / "examples" / "plugins"],
        description="folders searched for plugin folders (docs/plugins.md), besides the "
        "`rawinfer.plugins` "
        "entry points; e.g. RAWINFER_PLUGINS_DIRS='[\"/srv/plugins\"]'",
    )
    plugins_embedding_backend: str = Field(
        "text_embedding",
        description="the catalog backend that answers plugins' `context.embed()` (docs/plugins.md)",
    )
    media: MediaSettings = Field(default_factory=MediaSettings)
    limits: LimitSettings = Field(
        default_factory=LimitSettings, description="rate-limit defaults (None: unlimited)"
    )
    usage: LedgerSettings = Field(
        default_factory=LedgerSettings, description="the usage ledger's buffering"
    )
    semantic_cache: SemanticCacheSettings = Field(
        default_factory=SemanticCacheSettings,
        description="the shared semantic cache (vCache) for chat and vision",
    )
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per cloud provider: api_key (or api_key_file, a mounted secret), base_url, "
        "timeout_s, max_retries, ... (models.providers.base.ProviderSettings); "
        "e.g. RAWINFER_PROVIDERS__OPENAI__API_KEY. "
        "Read by each provider deployment itself: never passed between processes",
    )
