"""The store's schema as Alembic migrations, run programmatically (no alembic.ini needed).

`upgrade(engine)` brings a database to head; `Store.create_schema()` calls it, and it is safe
when several processes call it at once (how: docs/notes/tenancy.md). The command line works too:
`alembic -c rawinfer/tenancy/migrations/alembic.ini -x url=... upgrade head` (see env.py)."""

from __future__ import annotations

import contextlib
import fcntl
import threading
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
# the newest revision (tests check it against the scripts): lets a started database skip Alembic
HEAD = "0004"
PG_LOCK_KEY = 0x7261776966  # "rawif": one advisory lock id for rawinfer's migrations
_thread_lock = threading.Lock()


def config(connection: Connection | None = None, url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config()).get_current_head()


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _run(conn: Connection) -> None:
    from alembic import command

    cfg = config(conn)
    tables = set(inspect(conn).get_table_names())
    if "api_keys" in tables and "alembic_version" not in tables:
        command.stamp(cfg, "0001")  # created by create_all before migrations existed
    command.upgrade(cfg, "head")


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return False
            return list(
                conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            ) == [HEAD]
    except Exception:  # noqa: BLE001 - anything odd: take the full, locked path
        return False


def upgrade(engine: Engine) -> None:
    if _at_head(engine):
        return
    with _thread_lock:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
                _run(conn)
            return
        db = engine.url.database if engine.dialect.name == "sqlite" else None
        lock = (
            _file_lock(Path(db + ".migrate-lock"))
            if db and db != ":memory:"
            else contextlib.nullcontext()
        )
        with lock, engine.begin() as conn:
            _run(conn)
