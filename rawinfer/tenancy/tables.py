"""The tenancy tables (SQLAlchemy; the schema itself is owned by the Alembic migrations) and the
constants and helpers they share: ids, UTC datetimes, key hashing."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

KEY_PREFIX = "sk_"
KEY_RE = re.compile(r"^sk_[A-Za-z0-9_-]{32,128}$")
LOOKUP_LEN = 8  # characters after the prefix kept in clear to find the row
NAMESPACE_ID_RE = re.compile(r"^ns_[A-Za-z0-9]{12,64}$")
NAMESPACE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
ORG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()  # "leave as it is"
_ALNUM = string.ascii_lowercase + string.digits
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def utc(dt: datetime | None) -> datetime | None:
    """Aware UTC; a naive datetime is taken as UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


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
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    lookup: Mapped[str] = mapped_column(String(LOOKUP_LEN), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    namespaces: Mapped[list | None] = mapped_column(
        JSON, nullable=True
    )  # None: every namespace of the org
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # an admin key of every organisation; a plain admin key manages its own organisation only
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    targets: Mapped[list | None] = mapped_column(JSON, nullable=True)  # None: every target
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)


class UsageRecord(Base):
    """One served (or refused) request. `id` is made by the ledger, so a re-sent row is ignored."""

    __tablename__ = "usage_records"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str] = mapped_column(String(128), default="")
    org_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    namespace_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    target: Mapped[str] = mapped_column(String(300), default="")
    backend: Mapped[str] = mapped_column(String(128), default="")
    task: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[int] = mapped_column(Integer, default=200)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    media_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)  # at the target's price (catalog)
    __table_args__ = (
        Index("ix_usage_namespace_time", "namespace_id", "created_at"),
        Index("ix_usage_key_time", "key_id", "created_at"),
        Index("ix_usage_time", "created_at"),
    )


class AdminAction(Base):
    """One call of the admin API: who (key, its organisation), what (method, path), the answer."""

    __tablename__ = "admin_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    key_id: Mapped[str] = mapped_column(String(32))
    org_id: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    status: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index("ix_admin_actions_org_time", "org_id", "created_at"),)


USAGE_COLUMNS = tuple(c.name for c in UsageRecord.__table__.columns)


USAGE_DEFAULTS: dict[str, Any] = {
    "id": None,
    "created_at": None,
    "request_id": "",
    "org_id": None,
    "key_id": None,
    "namespace_id": None,
    "target": "",
    "backend": "",
    "task": "",
    "status": 200,
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "audio_seconds": 0.0,
    "media_bytes": 0,
    "cache_hit": False,
    "latency_ms": 0.0,
    "cost": 0.0,
}
