"""The service on a multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head
with the `cpu_node` resource and two worker raylets with `model_node`), placed by node kind
(`rawinfer.cli.launch.place_by_node_kind`: model deployments on model nodes, the ingress on the
CPU node), as the KubeRay manifest places them by GPU and node group. Under a fixed-rate mixed
load (one text, eight texts, the OpenAI embeddings route), the model node holding a replica is
removed (its raylet and replicas killed); later a new model node joins ("the node returns") and
the other model node is removed, so the service can only keep answering on the returned node.

Prints one JSON object (tests/integration/test_cluster.py reads it): where each replica ran
before, after the loss and after the return; the requests sent, failed and their statuses;
p50/p99 before the loss, in the 10 s after it, after that, and after the return; the longest
request; and the seconds from each loss until Serve had a replacement running and until the last
request that failed or took over max(1 s, 3x the p99 before the loss) (recovery).

Run: `.venv/bin/python bench/cluster.py [--rate 6] [--seconds 50] [--replicas 1]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import free_port, pct  # noqa: E402

from rawinfer.cli.launch import (  # noqa: E402
    MODEL_NODE,
    SERVICE_NODE,
    SERVING_ENV,
    deploy,
    load_config,
    place_by_node_kind,
)

TARGET = {"provider": "local", "model": "all-minilm-l6-v2"}


def small_catalog(folder: Path) -> str:
    """catalog.yaml with its text-embedding backend and targets only (plugins still join)."""
    full = yaml.safe_load((REPO / "catalog.yaml").read_text())
    catalog = {
        "backends": {k: v for k, v in full["backends"].items() if k == "text_embedding"},
        "targets": [t for t in full["targets"] if t["backend"] == "text_embedding"],
    }
    path = folder / "catalog.cluster.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return str(path)


def replicas() -> dict[str, list[str]]:
    """deployment -> the node ids its running replicas are on."""
    from ray.util.state import list_actors

    out: dict[str, list[str]] = {}
    for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
        name = a.class_name or ""
        if name.startswith("ServeReplica:rawinfer:"):
            out.setdefault(name.split(":")[2], []).append(a.node_id)
    return {k: sorted(v) for k, v in out.items()}


def request(i: int) -> tuple[str, dict]:
    """The i-th request of the mixed load: one text, eight texts, or the OpenAI route."""
    text = f"cluster request {i}: the quick brown fox"
    if i % 3 == 0:
        return "/v1/inference", {**TARGET, "inputs": {"text": text}}
    if i % 3 == 1:
        texts = [f"{text} ({j})" for j in range(8)]
        return "/v1/inference", {**TARGET, "inputs": {"texts": texts}}
    return "/v1/embeddings", {"model": TARGET["model"], "input": text}


async def load(url: str, headers: list[dict], rate: float, seconds: float) -> list[tuple]:
    """Open loop: (sent at, status or 0 for a transport error, seconds taken) per request."""
    out: list[tuple[float, int, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=90) as c:
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            sent = time.perf_counter() - t0
            path, body = request(i)
            try:
                h = headers[i % len(headers)]
                status = (await c.post(path, json=body, headers=h)).status_code
            except httpx.HTTPError:
                status = 0
            out.append((sent, status, time.perf_counter() - t0 - sent))

        tasks = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, i / rate - (time.perf_counter() - t0)))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return sorted(out)


def replaced(gone: set[str], want: int, limit_s: float) -> float | None:
    """Seconds until `want` text_embedding replicas run on nodes outside `gone`."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        now = replicas()
        if len([n for n in now.get("text_embedding", []) if n not in gone]) >= want:
            return round(time.perf_counter() - t0, 1)
        time.sleep(0.5)
    return None


def window(results: list[tuple], start: float, end: float) -> dict:
    ms = [d * 1000 for t, s, d in results if start <= t < end and s == 200]
    n = sum(1 for t, _, _ in results if start <= t < end)
    return {
        "requests": n,
        "p50_ms": round(pct(ms, 50), 1) if ms else None,
        "p99_ms": round(pct(ms, 99), 1) if ms else None,
    }


