"""`rawinfer batch` (rawinfer/batch/): the real command in a subprocess, with Ray Data against
the session's real service over HTTP, killed part way and resumed (one test, so that the file
starts as few Rays as it can); then submitted as a Ray job to a separate local Ray head with the
dashboard. A few pure checks of the progress file come first (no Ray)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
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
    from rawinfer.batch import BatchError, Journal, progress_path, record

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
    from rawinfer.batch import check_line, retry_after_s

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


# ------------------------------------------------------------------ through Ray's job submission
def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile, or not readable
        return b""


@pytest.fixture
def ray_head():
    """A separate local Ray head with the dashboard (the job submission server), in its own
    temp dir and process group, on free ports; stopped through that process only (`ray stop`
    would stop every Ray on the machine, the test session's included). Yields (dashboard URL,
    temp dir)."""
    temp = Path(
        tempfile.mkdtemp(prefix="rb-", dir="/tmp")
    )  # short: Ray's socket paths are length-limited
    dash = free_port()
    ports = {
        "--port": free_port(),
        "--dashboard-port": dash,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        # stop at once on SIGTERM: draining would wait 30 s for Ray Data's detached actors
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )  # the job's `python`
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--include-dashboard=true",
        "--dashboard-host",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--disable-usage-stats",
        "--temp-dir",
        str(temp),
    ]
    cmd += [x for k, v in ports.items() for x in (k, str(v))]
    log = open(temp / "ray-start.log", "w")
    head = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "the Ray head with the dashboard did not start:\n"
                    + (temp / "ray-start.log").read_text()[-4000:]
                )
            time.sleep(0.5)
        yield url, temp
    finally:
        # SIGTERM to `ray start --block` alone: it drains and stops the processes it started (its
        # process group, a few seconds); whatever is left of the group after 30 s is killed
        head.terminate()
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            pass
        _wait_group_gone(head.pid, 30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.integration
def test_batch_as_a_ray_job(service, ray_head, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    job_dir = tmp_path / "job"
    job_dir.mkdir()
    texts = ["submitted as a ray job", "second line of the job"]
    write_jsonl(
        job_dir / "in.jsonl",
        [{"inference_name": E5, "inputs": {"text": t}} for t in texts] + ["not json at all", CHAT],
    )
    out = tmp_path / "results" / "out.jsonl"  # absolute: the job runs in a copy of job_dir
    url, ray_temp = ray_head
    client = JobSubmissionClient(url)
    job = client.submit_job(
        entrypoint=f"python -m rawinfer.batch in.jsonl {out} --url {service.url} --namespace team-a "
        f"--api-key-env {KEY_ENV} --concurrency 2 --progress-every 1",
        runtime_env={"working_dir": str(job_dir), "env_vars": {KEY_ENV: service.keys["a"]}},
    )
    deadline = time.monotonic() + 180
    while (status := client.get_job_status(job)) not in {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    }:
        assert time.monotonic() < deadline, client.get_job_logs(job)[-4000:]
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "Connecting to existing Ray cluster" in logs  # it joined the job's cluster, started none
    assert PROGRESS.findall(logs)[-1] == ("4", "4", "1") and service.keys["a"] not in logs
    got = read_jsonl(out)
    assert [(r["line"], r["status"]) for r in got] == [(1, 200), (2, 200), (3, 400), (4, 200)]
    with service.client() as http:
        r = http.post(
            "/v1/inference",
            json={"inference_name": E5, "inputs": {"text": texts[1]}},
            headers=service.headers(),
        )
    np.testing.assert_allclose(
        got[1]["response"]["data"]["embedding"], r.json()["data"]["embedding"], atol=1e-5
    )
    assert not (out.parent / "out.progress.jsonl").exists()
    # nothing of the cluster's logs holds the key, except where Ray records the job's runtime_env
    # (env_vars included: docs/deploy.md says to use a RayJob's Secret for a key that must stay secret)
    key = service.keys["a"].encode()
    leaked = [p for p in ray_temp.rglob("*") if p.is_file() and key in _read(p)]
    assert {p.name for p in leaked} <= {"runtime_env_agent.log"}, leaked
