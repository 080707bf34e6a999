"""`rawinfer batch INPUT.jsonl OUTPUT.jsonl`: run a file of contract requests against the service.

Each input line is one `POST /v1/inference` body. The lines are sent with Ray Data: a pool of
`--concurrency` actors, each holding one httpx client, posts them to `--url`; 429 and 503 answers
and connection failures are retried with exponential backoff, honouring `Retry-After`. Every line
gets one result line, in input order:

    {"line": 3, "status": 200, "response": {...the contract response...}}
    {"line": 4, "status": 400, "error": {...the contract error body...}}

Lines are numbered from 1. A line that is not a JSON object (bad JSON, bad UTF-8, blank) is a 400
for that line, made here, and never stops the run.

Results are appended to `OUTPUT.progress.jsonl` as they arrive (flush + fsync). Started again after
an interruption, the command skips the lines already there; lines that were in flight are sent
again. When every line has a result, OUTPUT is written in input order (temporary file + rename)
and the progress file is removed.

The API key is read from the environment variable named by `--api-key-env`, never from the
command line, and is never printed. Ray: `--ray-address` or `RAY_ADDRESS` (set inside `ray job
submit`) joins that cluster; otherwise a small local Ray is started for the run.

This module imports only the standard library at import time (the CLI imports it); Ray, Ray Data,
numpy and httpx are imported when a run starts.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rawinfer.contract.errors import error_type
from rawinfer.core.settings import DEV_NAMESPACE, Settings

DEFAULT_KEY_ENV = "RAWINFER_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 503})
# Statuses that are about the key or namespace, not the line: the run stops (nothing recorded for
# that line) so that a fixed key or namespace can resume it.
FATAL_STATUSES = frozenset({401, 403, 404})
PROGRESS_FORMAT = 1
WINDOW_LINES = 4096  # lines handed to Ray Data at once (bounds the driver's memory)
WINDOW_BYTES = 64 * 1024 * 1024
MAX_BLOCK_LINES = (
    8  # lines per Ray Data block: a block's results come back (and are saved) together
)
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 60.0
RETRY_AFTER_MAX_S = 300.0
ACTOR_CPUS = 0  # the actors wait on HTTP: they take no CPU from a cluster that serves models


class BatchError(Exception):
    """Stops the run with a message and an exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class Secret:
    """The API key on its way to the actors: never shown by repr/str (logs, tracebacks)."""

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def progress_path(output: Path | str) -> Path:
    """`out.jsonl` -> `out.progress.jsonl`; any other name gets `.progress.jsonl` appended."""
    output = Path(output)
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".progress.jsonl")


def error_body(
    status: int, message: str, details: dict | None = None, request_id: str | None = None
) -> dict:
    """The contract's error body, for failures that the service did not answer itself."""
    return {
        "success": False,
        "status": status,
        "error": {"type": error_type(status), "message": message, "details": details or {}},
        "request_id": request_id,
    }


def record(line: int, status: int, body: Any) -> str:
    key = "response" if status == 200 else "error"
    return json.dumps(
        {"line": line, "status": status, key: body}, ensure_ascii=False, separators=(",", ":")
    )


def check_line(line: int, raw: bytes) -> tuple[str | None, str | None]:
    """(body, None) for a line that is a JSON object, else (None, failure record)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, record(
            line, 400, error_body(400, f"line {line} is not valid UTF-8 (byte {e.start})")
        )
    if not text.strip():
        return None, record(
            line, 400, error_body(400, f"line {line} is empty: each line must be a request object")
        )
    try:
        value = json.loads(text)
    except ValueError as e:
        return None, record(line, 400, error_body(400, f"line {line} is not valid JSON: {e}"))
    if not isinstance(value, dict):
        return None, record(
            line,
            400,
            error_body(
                400,
                f"line {line} is a JSON {type(value).__name__}, not an object: each line must be a request object",
            ),
        )
    return text, None


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def backoff_s(attempt: int) -> float:
    """Exponential backoff with full jitter in its upper half: 0.25-0.5 s, 0.5-1 s, ... up to 60 s."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


