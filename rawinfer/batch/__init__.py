"""`rawinfer batch INPUT.jsonl OUTPUT.jsonl`: a file of contract requests run against the service
through Ray Data, resumable, one result line per input line (docs/notes/batch.md). Ray, numpy
and httpx are imported when a run starts."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from rawinfer.batch.caller import Caller
from rawinfer.batch.journal import Journal, iter_lines, scan_input
from rawinfer.batch.lines import (
    ACTOR_CPUS,
    DEFAULT_KEY_ENV,
    DEFAULT_URL,
    FATAL_STATUSES,
    MAX_BLOCK_LINES,
    PROGRESS_FORMAT,
    RETRY_STATUSES,
    WINDOW_BYTES,
    WINDOW_LINES,
    BatchError,
    Secret,
    check_line,
    progress_path,
)
from rawinfer.core.settings import DEV_NAMESPACE, Settings


# ------------------------------------------------------------------------------------ the run
def _preflight(url: str, key: str, namespace: str | None, timeout_s: float) -> None:
    """One authenticated GET before any work: a wrong key, namespace or URL stops the run here
    instead of failing every line."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    if namespace:
        headers["X-Namespace"] = namespace
    last = ""
    for attempt in range(6):
        try:
            r = httpx.get(
                url.rstrip("/") + "/v1/inference/models",
                headers=headers,
                timeout=min(timeout_s, 30),
            )
        except httpx.TransportError as e:
            last = f"cannot reach {url} ({type(e).__name__})"
        else:
            if r.status_code == 200:
                return
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            if r.status_code not in RETRY_STATUSES:
                raise BatchError(f"the service refused the run: HTTP {r.status_code}: {message}", 2)
            last = f"HTTP {r.status_code}: {message}"
        time.sleep(min(2**attempt, 10))
    raise BatchError(f"the service is not available: {last}", 1)


class _Reporter(threading.Thread):
    """`batch: 120/500 done, 3 failed` every few seconds while the run lasts."""

    def __init__(self, journal: Journal, total: int, every_s: float):
        super().__init__(daemon=True, name="batch-progress")
        self.journal, self.total, self.every_s = journal, total, every_s
        self.stopped = threading.Event()

    def line(self) -> str:
        done, failed = self.journal.counts()
        return f"batch: {done}/{self.total} done, {failed} failed"

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            print(self.line(), file=sys.stderr, flush=True)


