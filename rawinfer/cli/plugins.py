"""`rawinfer plugins new|check|list` (wired into rawinfer/cli/ by `add_parser`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rawinfer.contract.errors import RawInferError
from rawinfer.core.settings import REPO_ROOT, Settings


def _dirs() -> list[Path]:
    return [d if d.is_absolute() else REPO_ROOT / d for d in Settings().plugins_dirs]


def cmd_new(args) -> None:
    from rawinfer.plugins.scaffold import scaffold

    try:
        folder = scaffold(args.name, Path(args.dir) if args.dir else _dirs()[0])
    except (ValueError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    print(f"created {folder / 'plugin.py'}\ncheck it:  rawinfer plugins check {folder}")


def check(path: Path, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Validates, loads and runs every plugin in a plugin folder (or its plugin.py) on its example.
    Returns one report per plugin; raises SystemExit(message) at the first failure."""
    from rawinfer.plugins.discovery import from_folder
    from rawinfer.plugins.runner import PluginRunner

    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise SystemExit(f"error: {path} is not a plugin folder")
    reports = []
    for d in from_folder(folder):
        if d.error is not None:
            raise SystemExit(f"error: {d.label}: {d.error}")
        m = d.manifest
        runner = PluginRunner(
            d.ref, cache_dir=cache_dir or Settings().cache_dir, plugin_dir=d.folder
        )
        runner.load()
        if runner.load_error:
            raise SystemExit(f"error: {m.ref}: load() failed: {runner.load_error}")
        (result,) = asyncio.run(
            runner.run([{"inputs": m.example, "parameters": m.example_parameters}])
        )
        if isinstance(result, RawInferError):
            raise SystemExit(f"error: {m.ref}: the example failed: {result.message}")
        reports.append(
            {
                "plugin": m.ref,
                "inference_name": m.inference_name,
                "feature_uris": m.feature_uris,
                "example_output": result,
            }
        )
    return reports


def cmd_check(args) -> None:
    for r in check(Path(args.path)):
        out = json.dumps(r["example_output"])
        print(
            f"ok {r['plugin']}: inference_name {r['inference_name']}, feature URIs "
            f"{', '.join(r['feature_uris'])}"
        )
        print(f"   example output: {out[:400]}{'...' if len(out) > 400 else ''}")


def _service_status(url: str, key: str | None, namespace: str) -> dict[str, dict[str, Any]]:
    import httpx

    if key is None:
        dev = REPO_ROOT / ".rawinfer" / "dev-key"
        key = dev.read_text().strip() if dev.exists() else ""
    r = httpx.get(
        url.rstrip("/") + "/v1/inference/models",
        timeout=30,
        headers={"Authorization": f"Bearer {key}", "X-Namespace": namespace},
    )
    if r.status_code != 200:
        raise SystemExit(f"error: {url} answered {r.status_code}: {r.text[:300]}")
    return {e["inference_name"]: e for e in r.json()["data"] if e.get("inference_name")}


def cmd_list(args) -> None:
    from rawinfer.plugins.discovery import discover

    rows = [d.summary() for d in discover(_dirs())]
    if args.url:
        served = _service_status(args.url, args.key, args.namespace)
        for row in rows:
            e = served.get(row.get("inference_name"))
            row["service"] = "not served" if e is None else e["status"]
            if e is not None and e.get("error"):
                row["service_error"] = e["error"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"no plugins (searched entry points and {', '.join(map(str, _dirs()))})")
    for row in rows:
        name = row.get("inference_name") or "-"
        line = f"{name:32} {row['status']:6} {row['source']}"
        if "service" in row:
            err = ": " + row["service_error"] if row.get("service_error") else ""
            line += f"  [service: {row['service']}{err}]"
        print(line)
        if row.get("error"):
            print(f"    error: {row['error']}")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plugins", help="custom model plugins: scaffold, check, list (docs/plugins.md)"
    )
    g = p.add_subparsers(dest="sub", required=True)
    c = g.add_parser("new", help="scaffold a working plugin folder from the template")
    c.add_argument("name", help="snake_case plugin name")
    c.add_argument("--dir", help="parent folder (default: the first of Settings.plugins_dirs)")
    c.set_defaults(fn=cmd_new)
    c = g.add_parser(
        "check", help="validate a plugin folder's manifest, load it, run it on its example"
    )
    c.add_argument("path", help="a plugin folder or its plugin.py")
    c.set_defaults(fn=cmd_check)
    c = g.add_parser(
        "list",
        help="plugins found in entry points and plugins_dirs (with --url: their status there)",
    )
    c.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000")
    c.add_argument("--key", help="API key for --url (default: .rawinfer/dev-key)")
    c.add_argument("--namespace", default="dev", help="namespace for --url (default: dev)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_list)
