"""The admin HTTP API under /v1/admin/..., behind an admin key: one table from (method, path
pattern) to the plain functions in rawinfer/tenancy/admin.py, each call scoped to the key's
organisation (a superuser's: all), throttled per key and written to the audit trail."""

from __future__ import annotations

import asyncio
import collections
import re
import time
from typing import Any, Mapping
from urllib.parse import urlencode

from rawinfer.contract.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    RawInferError,
    status_of,
)
from rawinfer.tenancy import admin, audit
from rawinfer.tenancy.keys import KeyInfo
from rawinfer.tenancy.store import Store
from router.gateway import parse_json, validated

ROUTES: list[tuple[str, str, Any, Any]] = [
    ("GET", "orgs", admin.list_orgs, None),
    ("POST", "orgs", admin.create_org, admin.OrgCreate),
    ("GET", "orgs/{ref}", admin.get_org, None),
    ("DELETE", "orgs/{ref}", admin.delete_org, None),
    ("GET", "namespaces", admin.list_namespaces, None),
    ("POST", "namespaces", admin.create_namespace, admin.NamespaceCreate),
    ("GET", "namespaces/{ref}", admin.get_namespace, None),
    ("PUT", "namespaces/{ref}/limits", admin.set_namespace_limits, admin.LimitsUpdate),
    ("GET", "keys", admin.list_keys, None),
    ("POST", "keys", admin.create_key, admin.KeyCreate),
    ("GET", "keys/{ref}", admin.get_key, None),
    ("PATCH", "keys/{ref}", admin.update_key, admin.KeyUpdate),
    ("PUT", "keys/{ref}/limits", admin.set_key_limits, admin.LimitsUpdate),
    ("POST", "keys/{ref}/revoke", admin.revoke_key, None),
]
_COMPILED = [
    (m, re.compile("^" + p.replace("{ref}", "(?P<ref>[A-Za-z0-9_.-]+)") + "$"), fn, body)
    for m, p, fn, body in ROUTES
]
LIST_FILTERS = {admin.list_namespaces, admin.list_keys}


class AdminThrottle:
    """Admin calls per admin key in a sliding minute, on this ingress replica (a 429 past it)."""

    def __init__(self, rpm: int, clock=time.monotonic):
        self.rpm, self.clock = rpm, clock
        self.calls: dict[str, collections.deque] = {}

    def check(self, key_id: str) -> None:
        now = self.clock()
        seen = self.calls.setdefault(key_id, collections.deque())
        while seen and seen[0] <= now - 60:
            seen.popleft()
        if len(seen) >= self.rpm:
            raise RateLimited(
                f"this admin key made {self.rpm} admin calls in the last minute; slow down",
                retry_after_s=max(0.1, seen[0] + 60 - now),
            )
        seen.append(now)
        if len(self.calls) > 10_000:  # keys seen once long ago
            for k in [k for k, d in self.calls.items() if not d or d[-1] <= now - 60]:
                del self.calls[k]


async def dispatch(
    store: Store,
    actor: KeyInfo,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    max_body: int,
    cache: Any = None,
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one admin call by `actor`, an admin key (checked by the caller),
    within its scope (`admin.scope_of`); every call, answered or refused, is in the audit trail."""
    path = path.strip("/")
    where = path + ("?" + urlencode(dict(query)) if query else "")
    status = 500
    try:
        status, out = await _route(
            store, admin.scope_of(actor), method, path, query, body, max_body, cache
        )
        return status, out
    except RawInferError as e:
        status = status_of(e)[0]
        raise
    finally:
        await asyncio.to_thread(audit.record, store, actor, method, where, status)


async def _route(store, scope, method, path, query, body, max_body, cache):
    if path == "audit" and method == "GET":
        limit = query.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise InvalidRequest("limit must be a whole number from 1 to 1000")
        rows = await asyncio.to_thread(audit.actions, store, scope, int(limit))
        return 200, {"data": rows}
    if path == "cache" and method in ("GET", "DELETE"):
        if method == "GET":
            return 200, await admin.cache_stats(store, cache, query.get("namespace"), scope=scope)
        return 200, await admin.clear_cache(
            store, cache, query.get("namespace"), query.get("tier"), scope=scope
        )
    if path == "usage" and method == "GET":
        ns = query.get("namespace")
        if not ns:
            raise InvalidRequest("give ?namespace=<id or name>")
        return 200, await admin.usage(
            store,
            ns,
            query.get("from"),
            query.get("to"),
            query.get("group_by"),
            query.get("key"),
            scope=scope,
        )
    allowed = []
    for m, pattern, fn, model in _COMPILED:
        match = pattern.match(path)
        if match is None:
            continue
        allowed.append(m)
        if m != method:
            continue
        args = list(match.groupdict().values())
        if model is not None:
            args.append(validated(model, parse_json(body, max_body), ""))
        kwargs = {"org": query["org"]} if fn in LIST_FILTERS and query.get("org") else {}
        return (201 if m == "POST" and not args[:-1] and model is not None else 200), await fn(
            store, *args, **kwargs, scope=scope
        )
    if allowed:
        raise MethodNotAllowed(
            f"{method} is not allowed on /v1/admin/{path}; use {', '.join(sorted(set(allowed)))}"
        )
    raise NotFound(f"no admin route /v1/admin/{path}")
