"""rawinfer orgs | keys | namespaces | limits | usage: tenancy from the command line. Limits take a
number per minute, default (the configured default) or unlimited."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone

from rawinfer.cli.common import _limits, _print, _run, _store, _table, cmd, limit_flags
from rawinfer.tenancy import admin
from rawinfer.tenancy.tables import UNSET
from rawinfer.tenancy.usage import GROUP_BY


# ---------------------------------------------------------------- organisations
def orgs_create(args) -> None:
    o = _run(admin.create_org(_store(args), admin.OrgCreate(name=args.name)))
    print(f"created organisation {o['name']} id={o['id']}")


def orgs_list(args) -> None:
    _print(_run(admin.list_orgs(_store(args)))["data"], args.json)


def orgs_delete(args) -> None:
    _run(admin.delete_org(_store(args), args.org))
    print(f"deleted organisation {args.org}")


# ---------------------------------------------------------------- keys
def keys_create(args) -> None:
    expires = (
        datetime.now(timezone.utc) + timedelta(days=args.expires_days)
        if args.expires_days
        else None
    )
    try:
        info, secret = _store(args).create_key(
            args.name,
            org=args.org,
            namespaces=args.namespace or None,
            is_admin=args.admin,
            is_superuser=args.superuser,
            expires_at=expires,
            targets=args.target,
            rpm=args.rpm,
            tpm=args.tpm,
        )
    except ValueError as e:
        sys.exit(f"error: {e}")
    if args.json:
        print(json.dumps({"key": admin.key_json(info), "secret": secret}, indent=2))
        return
    print(f"created key {info.id} ({info.name or 'unnamed'})")
    if info.targets is not None:
        print(f"targets: {', '.join(info.targets)}")
    print(
        f"limits: {_limits(info)}"
        + (f"  expires: {info.expires_at.isoformat()}" if info.expires_at else "")
    )
    print(f"secret (shown once, store it now): {secret}")


def keys_list(args) -> None:
    _print(
        [
            {
                "id": k.id,
                "name": k.name,
                "org": k.org_id,
                "namespaces": ",".join(k.namespaces) if k.namespaces else "*",
                "targets": ",".join(k.targets) if k.targets is not None else "*",
                "rpm": k.rpm,
                "tpm": k.tpm,
                "admin": "superuser" if k.is_superuser else k.is_admin,
                "active": k.active(),
                "expires_at": k.expires_at,
            }
            for k in _store(args).list_keys(args.org)
        ],
        args.json,
    )


def keys_show(args) -> None:
    print(json.dumps(_run(admin.get_key(_store(args), args.key_id)), indent=2))


def keys_update(args) -> None:
    fields: dict = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.all_targets or args.target:
        fields["targets"] = None if args.all_targets else args.target
    if args.all_namespaces or args.namespace:
        fields["namespaces"] = None if args.all_namespaces else args.namespace
    if args.never_expires or args.expires_days:
        fields["expires_at"] = (
            None
            if args.never_expires
            else datetime.now(timezone.utc) + timedelta(days=args.expires_days)
        )
    k = _run(admin.update_key(_store(args), args.key_id, admin.KeyUpdate(**fields)))
    print(
        f"updated {k['id']}: targets={k['targets'] or '*'} namespaces={k['namespaces'] or '*'} "
        f"expires_at={k['expires_at']}"
    )


def keys_revoke(args) -> None:
    if not _store(args).revoke_key(args.key_id):
        sys.exit(f"no key {args.key_id}")
    print(f"revoked {args.key_id}")


# ---------------------------------------------------------------- namespaces
def namespaces_create(args) -> None:
    try:
        ns = _store(args).create_namespace(args.name, org=args.org, rpm=args.rpm, tpm=args.tpm)
    except ValueError as e:
        sys.exit(str(e))
    print(f"created namespace {ns.name} id={ns.id}")


def namespaces_list(args) -> None:
    _print(
        [
            {"id": n.id, "name": n.name, "org": n.org_id, "rpm": n.rpm, "tpm": n.tpm}
            for n in _store(args).list_namespaces(args.org)
        ],
        args.json,
    )


# ---------------------------------------------------------------- limits and usage
def limits_set(args) -> None:
    given = {k: v for k, v in (("rpm", args.rpm), ("tpm", args.tpm)) if v is not UNSET}
    if not given:
        sys.exit("error: give --rpm and/or --tpm")
    store = _store(args)
    try:
        info = (
            store.set_key_limits(args.key, **given)
            if args.key is not None
            else store.set_namespace_limits(args.namespace, **given)
        )
    except (LookupError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"{'key' if args.key is not None else 'namespace'} {info.id}: {_limits(info)}")


def limits_show(args) -> None:
    store = _store(args)
    by_key = args.key is not None  # `--key ""` is a key that does not exist, not a namespace
    info = store.get_key(args.key) if by_key else store.find_namespace(args.namespace)
    if info is None:
        sys.exit(
            f"error: no {'key' if by_key else 'namespace'} "
            f"{args.key if by_key else args.namespace!r}"
        )
    print(f"{'key' if by_key else 'namespace'} {info.id}: {_limits(info)}")


def usage(args) -> None:
    out = _run(
        admin.usage(_store(args), args.namespace, args.from_, args.to, args.group_by, args.key)
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"usage of {out['namespace']} from {out['from']} to {out['to'] or 'now'}")
    _table(out["data"])


def add_parser(sub) -> None:
    orgs = sub.add_parser("orgs", help="organisations").add_subparsers(dest="sub", required=True)
    cmd(orgs, "create", orgs_create).add_argument("name")
    cmd(orgs, "list", orgs_list, json_flag=True)
    cmd(
        orgs, "delete", orgs_delete, help="delete an organisation with no namespaces or keys"
    ).add_argument("org")

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="sub", required=True)
    c = cmd(
        keys, "create", keys_create, help="create a key; prints its secret once", json_flag=True
    )
    c.add_argument("--name", default="")
    c.add_argument("--org", default="default")
    c.add_argument(
        "--namespace", action="append", help="limit the key to this namespace (repeatable)"
    )
    c.add_argument(
        "--target",
        action="append",
        help="limit the key to this target: provider/model, inference "
        "name, feature URI or backend; 'openai/*' by prefix (repeatable)",
    )
    c.add_argument(
        "--admin", action="store_true", help="an admin key of its organisation (--org) only"
    )
    c.add_argument("--superuser", action="store_true", help="an admin key of every organisation")
    c.add_argument("--expires-days", type=float)
    limit_flags(c)
    cmd(keys, "list", keys_list, json_flag=True).add_argument("--org")
    cmd(keys, "show", keys_show).add_argument("key_id")
    c = cmd(keys, "update", keys_update, help="change a key's name, targets, namespaces or expiry")
    c.add_argument("key_id")
    c.add_argument("--name")
    c.add_argument("--target", action="append")
    c.add_argument("--all-targets", action="store_true")
    c.add_argument("--namespace", action="append")
    c.add_argument("--all-namespaces", action="store_true")
    c.add_argument("--expires-days", type=float)
    c.add_argument("--never-expires", action="store_true")
    cmd(keys, "revoke", keys_revoke).add_argument("key_id")

    ns = sub.add_parser("namespaces", help="namespaces").add_subparsers(dest="sub", required=True)
    c = cmd(ns, "create", namespaces_create)
    c.add_argument("name")
    c.add_argument("--org", default="default")
    limit_flags(c)
    cmd(ns, "list", namespaces_list, json_flag=True).add_argument("--org")

    lim = sub.add_parser("limits", help="per-key and per-namespace rate limits").add_subparsers(
        dest="sub", required=True
    )
    for name, fn in (("set", limits_set), ("show", limits_show)):
        c = cmd(lim, name, fn)
        who = c.add_mutually_exclusive_group(required=True)
        who.add_argument("--key", help="key id")
        who.add_argument("--namespace", help="namespace id or name")
        if name == "set":
            limit_flags(c, default=UNSET)

    c = cmd(sub, "usage", usage, help="a namespace's usage totals", json_flag=True)
    c.add_argument("--namespace", required=True, help="namespace id or name")
    c.add_argument(
        "--from", dest="from_", help="ISO date/datetime or Unix seconds (default: 30 days ago)"
    )
    c.add_argument(
        "--to", help="ISO date/datetime or Unix seconds, exclusive; a bare date includes that day"
    )
    c.add_argument("--group-by", choices=GROUP_BY)
    c.add_argument("--key", help="only this key's requests")
