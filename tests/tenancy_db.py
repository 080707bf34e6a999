"""Real databases for the tenancy tests: a fresh SQLite file, or a fresh database on a local
PostgreSQL that scripts/postgres.sh installs and starts once per test session.

`RAWINFER_TEST_POSTGRES_URL` (a SQLAlchemy URL whose user may CREATE DATABASE) points the tests at
another server instead. If PostgreSQL cannot be started, the PostgreSQL tests fail (never skip).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rawinfer.tenancy.store import Store

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgresql"]


def start_postgres() -> str:
    url = os.environ.get("RAWINFER_TEST_POSTGRES_URL")
    if url:
        return url
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "postgres.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail(
            f"PostgreSQL could not be started by scripts/postgres.sh "
            f"(rc={r.returncode}):\n{r.stderr[-3000:]}",
            pytrace=False,
        )
    return r.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def postgres_outage(url: str):
    """The PostgreSQL database at `url` refuses every connection inside the block (its open
    connections are terminated); other databases on the server are untouched."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        c.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n "
                "AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
    try:
        yield
    finally:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


class PostgresDatabases:
    def __init__(self, base_url: str):
        self.base = make_url(base_url)
        self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with self.admin.connect() as c:
            c.execute(text("SELECT 1"))

    def create(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        return self.base.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_databases() -> PostgresDatabases:
    try:
        return PostgresDatabases(start_postgres())
    except Exception as e:  # noqa: BLE001 - any failure to reach it is a test failure
        pytest.fail(f"PostgreSQL is not reachable: {type(e).__name__}: {e}", pytrace=False)


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A fresh, empty database of each kind (no schema: tests call create_schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rawinfer.db'}"
        return
    dbs: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = dbs.create()
    yield url
    dbs.drop(url)


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.create_schema()
    yield s
    s.engine.dispose()
