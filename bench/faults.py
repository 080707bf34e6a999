"""Faults under load, against the real service (Ray Serve started here, bench/common.py):

  replica    kill one text-embedding replica (ray.kill of its actor) during a fixed-rate
             embedding load; Serve starts a new one. Reports failed requests % (target <= 1 %),
             the time from the kill until every request succeeds again at its usual latency
             (target <= 30 s) and until Serve has the replacement running.
             `--embedding-replicas` (default 2) sets how many replicas run; with 1, requests wait
             for the replacement (the ingress re-sends a request whose replica died).
  provider   the cloud provider hangs (a fake OpenAI server, tests/fake_providers.py, that never
             answers): its requests get 504 at the request deadline, embeddings meanwhile keep
             their latency.
  slowclient 64 clients trickle a request body one byte a second (slowloris); normal requests
             meanwhile keep their latency.
  database   the SQLite database locked by another process (BEGIN EXCLUSIVE) for longer than
             the store's 30 s busy timeout: key lookups that reach the database fail with 503 (not
             500); usage rows of the requests served are spooled; after the lock is gone nothing is
             missing from the usage ledger (rows with status 200 == responses 200).
  shutdown   serve.delete of the app while requests are in flight: they finish (200) and the
             usage rows of all of them are in the database.

Run: `.venv/bin/python bench/faults.py [--only replica,provider,...] [--rate 20]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from common import machine, pct, start_service, stop_service  # noqa: E402
from fault_load import (  # noqa: E402
    fixed_rate,
    lat_summary,
    replaced_after,
    replica_actors,
)
from fault_store import scenario_database, scenario_shutdown  # noqa: E402

from rawinfer.cli.launch import SERVING_ENV  # noqa: E402

RESULTS: dict[str, dict] = {}


# ------------------------------------------------------------------------------------ replica


async def scenario_replica(url: str, headers: dict, rate: float, kill: int = 1) -> dict:
    import ray

    duration, kill_at = 60.0, 15.0
    t_start = time.perf_counter()
    load = asyncio.create_task(fixed_rate(url, headers, rate, duration))
    await asyncio.sleep(kill_at)
    actors = replica_actors("text_embedding")
    t_kill = time.perf_counter()
    for a in actors[:kill]:
        ray.kill(a, no_restart=True)
    replaced = await replaced_after("text_embedding", len(actors), t_kill)
    kill_at = t_kill - t_start
    rows = await load
    failed = [r for r in rows if r[2] != 200]
    before = [r for r in rows if r[0] < kill_at]
    slow = 5 * pct([r[1] for r in before if r[2] == 200], 99)
    # recovered: from the kill until the last request that failed or took > 5x the p99 before it
    bad = [r[0] + r[1] for r in rows if r[0] >= kill_at - 1 and (r[2] != 200 or r[1] > slow)]
    recovery = max(bad) - kill_at if bad else 0.0
    out = {
        "replicas": len(actors),
        "replicas_killed": min(kill, len(actors)),
        "replaced_after_s": None if replaced is None else round(replaced, 1),
        "requests": len(rows),
        "failed": len(failed),
        "failed_pct": round(100 * len(failed) / len(rows), 2),
        "recovery_s": round(max(recovery, 0.0), 1),
        "statuses": {s: sum(1 for r in rows if r[2] == s) for s in sorted({r[2] for r in rows})},
        "latency_before": lat_summary(before),
        "latency_after_recovery": lat_summary([r for r in rows if r[0] > kill_at + recovery]),
    }
    print(
        f"replica: killed {out['replicas_killed']} of {len(actors)} text_embedding replica(s) at "
        f"{kill_at:.1f} s of a "
        f"{rate:g} req/s, Serve had a replacement running after {out['replaced_after_s']} s; "
        f"{duration:g} s load: {out['failed']}/{out['requests']} failed ({out['failed_pct']} %, "
        f"target <= 1 %), "
        f"recovered in {out['recovery_s']} s (target <= 30 s); statuses {out['statuses']}; "
        f"before {out['latency_before']}; after {out['latency_after_recovery']}"
    )
    return out


# ------------------------------------------------------------------------------------ provider


async def scenario_provider(url: str, headers: dict, fakes, deadline_s: float) -> dict:
    fakes.openai.hang(seconds=120, times=1000)
    chat = {"provider": "openai", "model": "gpt-4o-mini", "inputs": {"prompts": ["hello?"]}}
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:

        async def hung(i):
            t0 = time.perf_counter()
            r = await c.post("/v1/inference", json=chat, headers=headers)
            return (
                r.status_code,
                time.perf_counter() - t0,
                r.json()["error"]["type"] if r.status_code != 200 else "",
            )

        hangs = [asyncio.create_task(hung(i)) for i in range(8)]
        others = await fixed_rate(url, headers, 10, deadline_s)
        results = await asyncio.gather(*hangs)
    fakes.openai._script.clear()
    baseline = await fixed_rate(url, headers, 10, 5)
    out = {
        "hung_statuses": sorted({r[0] for r in results}),
        "hung_seconds": round(statistics.median(r[1] for r in results), 1),
        "others_failed": sum(1 for r in others if r[2] != 200),
        "others": lat_summary(others),
        "baseline": lat_summary(baseline),
    }
    print(
        f"provider: 8 requests to a hanging provider got {out['hung_statuses']} "
        f"({results[0][2]}) after {out['hung_seconds']} s (deadline {deadline_s:g} s); embeddings "
        f"meanwhile: "
        f"{out['others_failed']} failed, {out['others']} (alone: {out['baseline']})"
    )
    return out


# ------------------------------------------------------------------------------------ slow client


async def scenario_slowclient(url: str, headers: dict, n: int = 64, seconds: float = 20) -> dict:
    u = urlparse(url)
    stop = threading.Event()
    socks = []

    def trickle():
        head = (
            f"POST /v1/inference HTTP/1.1\r\nHost: {u.hostname}\r\nAuthorization: "
            f"{headers['Authorization']}\r\n"
            f"X-Namespace: {headers['X-Namespace']}\r\nContent-Type: "
            f"application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        for _ in range(n):
            s = socket.create_connection((u.hostname, u.port))
            s.sendall(head.encode() + b"{")
            socks.append(s)
        while not stop.is_set():
            for s in socks:
                try:
                    s.sendall(b" ")
                except OSError:
                    pass
            stop.wait(1.0)

    baseline = await fixed_rate(url, headers, 10, 5)
    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    await asyncio.sleep(2)
    during = await fixed_rate(url, headers, 10, seconds)
    stop.set()
    th.join()
    for s in socks:
        s.close()
    out = {
        "slow_clients": n,
        "failed": sum(1 for r in during if r[2] != 200),
        "during": lat_summary(during),
        "baseline": lat_summary(baseline),
    }
    print(
        f"slowclient: {n} clients trickling bodies at 1 B/s; normal requests meanwhile: "
        f"{out['failed']} failed, "
        f"{out['during']} (alone: {out['baseline']})"
    )
    return out


# ------------------------------------------------------------------------------------ database


# ------------------------------------------------------------------------------------ shutdown


# ------------------------------------------------------------------------------------ main


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default="replica,provider,slowclient,database,shutdown")
    p.add_argument(
        "--rate", type=float, default=20.0, help="embedding requests/s during the replica kill"
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        help="request_timeout_s of the service (its default)",
    )
    p.add_argument(
        "--embedding-replicas",
        type=int,
        default=2,
        help="text_embedding replicas during the replica kill (the embedded default runs 1)",
    )
    a = p.parse_args()
    which = a.only.split(",")

    from conftest import (
        provider_env,
    )  # the providers' settings pointed at the fakes, as the tests do
    from fake_providers import Fakes

    from rawinfer.tenancy.store import Store

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(var, None)
    fakes = Fakes()
    env = provider_env(fakes)
    env["RAWINFER_PROVIDERS__OPENAI__TIMEOUT_S"] = (
        "60"  # the request deadline, not the adapter, must end it
    )
    # our own database, namespace and key, so this script can read the usage table itself
    import tempfile

    path = str(Path(tempfile.mkdtemp(prefix="rawinfer-faults-")) / "db.sqlite")
    store = Store(f"sqlite:///{path}")
    store.create_schema()
    store.create_namespace("bench")
    info, secret = store.create_key("faults", namespaces=["bench"])
    key_id = info.id
    n = a.embedding_replicas
    url, _ = start_service(
        settings={
            "database_url": f"sqlite:///{path}",
            "request_timeout_s": a.deadline,
            "auth_cache_ttl_s": 1.0,
        },
        env={**env, **SERVING_ENV},
        deployments={
            "text_embedding": {
                "ray_actor_options": {"num_cpus": 0.3 / n},
                "autoscaling_config": {
                    "min_replicas": n,
                    "max_replicas": n,
                    "target_ongoing_requests": 16,
                },
            }
        },
    )
    headers = {"Authorization": f"Bearer {secret}", "X-Namespace": "bench"}
    print(machine())
    try:
        if "replica" in which:
            RESULTS["replica"] = asyncio.run(scenario_replica(url, headers, a.rate, kill=1))
        if "provider" in which:
            RESULTS["provider"] = asyncio.run(scenario_provider(url, headers, fakes, a.deadline))
        if "slowclient" in which:
            RESULTS["slowclient"] = asyncio.run(scenario_slowclient(url, headers))
        if "database" in which:
            RESULTS["database"] = asyncio.run(scenario_database(url, headers, path, key_id))
        if "shutdown" in which:
            RESULTS["shutdown"] = asyncio.run(scenario_shutdown(url, headers, path, key_id))
    finally:
        stop_service()
        for f in fakes.all:
            f.stop()
    import json

    print("RESULT " + json.dumps(RESULTS))


if __name__ == "__main__":
    main()
