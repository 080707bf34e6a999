"""`rawinfer cache clear|stats`: the semantic cache's admin commands, through Ray (default) or
the admin HTTP API (`--url`); `_DESCRIPTION`, the commands' help, says how each reaches it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rawinfer.cli.common import _store, _table

_DESCRIPTION = """\
`rawinfer cache ...`: the semantic cache's admin commands.

    rawinfer cache clear --namespace NAME      # drop every entry of a namespace (--tier: one)
    rawinfer cache stats [--namespace NAME]    # size, and per partition lookups, hits, error rate

Two ways to reach the running cache:
- default: through Ray, as an operator on the cluster (the head pod, or the machine `make run`
  started): the command joins the running Ray (`--ray-address`, default `auto`) and calls the
  Serve app's `semantic_cache` deployment; the namespace name is looked up in the database like
  every other `rawinfer` command does;
- `--url URL`: through the admin HTTP API (`GET|DELETE /v1/admin/cache?namespace=`) with an
  admin key (`--key`, or the RAWINFER_ADMIN_KEY environment variable), from anywhere.
"""


def _ray_call(args, request: dict[str, Any]) -> dict[str, Any]:
    import ray
    from ray import serve

    from rawinfer.contract.errors import from_wire, is_wire_error

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=args.ray_address, namespace="serve", log_to_driver=False)
    handle = serve.get_deployment_handle("semantic_cache", app_name=args.app)
    out = handle.remote(request).result(timeout_s=60)
    if is_wire_error(out):
        raise from_wire(out)
    return out


def _http_call(args, method: str) -> dict[str, Any]:
    import httpx

    key = args.key or os.environ.get("RAWINFER_ADMIN_KEY")
    if not key:
        sys.exit("error: --url needs an admin key: --key or RAWINFER_ADMIN_KEY")
    params = {"namespace": args.namespace} if args.namespace else {}
    if getattr(args, "tier", None):
        params["tier"] = args.tier
    r = httpx.request(
        method,
        args.url.rstrip("/") + "/v1/admin/cache",
        params=params,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    body = r.json()
    if r.status_code != 200:
        sys.exit(f"error: {body.get('error', {}).get('message', r.text)}")
    return body


def _namespace_id(args) -> str | None:

    if not args.namespace:
        return None
    ns = _store(args).find_namespace(args.namespace)
    if ns is None:
        sys.exit(f"error: namespace {args.namespace!r} does not exist")
    return ns.id


def clear(args) -> None:
    if args.url:
        out = _http_call(args, "DELETE")
    else:
        ns = _namespace_id(args)
        out = _ray_call(args, {"op": "clear", "namespace": ns, "tier": args.tier})
    tier = f"{args.tier} " if args.tier else ""
    print(f"cleared {out['cleared']} {tier}cache entries of {out['namespace']}")


def stats(args) -> None:
    out = (
        _http_call(args, "GET")
        if args.url
        else _ray_call(args, {"op": "stats", "namespace": _namespace_id(args)})
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"entries {out['entries']} (all namespaces: {out['total_entries']} of "
        f"{out['max_entries']}; "
        f"evicted so far: {out['evicted']})"
    )

    _table([{k: v for k, v in p.items() if k != "namespace"} for p in out["partitions"]])


def add_parser(sub) -> None:
    group = sub.add_parser(
        "cache", help="the semantic cache (clear a namespace, stats)"
    ).add_subparsers(dest="sub", required=True)
    for name, fn, help_, required in (
        ("clear", clear, "drop a namespace's semantic cache entries", True),
        ("stats", stats, "the semantic cache's size and per-partition counts", False),
    ):
        c = group.add_parser(
            name,
            help=help_,
            description=_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.set_defaults(fn=fn)
        c.add_argument("--namespace", required=required, help="namespace id or name")
        c.add_argument(
            "--url", help="the service's base URL: use the admin HTTP API instead of Ray"
        )
        c.add_argument("--key", help="admin API key for --url (default: RAWINFER_ADMIN_KEY)")
        c.add_argument(
            "--ray-address", default="auto", help="the running Ray cluster (default: auto)"
        )
        c.add_argument("--app", default="rawinfer", help="the Serve application's name")
        if name == "stats":
            c.add_argument("--json", action="store_true")
        else:
            c.add_argument(
                "--tier", choices=("exact", "semantic"), help="only this tier (default: both)"
            )
