"""Request ids on every log line: a context variable set per request and a logging filter."""
from __future__ import annotations

import contextvars
import logging
import re
import uuid

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(header: str | None) -> str:
    """The request's X-Request-Id (the client's, or the one Serve's proxy generated) if it is a
    safe token (no spaces, control characters or other log injection), else a new one."""
    if header and _CLIENT_ID.match(header):
        return header
    return "req_" + uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rid = request_id_var.get()
        return True


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    log = logging.getLogger("rawinfer")
    if not any(isinstance(f, RequestIdFilter) for f in log.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s request_id=%(rid)s %(message)s"))
        handler.addFilter(RequestIdFilter())
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False
    return log
