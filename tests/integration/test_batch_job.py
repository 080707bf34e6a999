"""`rawinfer batch` as a Ray job submitted to a separate Ray head, against the service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_batch import (
    CHAT,
    E5,
    KEY_ENV,
    PROGRESS,
    _wait_group_gone,
    free_port,
    read_jsonl,
    write_jsonl,
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
        entrypoint=f"python -m rawinfer.batch in.jsonl {out} --url {service.url} "
        "--namespace team-a "
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
    # (env_vars included: docs/deploy.md says to use a RayJob's Secret for a key that must stay
    # secret)
    key = service.keys["a"].encode()
    leaked = [p for p in ray_temp.rglob("*") if p.is_file() and key in _read(p)]
    assert {p.name for p in leaked} <= {"runtime_env_agent.log"}, leaked
