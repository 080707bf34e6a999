"""Operating the service: Prometheus metrics move after requests, /readyz reports a deployment
that is down (a replica process killed) and recovers when Serve restarts it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import httpx
from helpers import SECRET

E5 = "multilingual_e5_large_instruct_v1"


def counter(metrics_url: str, name: str, **labels) -> float:
    """Sum of a Ray-exported counter's series whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_requests_tokens_and_latency(service):
    labels = {"route": "/v1/inference", "target": E5, "status": "200"}
    before = counter(service.metrics_url, "ray_rawinfer_requests_total", **labels)
    tokens_before = counter(
        service.metrics_url, "ray_rawinfer_tokens_total", target=E5, kind="prompt"
    )
    with service.client() as c:
        for i in range(5):
            r = c.post(
                "/v1/inference",
                json={"inference_name": E5, "inputs": {"text": f"metrics {i}"}},
                headers=service.headers(),
            )
            assert r.status_code == 200
        assert (
            c.post(
                "/v1/inference",
                json={"inference_name": E5, "inputs": {}},
                headers=service.headers(),
            ).status_code
            == 400
        )
    deadline = time.monotonic() + 60  # Ray exports every few seconds
    while counter(service.metrics_url, "ray_rawinfer_requests_total", **labels) < before + 5:
        assert time.monotonic() < deadline, "the request counter did not move"
        time.sleep(2)
    assert (
        counter(service.metrics_url, "ray_rawinfer_tokens_total", target=E5, kind="prompt")
        > tokens_before
    )
    assert (
        counter(
            service.metrics_url, "ray_rawinfer_requests_total", route="/v1/inference", status="400"
        )
        >= 1
    )
    assert (
        counter(service.metrics_url, "ray_rawinfer_request_latency_ms_count", route="/v1/inference")
        >= 6
    )
    text = httpx.get(service.metrics_url, timeout=10).text
    assert (
        "ray_serve_" in text
    )  # Serve's own metrics (queues, replicas, latencies) come with the same export
    assert not SECRET.search(text)


def replica_pids(deployment: str) -> list[int]:
    """The deployment's replica processes in this test's own Ray (children of its raylet), not
    in any other Ray on the machine."""
    import psutil
    import ray._private.worker

    raylets = {
        proc.pid
        for name, proc in ray._private.worker._global_node.live_processes()
        if name == "raylet"
    }
    out = subprocess.run(
        ["pgrep", "-f", f"ServeReplica:rawinfer:{deployment}$"], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split() if psutil.Process(int(p)).ppid() in raylets]


def test_readyz_reports_a_down_deployment_and_its_recovery(service):
    with service.client() as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (
            body["ready"]
            and "whisper_tiny_en" in body["deployments"]
            and "ingress" in body["deployments"]
        )
        pids = replica_pids("whisper_tiny_en")
        assert pids, "no whisper_tiny_en replica process found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline, seen_down = time.monotonic() + 30, False
        while time.monotonic() < deadline and not seen_down:
            r = c.get("/readyz")
            seen_down = r.status_code == 503 and "whisper_tiny_en" in r.json()["not_ready"]
            time.sleep(0.2)
        assert seen_down, "readyz never reported the killed deployment"
        deadline = time.monotonic() + 180
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the deployment did not recover"
            time.sleep(1)
        r = c.post(
            "/v1/inference",
            headers=service.headers(),
            json={
                "provider": "local",
                "model": "whisper-tiny.en",
                "inputs": {"audio_base64": "AAAA"},
            },
        )
        assert r.status_code == 400  # served again (undecodable audio is the replica's answer)


def test_replicas_run_at_niceness_zero(service):
    """Ray starts workers at niceness 15 by default; a serving node runs them at 0
    (rawinfer.cli.launch.SERVING_ENV, scripts/run.sh, the KubeRay manifest)."""
    import psutil

    pids = replica_pids("text_embedding") + replica_pids("ingress")
    assert len(pids) >= 2
    assert {pid: psutil.Process(pid).nice() for pid in pids} == {pid: 0 for pid in pids}


def test_requests_on_a_replica_that_dies_are_answered_by_its_replacement(service):
    """A text-embedding replica process killed while requests are in flight on it: the ingress
    sends them again, Serve's replacement answers, and the client sees only 200s."""
    import concurrent.futures as cf

    before = counter(
        service.metrics_url, "ray_rawinfer_backend_retries_total", backend="text_embedding"
    )
    pids = replica_pids("text_embedding")
    assert pids, "no text_embedding replica process found"

    def one(n):
        # texts of their own per request: a repeated request would be a cache hit, not work
        tag = uuid.uuid4().hex[:8]
        texts = [f"sentence {i} ({tag}) of a batch long enough to keep it busy" for i in range(n)]
        with service.client() as c:
            return c.post(
                "/v1/inference",
                json={"inference_name": E5, "inputs": {"texts": texts}},
                headers=service.headers(),
                timeout=120,
            )

    # Sized to this machine: six requests that together keep the replica busy about 4 s, so the
    # kill lands while they are in flight on a fast CI machine as on 2 slow cores.
    assert one(256).status_code == 200  # warm: the rate below is the replica's, not a cold start
    t0 = time.perf_counter()
    assert one(256).status_code == 200
    rate = 256 / (time.perf_counter() - t0)
    n = max(256, min(2048, int(4 * rate / 6)))
    with cf.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(one, n) for _ in range(6)]
        time.sleep(0.5)  # the requests reach the replica and it is encoding
        assert not any(f.done() for f in futures), (
            "the requests finished before the kill: nothing was tested"
        )
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        answers = [f.result() for f in futures]
    assert [r.status_code for r in answers] == [200] * 6, [r.text[:200] for r in answers]
    assert all(len(r.json()["data"]["embeddings"]) == n for r in answers)
    deadline = time.monotonic() + 60  # Ray exports every few seconds
    while (
        counter(service.metrics_url, "ray_rawinfer_backend_retries_total", backend="text_embedding")
        <= before
    ):
        assert time.monotonic() < deadline, (
            "no request was re-sent: the kill did not hit one in flight"
        )
        time.sleep(2)
