"""`rawinfer` command line: keys, namespaces, the development set-up, model preparation."""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rawinfer.settings import REPO_ROOT, Settings
from rawinfer.store import Store


def _store(args) -> Store:
    store = Store(args.database_url or Settings().database_url)
    store.create_schema()
    return store


def _print(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))


def keys_create(args) -> None:
    expires = datetime.now(timezone.utc) + timedelta(days=args.expires_days) if args.expires_days else None
    info, secret = _store(args).create_key(args.name, org=args.org, namespaces=args.namespace or None,
                                           is_admin=args.admin, expires_at=expires)
    print(f"created key {info.id} ({info.name or 'unnamed'})")
    print(f"secret (shown once, store it now): {secret}")


def keys_list(args) -> None:
    _print([{"id": k.id, "name": k.name, "org": k.org_id, "namespaces": ",".join(k.namespaces) if k.namespaces else "*",
             "admin": k.is_admin, "active": k.active(), "expires_at": k.expires_at} for k in _store(args).list_keys()], args.json)


def keys_revoke(args) -> None:
    if not _store(args).revoke_key(args.key_id):
        sys.exit(f"no key {args.key_id}")
    print(f"revoked {args.key_id}")


def namespaces_create(args) -> None:
    try:
        ns = _store(args).create_namespace(args.name, org=args.org)
    except ValueError as e:
        sys.exit(str(e))
    print(f"created namespace {ns.name} id={ns.id}")


def namespaces_list(args) -> None:
    _print([{"id": n.id, "name": n.name, "org": n.org_id} for n in _store(args).list_namespaces()], args.json)


def dev_init(args) -> None:
    """Creates the `dev` namespace and a development key once; the key is kept in
    .rawinfer/dev-key (mode 600) so `make run` can print it again on later starts."""
    store = _store(args)
    ns = store.find_namespace("dev") or store.create_namespace("dev")
    key_file = Path(args.key_file)
    secret = key_file.read_text().strip() if key_file.exists() else ""
    if not secret or store.authenticate(secret) is None:
        _, secret = store.create_key("development", namespaces=[ns.id])
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
    host = args.url.rstrip("/")
    print(f"namespace: {ns.name} ({ns.id})\napi key:   {secret}   (kept in {key_file})\n")
    print("try:\n"
          f"  curl -s {host}/v1/inference -H 'Authorization: Bearer {secret}' -H 'X-Namespace: {ns.name}' \\\n"
          "    -H 'Content-Type: application/json' \\\n"
          "    -d '{\"inference_name\": \"multilingual_e5_large_instruct_v1\", \"inputs\": {\"text\": \"hello world\"}}'")


def prepare(args) -> None:
    from rawinfer.prepare import main as prepare_main
    prepare_main()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rawinfer", description=__doc__)
    p.add_argument("--database-url", help="SQLAlchemy URL (default: RAWINFER_DATABASE_URL or the embedded SQLite file)")
    sub = p.add_subparsers(dest="cmd", required=True)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="sub", required=True)
    c = keys.add_parser("create", help="create a key; prints its secret once")
    c.add_argument("--name", default="")
    c.add_argument("--org", default="default")
    c.add_argument("--namespace", action="append", help="limit the key to this namespace (repeatable)")
    c.add_argument("--admin", action="store_true")
    c.add_argument("--expires-days", type=float)
    c.set_defaults(fn=keys_create)
    c = keys.add_parser("list")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=keys_list)
    c = keys.add_parser("revoke")
    c.add_argument("key_id")
    c.set_defaults(fn=keys_revoke)

    ns = sub.add_parser("namespaces", help="namespaces").add_subparsers(dest="sub", required=True)
    c = ns.add_parser("create")
    c.add_argument("name")
    c.add_argument("--org", default="default")
    c.set_defaults(fn=namespaces_create)
    c = ns.add_parser("list")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=namespaces_list)

    c = sub.add_parser("dev-init", help="create the dev namespace and key if missing; print a curl")
    c.add_argument("--key-file", default=str(REPO_ROOT / ".rawinfer" / "dev-key"))
    c.add_argument("--url", default="http://127.0.0.1:8000")
    c.set_defaults(fn=dev_init)

    c = sub.add_parser("prepare", help="one-time model preparation (join whisper parts, convert GGUF)")
    c.set_defaults(fn=prepare)

    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
