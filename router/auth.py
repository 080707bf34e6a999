"""Authentication and namespace checks at the ingress (401 / 400 / 404 / 403).

Lookups hit the database through `Store` in a worker thread and are cached for
`auth_cache_ttl_s` seconds, so a revoked key stops working on every replica within that time.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Callable, Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from rawinfer.contract.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from rawinfer.tenancy.keys import KeyInfo, NamespaceInfo
from rawinfer.tenancy.store import Store
from rawinfer.tenancy.tables import NAMESPACE_ID_RE, NAMESPACE_NAME_RE, hash_key

T = TypeVar("T")
STORE_THREADS = 4  # key and namespace lookups' own threads (docs/security.md)


class TTLCache(Generic[T]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000, pool: Executor | None = None):
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._data: dict[str, tuple[float, T]] = {}
        self._pool = pool  # the store's own threads: a flood elsewhere cannot starve key lookups

    async def get(self, key: str, load: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self._data.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        try:
            value = await asyncio.get_running_loop().run_in_executor(self._pool, load)
        except (
            SQLAlchemyError
        ):  # database down or locked: the client may retry, it is not its fault
            raise Unavailable("the key store is not reachable right now; retry shortly") from None
        if len(self._data) >= self.max_entries:
            self._data.clear()
        self._data[key] = (now, value)
        return value


def bearer_secret(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing API key: send the header 'Authorization: Bearer sk_...'")
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("malformed Authorization header: use 'Authorization: Bearer sk_...'")
    return secret.strip()


def namespace_ref(header: str | None) -> str:
    if header is None or not header.strip():
        raise InvalidRequest("missing X-Namespace header: send a namespace id (ns_...) or name")
    ref = header.strip()
    if not (NAMESPACE_ID_RE.match(ref) or NAMESPACE_NAME_RE.match(ref)):
        raise InvalidRequest(
            "X-Namespace is not a namespace id (ns_ followed by 12+ letters or digits) "
            "or name (lowercase letters, digits and '-')"
        )
    return ref


class Authenticator:
    def __init__(self, store: Store, ttl_s: float):
        self.store = store
        pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="rawinfer-store")
        self._keys: TTLCache[KeyInfo | None] = TTLCache(ttl_s, pool=pool)
        self._namespaces: TTLCache[NamespaceInfo | None] = TTLCache(ttl_s, pool=pool)

    async def key(self, authorization: str | None) -> KeyInfo:
        secret = bearer_secret(authorization)
        # cached by the secret's hash: the secret itself is never kept in memory beyond this call
        key = await self._keys.get(hash_key(secret), lambda: self.store.authenticate(secret))
        if key is None or not key.active():
            raise Unauthenticated("invalid API key: it is unknown, revoked or expired")
        return key

    async def namespace(
        self, key: KeyInfo, header: str | None, *, key_default: bool = False
    ) -> NamespaceInfo:
        """The namespace named by X-Namespace; with `key_default` (OpenAI-compatible routes, for
        clients that cannot set headers) a key limited to one namespace defaults to it."""
        if (
            key_default
            and (header is None or not header.strip())
            and key.namespaces
            and len(key.namespaces) == 1
        ):
            header = key.namespaces[0]
        ref = namespace_ref(header)
        ns = await self._namespaces.get(ref, lambda: self.store.find_namespace(ref))
        if ns is None:
            raise NotFound(f"namespace {ref!r} does not exist")
        if not key.may_use(ns):
            raise Forbidden(f"this API key may not use namespace {ref!r}")
        return ns

    async def __call__(
        self, authorization: str | None, namespace: str | None, *, key_default: bool = False
    ) -> tuple[KeyInfo, NamespaceInfo]:
        key = await self.key(authorization)
        return key, await self.namespace(key, namespace, key_default=key_default)
