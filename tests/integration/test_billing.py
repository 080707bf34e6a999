"""Billing against the ledger: what a request produced is what its usage record says."""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa

CHAT = "local/smollm2-135m-instruct"


def ledger_row(database_url: str, request_id: str, timeout: float = 30) -> dict:
    engine = sa.create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as c:
                row = c.execute(
                    sa.text(
                        "SELECT prompt_tokens, completion_tokens FROM usage_records "
                        "WHERE request_id = :rid"
                    ),
                    {"rid": request_id},
                ).first()
            if row is not None:
                return {"prompt": row[0], "completion": row[1]}
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise AssertionError(f"no usage record for {request_id}")


def test_n_choices_are_all_billed(service):
    rid = f"billing-n-{uuid.uuid4().hex[:8]}"
    with service.client() as c:
        r = c.post(
            "/v1/chat/completions",
            headers={**service.headers(), "X-Request-Id": rid},
            json={
                "model": CHAT,
                "messages": [{"role": "user", "content": "Say something."}],
                "n": 3,
                "max_tokens": 12,
                "temperature": 1.0,
            },
        )
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert len(r.json()["choices"]) == 3 and usage["completion_tokens"] >= 3
    assert ledger_row(service.database_url, rid) == {
        "prompt": usage["prompt_tokens"],
        "completion": usage["completion_tokens"],
    }
