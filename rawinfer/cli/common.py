"""What the command groups share: the store, printing rows, running a coroutine, limit values."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from rawinfer.contract.errors import RawInferError
from rawinfer.core.settings import Settings
from rawinfer.tenancy.store import Store


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


def _table(rows: list[dict]) -> None:
    if not rows:
        print("(no rows)")
        return
    cols = list(rows[0])
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in cells:
        print(
            "  ".join(
                v.rjust(w) if v.replace(".", "", 1).isdigit() else v.ljust(w)
                for v, w in zip(row, widths)
            ).rstrip()
        )


def _run(coro):
    try:
        return asyncio.run(coro)
    except RawInferError as e:
        sys.exit(f"error: {e.message}")


def limit_arg(value: str):
    """A limit on the command line: N >= 0, `default` (None) or `unlimited` (0)."""
    if value == "default":
        return None
    if value == "unlimited":
        return 0
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError("a whole number, 'default' or 'unlimited'")


def _limits(k) -> str:
    def one(v):
        return "default" if v is None else ("unlimited" if v == 0 else str(v))

    return f"rpm={one(k.rpm)} tpm={one(k.tpm)}"


def cmd(group, name, fn, help=None, json_flag=False):
    c = group.add_parser(name, help=help)
    c.set_defaults(fn=fn)
    if json_flag:
        c.add_argument("--json", action="store_true")
    return c


def limit_flags(c, default=None):
    c.add_argument(
        "--rpm",
        type=limit_arg,
        default=default,
        help="requests per minute: N, default or unlimited",
    )
    c.add_argument(
        "--tpm",
        type=limit_arg,
        default=default,
        help="tokens per minute: N, default or unlimited",
    )
