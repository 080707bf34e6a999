"""`rawinfer` command line, one module per command group: tenancy (orgs, keys, namespaces,
limits, usage), dev (dev-init, prepare), batch, cache, plugins."""

from __future__ import annotations

import argparse

from rawinfer import batch
from rawinfer.cli import cache, dev, plugins, tenancy


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rawinfer", description=__doc__)
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: RAWINFER_DATABASE_URL or the embedded SQLite file)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in (tenancy, dev, batch, cache, plugins):
        group.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
