"""API keys, namespaces and organisations, stored through SQLAlchemy.

SQLite is the embedded default; `Settings.database_url` selects another engine. Keys are
`sk_` + 43 random URL-safe characters, shown once at creation and stored only as a SHA-256 hash
(keys carry 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force). A
key is found by a short non-secret lookup prefix and then compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, String, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

KEY_PREFIX = "sk_"
KEY_RE = re.compile(r"^sk_[A-Za-z0-9_-]{32,128}$")
LOOKUP_LEN = 8  # characters after the prefix kept in clear to find the row
NAMESPACE_ID_RE = re.compile(r"^ns_[A-Za-z0-9]{12,64}$")
NAMESPACE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ALNUM = string.ascii_lowercase + string.digits
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_id(prefix: str, n: int = 16) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(n))


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Namespace(Base):
    __tablename__ = "namespaces"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    lookup: Mapped[str] = mapped_column(String(LOOKUP_LEN), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    namespaces: Mapped[list | None] = mapped_column(JSON, nullable=True)  # None: every namespace of the org
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class KeyInfo:
    """A key as the ingress sees it (never the secret)."""

    id: str
    name: str
    org_id: str
    namespaces: tuple[str, ...] | None
    is_admin: bool
    revoked: bool
    expires_at: datetime | None

    def active(self, now: datetime | None = None) -> bool:
        if self.revoked:
            return False
        if self.expires_at is None:
            return True
        exp = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=timezone.utc)
        return exp > (now or _now())

    def may_use(self, ns: "NamespaceInfo") -> bool:
        return ns.org_id == self.org_id and (self.namespaces is None or ns.id in self.namespaces)


@dataclass(frozen=True)
class NamespaceInfo:
    id: str
    name: str
    org_id: str


def _key_info(k: ApiKey) -> KeyInfo:
    return KeyInfo(k.id, k.name, k.org_id, tuple(k.namespaces) if k.namespaces is not None else None,
                   k.is_admin, k.revoked_at is not None, k.expires_at)


def _ns_info(n: Namespace) -> NamespaceInfo:
    return NamespaceInfo(n.id, n.name, n.org_id)


class Store:
    def __init__(self, url: str):
        u = make_url(url)
        kwargs: dict = {}
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, pool_pre_ping=True, **kwargs)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    # ---------------------------------------------------------------- organisations
    def ensure_org(self, name: str = "default") -> str:
        with self.session.begin() as s:
            org = s.scalar(select(Organization).where(Organization.name == name))
            if org is None:
                org = Organization(id=_new_id("org_", 12), name=name)
                s.add(org)
            return org.id

    # ---------------------------------------------------------------- namespaces
    def create_namespace(self, name: str, org: str = "default") -> NamespaceInfo:
        if not NAMESPACE_NAME_RE.match(name):
            raise ValueError("a namespace name is 1-63 lowercase letters, digits and '-', "
                             "starting and ending with a letter or digit")
        org_id = self.ensure_org(org)
        with self.session.begin() as s:
            if s.scalar(select(Namespace).where(Namespace.name == name)) is not None:
                raise ValueError(f"namespace {name!r} exists")
            ns = Namespace(id=_new_id("ns_"), name=name, org_id=org_id)
            s.add(ns)
            return _ns_info(ns)

    def list_namespaces(self) -> list[NamespaceInfo]:
        with self.session() as s:
            return [_ns_info(n) for n in s.scalars(select(Namespace).order_by(Namespace.name))]

    def find_namespace(self, id_or_name: str) -> NamespaceInfo | None:
        col = Namespace.id if NAMESPACE_ID_RE.match(id_or_name) else Namespace.name
        with self.session() as s:
            ns = s.scalar(select(Namespace).where(col == id_or_name))
            return _ns_info(ns) if ns else None

    # ---------------------------------------------------------------- keys
    def create_key(self, name: str = "", *, org: str = "default", namespaces: list[str] | None = None,
                   is_admin: bool = False, expires_at: datetime | None = None) -> tuple[KeyInfo, str]:
        """Returns the key's record and its secret; the secret is not kept."""
        org_id = self.ensure_org(org)
        ns_ids = None
        if namespaces:
            ns_ids = []
            for ref in namespaces:
                ns = self.find_namespace(ref)
                if ns is None or ns.org_id != org_id:
                    raise ValueError(f"no namespace {ref!r} in organisation {org!r}")
                ns_ids.append(ns.id)
        secret = new_key_secret()
        with self.session.begin() as s:
            k = ApiKey(id=_new_id("key_", 12), name=name, lookup=secret[3:3 + LOOKUP_LEN],
                       secret_hash=hash_key(secret), org_id=org_id, namespaces=ns_ids,
                       is_admin=is_admin, expires_at=expires_at)
            s.add(k)
            return _key_info(k), secret

    def list_keys(self) -> list[KeyInfo]:
        with self.session() as s:
            return [_key_info(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]

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
            rows = list(s.scalars(select(ApiKey).where(ApiKey.lookup == secret[3:3 + LOOKUP_LEN])))
        match = None
        for k in rows or [None]:
            stored = k.secret_hash if k is not None else _DUMMY_HASH
            if hmac.compare_digest(stored, digest) and k is not None:
                match = k
        return _key_info(match) if match is not None else None