def _run_window(items: list[dict], journal: Journal, caller_kwargs: dict, concurrency: int) -> None:
    import ray.data

    per_block = max(1, min(MAX_BLOCK_LINES, math.ceil(len(items) / (concurrency * 4))))
    blocks = math.ceil(len(items) / per_block)
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(
        Caller,
        fn_constructor_kwargs=caller_kwargs,
        batch_size=per_block,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(concurrency, blocks)),
        num_cpus=ACTOR_CPUS,
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        results = [
            (int(n), int(s), str(r))
            for n, s, r in zip(batch["line"], batch["status"], batch["record"])
        ]
        fatal = [(n, s, r) for n, s, r in results if s in FATAL_STATUSES]
        journal.add([x for x in results if x[1] not in FATAL_STATUSES])
        if fatal:
            n, s, r = fatal[0]
            try:
                message = json.loads(r)["error"]["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = ""
            raise BatchError(
                f"line {n}: HTTP {s}: {message} — stopping; fix the key or namespace and run "
                "the same command again to resume",
                3,
            )


def _start_ray(address: str | None, num_cpus: int) -> bool:
    """Joins `address` (RAY_ADDRESS inside `ray job submit`), else starts a local Ray for this
    run. True when this call connected (so the run disconnects, and stops a local Ray, at the end);
    False when this process was connected already."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    _install_sigterm()  # ray.init installs its own handler for drivers
    return True


def _development_key(args: argparse.Namespace) -> str:
    """Beside `make run` (the service on this machine, the key variable unset): the development
    key that `make run` created, said on stderr. Anywhere else the key comes from the variable."""
    host = (urlsplit(args.url).hostname or "").lower()
    path = Settings().dev_key_file
    if host not in ("127.0.0.1", "localhost", "::1") or not path.is_file():
        return ""
    key = path.read_text().strip()
    if key:
        if not args.namespace:
            args.namespace = DEV_NAMESPACE
        print(
            f"rawinfer batch: {args.api_key_env} is not set; using the development key from "
            f"{path} (made by `make run`) and namespace {args.namespace}",
            file=sys.stderr,
        )
    return key


def run(args: argparse.Namespace) -> int:
    key = os.environ.get(args.api_key_env, "").strip() or _development_key(args)
    if not key:
        raise BatchError(
            f"set {args.api_key_env} to the API key (the key is read from the environment only; "
            "--api-key-env names another variable)"
        )
    if args.concurrency < 1:
        raise BatchError("--concurrency must be at least 1")
    inp, out = Path(args.input), Path(args.output)
    if not inp.is_file():
        raise BatchError(f"no input file {inp}")
    if inp.resolve() == out.resolve():
        raise BatchError("OUTPUT must not be the input file")
    out.parent.mkdir(parents=True, exist_ok=True)
    total, sha = scan_input(inp)
    journal = Journal(
        progress_path(out),
        {
            "rawinfer_batch": PROGRESS_FORMAT,
            "input": str(inp.resolve()),
            "input_sha256": sha,
            "lines": total,
        },
    )
    done, _ = journal.counts()
    if done:
        print(
            f"batch: resuming, {done}/{total} lines already done ({journal.path})",
            file=sys.stderr,
            flush=True,
        )
    reporter = _Reporter(journal, total, args.progress_every)
    connected = False
    try:
        if done < total:
            _preflight(args.url, key, args.namespace, args.timeout)
            reporter.start()
            caller_kwargs = {
                "url": args.url,
                "key": Secret(key),
                "namespace": args.namespace,
                "timeout_s": args.timeout,
                "max_retries": args.max_retries,
                "run_id": uuid.uuid4().hex[:12],
            }
            window: list[dict] = []
            size = 0
            invalid: list[tuple[int, int, str]] = []
            for n, raw in iter_lines(inp):
                if n in journal.status:
                    continue
                body, failure = check_line(n, raw)
                if failure is not None:
                    invalid.append((n, 400, failure))
                    continue
                window.append({"line": n, "body": body})
                size += len(raw)
                if len(window) >= WINDOW_LINES or size >= WINDOW_BYTES:
                    journal.add(invalid)
                    invalid = []
                    connected = _start_ray(args.ray_address, args.num_cpus) or connected
                    _run_window(window, journal, caller_kwargs, args.concurrency)
                    window, size = [], 0
            journal.add(invalid)
            if window:
                connected = _start_ray(args.ray_address, args.num_cpus) or connected
                _run_window(window, journal, caller_kwargs, args.concurrency)
        done, failed = journal.counts()
        if done < total:  # only if lines vanished from the progress file under us
            raise BatchError(f"{total - done} lines have no result: run the same command again", 1)
        journal.write_output(out, total)
    finally:
        reporter.stopped.set()
        print(reporter.line(), file=sys.stderr, flush=True)
        journal.close()
        if connected:
            import ray

            ray.shutdown()
    print(f"batch: wrote {out} ({total} lines, {failed} failed)", flush=True)
    return 0


# ------------------------------------------------------------------------------------ CLI
def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="JSONL file: one POST /v1/inference body per line")
    p.add_argument(
        "output",
        help="JSONL results, one per input line in input order; progress is kept "
        "beside it in OUTPUT.progress.jsonl until the run is complete",
    )
    p.add_argument(
        "--url",
        default=os.environ.get("RAWINFER_URL", DEFAULT_URL),
        help=f"the service (default: $RAWINFER_URL or {DEFAULT_URL})",
    )
    p.add_argument(
        "--api-key-env",
        default=DEFAULT_KEY_ENV,
        metavar="VAR",
        help=f"environment variable holding the API key (default: {DEFAULT_KEY_ENV}); unset, "
        "against a service on this machine, the development key `make run` made is used",
    )
    p.add_argument(
        "--namespace",
        default=os.environ.get("RAWINFER_NAMESPACE"),
        metavar="NS",
        help="X-Namespace: namespace id or name (default: $RAWINFER_NAMESPACE)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="requests in flight at once: N Ray actors with one HTTP client each (default: 4)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait for one answer; a line that gets none is a 504 (default: 120)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=8,
        metavar="N",
        help="retries of a 429, 503 or connection failure before it is recorded (default: 8)",
    )
    p.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS") or None,
        help="Ray cluster to join (default: $RAY_ADDRESS, set inside `ray job submit`; "
        "otherwise a local Ray is started for the run)",
    )
    p.add_argument(
        "--num-cpus",
        type=int,
        default=2,
        help="CPUs of the local Ray, when one is started (default: 2)",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between progress lines (default: 2)",
    )


def _on_sigterm(signum, frame):  # stop like Ctrl-C, so that the local Ray is shut down
    raise KeyboardInterrupt


def _install_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def command(args: argparse.Namespace) -> None:
    """The subcommand's entry (`set_defaults(fn=...)`): exits non-zero on failure."""
    previous = signal.getsignal(signal.SIGTERM)
    _install_sigterm()
    try:
        code = run(args)
    except BatchError as e:
        print(f"batch: error: {e}", file=sys.stderr, flush=True)
        code = e.code
    except KeyboardInterrupt:
        print(
            "batch: interrupted; run the same command again to resume", file=sys.stderr, flush=True
        )
        code = 130
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    if code:
        sys.exit(code)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds `batch` to the `rawinfer` command's subparsers."""
    p = subparsers.add_parser(
        "batch",
        help="run a JSONL file of /v1/inference requests with Ray Data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(fn=command)
    return p


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="rawinfer batch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    command(p.parse_args(argv))


if __name__ == "__main__":
    # run through the importable module, so that Ray pickles `rawinfer.batch.Caller` by reference
    from rawinfer.batch import main as _main

    _main()
