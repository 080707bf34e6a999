"""Resolution: a pure function from a request's addressing to a target, over the catalog (no
I/O, no Ray, no clock). Feature-URI rules: docs/notes/router.md#resolution."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rawinfer.contract import Task
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.catalog import Catalog, Price, TargetSpec

FEATURE_URI = re.compile(
    r"^mixpeek://(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)@(?P<version>[A-Za-z0-9][A-Za-z0-9_.+-]*)/(?P<output>[A-Za-z0-9][A-Za-z0-9_.-]*)$"
)
SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_SHOW = 25  # how many known names an error lists


@dataclass(frozen=True)
class Target:
    """What a request resolved to. `provider`/`served_model` are what the response reports."""

    backend: str
    tasks: frozenset[Task]
    provider: str
    served_model: str
    address: str  # how the client named it, for logs and metrics
    configured: bool = True
    engine: str = ""
    model: str | None = (
        None  # the catalog target's own model name (what a cloud proxy asks its provider for)
    )
    prices: tuple[Price, ...] = ()  # the catalog's price table of this target


@dataclass(frozen=True)
class Addressing:
    provider: str | None = None
    model: str | None = None
    inference_name: str | None = None
    feature_uri: str | None = None


class CatalogIndex:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.by_pair: dict[tuple[str, str], TargetSpec] = {}
        self.by_name: dict[str, TargetSpec] = {}
        self.by_uri: dict[str, str] = {}
        self.outputs: dict[str, frozenset[str]] = {}
        for t in catalog.targets:
            if t.provider is not None and t.model is not None:
                self.by_pair[(t.provider, t.model)] = t
            if t.inference_name is not None:
                self.by_name[t.inference_name] = t
                if t.outputs:
                    self.outputs[t.inference_name] = frozenset(t.outputs)
                for uri in t.feature_uris:
                    self.by_uri[uri] = t.inference_name

    def target(self, t: TargetSpec, address: str) -> Target:
        spec = self.catalog.backends[t.backend]
        return Target(
            backend=t.backend,
            tasks=frozenset(t.tasks if t.tasks is not None else spec.tasks),
            provider=spec.provider,
            served_model=t.model if spec.engine == "provider" and t.model else spec.served_model,
            address=address,
            configured=spec.configured,
            engine=spec.engine,
            model=t.model,
            prices=tuple(t.prices),
        )


def _known(names) -> list[str]:
    names = sorted(names)
    return names[:_SHOW] + ([f"... and {len(names) - _SHOW} more"] if len(names) > _SHOW else [])


def parse_feature_uri(uri: str) -> tuple[str, str, str]:
    m = FEATURE_URI.match(uri)
    if m is None:
        raise InvalidRequest(
            "feature_uri is malformed: expected mixpeek://{name}@{version}/{output}, "
            "e.g. mixpeek://text_extractor@v1/multilingual_e5_large_instruct_v1",
            {"feature_uri": uri[:200]},
        )
    return m["name"], m["version"], m["output"]


def resolve(addr: Addressing, index: CatalogIndex) -> Target:
    if addr.feature_uri is not None:
        return _resolve_uri(addr.feature_uri, index)
    if addr.inference_name is not None:
        spec = index.by_name.get(addr.inference_name)
        if spec is None:
            raise InvalidRequest(
                f"unknown inference_name {addr.inference_name!r}",
                {"tried": addr.inference_name, "known_inference_names": _known(index.by_name)},
            )
        return index.target(spec, addr.inference_name)
    if addr.provider is None or addr.model is None:
        raise InvalidRequest("give provider and model, inference_name, or feature_uri")
    providers = index.catalog.providers
    if addr.provider not in providers:
        raise InvalidRequest(
            f"unknown provider {addr.provider!r}; use one of {', '.join(providers)}",
            {"tried": addr.provider, "known_providers": list(providers)},
        )
    spec = index.by_pair.get((addr.provider, addr.model))
    if spec is None:
        models = [m for (p, m) in index.by_pair if p == addr.provider]
        raise InvalidRequest(
            f"unknown model {addr.model!r} for provider {addr.provider!r}",
            {"tried": f"{addr.provider}/{addr.model}", "known_models": _known(models)},
        )
    return index.target(spec, f"{addr.provider}/{addr.model}")


def _resolve_uri(uri: str, index: CatalogIndex) -> Target:
    name, version, output = parse_feature_uri(uri)
    tried = [f"built-in feature URI {uri}"]
    inference_name = index.by_uri.get(uri)
    if inference_name is None:
        m = SEMVER.match(version)
        if m is not None:
            candidate = f"{name}_{m[1]}_{m[2]}_{m[3]}"
            tried.append(f"plugin inference name {candidate}")
            outputs = index.outputs.get(candidate)
            if candidate in index.by_name and (not outputs or output in outputs):
                inference_name = candidate
            elif candidate in index.by_name:
                tried[-1] += f" (it has outputs {', '.join(sorted(outputs))}, not {output!r})"
        else:
            tried.append(f"no plugin name: version {version!r} is not MAJOR.MINOR.PATCH")
    if inference_name is None:
        raise InvalidRequest(
            f"feature_uri {uri!r} resolves to nothing; tried: {'; '.join(tried)}",
            {"tried": tried, "known_feature_uris": _known(index.by_uri)},
        )
    return index.target(index.by_name[inference_name], uri)


def addressing_for_model(name: str, index: CatalogIndex) -> Addressing:
    """How an OpenAI-compatible route's `model` names a target: `provider/model`
    (`local/smollm2-135m-instruct`, `openai/gpt-4o-mini`), an inference name, a feature URI, or a
    bare model name, tried as OpenAI's (the client is OpenAI's: `whisper-1`) and then as local."""
    if name.startswith("mixpeek://"):
        return Addressing(feature_uri=name)
    provider, sep, model = name.partition("/")
    if sep and provider in index.catalog.providers:
        return Addressing(provider=provider, model=model)
    if name in index.by_name:
        return Addressing(inference_name=name)
    for provider in ("openai", "local"):
        if (provider, name) in index.by_pair:
            return Addressing(provider=provider, model=name)
    known = [f"{p}/{m}" for p, m in index.by_pair] + list(index.by_name)
    raise InvalidRequest(
        f"unknown model {name!r}: use provider/model, an inference name or a feature URI",
        {"tried": name, "known_models": _known(known)},
    )
