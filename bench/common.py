"""Shared by the benchmarks: start the real service (Ray + serve_config.yaml) in this process
with a throwaway database, and small statistics helpers."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray Serve's low-latency path, measured in bench/RESULTS.md: HAProxy in front of the ingress
# replica's own HTTP server, gRPC handles, user code and router on the replica's main loop.
TUNED_SERVE_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
}


def start_service(
    settings: dict | None = None,
    deployments: dict | None = None,
    num_cpus: int | None = None,
    env: dict[str, str] | None = None,
    catalog: str | None = None,
):
    """Starts Ray and the app; returns (base_url, headers). `env` is set before Ray starts (Serve
    reads its knobs once per process). `catalog`: another catalog file (serve_config entries of
    deployments it does not have are dropped)."""
    from rawinfer.cli.launch import SERVING_ENV

    os.environ.update({**SERVING_ENV, **(env or {})})
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from rawinfer.cli.launch import deploy, load_config
    from rawinfer.tenancy.store import Store

    db = f"sqlite:///{tempfile.mkdtemp(prefix='rawinfer-bench-')}/db.sqlite"
    store = Store(db)
    store.create_schema()
    store.create_namespace("bench")
    _, secret = store.create_key("bench", namespaces=["bench"])
    port = free_port()
    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=False,
        namespace="serve",
        log_to_driver=False,
    )
    config = load_config(
        port=port,
        settings={"database_url": db, **(settings or {})},
        deployments=deployments,
        catalog=catalog,
    )
    if catalog:
        from rawinfer.core.catalog import load_catalog

        names = {"ingress", "rate_limiter"} | {
            n for n, b in load_catalog(catalog).backends.items() if b.configured
        }
        app = config["applications"][0]
        app["deployments"] = [d for d in app.get("deployments", []) if d["name"] in names]
    deploy(config)
    return f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {secret}", "X-Namespace": "bench"}


def stop_service() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summary(values_ms: list[float]) -> str:
    p50, p99 = statistics.median(values_ms), pct(values_ms, 99)
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  (n={len(values_ms)})"


def machine() -> str:
    return (
        f"{platform.node() or 'host'}: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
