"""The fault scenarios that check the usage ledger (bench/faults.py runs them): the database
locked past the store's busy timeout, and the app deleted while requests are in flight."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from fault_load import embed_body, fixed_rate, usage_rows


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
