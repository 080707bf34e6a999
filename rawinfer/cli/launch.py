"""Deploy serve_config.yaml into a running Ray the way `serve run` does (Serve's config path, so
per-deployment options apply as in production), with a few overrides (port, database, settings)
and, on a multi-node cluster, placement by node kind (`place_by_node_kind`). `make run` uses
`serve run` itself; tests and benchmarks call `deploy()` inside their own Ray;
`scripts/cluster.sh` runs `python -m rawinfer.cli.launch --node-kinds` (docs/deploy.md)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import yaml

from rawinfer.core.settings import REPO_ROOT
from router.proxy import PROXY_ENV

# What a Ray that serves rawinfer starts with (scripts/run.sh exports the same): Serve's proxy
# callback, and workers at niceness 0 (Ray's default, 15, lets any other process on the node,
# a load generator or a sidecar, preempt the replicas; docs/operations.md)
SERVING_ENV = {**PROXY_ENV, "RAY_worker_niceness": "0"}

# Node kinds on a cluster (docs/deploy.md): a custom resource each node of a kind advertises
# (`ray start --resources '{"model_node": 1}'`), a small amount of which each replica asks for.
MODEL_NODE, SERVICE_NODE = "model_node", "cpu_node"
SERVICE_ENGINES = frozenset({"provider"})  # cloud proxies: CPU only, next to the ingress
SERVICE_DEPLOYMENTS = frozenset({"ingress", "rate_limiter", "semantic_cache"})


def load_config(
    path: Path | str = REPO_ROOT / "serve_config.yaml",
    *,
    port: int | None = None,
    settings: dict[str, Any] | None = None,
    catalog: str | None = None,
    deployments: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The config as a dict with overrides applied to its first application."""
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config = copy.deepcopy(config)
    if port is not None:
        config.setdefault("http_options", {})["port"] = port
    app = config["applications"][0]
    args = app.setdefault("args", {})
    if settings:
        args["settings"] = {**args.get("settings", {}), **settings}
    if catalog:
        args["catalog"] = catalog
    for d in app.get("deployments", []):
        d.update((deployments or {}).get(d["name"], {}))
    return config


def place_by_node_kind(
    config: dict[str, Any],
    *,
    model: str = MODEL_NODE,
    service: str = SERVICE_NODE,
    amount: float = 0.01,
) -> dict[str, Any]:
    """`config` with every deployment of its first app asking for `amount` of its node kind's
    resource: model backends (local engines and plugins) `model`, the ingress, the shared limiter
    and cache and the cloud proxies `service`. Plugin deployments, which the file does not list,
    get entries of their own with their manifest's resources. What the KubeRay manifest does with
    GPUs and node groups, for nodes that differ only by the resource they advertise."""
    from rawinfer.core.catalog import load_catalog
    from rawinfer.core.settings import Settings
    from rawinfer.plugins.discovery import deployment_options, with_plugins

    config = copy.deepcopy(config)
    app = config["applications"][0]
    args = app.get("args", {})
    settings = Settings(**args.get("settings", {}))
    path = Path(args.get("catalog") or settings.catalog_path)
    catalog = with_plugins(
        load_catalog(path if path.is_absolute() else REPO_ROOT / path), settings.plugins_dirs
    )
    entries = {d["name"]: d for d in app.setdefault("deployments", [])}
    for name, spec in catalog.backends.items():
        if spec.configured and spec.engine == "plugin" and name not in entries:
            entries[name] = {"name": name, **deployment_options(spec)}
            app["deployments"].append(entries[name])
    for name, entry in entries.items():
        spec = catalog.backends.get(name)
        engine = spec.engine if spec is not None else None
        kind = service if name in SERVICE_DEPLOYMENTS or engine in SERVICE_ENGINES else model
        actor = entry.setdefault("ray_actor_options", {})
        actor["resources"] = {**actor.get("resources", {}), kind: amount}
    return config


def main(argv: list[str] | None = None) -> None:
    """`python -m rawinfer.cli.launch [--config F] [--node-kinds] [--port N]`: deploys into the
    running Ray (`ray start` first; scripts/cluster.sh)."""
    import argparse

    import ray

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--config", default=str(REPO_ROOT / "serve_config.yaml"))
    p.add_argument("--port", type=int)
    p.add_argument("--node-kinds", action="store_true", help="place by node kind (model_node...)")
    p.add_argument(
        "--proxy-location",
        choices=["EveryNode", "HeadOnly"],
        help="HeadOnly where nodes share one machine (every proxy would bind the same port)",
    )
    p.add_argument("--timeout-s", type=float, default=600)
    a = p.parse_args(argv)
    config = load_config(a.config, port=a.port)
    if a.proxy_location:
        config["proxy_location"] = a.proxy_location
    if a.node_kinds:
        config = place_by_node_kind(config)
    ray.init(address="auto", namespace="serve", log_to_driver=False, logging_level="ERROR")
    deploy(config, timeout_s=a.timeout_s)
    print(f"deployed {a.config}" + (" (placed by node kind)" if a.node_kinds else ""))


def deploy(config: dict[str, Any], timeout_s: float = 300) -> None:
    """Deploys into the Ray this process is connected to and waits until every app in `config` is
    RUNNING. Like `serve deploy`, the config is the whole truth: apps it does not name are
    deleted."""
    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
    )
    client.deploy_apps(schema, _blocking=False)
    names = [a.name for a in schema.applications]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        apps = serve.status().applications
        failed = [n for n in names if n in apps and apps[n].status == "DEPLOY_FAILED"]
        if failed:
            raise RuntimeError(f"Serve app {failed[0]} failed to deploy: {apps[failed[0]].message}")
        if all(n in apps and apps[n].status == "RUNNING" for n in names):
            return
        time.sleep(0.5)
    apps = serve.status().applications
    waiting = {
        f"{n}/{d}": f"{s.status}: {s.message}"
        for n in names
        if n in apps
        for d, s in apps[n].deployments.items()
        if s.status != "HEALTHY"
    }
    raise TimeoutError(
        f"Serve apps {names} not RUNNING after {timeout_s} s; not healthy: {waiting}"
    )


if __name__ == "__main__":
    main()
