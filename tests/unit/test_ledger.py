"""The usage ledger on real databases: background flushes, close() on shutdown, a database outage
(SQLite: the table is away; PostgreSQL: the database refuses connections) spooled to disk and
re-ingested with no loss and no duplicates, bounded memory, spool files of killed processes."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

import orjson
from sqlalchemy import text
from tenancy_db import REPO, db_url, postgres_databases, postgres_outage, store  # noqa: F401  (fixtures)

from rawinfer.tenancy.ledger import UsageLedger
from rawinfer.tenancy.store import Store
from rawinfer.tenancy.usage import usage_row


def counts(store: Store) -> tuple[int, int, int]:
    """rows, distinct ids, sum of prompt tokens"""
    with store.engine.connect() as c:
        n, distinct, tokens = c.execute(
            text(
                "SELECT count(*), count(DISTINCT id), coalesce(sum(prompt_tokens), 0) FROM "
                "usage_records"
            )
        ).one()
    return int(n), int(distinct), int(tokens)


def row(i: int) -> dict:
    return usage_row(
        request_id=f"req-{i}",
        key_id="key_a",
        namespace_id="ns_a",
        target="local/x" * 100,
        task="chat",
        status=200,
        prompt_tokens=i,
        completion_tokens=1,
        latency_ms=1.5,
        cache_hit=None,
    )


async def until(cond, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def outage(store: Store):
    """The database is unavailable inside the block (for real, not a mock of our code)."""
    if store.engine.dialect.name == "postgresql":
        with postgres_outage(store.engine.url.render_as_string(hide_password=False)):
            yield
        return
    with store.engine.begin() as c:
        c.execute(text("ALTER TABLE usage_records RENAME TO usage_records_away"))
    try:
        yield
    finally:
        with store.engine.begin() as c:
            c.execute(text("ALTER TABLE usage_records_away RENAME TO usage_records"))


def test_rows_are_flushed_in_the_background(store, tmp_path):
    async def main():
        ledger = UsageLedger(
            store, flush_interval_s=0.05, spool_dir=tmp_path / "spool", batch_size=50
        )
        ids = {ledger.record(row(i)) for i in range(120)}
        assert len(ids) == 120 and ledger.buffered() <= 120
        await until(lambda: counts(store)[0] == 120)
        assert ledger.buffered() == 0 and counts(store) == (120, 120, sum(range(120)))
        await ledger.close()
        assert ledger.spool_files() == []

    asyncio.run(main())


def test_close_flushes_everything_and_later_rows_are_kept(store, tmp_path):
    async def main():
        ledger = UsageLedger(
            store, flush_interval_s=3600, spool_dir=tmp_path / "spool", batch_size=10_000
        )
        for i in range(1000):
            ledger.record(row(i))
        await asyncio.sleep(0.05)
        assert counts(store)[0] == 0  # nothing due yet
        await ledger.close()
        assert counts(store) == (1000, 1000, sum(range(1000)))
        ledger.record(row(5000))  # after close: straight to the spool, not lost
        ledger._close_spool()
        again = UsageLedger(store, spool_dir=tmp_path / "spool")
        await again.flush()
        assert counts(store) == (1001, 1001, sum(range(1000)) + 5000) and again.spool_files() == []

    asyncio.run(main())


def test_outage_spools_and_reingests_without_loss_or_duplicates(store, tmp_path):
    async def main():
        ledger = UsageLedger(
            store,
            flush_interval_s=0.05,
            spool_dir=tmp_path / "spool",
            batch_size=40,
            retry_max_s=0.2,
        )
        for i in range(100):
            ledger.record(row(i))
        await until(lambda: counts(store)[0] == 100)
        with outage(store):
            for i in range(100, 400):
                ledger.record(row(i))
                if i % 50 == 0:
                    await asyncio.sleep(0.06)  # several flush rounds fail during the outage
            await until(lambda: ledger.buffered() == 0)
            assert ledger.stats["db_failures"] >= 1 and ledger.stats["spooled"] == 300
            assert ledger.spool_files()
        await until(lambda: counts(store)[0] == 400 and not ledger.spool_files())
        for i in range(400, 450):  # and fresh rows flow again
            ledger.record(row(i))
        await ledger.close()
        assert counts(store) == (450, 450, sum(range(450)))

    asyncio.run(main())


def test_a_row_written_and_spooled_is_stored_once(store, tmp_path):
    """An insert that reached the database but reported a failure gets spooled; re-ingesting it
    must not duplicate it (ids are unique, inserts idempotent). A torn last line is skipped."""

    async def main():
        rows = [dict(row(i), id=f"r{i}") for i in range(20)]
        store.record_usage(rows[:10])
        spool = tmp_path / "spool"
        spool.mkdir()
        (spool / "usage-host-1-dead.jsonl").write_bytes(
            b"".join(orjson.dumps(r) + b"\n" for r in rows) + b'{"id": "torn", "prompt_tok'
        )
        ledger = UsageLedger(store, spool_dir=spool)
        await ledger.flush()
        assert counts(store) == (20, 20, sum(range(20))) and ledger.stats["bad_lines"] == 1
        assert ledger.spool_files() == []

    asyncio.run(main())


def test_memory_is_bounded_by_the_buffer(store, tmp_path):
    async def main():
        ledger = UsageLedger(
            store,
            max_buffer=50,
            flush_interval_s=0.05,
            spool_dir=tmp_path / "spool",
            batch_size=1000,
            retry_max_s=0.2,
        )
        with outage(store):
            for i in range(2000):  # no await: the flusher never runs in between
                ledger.record(row(i))
                assert ledger.buffered() <= 50
            assert ledger.stats["spooled"] == 1950
        await until(lambda: counts(store)[0] == 2000)
        await ledger.close()
        assert counts(store) == (2000, 2000, sum(range(2000))) and ledger.spool_files() == []

    asyncio.run(main())


def test_a_live_writers_spool_is_not_taken_until_it_closes(store, tmp_path):
    async def main():
        down = Store(
            f"sqlite:///{tmp_path / 'no-schema.db'}"
        )  # a database without the table: every write fails
        spool = tmp_path / "spool"
        a = UsageLedger(down, spool_dir=spool, flush_interval_s=3600)
        for i in range(30):
            a.record(row(i))
        await a.flush()
        assert a.stats["spooled"] == 30 and len(a.spool_files()) == 1
        b = UsageLedger(store, spool_dir=spool)
        await b.flush()
        assert counts(store)[0] == 0 and len(b.spool_files()) == 1  # a still holds it
        await a.close()  # still down: a's file stays, closed
        await b.flush()
        assert counts(store) == (30, 30, sum(range(30))) and b.spool_files() == []

    asyncio.run(main())


KILLED = """
import asyncio, os, sys
from rawinfer.tenancy.ledger import UsageLedger
from rawinfer.tenancy.usage import usage_row
from rawinfer.tenancy.store import Store

async def main():
    ledger = UsageLedger(Store(sys.argv[1]), spool_dir=sys.argv[2], flush_interval_s=3600)
    for i in range(200):
        ledger.record(usage_row(request_id=str(i), namespace_id="ns_a", prompt_tokens=i))
    await ledger.flush()  # the database is down: spooled
    print(ledger.stats["spooled"], flush=True)
    os._exit(9)  # killed: no close()

asyncio.run(main())
"""


def test_spool_of_a_killed_process_is_reingested(store, tmp_path):
    down = f"sqlite:///{tmp_path / 'no-schema.db'}"
    r = subprocess.run(
        [sys.executable, "-c", KILLED, down, str(tmp_path / "spool")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 9 and r.stdout.strip() == "200", r.stderr[-2000:]

    async def main():
        ledger = UsageLedger(store, spool_dir=tmp_path / "spool")
        await ledger.flush()
        assert counts(store) == (200, 200, sum(range(200))) and ledger.spool_files() == []

    asyncio.run(main())
