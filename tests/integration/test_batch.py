"""`rawinfer batch` (rawinfer/batch/): the real command in a subprocess, with Ray Data against
the session's real service over HTTP, killed part way and resumed (one test, so that the file
starts as few Rays as it can); then submitted as a Ray job to a separate local Ray head with the
dashboard. A few pure checks of the progress file come first (no Ray)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import SECRET

REPO = Path(__file__).resolve().parents[2]

E5 = "multilingual_e5_large_instruct_v1"
KEY_ENV = "RAWINFER_BATCH_TEST_KEY"  # not the default name: --api-key-env is exercised
PROGRESS = re.compile(r"^batch: (\d+)/(\d+) done, (\d+) failed$", re.M)
CHAT = {
    "provider": "local",
    "model": "smollm2-135m-instruct",
    "inputs": {"prompts": ["hi"]},
    "parameters": {"max_tokens": 4, "temperature": 0},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the command, for real
def batch_env(service) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # start its own small Ray
    env.update(
        {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", KEY_ENV: service.keys["a"]}
    )
    env.pop("RAWINFER_API_KEY", None)
    return env


def batch_cmd(service, inp: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rawinfer.batch",
        str(inp),
        str(out),
        "--url",
        service.url,
        "--namespace",
        "team-a",
        "--api-key-env",
        KEY_ENV,
        "--num-cpus",
        "1",
        "--progress-every",
        "1",
        *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def finished(progress: Path) -> dict[int, dict]:
    """The results in a progress file, as the command reads it back: complete lines only (one
    being written, or torn by a kill, is not finished)."""
    data = progress.read_bytes() if progress.exists() else b""
    out = {}
    for raw in data[: data.rfind(b"\n") + 1].splitlines()[1:]:
        r = json.loads(raw)
        out[r["line"]] = r
    return out


def request_id(r: dict) -> str:
    return (r["response"] if r["status"] == 200 else r["error"])["request_id"]


def write_jsonl(path: Path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


@pytest.mark.integration
def test_batch_refuses_a_bad_key_before_any_work(service, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, [{"inference_name": E5, "inputs": {"text": "x"}}])
    env = {**batch_env(service), KEY_ENV: service.keys["revoked"]}
    proc = subprocess.run(
        batch_cmd(service, inp, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "HTTP 401" in proc.stderr and service.keys["revoked"] not in proc.stderr + proc.stdout
    assert not out.exists()
    env.pop(KEY_ENV)
    # no development key either (one made by `make run` in this checkout would be used)
    env["RAWINFER_DEV_KEY_FILE"] = str(tmp_path / "no-dev-key")
    proc = subprocess.run(
        batch_cmd(service, inp, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and f"set {KEY_ENV}" in proc.stderr


def _wait_group_gone(pgid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)


@pytest.mark.integration
def test_batch_end_to_end_interrupted_and_resumed(service, tmp_path):
    """The command for real, with its own small local Ray: a mixed file (embeddings, a line that
    is not JSON, an unknown inference name, a chat) and then heavier lines so that it can be
    interrupted. Killed (SIGKILL to its whole process group, its local Ray included) once some
    results are in the progress file, then run again: it sends only the lines that were not
    finished (the finished ones keep the request id, which names the run, they got before the
    kill), and writes every line in input order."""
    texts = [f"batch inference line {i}: the quick brown fox" for i in range(7)]
    lines = [{"inference_name": E5, "inputs": {"text": t}} for t in texts[:5]]
    lines += [
        '{"inference_name": "multilingual_e5_large_instruct_v1", "inputs": ',  # line 6: not JSON
        {
            "inference_name": "no_such_model_1_0_0",
            "inputs": {"text": "x"},
        },  # line 7: 400 from the service
        CHAT,  # line 8
        {"inference_name": E5, "inputs": {"texts": texts[5:]}},  # line 9
        {"provider": "local", "model": "all-minilm-l6-v2", "inputs": {"text": texts[0]}},
    ]  # line 10
    lines += [{"inference_name": E5, "inputs": {"text": t}} for t in ("one more", "and another")]
    lines += [
        {
            "inference_name": E5,
            "inputs": {
                "texts": [
                    f"line {i} text {j}: resumable batch inference on ray serve" for j in range(16)
                ]
            },
        }
        for i in range(13, 37)
    ]
    n = len(lines)
    work = tmp_path / "work"
    work.mkdir()
    inp, out, progress = work / "in.jsonl", work / "out.jsonl", work / "out.progress.jsonl"
    write_jsonl(inp, lines)
    env = batch_env(service)

    with open(
        tmp_path / "first.log", "w"
    ) as log:  # a file, not a pipe: a full pipe would stall the run
        first = subprocess.Popen(
            batch_cmd(service, inp, out, "--concurrency", "1"),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None:
            if any(r["status"] == 200 for r in finished(progress).values()):
                break  # line 6 is recorded at once, without Ray: wait for answers from the service
            time.sleep(0.05)
        assert first.poll() is None, (
            "the first run ended before it could be interrupted:\n"
            + (tmp_path / "first.log").read_text()[-3000:]
        )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        _wait_group_gone(first.pid)
    first_logs = (tmp_path / "first.log").read_text()
    before = finished(progress)
    assert 0 < len(before) < n and not out.exists()
    (run1,) = {request_id(r).rsplit("-", 1)[0] for r in before.values() if r["status"] == 200}

    second = subprocess.run(
        batch_cmd(service, inp, out, "--concurrency", "2"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = second.stdout + second.stderr
    assert second.returncode == 0, logs[-4000:]
    for text in (first_logs, logs):
        assert service.keys["a"] not in text and not SECRET.search(text)
    assert f"resuming, {len(before)}/{n} lines already done" in second.stderr
    assert PROGRESS.findall(logs)[-1] == (str(n), str(n), "2")
    assert f"wrote {out}" in second.stdout
    assert sorted(p.name for p in work.iterdir()) == [
        "in.jsonl",
        "out.jsonl",
    ]  # no progress or temp file

    got = read_jsonl(out)
    assert [r["line"] for r in got] == list(range(1, n + 1))
    assert [r["status"] for r in got] == [200] * 5 + [400, 400] + [200] * (n - 7)
    for r in got:
        if r["line"] in before:
            assert r == before[r["line"]]  # not redone
    runs = {request_id(r).rsplit("-", 1)[0] for r in got if r["line"] not in before}
    assert len(runs) == 1 and run1 not in runs  # every other line was sent by the second run

    bad_json, unknown = got[5], got[6]
    assert set(bad_json) == {"line", "status", "error"} and bad_json["error"]["success"] is False
    assert (
        bad_json["error"]["error"]["type"] == "BadRequestError"
        and bad_json["error"]["request_id"] is None
    )
    assert "line 6 is not valid JSON" in bad_json["error"]["error"]["message"]
    assert (
        unknown["error"]["status"] == 400
        and "no_such_model_1_0_0" in unknown["error"]["error"]["message"]
    )
    assert re.fullmatch(r"batch-[0-9a-f]{12}-7", unknown["error"]["request_id"])
    chat = got[7]["response"]
    assert chat["model"] == "smollm2-135m-instruct" and len(chat["data"]["responses"]) == 1
    assert chat["data"]["responses"][0]["text"]

    # the embeddings are what POST /v1/inference answers for the same text
    with service.client() as http:

        def direct(body):
            r = http.post("/v1/inference", json=body, headers=service.headers())
            assert r.status_code == 200, r.text
            return r.json()["data"]

        for i in (0, 1, 2, 3, 4, 10, 11):
            assert set(got[i]) == {"line", "status", "response"}
            assert got[i]["response"]["request_id"].endswith(f"-{i + 1}")
            np.testing.assert_allclose(
                got[i]["response"]["data"]["embedding"], direct(lines[i])["embedding"], atol=1e-5
            )
        for i in (8, 20):
            np.testing.assert_allclose(
                got[i]["response"]["data"]["embeddings"], direct(lines[i])["embeddings"], atol=1e-5
            )
        np.testing.assert_allclose(
            got[9]["response"]["data"]["embedding"],
            got[0]["response"]["data"]["embedding"],
            atol=1e-5,
        )
