"""Structured logs: one JSON object per line with the request id on every line, and the
namespace and target where known. Keys, secrets and inputs are never logged: log calls pass only
ids and names, as `extra` fields."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
FIELDS = ("namespace", "target", "backend", "task", "status")


def current_request_id() -> str:
    return request_id_var.get()


def request_id_from(header: str | None) -> str:
    """The request's X-Request-Id (the client's, or the one Serve's proxy generated) if it is a
    safe token (no spaces, control characters or other log injection), else a new one."""
    if header and _CLIENT_ID.match(header):
        return header
    return "req_" + uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        out.update({f: getattr(record, f) for f in FIELDS if hasattr(record, f)})
        if record.exc_info:
            out["exception"] = self.formatException(
                record.exc_info
            )  # server log only, never a response
        return json.dumps(out, default=str)


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    log = logging.getLogger("rawinfer")
    if not any(isinstance(h.formatter, JsonFormatter) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False
    return log
