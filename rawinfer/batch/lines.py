"""One batch line: checking it, its result record, retry timing, and the run's constants."""

from __future__ import annotations

import email.utils
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from rawinfer.contract.errors import error_type

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
                f"line {line} is a JSON {type(value).__name__}, not an object: each line must be a "
                f"request object",
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
    """Exponential backoff with full jitter in its upper half: 0.25-0.5 s, 0.5-1 s, ... up to 60
    s."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)
