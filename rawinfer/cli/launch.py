"""Deploy serve_config.yaml into a running Ray the way `serve run` does (Serve's config path, so
per-deployment options apply as in production), with a few overrides (port, database, settings).
`make run` uses `serve run` itself; tests and benchmarks call `deploy()` inside their own Ray."""

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
