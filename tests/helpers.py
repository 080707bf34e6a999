"""Assertions shared by the tests."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

SECRET = re.compile(
    r"(?<![A-Za-z0-9_])sk_[A-Za-z0-9_-]{20,}"
)  # an API key, not e.g. "disk_utilization..."


def assert_error(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    """The contract's error body, with this status."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"success", "status", "error", "request_id"}, body
    assert body["success"] is False and body["status"] == status
    assert set(body["error"]) == {"type", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if type_:
        assert body["error"]["type"] == type_
    assert "Traceback" not in r.text and not SECRET.search(r.text), r.text  # no trace, no key
    assert r.headers.get("x-request-id") == body["request_id"]
    return body


# ------------------------------------------------------------- real speech (pocketsphinx-testdata)

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def _references() -> dict[str, str]:
    refs = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        if m:
            refs[m.group(2)] = m.group(1)
    return refs


REFS = _references()
CLIP = (
    "sense_and_sensibility_01_austen_64kb-0870"  # "and mister john dashwood had then leisure ..."
)


def normalise(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    text = re.sub(r"\bmr\b\.?", "mister", text)
    text = re.sub(r"\bmrs\b\.?", "missus", text)
    return re.sub(r"[^a-z0-9' ]+", " ", text).split()


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    r, h = normalise(ref), normalise(hyp)
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return row[len(h)], len(r)


def wer(ref: str, hyp: str) -> float:
    errors, n = word_errors(ref, hyp)
    return errors / max(n, 1)
