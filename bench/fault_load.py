"""Load and lookup helpers of bench/faults.py: the fixed-rate open-loop load, latency summaries,
the Serve replica actors of a deployment, and the usage rows a key left in the database."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time

import httpx
from common import pct

EMBED = {"inference_name": "multilingual_e5_large_instruct_v1"}


def embed_body(i: int) -> dict:
    return {**EMBED, "inputs": {"text": f"fault injection request number {i}"}}


async def fixed_rate(
    url: str,
    headers: dict,
    rate: float,
    duration: float,
    body=embed_body,
    path="/v1/inference",
    timeout: float = 60,
) -> list[tuple[float, float, int]]:
    """Open loop: (sent at s, latency s, status or 0 for a transport error) per request."""
    out: list[tuple[float, float, int]] = []
    async with httpx.AsyncClient(
        base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=256)
    ) as c:
        t0 = time.perf_counter()

        async def one(i: int):
            sent = time.perf_counter()
            try:
                status = (await c.post(path, json=body(i), headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            out.append((sent - t0, time.perf_counter() - sent, status))

        tasks, i = [], 0
        while i / rate < duration:
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
            i += 1
        await asyncio.gather(*tasks)
    return sorted(out)


def lat_summary(rows) -> str:
    ms = [r[1] * 1000 for r in rows if r[2] == 200]
    return (
        f"p50 {statistics.median(ms):.1f} ms, p99 {pct(ms, 99):.1f} ms (n={len(ms)})"
        if ms
        else "no successes"
    )


def replica_actors(deployment: str) -> list:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "SERVE_REPLICA" in a["name"] and f"#{deployment}#" in a["name"]
    ]
    return [ray.get_actor(n, namespace="serve") for n in names]


async def replaced_after(
    deployment: str, running: int, since: float, limit: float = 120.0
) -> float | None:
    """Seconds from `since` until Serve reports `running` replicas of `deployment` again, after it
    first noticed the loss (fewer than `running`; until then the dead replica still counts)."""
    from ray import serve

    noticed = False
    while time.perf_counter() - since < limit:
        app = serve.status().applications.get("rawinfer")
        dep = app.deployments.get(deployment) if app else None
        up = sum(
            n
            for state, n in (dep.replica_states.items() if dep else ())
            if getattr(state, "value", state) == "RUNNING"
        )
        noticed = noticed or up < running
        if noticed and up >= running:
            return time.perf_counter() - since
        await asyncio.sleep(0.2)
    return None


def usage_rows(db_path: str, key_id: str) -> dict[int, int]:
    con = sqlite3.connect(db_path, timeout=30)
    try:
        rows = con.execute(
            "SELECT status, COUNT(*) FROM usage_records WHERE key_id = ? GROUP BY status", (key_id,)
        ).fetchall()
    finally:
        con.close()
    return dict(rows)
