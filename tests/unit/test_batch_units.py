"""Units of `rawinfer batch` that need no service: the progress journal, line checks,
Retry-After."""

from __future__ import annotations

import json
import time

import pytest


def test_ray_data_importable():
    """Ray Data needs pandas and pyarrow (ray[data]); without them the command cannot run."""
    try:
        import ray.data  # noqa: F401
    except ImportError as e:
        pytest.fail(
            f"ray.data does not import ({e}): install ray[serve,data]==2.60.0 (pandas, pyarrow)"
        )


# ------------------------------------------------------------------ the progress file, no Ray
def test_progress_file_torn_tail_and_foreign_input(tmp_path):
    from rawinfer.batch.journal import Journal
    from rawinfer.batch.lines import BatchError, progress_path, record

    assert progress_path(tmp_path / "out.jsonl") == tmp_path / "out.progress.jsonl"
    assert progress_path(tmp_path / "results") == tmp_path / "results.progress.jsonl"
    header = {"rawinfer_batch": 1, "input": "in.jsonl", "input_sha256": "abc", "lines": 3}
    path = tmp_path / "out.progress.jsonl"
    j = Journal(path, header)
    j.add([(2, 200, record(2, 200, {"data": {}})), (1, 400, record(1, 400, {"error": {}}))])
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"line": 3, "status": 200, "resp')  # killed in the middle of a write
    j = Journal(path, header)  # the torn line is cut off, the rest kept
    assert j.status == {1: 400, 2: 200} and j.counts() == (2, 1)
    assert path.read_bytes().endswith(b"}\n")
    j.add(
        [(3, 200, record(3, 200, {"data": {"n": 3}})), (1, 200, record(1, 200, {}))]
    )  # 1 is done already
    j.write_output(tmp_path / "out.jsonl", 3)
    assert not path.exists()
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        {"line": 1, "status": 400, "error": {"error": {}}},
        {"line": 2, "status": 200, "response": {"data": {}}},
        {"line": 3, "status": 200, "response": {"data": {"n": 3}}},
    ]

    Journal(path, header).close()
    with pytest.raises(BatchError, match="another input"):
        Journal(path, {**header, "input_sha256": "changed"})


def test_line_checks_and_retry_after():
    from rawinfer.batch.lines import check_line, retry_after_s

    assert check_line(1, b'{"a": 1}') == ('{"a": 1}', None)
    for raw, says in (
        (b"{oops", "not valid JSON"),
        (b"[1]", "not an object"),
        (b"  ", "empty"),
        (b"\xff{}", "not valid UTF-8"),
    ):
        body, failure = check_line(7, raw)
        rec = json.loads(failure)
        assert body is None and rec["line"] == 7 and rec["status"] == 400
        assert (
            rec["error"]["error"]["type"] == "BadRequestError"
            and says in rec["error"]["error"]["message"]
        )
    assert retry_after_s("3") == 3 and retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("100000") == 300  # capped
    assert (
        0
        <= retry_after_s(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5)))
        <= 6
    )
