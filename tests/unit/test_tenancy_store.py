"""The tenancy store on real SQLite and PostgreSQL: Alembic migrations, organisations, keys with
targets/limits/expiry/revocation, the usage table and its summaries, the admin functions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, inspect, text
from tenancy_db import REPO, db_url, postgres_databases, store  # noqa: F401  (fixtures)

from rawinfer.contract.errors import Forbidden, InvalidRequest, NotFound
from rawinfer.core.settings import LimitSettings
from rawinfer.tenancy import admin
from rawinfer.tenancy.limits import subjects_for
from rawinfer.tenancy.migrations import HEAD, config, current, head
from rawinfer.tenancy.store import Store

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _columns(engine, table):
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_migrations_create_the_schema_from_empty_and_are_idempotent(db_url):
    s = Store(db_url)
    assert current(s.engine) is None
    s.create_schema()
    assert current(s.engine) == head() == HEAD == "0004"
    tables = set(inspect(s.engine).get_table_names())
    assert {"organizations", "namespaces", "api_keys", "usage_records", "alembic_version"} <= tables
    assert {"targets", "rpm", "tpm"} <= _columns(s.engine, "api_keys")
    assert {"rpm", "tpm"} <= _columns(s.engine, "namespaces")
    indexes = {i["name"] for i in inspect(s.engine).get_indexes("usage_records")}
    assert {"ix_usage_namespace_time", "ix_usage_key_time", "ix_usage_time"} <= indexes
    ns = s.create_namespace("kept")
    s.create_schema()  # again: nothing changes, nothing is lost
    with s.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    assert s.find_namespace("kept") == ns
    # the migrations also go down and up again
    from alembic import command

    with s.engine.begin() as conn:
        command.downgrade(config(conn), "base")
    assert set(inspect(s.engine).get_table_names()) <= {"alembic_version"}
    s.create_schema()
    assert current(s.engine) == "0004"
    s.engine.dispose()


def test_a_database_made_by_create_all_is_stamped_and_upgraded(db_url):
    """Databases from before migrations (create_all of the three tables) keep their rows."""
    from alembic import command

    s = Store(db_url)
    with s.engine.begin() as conn:
        command.upgrade(config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
    with s.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO organizations (id, name, created_at) VALUES ('org_old', 'old', :t)"),
            {"t": T0},
        )
    s.create_schema()
    assert current(s.engine) == "0004"
    assert s.find_org("old").id == "org_old"
    info, secret = s.create_key("k", org="old", targets=["local/*"], rpm=5)
    assert s.authenticate(secret).rpm == 5
    s.engine.dispose()


def test_admin_keys_from_before_scoping_stay_superusers(db_url):
    """Migration 0003: an admin key made before admin scoping managed every organisation, and
    keeps doing so; a plain key does not become an admin."""
    from alembic import command

    s = Store(db_url)
    s.create_schema()
    admin, _ = s.create_key("old-admin", is_admin=True)
    plain, _ = s.create_key("plain")
    with s.engine.begin() as conn:
        command.downgrade(config(conn), "0002")
    assert "is_superuser" not in {c["name"] for c in inspect(s.engine).get_columns("api_keys")}
    s.create_schema()
    assert s.get_key(admin.id).is_superuser and not s.get_key(plain.id).is_superuser
    assert "admin_actions" in inspect(s.engine).get_table_names()
    s.engine.dispose()


CONCURRENT = """
import sys, time
from rawinfer.tenancy.store import Store
s = Store(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
s.create_schema()
print("ok")
"""


def test_concurrent_create_schema_from_two_processes(db_url):
    start = time.time() + 2.5  # both processes import first, then start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, db_url, str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    engine = create_engine(db_url)
    assert current(engine) == "0004"
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_organisations(store):
    acme = store.create_org("acme")
    assert store.find_org("acme") == acme == store.find_org(acme.id)
    with pytest.raises(ValueError):
        store.create_org("acme")
    with pytest.raises(ValueError):
        store.create_org("bad name")
    assert [o.name for o in store.list_orgs()] == ["acme"]
    store.create_namespace("acme-ns", org="acme")
    with pytest.raises(ValueError):
        store.delete_org("acme")  # still has a namespace
    store.create_org("empty")
    assert (
        store.delete_org("empty")
        and store.find_org("empty") is None
        and not store.delete_org("empty")
    )


def test_keys_targets_limits_expiry_and_revocation(store):
    a = store.create_namespace("team-a", rpm=100, tpm=0)
    store.create_namespace("team-b")
    info, secret = store.create_key(
        "ci",
        namespaces=["team-a"],
        targets=["local/all-minilm-l6-v2", "openai/*", "chat"],
        rpm=10,
        tpm=5000,
        expires_at=datetime.now(timezone.utc) + timedelta(days=1),
    )
    k = store.authenticate(secret)
    assert k == info and k.active() and k.may_use(a)
    assert (k.targets, k.rpm, k.tpm) == (("local/all-minilm-l6-v2", "openai/*", "chat"), 10, 5000)
    assert k.may_target("local/all-minilm-l6-v2", "text_embedding")
    assert k.may_target("openai/gpt-4o-mini", "openai")  # prefix pattern
    assert k.may_target("local/smollm2", "chat")  # by backend
    assert not k.may_target("multilingual_e5_large_instruct_v1", "text_embedding")
    assert not k.may_target(
        "mixpeek://text_extractor@v1/x", "text_embedding", "multilingual_e5_large_instruct_v1"
    )
    open_key, _ = store.create_key("open")
    assert open_key.targets is None and open_key.may_target("anything", "any")
    assert store.key_limits(info.id) == (10, 5000) and store.namespace_limits(a.id) == (100, 0)

    updated = store.update_key(info.id, targets=["multilingual_e5_large_instruct_v1"], rpm=None)
    assert updated.may_target(
        "mixpeek://text_extractor@v1/x", "text_embedding", "multilingual_e5_large_instruct_v1"
    )
    assert (updated.rpm, updated.tpm, updated.name) == (None, 5000, "ci")  # untouched fields kept
    assert store.update_key(info.id, targets=None, namespaces=None).targets is None
    assert store.set_key_limits(info.id, tpm=0).tpm == 0
    assert store.set_namespace_limits("team-b", rpm=7).rpm == 7
    with pytest.raises(ValueError):
        store.set_key_limits(info.id, rpm=-1)
    with pytest.raises(LookupError):
        store.update_key("key_nope", rpm=1)
    with pytest.raises(ValueError):
        store.create_key("x", namespaces=["team-a"], org="elsewhere")

    # limits resolve: own value, else the configured default; 0 = unlimited
    k = store.get_key(info.id)
    subs = subjects_for(
        k, store.find_namespace("team-a"), LimitSettings(key_rpm=60, namespace_tpm=1000)
    )
    assert {(s.name.split(":")[0], s.name.split(":")[2], s.limit) for s in subs} == {
        ("key", "rpm", 60),
        ("ns", "rpm", 100),
    }

    expired, old = store.create_key(
        "old", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)
    )
    assert not store.authenticate(old).active()
    store.update_key(expired.id, expires_at=None)
    assert store.authenticate(old).active()
    assert store.revoke_key(info.id) and not store.authenticate(secret).active()
    assert [x.id for x in store.list_keys("default")] == [info.id, open_key.id, expired.id]
    assert store.list_keys("other") == []


def _row(
    ns,
    key,
    *,
    day=0,
    minute=0,
    status=200,
    task="text_embedding",
    target="local/all-minilm-l6-v2",
    **kw,
):
    return {
        "id": uuid.uuid4().hex,
        "created_at": T0 + timedelta(days=day, minutes=minute),
        "namespace_id": ns,
        "key_id": key,
        "org_id": "org_x",
        "status": status,
        "task": task,
        "target": target,
        "request_id": "req",
        **kw,
    }


def test_usage_summary_totals_and_grouping(store):
    a, b = store.create_namespace("a").id, store.create_namespace("b").id
    rows = [
        _row(a, "k1", prompt_tokens=10, completion_tokens=5, latency_ms=10.0, cost=0.25),
        _row(
            a,
            "k1",
            minute=1,
            prompt_tokens=3,
            cache_hit=True,
            latency_ms=20.0,
            task="chat",
            target="local/smollm2",
        ),
        _row(a, "k2", day=1, status=429, latency_ms=1.0),
        _row(
            a,
            "k2",
            day=1,
            task="transcription",
            target="openai/whisper-1",
            audio_seconds=2.5,
            media_bytes=4096,
            cost=0.125,
        ),
        _row(b, "k3", prompt_tokens=1000, cost=9.0),
    ]
    assert store.record_usage(rows) == 5
    assert store.record_usage(rows[:2] + [_row(a, "k1", day=2)]) == 1  # re-sent rows are ignored
    [total] = store.usage_summary(a, T0 - timedelta(hours=1), T0 + timedelta(days=2))
    # the cache hit's 3 tokens were served from the semantic cache: counted apart from the models'
    # tokens
    assert total == {
        "requests": 4,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cached_tokens": 3,
        "audio_seconds": 2.5,
        "media_bytes": 4096,
        "cache_hits": 1,
        "errors": 1,
        "latency_ms_avg": 7.75,
        "cost": 0.375,  # the namespace's records' costs summed; b's never leak in
    }
    days = store.usage_summary(a, T0 - timedelta(days=1), None, "day")
    assert [(d["day"], d["requests"]) for d in days] == [
        ("2026-11-01", 2),
        ("2026-11-02", 2),
        ("2026-11-03", 1),
    ]
    by_key = {r["key"]: r["requests"] for r in store.usage_summary(a, None, None, "key")}
    assert by_key == {"k1": 3, "k2": 2}
    by_status = {
        r["status"]: (r["requests"], r["errors"])
        for r in store.usage_summary(a, None, None, "status")
    }
    assert by_status == {200: (4, 0), 429: (1, 1)}
    by_task = {
        r["task"]: r["prompt_tokens"]
        for r in store.usage_summary(a, None, T0 + timedelta(days=2), "task")
    }
    assert by_task == {"chat": 0, "text_embedding": 10, "transcription": 0}
    assert {r["target"] for r in store.usage_summary(a, None, None, "target")} == {
        "local/all-minilm-l6-v2",
        "local/smollm2",
        "openai/whisper-1",
    }
    # [start, end): a row at exactly `end` is not counted; other namespaces never leak in
    assert store.usage_summary(a, T0, T0 + timedelta(minutes=1))[0]["requests"] == 1
    assert store.usage_summary(a, None, None, key_id="k2")[0]["requests"] == 2
    assert store.usage_summary(b, None, None)[0]["prompt_tokens"] == 1000
    assert store.usage_summary(a, T0 + timedelta(days=30), None)[0]["requests"] == 0
    with pytest.raises(ValueError):
        store.usage_summary(a, None, None, "model")


def test_admin_functions(store):
    run = asyncio.run
    org = run(admin.create_org(store, admin.OrgCreate(name="acme")))
    with pytest.raises(InvalidRequest):
        run(admin.create_org(store, admin.OrgCreate(name="acme")))
    ns = run(admin.create_namespace(store, admin.NamespaceCreate(name="team", org="acme", rpm=50)))
    assert ns["org_id"] == org["id"] and ns["rpm"] == 50
    with pytest.raises(NotFound):
        run(admin.create_namespace(store, admin.NamespaceCreate(name="x", org="nope")))
    made = run(
        admin.create_key(
            store,
            admin.KeyCreate(
                name="svc",
                org="acme",
                namespaces=["team"],
                targets=["local/*"],
                tpm=100,
                expires_in_days=1,
            ),
        )
    )
    key_id, secret = made["key"]["id"], made["secret"]
    assert store.authenticate(secret).id == key_id and made["key"]["targets"] == ["local/*"]
    assert "secret" not in run(admin.get_key(store, key_id)) and secret not in str(
        run(admin.list_keys(store, "acme"))
    )
    upd = run(
        admin.update_key(store, key_id, admin.KeyUpdate.model_validate({"targets": None, "rpm": 5}))
    )
    assert upd["targets"] is None and upd["rpm"] == 5 and upd["tpm"] == 100  # tpm not sent: kept
    assert (
        run(admin.set_key_limits(store, key_id, admin.LimitsUpdate.model_validate({"tpm": None})))[
            "tpm"
        ]
        is None
    )
    assert run(admin.set_namespace_limits(store, "team", admin.LimitsUpdate(tpm=0)))["tpm"] == 0
    assert run(admin.revoke_key(store, key_id))["active"] is False
    with pytest.raises(NotFound):
        run(admin.revoke_key(store, "key_nope"))
    with pytest.raises(InvalidRequest):  # an empty list is a mistake, not "all"
        run(admin.create_key(store, admin.KeyCreate(targets=[])))
    with pytest.raises(NotFound):
        run(admin.get_namespace(store, "nope"))
    with pytest.raises(Forbidden):
        admin.require_admin(store.get_key(key_id))
    store.record_usage([_row(ns["id"], key_id, prompt_tokens=7)])
    out = run(admin.usage(store, "team", "2026-11-01", "2026-11-01", "key"))
    assert (
        out["data"] == [{"key": key_id, **out["data"][0], "prompt_tokens": 7}]
        and out["namespace"] == ns["id"]
    )
    assert (
        run(admin.usage(store, ns["id"], "2026-10-01T00:00:00Z", "1800000000"))["data"][0][
            "requests"
        ]
        == 1
    )
    for bad in (
        {"from_": "yesterday"},
        {"group_by": "model"},
        {"from_": "2026-11-02", "to": "2026-11-01"},
    ):
        with pytest.raises(InvalidRequest):
            run(admin.usage(store, "team", **bad))
    with pytest.raises(InvalidRequest):
        run(admin.delete_org(store, "acme"))
