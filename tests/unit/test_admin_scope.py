"""Admin keys scoped to their organisation, superusers over all, the audit trail and the per-key
throttle: the admin dispatcher over a real SQLite store (the HTTP route only adds the key check,
tested in test_api_tenancy)."""

from __future__ import annotations

import asyncio
import json

import pytest

from rawinfer.contract.errors import Forbidden, InvalidRequest, NotFound, RateLimited
from rawinfer.tenancy import audit
from rawinfer.tenancy.store import Store
from router.admin_routes import AdminThrottle, dispatch


@pytest.fixture
def world(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/t.db")
    s.create_schema()
    for org in ("acme", "rival"):
        s.create_org(org)
        s.create_namespace(f"{org}-ns", org)
    acme_admin, _ = s.create_key("acme-admin", org="acme", is_admin=True)
    root, _ = s.create_key("root", is_superuser=True)
    rival_key, _ = s.create_key("rival-app", org="rival")
    yield s, acme_admin, root, rival_key
    s.engine.dispose()


def call(store, actor, method, path, body=None, **query):
    raw = json.dumps(body).encode() if body is not None else b""
    return asyncio.run(dispatch(store, actor, method, path, query, raw, 1 << 20))


def test_an_org_admin_sees_and_manages_only_its_organisation(world):
    s, acme, _, rival_key = world
    assert [o["name"] for o in call(s, acme, "GET", "orgs")[1]["data"]] == ["acme"]
    assert [n["name"] for n in call(s, acme, "GET", "namespaces")[1]["data"]] == ["acme-ns"]
    assert {k["name"] for k in call(s, acme, "GET", "keys")[1]["data"]} == {"acme-admin"}
    # what lies in another organisation does not exist for it
    for path in ("orgs/rival", "namespaces/rival-ns", f"keys/{rival_key.id}"):
        with pytest.raises(NotFound):
            call(s, acme, "GET", path)
    with pytest.raises(NotFound):
        call(s, acme, "POST", f"keys/{rival_key.id}/revoke")
    with pytest.raises(NotFound):
        call(s, acme, "PUT", "namespaces/rival-ns/limits", {"rpm": 1})
    with pytest.raises(NotFound):
        call(s, acme, "GET", "namespaces", org="rival")
    with pytest.raises(NotFound):
        call(s, acme, "GET", "usage", namespace="rival-ns")
    assert s.get_key(rival_key.id).active()  # untouched
    # creating lands in its own organisation; elsewhere, or superuser things, are refused
    status, ns = call(s, acme, "POST", "namespaces", {"name": "acme-two"})
    assert status == 201 and ns["org_id"] == s.find_org("acme").id
    status, made = call(s, acme, "POST", "keys", {"name": "acme-app", "is_admin": True})
    assert status == 201 and made["key"]["org_id"] == ns["org_id"]
    assert not made["key"]["is_superuser"]
    for body, path in (
        ({"name": "x", "org": "rival"}, "namespaces"),
        ({"name": "x", "org": "rival"}, "keys"),
        ({"name": "x", "is_superuser": True}, "keys"),
        ({"name": "newco"}, "orgs"),
    ):
        with pytest.raises(Forbidden):
            call(s, acme, "POST", path, body)
    with pytest.raises(Forbidden):
        call(s, acme, "DELETE", "orgs/acme")
    with pytest.raises(Forbidden):
        call(s, acme, "GET", "cache")  # every namespace's stats at once


def test_a_superuser_manages_every_organisation(world):
    s, _, root, rival_key = world
    assert {o["name"] for o in call(s, root, "GET", "orgs")[1]["data"]} >= {"acme", "rival"}
    assert call(s, root, "GET", f"keys/{rival_key.id}")[1]["org_id"] == rival_key.org_id
    status, made = call(s, root, "POST", "keys", {"name": "root2", "is_superuser": True})
    assert status == 201 and made["key"]["is_superuser"] and made["key"]["is_admin"]
    assert call(s, root, "POST", "orgs", {"name": "newco"})[0] == 201


def test_every_admin_call_is_audited_answered_or_refused(world):
    s, acme, root, rival_key = world
    call(s, acme, "GET", "namespaces")
    with pytest.raises(NotFound):
        call(s, acme, "GET", f"keys/{rival_key.id}")
    with pytest.raises(InvalidRequest):
        call(s, acme, "POST", "namespaces", {"name": "Not A Valid Name!"})
    call(s, root, "GET", "orgs", org="x")
    rows = audit.actions(s)
    assert [(r["key_id"], r["method"], r["path"], r["status"]) for r in rows] == [
        (root.id, "GET", "orgs?org=x", 200),
        (acme.id, "POST", "namespaces", 400),
        (acme.id, "GET", f"keys/{rival_key.id}", 404),
        (acme.id, "GET", "namespaces", 200),
    ]
    # the trail over the API: an org admin reads its own organisation's rows only
    mine = call(s, acme, "GET", "audit")[1]["data"]
    assert {r["org_id"] for r in mine} == {acme.org_id} and len(mine) == 3
    assert len(call(s, root, "GET", "audit", limit="2")[1]["data"]) == 2
    with pytest.raises(InvalidRequest):
        call(s, root, "GET", "audit", limit="0")


def test_the_admin_throttle_refuses_past_its_rate_and_recovers():
    now = [0.0]
    t = AdminThrottle(3, clock=lambda: now[0])
    for _ in range(3):
        t.check("key_a")
    with pytest.raises(RateLimited) as e:
        t.check("key_a")
    assert 59 < e.value.retry_after_s <= 60
    t.check("key_b")  # per key
    now[0] = 60.5
    t.check("key_a")
