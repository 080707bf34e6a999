"""The HTTP side of a batch: one client per Ray actor, retries on 429/503 with backoff."""

from __future__ import annotations

import random
import time
from typing import Any

from rawinfer.batch.lines import (
    RETRY_STATUSES,
    Secret,
    backoff_s,
    error_body,
    record,
    retry_after_s,
)


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