class Caller:
    """The Ray Data UDF: one per actor, one httpx client each. Takes a batch of
    {"line", "body"} and returns {"line", "status", "record"} (the result line as JSON text)."""

    def __init__(
        self,
        url: str,
        key: Secret,
        namespace: str | None,
        timeout_s: float,
        max_retries: int,
        run_id: str,
    ):
        import httpx

        headers = {
            "Authorization": f"Bearer {key.get()}",
            "Content-Type": "application/json",
            "User-Agent": "rawinfer-batch",
        }
        if namespace:
            headers["X-Namespace"] = namespace
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._run_id = run_id

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        lines, statuses, records = [], [], []
        for n, body in zip(batch["line"], batch["body"]):
            status, body_out = self.post(int(n), str(body))
            lines.append(int(n))
            statuses.append(status)
            records.append(record(int(n), status, body_out))
        return {
            "line": np.array(lines, dtype=np.int64),
            "status": np.array(statuses, dtype=np.int64),
            "record": np.array(records, dtype=object),
        }

    def post(self, line: int, body: str) -> tuple[int, Any]:
        import httpx

        rid = f"batch-{self._run_id}-{line}"
        content = body.encode("utf-8")
        attempt = 0
        while True:
            try:
                r = self._client.post(
                    "/v1/inference", content=content, headers={"X-Request-Id": rid}
                )
            except (httpx.ReadTimeout, httpx.WriteTimeout) as e:
                # sent and not answered in time: the service may still be running it; not retried
                return 504, error_body(
                    504,
                    f"no answer within {self._timeout_s:g} s (--timeout)",
                    {"client_error": type(e).__name__},
                    rid,
                )
            except httpx.TransportError as e:  # could not connect, pool timeout, connection dropped
                if attempt >= self._max_retries:
                    return 503, error_body(
                        503,
                        f"could not reach the service after {attempt + 1} attempts",
                        {"client_error": type(e).__name__},
                        rid,
                    )
                delay = backoff_s(attempt)
            else:
                if r.status_code not in RETRY_STATUSES or attempt >= self._max_retries:
                    return r.status_code, self._body(r, rid)
                after = retry_after_s(r.headers.get("retry-after"))
                delay = backoff_s(attempt) if after is None else after + random.uniform(0, 0.25)
            attempt += 1
            time.sleep(delay)

    @staticmethod
    def _body(r, rid: str) -> Any:
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code == 200:
            if isinstance(body, dict):
                return body
            return error_body(
                502, "the service answered 200 with a body that is not a JSON object", {}, rid
            )
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body
        # not the contract's body (a proxy in between, say): keep the status, say what came back
        return error_body(
            r.status_code,
            f"HTTP {r.status_code} without the contract's error body",
            {"content_type": r.headers.get("content-type"), "text": r.text[:500]},
            rid,
        )


# ------------------------------------------------------------------------------------ files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def scan_input(path: Path) -> tuple[int, str]:
    """(number of lines, sha256 of the file). A last line without a newline counts."""
    digest, lines, last = hashlib.sha256(), 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return lines, digest.hexdigest()


def iter_lines(path: Path):
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            yield n, raw.rstrip(b"\n").rstrip(b"\r")


class Journal:
    """OUTPUT.progress.jsonl: a header line, then one result line per finished input line,
    appended with flush + fsync. A torn last line (a crash mid-write) is cut off on open."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.status: dict[int, int] = {}  # line -> status
        self._lock = threading.Lock()
        if path.exists():
            self._load(header)
        else:
            self._create(header)
        self._f = open(path, "ab")

    def _create(self, header: dict) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def _load(self, header: dict) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        lines = data[:end].split(b"\n")[:-1]
        if not lines:
            self._create(header)
            return
        try:
            found = json.loads(lines[0])
        except ValueError:
            found = None
        if not isinstance(found, dict) or found.get("rawinfer_batch") != PROGRESS_FORMAT:
            raise BatchError(
                f"{self.path} is not a rawinfer batch progress file: move it away or delete it"
            )
        if (found.get("input_sha256"), found.get("lines")) != (
            header["input_sha256"],
            header["lines"],
        ):
            raise BatchError(
                f"{self.path} belongs to another input (the input file changed since it was "
                "started): delete it to start over, or restore that input"
            )
        for raw in lines[1:]:
            try:
                rec = json.loads(raw)
                n, status = int(rec["line"]), int(rec["status"])
            except (ValueError, KeyError, TypeError):
                continue  # unreadable: that line is done again
            if 1 <= n <= header["lines"]:
                self.status.setdefault(n, status)

    def add(self, records: list[tuple[int, int, str]]) -> None:
        """Appends (line, status, record) results durably; a line already recorded is skipped."""
        with self._lock:
            new = [(n, s, r) for n, s, r in records if n not in self.status]
            if not new:
                return
            self._f.write(b"".join(r.encode("utf-8") + b"\n" for _, _, r in new))
            self._f.flush()
            os.fsync(self._f.fileno())
            for n, s, _ in new:
                self.status[n] = s

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.status), sum(1 for s in self.status.values() if s != 200)

    def close(self) -> None:
        self._f.close()

    def write_output(self, output: Path, total: int) -> None:
        """OUTPUT in input order (temporary file in the same folder, fsync, rename), then the
        progress file is removed."""
        self._f.flush()
        where: dict[int, tuple[int, int]] = {}
        with open(self.path, "rb") as f:
            f.readline()  # header
            while True:
                pos = f.tell()
                raw = f.readline()
                if not raw:
                    break
                try:
                    n = int(json.loads(raw)["line"])
                except (ValueError, KeyError, TypeError):
                    continue
                where.setdefault(n, (pos, len(raw.rstrip(b"\n"))))
            missing = [n for n in range(1, total + 1) if n not in where]
            if missing:
                raise BatchError(f"internal error: lines {missing[:10]} have no result", 1)
            fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    for n in range(1, total + 1):
                        pos, size = where[n]
                        f.seek(pos)
                        out.write(f.read(size) + b"\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, output)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        _fsync_dir(output.parent)
        self.close()
        self.path.unlink()
        _fsync_dir(self.path.parent)


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
        help=f"environment variable holding the API key (default: {DEFAULT_KEY_ENV})",
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
