"""The Store: organisations, namespaces, API keys and their limits, and the usage table, through
SQLAlchemy (SQLite by default; `Settings.database_url` picks another engine, e.g. PostgreSQL).
Limits: NULL = the configured default, 0 = unlimited, N = N per minute. Every datetime is UTC.
Schema, key secrets and concurrency: docs/notes/tenancy.md."""

from __future__ import annotations

import hmac
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from rawinfer.tenancy.keys import KeyInfo, NamespaceInfo, OrgInfo, _key_info, _ns_info
from rawinfer.tenancy.tables import (
    _DUMMY_HASH,
    KEY_RE,
    LOOKUP_LEN,
    NAMESPACE_ID_RE,
    NAMESPACE_NAME_RE,
    ORG_NAME_RE,
    UNSET,
    ApiKey,
    Namespace,
    Organization,
    _new_id,
    _now,
    hash_key,
    new_key_secret,
    utc,
)
from rawinfer.tenancy.usage import insert_usage, summarize_usage


def _check_limit(name: str, value: Any) -> None:
    if (
        value is not UNSET
        and value is not None
        and (not isinstance(value, int) or isinstance(value, bool) or value < 0)
    ):
        raise ValueError(f"{name} must be a whole number >= 0 (0: unlimited) or null (the default)")


