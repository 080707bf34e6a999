"""The admin HTTP API under /v1/admin/..., behind an admin key: one table from (method, path
pattern) to the plain functions in rawinfer/tenancy/admin.py; the ingress needs one route."""

from __future__ import annotations

import re
from typing import Any, Mapping

from rawinfer.contract.errors import MethodNotAllowed, NotFound
from rawinfer.tenancy import admin
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


async def dispatch(
    store: Store,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    max_body: int,
    cache: Any = None,
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one admin call; the caller has checked the admin key. `cache`: the
    semantic cache deployment's call (`GET|DELETE /v1/admin/cache?namespace=`: stats, clear)."""
    path = path.strip("/")
    if path == "cache" and method in ("GET", "DELETE"):
        if method == "GET":
            return 200, await admin.cache_stats(store, cache, query.get("namespace"))
        return 200, await admin.clear_cache(store, cache, query.get("namespace"), query.get("tier"))
    if path == "usage" and method == "GET":
        ns = query.get("namespace")
        if not ns:
            from rawinfer.contract.errors import InvalidRequest

            raise InvalidRequest("give ?namespace=<id or name>")
        return 200, await admin.usage(
            store, ns, query.get("from"), query.get("to"), query.get("group_by"), query.get("key")
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
            store, *args, **kwargs
        )
    if allowed:
        raise MethodNotAllowed(
            f"{method} is not allowed on /v1/admin/{path}; use {', '.join(sorted(set(allowed)))}"
        )
    raise NotFound(f"no admin route /v1/admin/{path}")
