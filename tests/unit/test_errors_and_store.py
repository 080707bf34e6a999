"""The status table, the wire form of errors, and key storage: no Ray."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from rawinfer.contract import errors as E
from rawinfer.tenancy.store import Store
from rawinfer.tenancy.tables import KEY_RE, NAMESPACE_ID_RE, hash_key
from router.errors import STATUS, error_body, for_status, invalid

EXPECTED = {
    E.InvalidRequest: 400,
    E.Unauthenticated: 401,
    E.Forbidden: 403,
    E.NotFound: 404,
    E.MethodNotAllowed: 405,
    E.PayloadTooLarge: 413,
    E.RateLimited: 429,
    E.InferenceFailed: 500,
    E.ProviderError: 502,
    E.Unavailable: 503,
    E.DeadlineExceeded: 504,
}


@pytest.mark.parametrize("cls,status", EXPECTED.items(), ids=[c.__name__ for c in EXPECTED])
def test_status_table_and_body(cls, status):
    exc = (
        cls("say what to change", {"k": 1})
        if cls is not E.RateLimited
        else cls("slow down", 3.0, {"k": 1})
    )
    got, body = error_body(exc, "req_1")
    assert got == status == STATUS[cls][0]
    assert body == {
        "success": False,
        "status": status,
        "request_id": "req_1",
        "error": {"type": STATUS[cls][1], "message": exc.message, "details": {"k": 1}},
    }


@pytest.mark.parametrize("cls", EXPECTED)
def test_wire_round_trip(cls):
    exc = cls("m", {"d": [1]}) if cls is not E.RateLimited else cls("m", 2.5, {"d": [1]})
    wire = E.to_wire(exc)
    assert E.is_wire_error(wire)
    back = E.from_wire(wire)
    assert type(back) is cls and back.message == "m" and back.details == {"d": [1]}
    if cls is E.RateLimited:
        assert back.retry_after_s == 2.5


def test_unknown_wire_kind_is_a_500_and_framework_statuses_map():
    assert type(E.from_wire({"error": {"kind": "Weird", "message": "x"}})) is E.InferenceFailed
    assert (
        type(for_status(404, "x")) is E.NotFound and type(for_status(418, "x")) is E.InvalidRequest
    )
    assert type(for_status(500, "x")) is E.InferenceFailed
    assert not E.is_wire_error({"data": 1}) and not E.is_wire_error({"error": 1, "data": 2})


def test_validation_errors_do_not_echo_values():
    class M(BaseModel):
        n: int
        s: str

    with pytest.raises(ValidationError) as e:
        M.model_validate({"n": "sk_secret_value_that_must_not_leak", "s": 1})
    exc = invalid(e.value, "parameters")
    assert exc.message.startswith("parameters.n:") and "(and 1 more)" in exc.message
    assert "sk_secret" not in str(exc.details) and "sk_secret" not in exc.message
    assert [p["field"] for p in exc.details["errors"]] == ["parameters.n", "parameters.s"]


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    s.create_schema()
    return s


def test_keys_are_shown_once_and_stored_only_as_hash(store, tmp_path):
    ns = store.create_namespace("team")
    info, secret = store.create_key("k", namespaces=["team"])
    assert KEY_RE.match(secret) and len(secret) >= 3 + 32 and NAMESPACE_ID_RE.match(ns.id)
    assert store.authenticate(secret).id == info.id
    raw = (tmp_path / "db.sqlite").read_bytes()
    assert secret.encode() not in raw and secret[3:].encode() not in raw
    assert hash_key(secret).encode() in raw
    assert info.namespaces == (ns.id,)


def test_wrong_malformed_revoked_and_expired_keys(store):
    store.create_namespace("team")
    info, secret = store.create_key("k")
    assert store.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.authenticate("sk_short") is None and store.authenticate("") is None
    assert store.authenticate("Bearer " + secret) is None
    assert store.revoke_key(info.id) and not store.authenticate(secret).active()
    assert not store.revoke_key("key_nope")
    _, old = store.create_key("old", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert not store.authenticate(old).active()
    _, fresh = store.create_key("fresh", expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    assert store.authenticate(fresh).active()


def test_namespace_access(store):
    a, b = store.create_namespace("a"), store.create_namespace("b")
    x = store.create_namespace("x", org="other")
    limited, _ = store.create_key("l", namespaces=["a"])
    everything, _ = store.create_key("e")
    assert limited.may_use(a) and not limited.may_use(b) and not limited.may_use(x)
    assert everything.may_use(a) and everything.may_use(b) and not everything.may_use(x)
    assert (
        store.find_namespace(a.id) == a == store.find_namespace("a")
        and store.find_namespace("zz") is None
    )
    with pytest.raises(ValueError):
        store.create_key("bad", namespaces=["x"])  # another organisation's namespace


@pytest.mark.parametrize(
    "name", ["", "A", "has space", "-lead", "trail-", "ns_abcdefghijkl", "x" * 64, "under_score"]
)
def test_namespace_names_refused(store, name):
    with pytest.raises(ValueError):
        store.create_namespace(name)
    assert store.find_namespace("ok") is None


def test_duplicate_namespace_refused(store):
    store.create_namespace("dup")
    with pytest.raises(ValueError):
        store.create_namespace("dup")


def test_key_comparison_time_does_not_depend_on_the_matching_prefix(store):
    """A wrong secret sharing the stored key's lookup prefix and one sharing nothing take the
    same time: the hash comparison is constant-time and the row lookup happens either way."""
    _, secret = store.create_key("k")
    near = secret[:-4] + "zzzz" if not secret.endswith("zzzz") else secret[:-4] + "yyyy"
    far = "sk_" + ("Q" * (len(secret) - 3))

    def timed(s, n=300):
        t = time.perf_counter()
        for _ in range(n):
            store.authenticate(s)
        return (time.perf_counter() - t) / n

    timed(near, 50), timed(far, 50)
    t_near, t_far = min(timed(near) for _ in range(3)), min(timed(far) for _ in range(3))
    assert abs(t_near - t_far) / max(t_near, t_far) < 0.5, (t_near, t_far)
