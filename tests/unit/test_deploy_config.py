"""The deployment configuration, checked offline (no Ray cluster, no GPU, no Kubernetes):

(a) both Serve configs validate with Ray's own `ServeDeploySchema`, and with a strict walk over
    its pydantic models (the schema itself accepts unknown keys, "forward-compatible": a typo
    such as `num_gpu` would be silently dropped); their import paths import; the app graph builds
    (`build_app` binds deployments without Ray) and every `deployments:` entry names a deployment
    of the app, with options that Serve's `Deployment.options` accepts;
(b) every KubeRay manifest in k8s/ validates against the CRD's real `openAPIV3Schema`
    (vendored in k8s/crds) with jsonschema, and with a strict walk that refuses any key the schema
    does not declare: the API server prunes unknown fields without a word, so a typo'd field
    would otherwise vanish at `kubectl apply`;
(c) k8s/rayservice.yaml's serveConfigV2 is what scripts/gen_k8s.py makes of serve_config.gpu.yaml;
(d) the plain Kubernetes manifests have the expected kinds and agree with each other.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SERVE_CONFIGS = {"cpu": REPO / "serve_config.yaml", "gpu": REPO / "serve_config.gpu.yaml"}

# Engines that catalog.gpu.yaml uses before deployments.REGISTRY has them. Remove each one as its
# deployment lands in REGISTRY; the GPU app graph is built with a stand-in for these meanwhile.
PENDING_ENGINES: list[str] = []

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


def load_docs(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=_Loader) if d is not None]


@lru_cache(maxsize=None)
def serve_config(which: str) -> dict[str, Any]:
    return load_yaml(SERVE_CONFIGS[which])


def gen_k8s():
    spec = importlib.util.spec_from_file_location("gen_k8s", REPO / "scripts" / "gen_k8s.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ================================================================ (a) Serve configs


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, Union, List, Dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def unknown_serve_keys(data: Any, model: type[pydantic.BaseModel], path: str = "") -> list[str]:
    """Keys of `data` that `model` (recursively) does not declare. Fields typed as free dicts
    (args, user_config, runtime_env, resources) are not descended into."""
    if not isinstance(data, dict):
        return []
    fields = model.model_fields
    by_name = {name: f for name, f in fields.items()} | {
        f.alias: f for f in fields.values() if f.alias
    }
    bad: list[str] = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        field = by_name.get(key)
        if field is None:
            bad.append(f"{where} (not a field of {model.__name__})")
            continue
        subs = _models_in(field.annotation)
        if not subs:
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                here = f"{where}[{i}]" if isinstance(value, list) else where
                # a Union of several models: a key is fine if any of them declares it
                per_model = [unknown_serve_keys(item, m, here) for m in subs]
                bad += min(per_model, key=len)
    return bad


def _deploy_schema():
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema


@pytest.mark.parametrize("which", sorted(SERVE_CONFIGS))
def test_serve_config_validates(which):
    ServeDeploySchema = _deploy_schema()
    schema = ServeDeploySchema.model_validate(serve_config(which))
    assert [a.name for a in schema.applications] == ["rawinfer"]
    assert unknown_serve_keys(serve_config(which), ServeDeploySchema) == []


def test_serve_strict_walk_catches_typos():
    """ServeDeploySchema is lenient by design; the strict walk is what catches a typo."""
    ServeDeploySchema = _deploy_schema()
    bad = copy.deepcopy(serve_config("gpu"))
    dep = bad["applications"][0]["deployments"][1]
    dep["ray_actor_options"]["num_gpu"] = 1
    dep["autoscaling_config"]["min_replica"] = 2
    dep["max_ongoing_request"] = 3
    bad["http_options"]["request_timeout"] = 5
    ServeDeploySchema.model_validate(bad)  # accepted: Serve would ignore all four
    found = unknown_serve_keys(bad, ServeDeploySchema)
    for key in (
        "applications[0].deployments[1].ray_actor_options.num_gpu",
        "applications[0].deployments[1].autoscaling_config.min_replica",
        "applications[0].deployments[1].max_ongoing_request",
        "http_options.request_timeout",
    ):
        assert any(f.startswith(key + " ") for f in found), (key, found)


@pytest.mark.parametrize("which", sorted(SERVE_CONFIGS))
def test_import_paths_import(which):
    for app in serve_config(which)["applications"]:
        module, _, attr = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), app["import_path"]


def _app_args(which: str) -> dict[str, Any]:
    return copy.deepcopy(serve_config(which)["applications"][0].get("args", {}))


def _build_and_check(which: str) -> dict[str, Any]:
    """Builds the app graph offline and checks the config's `deployments:` against it: every name
    exists, and Serve's Deployment.options accepts every override (this validates the values, e.g.
    autoscaling bounds, which ServeDeploySchema keeps as a plain dict)."""
    from ray.serve._private.build_app import build_app as serve_build
    from ray.serve.deployment import Application

    from rawinfer.core.catalog import load_catalog
    from router.builder import build_app

    args = _app_args(which)
    app = build_app(args)
    assert isinstance(app, Application)
    built = serve_build(app, name="rawinfer")
    deployments = {d.name: d for d in built.deployments}
    from rawinfer.core.settings import Settings
    from rawinfer.plugins.discovery import with_plugins

    catalog = with_plugins(
        load_catalog(REPO / args["catalog"]), Settings(**args.get("settings", {})).plugins_dirs
    )
    expected = {"ingress", "rate_limiter", "semantic_cache"} | {
        name for name, b in catalog.backends.items() if b.configured
    }
    assert set(deployments) == expected
    assert built.ingress_deployment_name == "ingress"
    overrides = serve_config(which)["applications"][0].get("deployments", [])
    names = [o["name"] for o in overrides]
    assert len(names) == len(set(names)), f"a deployment is configured twice: {names}"
    unknown = set(names) - set(deployments)
    assert not unknown, (
        f"{SERVE_CONFIGS[which].name} configures deployments the app lacks: {unknown}"
    )
    for o in overrides:
        deployments[o["name"]].options(**{k: v for k, v in o.items() if k != "name"})
    return {
        "deployments": deployments,
        "catalog": catalog,
        "overrides": {o["name"]: o for o in overrides},
    }


def test_cpu_app_builds_offline():
    import ray

    before = ray.is_initialized()  # the suite's `service` fixture may have started one already
    _build_and_check("cpu")
    assert ray.is_initialized() == before, "building the app graph must not start Ray"


def test_gpu_catalog_engines_are_registered_or_pending():
    from deployments import REGISTRY
    from rawinfer.core.catalog import load_catalog

    catalog = load_catalog(REPO / _app_args("gpu")["catalog"])
    engines = {b.engine for b in catalog.backends.values()}
    missing = engines - set(REGISTRY) - set(PENDING_ENGINES)
    assert not missing, (
        f"catalog.gpu.yaml uses engines neither in deployments.REGISTRY nor pending: {missing}"
    )


def test_gpu_app_builds_offline(monkeypatch):
    """The GPU config's graph, built without GPUs: build_app only binds. Engines still pending get a
    stand-in deployment so that names and options are checked today."""
    from ray import serve

    import deployments

    @serve.deployment
    class PendingEngineStandIn:
        def __init__(self, spec: dict[str, Any]):
            self.spec = spec

    for engine in PENDING_ENGINES:
        if engine not in deployments.REGISTRY:
            monkeypatch.setitem(deployments.REGISTRY, engine, PendingEngineStandIn)
    built = _build_and_check("gpu")
    # every GPU catalog backend has its resources in the config, not only the class defaults
    assert set(built["overrides"]) == set(built["deployments"])


def test_gpu_config_resources():
    from rawinfer.core.catalog import load_catalog

    catalog = load_catalog(REPO / _app_args("gpu")["catalog"])
    overrides = {d["name"]: d for d in serve_config("gpu")["applications"][0]["deployments"]}
    for name, o in overrides.items():
        opts = o.get("ray_actor_options", {})
        backend = catalog.backends.get(name)
        local_gpu = (
            backend is not None
            and backend.provider == "local"
            and backend.options.get("device", "cuda") == "cuda"
        )
        if local_gpu:
            assert 0 < opts.get("num_gpus", 0) <= 1, (
                f"{name}: a local model on the GPU cluster needs num_gpus"
            )
        else:
            assert not opts.get("num_gpus"), f"{name}: ingress and provider proxies run on CPU"
        if backend is not None and backend.provider != "local":
            assert opts.get("num_cpus", 1) <= 0.25 and o["max_ongoing_requests"] >= 128, name
        if name in (
            "rate_limiter",
            "semantic_cache",
        ):  # their state lives in one replica: never autoscaled
            assert o["num_replicas"] == 1 and "autoscaling_config" not in o
            continue
        a = o["autoscaling_config"]
        assert 1 <= a["min_replicas"] <= a["max_replicas"], name
    assert overrides["chat"]["ray_actor_options"]["num_gpus"] == 1
    # the models that share a GPU fit on one together
    assert (
        sum(
            overrides[n]["ray_actor_options"]["num_gpus"]
            for n in ("text_embedding", "whisper", "clip")
        )
        <= 1
    )


def _names(target) -> set[tuple[str, ...]]:
    names: set[tuple[str, ...]] = set()
    if target.provider is not None:
        names.add(("provider+model", target.provider, target.model))
    if target.inference_name is not None:
        names.add(("inference_name", target.inference_name))
    return names | {("feature_uri", u) for u in target.feature_uris}


def test_gpu_catalog_keeps_the_default_target_names():
    """A client written against the embedded default keeps working on the production catalog:
    every role name of catalog.yaml (inference names, feature URIs, routed cloud names such as
    openai/whisper-1) is in catalog.gpu.yaml, with at least the same tasks. `local/<model>` pairs
    name one specific model (e.g. local/all-minilm-l6-v2, 384-d) and are not carried over: another
    model answering them would change the vectors' meaning and size."""
    from rawinfer.core.catalog import load_catalog

    default = load_catalog(REPO / "catalog.yaml")
    gpu = load_catalog(REPO / "catalog.gpu.yaml")
    tasks = {
        n: set(default.backends[t.backend].tasks)
        for t in default.targets
        for n in _names(t)
        if n[:2] != ("provider+model", "local")
    }
    gpu_tasks = {n: set(gpu.backends[t.backend].tasks) for t in gpu.targets for n in _names(t)}
    missing = set(tasks) - set(gpu_tasks)
    assert not missing, (
        f"add these catalog.yaml names to catalog.gpu.yaml (same task, production model): {missing}"
    )
    for n, wanted in tasks.items():
        assert wanted <= gpu_tasks[n], f"{n} loses tasks in production: {wanted - gpu_tasks[n]}"


# ================================================================ (b) KubeRay manifests


_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# ================================================================ (c) serveConfigV2


# ================================================================ (d) plain Kubernetes manifests
