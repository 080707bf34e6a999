"""What a key, a namespace and an organisation are to the rest of the service: frozen values read
from the store (the key's rights, limits, expiry and revocation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from rawinfer.tenancy.tables import ApiKey, Namespace, _now, utc


def _target_matches(pattern: str, names: Iterable[str]) -> bool:
    if pattern.endswith("*"):
        return any(n.startswith(pattern[:-1]) for n in names)
    return pattern in names


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
    targets: tuple[str, ...] | None = None  # None: every target
    rpm: int | None = None  # None: the configured default; 0: unlimited
    tpm: int | None = None
    is_superuser: bool = False  # an admin key of every organisation

    def active(self, now: datetime | None = None) -> bool:
        if self.revoked:
            return False
        if self.expires_at is None:
            return True
        return utc(self.expires_at) > (now or _now())

    def may_use(self, ns: "NamespaceInfo") -> bool:
        return ns.org_id == self.org_id and (self.namespaces is None or ns.id in self.namespaces)

    def may_target(self, address: str, backend: str, inference_name: str | None = None) -> bool:
        """Whether the key may call a target, named by how the client addressed it
        (`local/all-minilm-l6-v2`, an inference name, a feature URI), its backend, or its inference
        name. A pattern ending in `*` matches by prefix (`openai/*`)."""
        if self.targets is None:
            return True
        names = [n for n in (address, backend, inference_name) if n]
        return any(_target_matches(p, names) for p in self.targets)


@dataclass(frozen=True)
class NamespaceInfo:
    id: str
    name: str
    org_id: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class OrgInfo:
    id: str
    name: str
    created_at: datetime | None = None


def _key_info(k: ApiKey) -> KeyInfo:
    return KeyInfo(
        k.id,
        k.name,
        k.org_id,
        tuple(k.namespaces) if k.namespaces is not None else None,
        k.is_admin,
        k.revoked_at is not None,
        utc(k.expires_at),
        tuple(k.targets) if k.targets is not None else None,
        k.rpm,
        k.tpm,
        bool(k.is_superuser),
    )


def _ns_info(n: Namespace) -> NamespaceInfo:
    return NamespaceInfo(n.id, n.name, n.org_id, n.rpm, n.tpm)
