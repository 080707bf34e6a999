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


def _cut_after(service, path: str, body: dict, rid: str, events: int) -> int:
    """Reads `events` SSE data lines of a stream, then leaves; returns how many were deltas."""
    seen = 0
    with service.client(timeout=120) as c:
        headers = {**service.headers(), "X-Request-Id": rid}
        with c.stream("POST", path, json=body, headers=headers) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                    if seen == events:
                        break  # leave mid-stream: the connection closes
    return seen


def _prompt_tokens(service, body: dict) -> int:
    with service.client(timeout=120) as c:
        r = c.post("/v1/inference", json=body, headers=service.headers())
    assert r.status_code == 200, r.text
    return r.json()["tokens_used"]["prompt"]


def test_a_cut_stream_is_billed_what_it_produced(service):
    """A stream left after a few deltas is charged its prompt and the tokens streamed so far, on
    the contract route and the OpenAI one, not 0."""
    story = "Write a long story about a dragon who learns to bake bread."
    body = {
        "provider": "local",
        "model": "smollm2-135m-instruct",
        "inputs": {"prompts": [story]},
        "parameters": {"temperature": 0.8, "max_tokens": 600, "stream": True},
    }
    prompt = _prompt_tokens(service, {**body, "parameters": {"temperature": 0, "max_tokens": 1}})
    rid = f"billing-cut-{uuid.uuid4().hex[:8]}"
    assert _cut_after(service, "/v1/inference", body, rid, 6) == 6
    row = ledger_row(service.database_url, rid)
    assert row["prompt"] == prompt and 6 <= row["completion"] < 600, row

    rid = f"billing-cut-oa-{uuid.uuid4().hex[:8]}"
    oa = {
        "model": CHAT,
        "messages": [{"role": "user", "content": story}],
        "max_tokens": 600,
        "temperature": 0.8,
        "stream": True,
    }
    # the first chunk carries the role only: 7 chunks are 6 deltas
    assert _cut_after(service, "/v1/chat/completions", oa, rid, 7) == 7
    row = ledger_row(service.database_url, rid)
    assert row["prompt"] > 0 and 6 <= row["completion"] < 600, row
