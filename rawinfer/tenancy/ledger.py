"""The usage ledger: every request recorded durably, off the request path.

`record(row)` is O(1) and never blocks on the database; a background task writes batches through
`Store.record_usage`, spooling to JSONL files while the database is down or the buffer is full, and
re-ingests them later (idempotent on the row id). Design and guarantees: docs/notes/tenancy.md."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from rawinfer.core.settings import LedgerSettings

log = logging.getLogger("rawinfer.ledger")


class UsageLedger:
    @classmethod
    def from_settings(cls, store, s: LedgerSettings, default_spool: str | Path) -> "UsageLedger":
        return cls(
            store,
            max_buffer=s.max_buffer,
            flush_interval_s=s.flush_interval_s,
            batch_size=s.batch_size,
            retry_max_s=s.retry_max_s,
            spool_dir=s.spool_dir or default_spool,
        )

    def __init__(
        self,
        store,
        *,
        max_buffer: int = 10_000,
        flush_interval_s: float = 1.0,
        spool_dir: str | Path,
        batch_size: int = 500,
        retry_max_s: float = 30.0,
        close_timeout_s: float = 10.0,
    ):
        self.store = store
        self.max_buffer, self.batch_size = max_buffer, batch_size
        self.flush_interval_s, self.retry_max_s, self.close_timeout_s = (
            flush_interval_s,
            retry_max_s,
            close_timeout_s,
        )
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._buf: collections.deque[dict[str, Any]] = collections.deque()
        self._spool = None  # this process's open spool file (flock held while open)
        self._spool_name = f"usage-{socket.gethostname()}-{os.getpid()}"
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._down_until = 0.0
        self._failures = 0
        # spool file -> (failures, fresh rows then)
        self._bad_files: dict[str, tuple[int, int]] = {}
        self.closed = False
        self.stats = collections.Counter()

    # ---------------------------------------------------------------- request path
    def record(self, row: dict[str, Any]) -> str:
        """Queues one usage row (see Store.record_usage for the fields); returns its id."""
        row = dict(row)
        row.setdefault("id", uuid.uuid4().hex)
        if row.get("created_at") is None:
            row["created_at"] = datetime.now(timezone.utc)
        self.stats["recorded"] += 1
        if self.closed or len(self._buf) >= self.max_buffer:
            self._spill([row])
        else:
            self._buf.append(row)
        self.start()
        if self._wake is not None and len(self._buf) >= self.batch_size:
            self._wake.set()
        return row["id"]

    def buffered(self) -> int:
        return len(self._buf)

    # ---------------------------------------------------------------- background
    def start(self) -> None:
        """Starts the flush task on the running loop (record() does it on first use)."""
        if self._task is not None or self.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first record() or start() inside one starts it
        self._wake, self._flush_lock = asyncio.Event(), asyncio.Lock()
        self._task = loop.create_task(self._run(), name="usage-ledger")

    async def _run(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if self.closed:
                return  # close() does the last flush
            try:
                await self.flush()
            except Exception:  # never let the task die: the rows stay in the buffer or the spool
                log.exception("usage ledger flush failed")

    async def flush(self) -> None:
        """Writes what is buffered (to the database, else to the spool), then re-ingests spool
        files while the database answers."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            while self._buf:
                batch = [self._buf.popleft() for _ in range(min(self.batch_size, len(self._buf)))]
                if time.monotonic() < self._down_until:
                    self._spill(batch)
                    continue
                try:
                    ok = await self._write(batch)
                except BaseException:  # cancelled mid-write: keep the batch (a double is ignored)
                    self._spill(batch)
                    raise
                if ok:
                    self.stats["fresh_written"] += len(batch)
                else:
                    self._spill(batch)
            if time.monotonic() >= self._down_until:
                await self._reingest()

    async def _write(self, rows: list[dict[str, Any]]) -> bool:
        try:
            await asyncio.to_thread(self.store.record_usage, rows)
        except Exception as e:
            self._failures += 1
            delay = min(self.retry_max_s, self.flush_interval_s * 2 ** min(self._failures - 1, 10))
            self._down_until = time.monotonic() + delay
            self.stats["db_failures"] += 1
            log.warning(
                "usage ledger: database write failed (%s); spooling, retry in %.1f s",
                type(e).__name__,
                delay,
            )
            return False
        self._failures, self._down_until = 0, 0.0
        self.stats["written"] += len(rows)
        return True

    # ---------------------------------------------------------------- spool
    def _spill(self, rows: list[dict[str, Any]]) -> None:
        try:
            if self._spool is None:
                path = self.spool_dir / f"{self._spool_name}-{uuid.uuid4().hex[:8]}.jsonl"
                self._spool = open(path, "ab")
                fcntl.flock(self._spool, fcntl.LOCK_EX)
            self._spool.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
            self._spool.flush()
        except OSError:  # never into the request path: the disk is the last resort
            self.stats["lost"] += len(rows)
            log.exception(
                "usage ledger: could not spool %d rows to %s; they are lost",
                len(rows),
                self.spool_dir,
            )
            return
        self.stats["spooled"] += len(rows)

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.flush()
            os.fsync(self._spool.fileno())
            fcntl.flock(self._spool, fcntl.LOCK_UN)
            self._spool.close()
            self._spool = None

    def spool_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("usage-*.jsonl"))

    async def _reingest(self) -> None:
        files = self.spool_files()
        if not files:
            return
        self._close_spool()  # our own file becomes claimable; later spills open a new one
        for path in files:
            if not await self._ingest_file(path):
                return

    async def _ingest_file(self, path: Path) -> bool:
        """True when the file is done (written and deleted, or not ours to take); False when the
        database failed (the file stays, to be read again later: inserts are idempotent)."""
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return True
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # a live process is writing or ingesting it
            if os.fstat(f.fileno()).st_nlink == 0:
                return True  # another process finished it between our listing and our lock
            batch: list[dict[str, Any]] = []
            for line in f:
                try:
                    batch.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    self.stats["bad_lines"] += 1  # a torn last line from a hard kill
                    log.warning("usage ledger: skipping an unreadable line in %s", path.name)
                    continue
                if len(batch) >= self.batch_size:
                    if not await self._write_spooled(batch):
                        return self._give_up(path)
                    batch = []
            if batch and not await self._write_spooled(batch):
                return self._give_up(path)
            path.unlink(missing_ok=True)
            self._bad_files.pop(path.name, None)
        return True

    async def _write_spooled(self, rows: list[dict[str, Any]]) -> bool:
        ok = await self._write(rows)
        if ok:
            self.stats["reingested"] += len(rows)
        return ok

    def _give_up(self, path: Path) -> bool:
        """A file that keeps failing while fresh rows are written fine (a row the database refuses)
        is set aside as `.failed` after 5 tries instead of being retried forever."""
        fails, fresh_then = self._bad_files.get(path.name, (0, self.stats["fresh_written"]))
        self._bad_files[path.name] = (fails + 1, fresh_then)
        if fails + 1 >= 5 and self.stats["fresh_written"] > fresh_then:
            path.rename(path.with_suffix(".jsonl.failed"))
            log.error(
                "usage ledger: %s failed 5 times while the database accepts rows; kept as .failed",
                path.name,
            )
            self._down_until = 0.0
            return True
        return False

    # ---------------------------------------------------------------- shutdown
    async def close(self) -> None:
        """Stops the task and flushes everything (database, else spool); idempotent."""
        if self.closed:
            return
        self.closed = True
        task, self._task = self._task, None
        if task is not None:  # let a flush in progress finish, then stop (no cancel mid-write)
            self._wake.set()
            done, _ = await asyncio.wait({task}, timeout=self.close_timeout_s)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        self._down_until = 0.0  # one more try at the database
        try:
            await self.flush()
        finally:
            if self._buf:  # flush failed unexpectedly: keep the rows on disk
                self._spill(list(self._buf))
                self._buf.clear()
            self._close_spool()
