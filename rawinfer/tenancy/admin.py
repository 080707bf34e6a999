"""The admin API's logic (`/v1/admin/...`, `/v1/usage`) as plain async functions over the Store.

Each takes the Store (and a validated body), returns JSON-able data and raises contract errors
(InvalidRequest 400, Forbidden 403, NotFound 404); Store calls run in a worker thread. `scope`:
the organisation an admin key is limited to (None: a superuser's, every one); what lies outside it
is "not found". The semantics of admin keys, limits and update bodies: docs/notes/tenancy.md."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rawinfer.contract.errors import Forbidden, InvalidRequest, NotFound
from rawinfer.tenancy.keys import KeyInfo, NamespaceInfo, OrgInfo
from rawinfer.tenancy.store import Store
from rawinfer.tenancy.tables import utc
from rawinfer.tenancy.usage import GROUP_BY

Limit = int | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrgCreate(_Body):
    name: str = Field(min_length=1, max_length=128)


class NamespaceCreate(_Body):
    name: str
    org: str = "default"
    rpm: Limit = Field(None, ge=0)
    tpm: Limit = Field(None, ge=0)


class LimitsUpdate(_Body):
    rpm: Limit = Field(None, ge=0)
    tpm: Limit = Field(None, ge=0)


class KeyCreate(_Body):
    name: str = Field("", max_length=128)
    org: str = "default"  # an organisation admin's key: its own organisation
    namespaces: list[str] | None = None
    targets: list[str] | None = None
    is_admin: bool = False
    is_superuser: bool = False  # a superuser's key only
    expires_at: datetime | None = None
    expires_in_days: float | None = Field(None, gt=0)
    rpm: Limit = Field(None, ge=0)
    tpm: Limit = Field(None, ge=0)


class KeyUpdate(_Body):
    name: str | None = Field(None, max_length=128)
    namespaces: list[str] | None = None
    targets: list[str] | None = None
    expires_at: datetime | None = None
    rpm: Limit = Field(None, ge=0)
    tpm: Limit = Field(None, ge=0)


def _no_empty_lists(body: BaseModel) -> None:
    for field in ("namespaces", "targets"):
        if getattr(body, field, None) == []:
            raise InvalidRequest(
                f"{field} is empty: list some, or send null (or leave it out) for all",
                {"field": field},
            )


def require_admin(key: KeyInfo) -> None:
    if not key.is_admin:
        raise Forbidden("this API key is not an admin key")


def scope_of(key: KeyInfo) -> str | None:
    """The organisation an admin key manages; None: every one (a superuser)."""
    return None if key.is_superuser else key.org_id


def _superuser_only(scope: str | None, what: str) -> None:
    if scope is not None:
        raise Forbidden(f"only a superuser admin key may {what}")


def _in_scope(scope: str | None, org_id: str, what: str) -> None:
    if scope is not None and org_id != scope:
        raise NotFound(f"{what} does not exist")


def _iso(dt: datetime | None) -> str | None:
    return utc(dt).isoformat() if dt else None


def org_json(o: OrgInfo) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, "created_at": _iso(o.created_at)}


def namespace_json(n: NamespaceInfo) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "org_id": n.org_id, "rpm": n.rpm, "tpm": n.tpm}


def key_json(k: KeyInfo) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "org_id": k.org_id,
        "namespaces": list(k.namespaces) if k.namespaces is not None else None,
        "targets": list(k.targets) if k.targets is not None else None,
        "is_admin": k.is_admin,
        "is_superuser": k.is_superuser,
        "active": k.active(),
        "revoked": k.revoked,
        "expires_at": _iso(k.expires_at),
        "rpm": k.rpm,
        "tpm": k.tpm,
    }


async def _call(fn, *args, **kwargs):
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except LookupError as e:
        raise NotFound(str(e)) from None
    except ValueError as e:
        raise InvalidRequest(str(e)) from None


async def _org(store: Store, ref: str, scope: str | None = None) -> OrgInfo:
    org = await _call(store.find_org, ref)
    if org is None:
        raise NotFound(f"organisation {ref!r} does not exist")
    _in_scope(scope, org.id, f"organisation {ref!r}")
    return org


async def _namespace(store: Store, ref: str, scope: str | None = None) -> NamespaceInfo:
    ns = await _call(store.find_namespace, ref)
    if ns is None:
        raise NotFound(f"namespace {ref!r} does not exist")
    _in_scope(scope, ns.org_id, f"namespace {ref!r}")
    return ns


async def _key(store: Store, key_id: str, scope: str | None = None) -> KeyInfo:
    k = await _call(store.get_key, key_id)
    if k is None:
        raise NotFound(f"key {key_id!r} does not exist")
    _in_scope(scope, k.org_id, f"key {key_id!r}")
    return k


async def _target_org(store: Store, body: BaseModel, scope: str | None) -> str:
    """The organisation a create call puts its object in: an organisation admin's own unless it
    names one; "default" is made on first use, any other must exist."""
    if scope is not None and "org" not in body.model_fields_set:
        return scope
    if scope is None and body.org == "default":
        return body.org
    org = await _org(store, body.org)
    if scope is not None and org.id != scope:
        raise Forbidden("an organisation admin key creates in its own organisation only")
    return org.id


# ---------------------------------------------------------------- organisations
async def list_orgs(store: Store, *, scope: str | None = None) -> dict[str, Any]:
    orgs = await _call(store.list_orgs)
    return {"data": [org_json(o) for o in orgs if scope is None or o.id == scope]}


async def create_org(store: Store, body: OrgCreate, *, scope: str | None = None) -> dict[str, Any]:
    _superuser_only(scope, "create organisations")
    return org_json(await _call(store.create_org, body.name))


async def get_org(store: Store, ref: str, *, scope: str | None = None) -> dict[str, Any]:
    return org_json(await _org(store, ref, scope))


async def delete_org(store: Store, ref: str, *, scope: str | None = None) -> dict[str, Any]:
    _superuser_only(scope, "delete organisations")
    org = await _org(store, ref)
    await _call(store.delete_org, org.id)
    return {"id": org.id, "deleted": True}


# ---------------------------------------------------------------- namespaces
async def list_namespaces(
    store: Store, org: str | None = None, *, scope: str | None = None
) -> dict[str, Any]:
    org = (await _org(store, org, scope)).id if org is not None else scope
    return {"data": [namespace_json(n) for n in await _call(store.list_namespaces, org)]}


async def create_namespace(
    store: Store, body: NamespaceCreate, *, scope: str | None = None
) -> dict[str, Any]:
    org = await _target_org(store, body, scope)
    return namespace_json(
        await _call(store.create_namespace, body.name, org, rpm=body.rpm, tpm=body.tpm)
    )


async def get_namespace(store: Store, ref: str, *, scope: str | None = None) -> dict[str, Any]:
    return namespace_json(await _namespace(store, ref, scope))


async def set_namespace_limits(
    store: Store, ref: str, body: LimitsUpdate, *, scope: str | None = None
) -> dict[str, Any]:
    ns = await _namespace(store, ref, scope)
    given = {f: getattr(body, f) for f in body.model_fields_set}
    return namespace_json(await _call(store.set_namespace_limits, ns.id, **given))


# ---------------------------------------------------------------- keys
async def list_keys(
    store: Store, org: str | None = None, *, scope: str | None = None
) -> dict[str, Any]:
    org = (await _org(store, org, scope)).id if org is not None else scope
    return {"data": [key_json(k) for k in await _call(store.list_keys, org)]}


async def create_key(store: Store, body: KeyCreate, *, scope: str | None = None) -> dict[str, Any]:
    """The new key and its secret, which is shown this once and never stored."""
    _no_empty_lists(body)
    if body.is_superuser:
        _superuser_only(scope, "create superuser keys")
    if body.expires_at is not None and body.expires_in_days is not None:
        raise InvalidRequest("give expires_at or expires_in_days, not both")
    expires = utc(body.expires_at)
    if body.expires_in_days is not None:
        expires = datetime.now(timezone.utc) + timedelta(days=body.expires_in_days)
    org = await _target_org(store, body, scope)
    info, secret = await _call(
        store.create_key,
        body.name,
        org=org,
        namespaces=body.namespaces,
        is_admin=body.is_admin,
        is_superuser=body.is_superuser,
        expires_at=expires,
        targets=body.targets,
        rpm=body.rpm,
        tpm=body.tpm,
    )
    return {"key": key_json(info), "secret": secret}


async def get_key(store: Store, key_id: str, *, scope: str | None = None) -> dict[str, Any]:
    return key_json(await _key(store, key_id, scope))


async def update_key(
    store: Store, key_id: str, body: KeyUpdate, *, scope: str | None = None
) -> dict[str, Any]:
    _no_empty_lists(body)
    await _key(store, key_id, scope)
    given = {f: getattr(body, f) for f in body.model_fields_set}
    if "name" in given and given["name"] is None:
        given["name"] = ""
    return key_json(await _call(store.update_key, key_id, **given))


async def set_key_limits(
    store: Store, key_id: str, body: LimitsUpdate, *, scope: str | None = None
) -> dict[str, Any]:
    await _key(store, key_id, scope)
    given = {f: getattr(body, f) for f in body.model_fields_set}
    return key_json(await _call(store.set_key_limits, key_id, **given))


async def revoke_key(store: Store, key_id: str, *, scope: str | None = None) -> dict[str, Any]:
    await _key(store, key_id, scope)
    if not await _call(store.revoke_key, key_id):
        raise NotFound(f"key {key_id!r} does not exist")
    return key_json(await _call(store.get_key, key_id))


# ---------------------------------------------------------------- usage
def parse_time(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """ISO 8601 date or datetime (naive = UTC) or Unix seconds. A bare date as `to` means the
    end of that day (so `from=2026-11-01&to=2026-11-30` covers all of November 30)."""
    if value is None or value == "":
        return None
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), timezone.utc)
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime.combine(d + timedelta(days=1) if end else d, time(), timezone.utc)
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date or datetime (e.g. 2026-11-01 or "
            f"2026-11-01T12:00:00Z) or Unix seconds",
            {name: value[:64]},
        ) from None


async def usage(
    store: Store,
    namespace: str,
    from_: str | None = None,
    to: str | None = None,
    group_by: str | None = None,
    key_id: str | None = None,
    *,
    scope: str | None = None,
) -> dict[str, Any]:
    """What `GET /v1/usage?from=&to=&group_by=` answers for a namespace (id or name): one row of
    totals, or one row per group, over [from, to). Without `from`: the last 30 days."""
    ns = await _namespace(store, namespace, scope)
    if group_by is not None and group_by not in GROUP_BY:
        raise InvalidRequest(
            f"group_by must be one of {', '.join(GROUP_BY)}", {"group_by": group_by[:32]}
        )
    end = parse_time(to, "to", end=True)
    start = parse_time(from_, "from")
    if start is None:
        start = (end or datetime.now(timezone.utc)) - timedelta(days=30)
    if end is not None and end <= start:
        raise InvalidRequest("`to` must be after `from`")
    rows = await _call(store.usage_summary, ns.id, start, end, group_by, key_id=key_id)
    return {
        "namespace": ns.id,
        "from": start.isoformat(),
        "to": end.isoformat() if end else None,
        "group_by": group_by,
        "data": rows,
    }


# ---------------------------------------------------------------- semantic cache
async def _cache(cache, req: dict[str, Any]) -> dict[str, Any]:
    from rawinfer.contract.errors import from_wire, is_wire_error

    if cache is None:
        raise InvalidRequest("the semantic cache is not enabled on this server")
    out = await cache(req)
    if is_wire_error(out):
        raise from_wire(out)
    return out


async def clear_cache(
    store: Store, cache, namespace: str | None, tier: str | None = None, *, scope=None
) -> dict[str, Any]:
    """Drops a namespace's (id or name) cache entries, of one tier when given: `DELETE
    /v1/admin/cache?namespace=[&tier=exact|semantic]`."""
    if not namespace:
        raise InvalidRequest("give ?namespace=<id or name>")
    if tier not in (None, "exact", "semantic"):
        raise InvalidRequest("tier must be exact or semantic", {"tier": tier})
    ns = await _namespace(store, namespace, scope)
    out = await _cache(cache, {"op": "clear", "namespace": ns.id, "tier": tier})
    return {"namespace": ns.id, "cleared": out["cleared"]}


async def cache_stats(
    store: Store, cache, namespace: str | None = None, *, scope: str | None = None
) -> dict[str, Any]:
    """The semantic cache's size and, per partition (of one namespace when given), lookups, hits,
    misses, explores, observations and the estimated served error rate: `GET /v1/admin/cache`."""
    if not namespace:
        _superuser_only(scope, "read every namespace's cache stats (give ?namespace=)")
    ns = await _namespace(store, namespace, scope) if namespace else None
    out = await _cache(cache, {"op": "stats", "namespace": ns.id if ns else None})
    return {"namespace": ns.id if ns else None, **out}