class Store:
    def __init__(self, url: str):
        u = make_url(url)
        kwargs: dict = {}
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        elif u.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 10}
        self.url = u
        self.engine = create_engine(url, pool_pre_ping=True, **kwargs)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Alembic `upgrade head` (rawinfer/tenancy/migrations), serialised across processes."""
        from rawinfer.tenancy.migrations import upgrade

        upgrade(self.engine)

    # ---------------------------------------------------------------- organisations
    def ensure_org(self, name: str = "default") -> str:
        with self.session.begin() as s:
            org = s.scalar(select(Organization).where(Organization.name == name))
            if org is None:
                if not ORG_NAME_RE.match(name):
                    raise ValueError(
                        "an organisation name is 1-128 letters, digits, '.', '_' and '-'"
                    )
                org = Organization(id=_new_id("org_", 12), name=name)
                s.add(org)
            return org.id

    def create_org(self, name: str) -> OrgInfo:
        if self.find_org(name) is not None:
            raise ValueError(f"organisation {name!r} exists")
        return self.find_org(self.ensure_org(name))

    def find_org(self, id_or_name: str) -> OrgInfo | None:
        with self.session() as s:
            o = s.scalar(
                select(Organization).where(
                    (Organization.id == id_or_name) | (Organization.name == id_or_name)
                )
            )
            return OrgInfo(o.id, o.name, utc(o.created_at)) if o else None

    def list_orgs(self) -> list[OrgInfo]:
        with self.session() as s:
            return [
                OrgInfo(o.id, o.name, utc(o.created_at))
                for o in s.scalars(select(Organization).order_by(Organization.name))
            ]

    def delete_org(self, id_or_name: str) -> bool:
        """Deletes an organisation that has no namespaces and no keys left."""
        org = self.find_org(id_or_name)
        if org is None:
            return False
        with self.session.begin() as s:
            used = s.scalar(
                select(func.count()).select_from(Namespace).where(Namespace.org_id == org.id)
            ) or s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.org_id == org.id))
            if used:
                raise ValueError(f"organisation {org.name!r} still has namespaces or keys")
            s.delete(s.get(Organization, org.id))
        return True

    def _org_id(self, org: str) -> str:
        found = self.find_org(org)
        return found.id if found else self.ensure_org(org)

    # ---------------------------------------------------------------- namespaces
    def create_namespace(
        self, name: str, org: str = "default", *, rpm: int | None = None, tpm: int | None = None
    ) -> NamespaceInfo:
        if not NAMESPACE_NAME_RE.match(name):
            raise ValueError(
                "a namespace name is 1-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        _check_limit("rpm", rpm), _check_limit("tpm", tpm)
        org_id = self._org_id(org)
        with self.session.begin() as s:
            if s.scalar(select(Namespace).where(Namespace.name == name)) is not None:
                raise ValueError(f"namespace {name!r} exists")
            ns = Namespace(id=_new_id("ns_"), name=name, org_id=org_id, rpm=rpm, tpm=tpm)
            s.add(ns)
            return _ns_info(ns)

    def list_namespaces(self, org: str | None = None) -> list[NamespaceInfo]:
        q = select(Namespace).order_by(Namespace.name)
        if org is not None:
            found = self.find_org(org)
            q = q.where(Namespace.org_id == (found.id if found else org))
        with self.session() as s:
            return [_ns_info(n) for n in s.scalars(q)]

    def find_namespace(self, id_or_name: str) -> NamespaceInfo | None:
        col = Namespace.id if NAMESPACE_ID_RE.match(id_or_name) else Namespace.name
        with self.session() as s:
            ns = s.scalar(select(Namespace).where(col == id_or_name))
            return _ns_info(ns) if ns else None

    def set_namespace_limits(
        self, id_or_name: str, *, rpm: int | None = UNSET, tpm: int | None = UNSET
    ) -> NamespaceInfo:
        """None resets a limit to the configured default; 0 makes it unlimited."""
        _check_limit("rpm", rpm), _check_limit("tpm", tpm)
        ns = self.find_namespace(id_or_name)
        if ns is None:
            raise LookupError(f"no namespace {id_or_name!r}")
        with self.session.begin() as s:
            row = s.get(Namespace, ns.id)
            if rpm is not UNSET:
                row.rpm = rpm
            if tpm is not UNSET:
                row.tpm = tpm
            return _ns_info(row)

    def namespace_limits(self, namespace_id: str) -> tuple[int | None, int | None]:
        with self.session() as s:
            row = s.get(Namespace, namespace_id)
            return (row.rpm, row.tpm) if row else (None, None)

    # ---------------------------------------------------------------- keys
    def _namespace_ids(self, refs: list[str] | None, org_id: str, org: str) -> list[str] | None:
        if refs is None:
            return None
        out = []
        for ref in refs:
            ns = self.find_namespace(ref)
            if ns is None or ns.org_id != org_id:
                raise ValueError(f"no namespace {ref!r} in organisation {org!r}")
            out.append(ns.id)
        return out

    def create_key(
        self,
        name: str = "",
        *,
        org: str = "default",
        namespaces: list[str] | None = None,
        is_admin: bool = False,
        expires_at: datetime | None = None,
        targets: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        is_superuser: bool = False,
    ) -> tuple[KeyInfo, str]:
        """Returns the key's record and its secret; the secret is not kept. `namespaces`/`targets`
        None (or empty namespaces, as before) means every namespace of the org / every target."""
        _check_limit("rpm", rpm), _check_limit("tpm", tpm)
        org_id = self._org_id(org)
        ns_ids = self._namespace_ids(namespaces or None, org_id, org)
        secret = new_key_secret()
        with self.session.begin() as s:
            k = ApiKey(
                id=_new_id("key_", 12),
                name=name,
                lookup=secret[3 : 3 + LOOKUP_LEN],
                secret_hash=hash_key(secret),
                org_id=org_id,
                namespaces=ns_ids,
                is_admin=is_admin or is_superuser,
                is_superuser=is_superuser,
                expires_at=utc(expires_at),
                targets=list(targets) if targets is not None else None,
                rpm=rpm,
                tpm=tpm,
            )
            s.add(k)
            return _key_info(k), secret

    def get_key(self, key_id: str) -> KeyInfo | None:
        with self.session() as s:
            k = s.get(ApiKey, key_id)
            return _key_info(k) if k else None

    def list_keys(self, org: str | None = None) -> list[KeyInfo]:
        q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if org is not None:
            found = self.find_org(org)
            q = q.where(ApiKey.org_id == (found.id if found else org))
        with self.session() as s:
            return [_key_info(k) for k in s.scalars(q)]

    def update_key(
        self,
        key_id: str,
        *,
        name: str = UNSET,
        namespaces: list[str] | None = UNSET,
        targets: list[str] | None = UNSET,
        expires_at: datetime | None = UNSET,
        rpm: int | None = UNSET,
        tpm: int | None = UNSET,
    ) -> KeyInfo:
        """Changes what is given (UNSET leaves a field as it is; namespaces/targets None: all,
        expires_at None: never). Raises LookupError, ValueError."""
        _check_limit("rpm", rpm), _check_limit("tpm", tpm)
        current = self.get_key(key_id)
        if current is None:
            raise LookupError(f"no key {key_id!r}")
        ns_ids = (
            UNSET
            if namespaces is UNSET
            else self._namespace_ids(namespaces or None, current.org_id, current.org_id)
        )
        with self.session.begin() as s:
            k = s.get(ApiKey, key_id)
            for field, value in (
                ("name", name),
                ("namespaces", ns_ids),
                ("rpm", rpm),
                ("tpm", tpm),
                ("targets", list(targets) if targets not in (None, UNSET) else targets),
                ("expires_at", utc(expires_at) if expires_at is not UNSET else UNSET),
            ):
                if value is not UNSET:
                    setattr(k, field, value)
            return _key_info(k)

    def set_key_limits(
        self, key_id: str, *, rpm: int | None = UNSET, tpm: int | None = UNSET
    ) -> KeyInfo:
        return self.update_key(key_id, rpm=rpm, tpm=tpm)

    def key_limits(self, key_id: str) -> tuple[int | None, int | None]:
        with self.session() as s:
            k = s.get(ApiKey, key_id)
            return (k.rpm, k.tpm) if k else (None, None)

    def revoke_key(self, key_id: str) -> bool:
        with self.session.begin() as s:
            k = s.get(ApiKey, key_id)
            if k is None:
                return False
            if k.revoked_at is None:
                k.revoked_at = _now()
            return True

    def authenticate(self, secret: str) -> KeyInfo | None:
        """The key this secret belongs to, or None. Constant-time in the secret's content."""
        if not KEY_RE.match(secret):
            hmac.compare_digest(_DUMMY_HASH, hash_key(secret))
            return None
        digest = hash_key(secret)
        with self.session() as s:
            rows = list(
                s.scalars(select(ApiKey).where(ApiKey.lookup == secret[3 : 3 + LOOKUP_LEN]))
            )
        match = None
        for k in rows or [None]:
            stored = k.secret_hash if k is not None else _DUMMY_HASH
            if hmac.compare_digest(stored, digest) and k is not None:
                match = k
        return _key_info(match) if match is not None else None

    # ---------------------------------------------------------------- usage
    def record_usage(self, rows: list[dict[str, Any]]) -> int:
        """Inserts usage rows in one transaction; a row whose `id` is already stored is skipped
        (so a batch may be re-sent after a failure). Unknown fields are ignored, missing ones take
        their defaults. Returns how many rows were new. (SQL in usage.py.)"""
        return insert_usage(self.engine, rows)

    def usage_summary(
        self,
        namespace_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        group_by: str | None = None,
        *,
        key_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Totals of a namespace's usage in [start, end) (either open), one row per group
        (`group_by` in key, target, task, status, day (UTC); None: one row of totals): requests,
        prompt/completion/total tokens, audio seconds, media bytes, cache hits, errors (status >=
        400), mean latency. (SQL in usage.py.)"""
        return summarize_usage(self.engine, namespace_id, start, end, group_by, key_id=key_id)
