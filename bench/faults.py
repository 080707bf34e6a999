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
import base64
import os
import socket
import sqlite3
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

from router.proxy import PROXY_ENV  # noqa: E402

EMBED = {"inference_name": "multilingual_e5_large_instruct_v1"}
RESULTS: dict[str, dict] = {}


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


# ------------------------------------------------------------------------------------ replica


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


def usage_rows(db_path: str, key_id: str) -> dict[int, int]:
    con = sqlite3.connect(db_path, timeout=30)
    try:
        rows = con.execute(
            "SELECT status, COUNT(*) FROM usage_records WHERE key_id = ? GROUP BY status", (key_id,)
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


async def scenario_database(
    url: str, headers: dict, db_path: str, key_id: str, lock_s: float = 45
) -> dict:
    await asyncio.sleep(3)  # earlier scenarios' rows flushed
    before = usage_rows(db_path, key_id)
    stop = threading.Event()

    def hold_lock():
        con = sqlite3.connect(db_path, timeout=30, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        stop.wait(lock_s)
        con.execute("ROLLBACK")
        con.close()

    th = threading.Thread(target=hold_lock, daemon=True)
    t_lock = time.perf_counter()
    th.start()

    # requests with the cached key and with keys unknown to the cache (a new secret each time)
    async def usage_report() -> int:  # a route that reads the database itself (not only the key)
        await asyncio.sleep(2)
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            return (await c.get("/v1/usage", headers=headers)).status_code

    report = asyncio.create_task(usage_report())
    rows = await fixed_rate(url, headers, 5, lock_s + 10)
    bogus = await fixed_rate(url, {**headers, "Authorization": "Bearer sk_" + "x" * 43}, 1, 1)
    report_status = await report
    th.join()
    unlocked = time.perf_counter() - t_lock
    served = sum(1 for r in rows if r[2] == 200)
    statuses = {s: sum(1 for r in rows if r[2] == s) for s in sorted({r[2] for r in rows})}
    # authenticated requests are those that got past auth: all but 503s from the key store
    deadline = time.monotonic() + 180  # the ledger retries the database with backoff
    while True:
        after = usage_rows(db_path, key_id)
        new = {s: after.get(s, 0) - before.get(s, 0) for s in after}
        if new.get(200, 0) >= served or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    out = {
        "lock_s": lock_s,
        "statuses": statuses,
        "unknown_key_statuses": sorted({r[2] for r in bogus}),
        "usage_report_status": report_status,
        "served": served,
        "usage_rows_200": new.get(200, 0),
        "usage_rows_by_status": new,
        "rows_lost": served - new.get(200, 0),
        "unlocked_after_s": round(unlocked, 1),
    }
    print(
        f"database: SQLite locked for {lock_s:g} s under 5 req/s: statuses {statuses}, unknown "
        f"keys got "
        f"{out['unknown_key_statuses']}, GET /v1/usage got {report_status}; {served} answered 200 "
        f"and {out['usage_rows_200']} usage rows with status 200 "
        f"reached the database after the lock ({out['rows_lost']} lost); rows by status {new}"
    )
    return out


# ------------------------------------------------------------------------------------ shutdown


async def scenario_shutdown(url: str, headers: dict, db_path: str, key_id: str) -> dict:
    from ray import serve

    await asyncio.sleep(3)
    before = usage_rows(db_path, key_id)
    audio = Path(
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
    )
    slow = {
        "provider": "local",
        "model": "whisper-tiny.en",
        "inputs": {"audio_base64": base64.b64encode(audio.read_bytes()).decode()},
    }
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:

        async def one(body):
            try:
                return (await c.post("/v1/inference", json=body, headers=headers)).status_code
            except httpx.HTTPError as e:
                return type(e).__name__

        tasks = [asyncio.create_task(one(slow)) for _ in range(4)] + [
            asyncio.create_task(one(embed_body(i))) for i in range(20)
        ]
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        delete = asyncio.create_task(asyncio.to_thread(serve.delete, "rawinfer"))
        statuses = await asyncio.gather(*tasks)
        await delete
        took = time.perf_counter() - t0
    after = usage_rows(db_path, key_id)
    new = {s: after.get(s, 0) - before.get(s, 0) for s in after}
    ok = sum(1 for s in statuses if s == 200)
    out = {
        "in_flight": len(tasks),
        "ok": ok,
        "statuses": {str(s): statuses.count(s) for s in set(statuses)},
        "usage_rows_new": sum(new.values()),
        "delete_s": round(took, 1),
    }
    print(
        f"shutdown: serve.delete with {len(tasks)} requests in flight: {ok} answered 200 "
        f"({out['statuses']}); "
        f"{out['usage_rows_new']} usage rows written by the time the app was gone ({took:.1f} s)"
    )
    return out


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
        env={**env, **PROXY_ENV},
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