def recovery(results: list[tuple], start: float, end: float, slow_s: float) -> float:
    """From `start` until the last request sent before `end` that failed or took over `slow_s`
    (0: none did): when the service was answering as usual again."""
    bad = [t for t, s, d in results if start <= t < end and (s != 200 or d > slow_s)]
    return round(max(bad, default=start) - start, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=6.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=50.0)
    p.add_argument("--kill-at", type=float, default=8.0, help="the first model node is removed")
    p.add_argument("--return-at", type=float, default=30.0, help="a node joins, the other goes")
    p.add_argument("--replicas", type=int, default=1, help="text_embedding replicas")
    a = p.parse_args()
    os.environ.update({**SERVING_ENV, "RAY_AUTH_MODE": "disabled"})
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray.cluster_utils import Cluster

    from rawinfer.tenancy.store import Store

    folder = Path(tempfile.mkdtemp(prefix="rawinfer-cluster-"))
    db = f"sqlite:///{folder}/db.sqlite"
    store = Store(db)
    store.create_schema()
    store.create_namespace("bench")
    # four tenants' keys in turn: the per-key in-flight cap (limits.key_max_concurrent) guards
    # one key, not the deployment, and one key alone would meet it while requests wait out a loss
    keys = [store.create_key(f"bench-{i}", namespaces=["bench"])[1] for i in range(4)]
    headers = [{"Authorization": f"Bearer {k}", "X-Namespace": "bench"} for k in keys]

    # logical CPUs: each raylet advertises 2, as the machine has; the replicas ask for fractions
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "resources": {SERVICE_NODE: 1}}
    )
    workers = [cluster.add_node(num_cpus=2, resources={MODEL_NODE: 1}) for _ in range(2)]
    ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
    port = free_port()
    n = a.replicas
    config = load_config(
        port=port,
        catalog=small_catalog(folder),
        settings={
            "database_url": db,
            "semantic_cache": {"enabled": False},
            "limits": {"enabled": False},
        },
        deployments={
            "ingress": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
            "text_embedding": {"autoscaling_config": {"min_replicas": n, "max_replicas": n}},
        },
    )
    config["proxy_location"] = "HeadOnly"  # one machine: one proxy may bind the port
    app = config["applications"][0]
    app["deployments"] = [
        d for d in app["deployments"] if d["name"] in ("ingress", "text_embedding")
    ]
    config = place_by_node_kind(config)
    report: dict = {"replicas": n, "rate": a.rate, "nodes": {"head": cluster.head_node.node_id}}
    try:
        t0 = time.perf_counter()
        deploy(config)
        report["deploy_s"] = round(time.perf_counter() - t0, 1)
        url = f"http://127.0.0.1:{port}"
        report["nodes"]["model"] = sorted(w.node_id for w in workers)
        placed = replicas()
        report["placement"] = placed
        victim_id = placed["text_embedding"][0]
        victim = next(w for w in workers if w.node_id == victim_id)
        survivor = next(w for w in workers if w.node_id != victim_id)

        # the load runs in a thread of its own; raylets are added and removed from the main one
        # (Ray's node start sets signal handlers)
        t_load = time.perf_counter()
        out: list = []
        job = threading.Thread(
            target=lambda: out.extend(asyncio.run(load(url, headers, a.rate, a.seconds)))
        )
        job.start()
        events: dict = {}
        time.sleep(a.kill_at)
        cluster.remove_node(victim)
        events["replacement_running_s"] = replaced({victim_id}, n, a.return_at)
        events["placement_after_loss"] = replicas()
        time.sleep(max(0.0, a.return_at - (time.perf_counter() - t_load)))
        back = cluster.add_node(num_cpus=2, resources={MODEL_NODE: 1})
        cluster.wait_for_nodes()
        events["returned_node"] = back.node_id
        cluster.remove_node(survivor)
        events["on_returned_node_s"] = replaced({victim_id, survivor.node_id}, n, a.seconds)
        events["placement_after_return"] = replicas()
        job.join()
        results = sorted(out)
        report.update(events)
        k, r = a.kill_at, a.return_at
        usual = [d for t, s, d in results if t < k and s == 200]
        slow_s = max(1.0, 3 * pct(usual, 99))  # "as usual": within 3x the p99 before the loss
        report.update(
            requests=len(results),
            failed=sum(1 for _, s, _ in results if s != 200),
            statuses=sorted({s for _, s, _ in results}),
            longest_s=round(max(d for _, _, d in results), 1),
            latency={
                "before": window(results, 0, k),
                "loss_first_10s": window(results, k, k + 10),
                "after_loss": window(results, k + 10, r),
                "after_return": window(results, r, a.seconds),
            },
            slow_s=round(slow_s, 2),
            recovered_after_loss_s=recovery(results, k, r, slow_s),
            recovered_after_return_s=recovery(results, r, a.seconds, slow_s),
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
