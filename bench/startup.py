"""Start-up and footprint: the time from `make run` (after install) to the first 200 of every
configured deployment, and the resident memory of all service processes at idle and under load.
Targets (issue 10): <= 60 s; <= 8 GiB.

Run on a machine with nothing else on Ray: `.venv/bin/python bench/startup.py [--keep]` (it runs
`make stop`, then `make run`, then `make stop` unless --keep).
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
from common import REPO, machine

URL = "http://127.0.0.1:8000"
WAV = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
)
PROBES = {  # one real request per configured local deployment
    "text_embedding": {
        "inference_name": "multilingual_e5_large_instruct_v1",
        "inputs": {"text": "hello"},
    },
    "chat": {
        "provider": "local",
        "model": "smollm2-135m-instruct",
        "inputs": {"prompts": ["hi"]},
        "parameters": {"max_tokens": 4, "temperature": 0},
    },
    "whisper_base": {"provider": "local", "model": "whisper-base", "inputs": {"audio_base64": ""}},
    "whisper_tiny_en": {
        "provider": "local",
        "model": "whisper-tiny.en",
        "inputs": {"audio_base64": ""},
    },
    # the example plugins (plugins/) and the semantic cache's deployment (a cached chat request)
    "keyword_extractor_1_0_0": {
        "inference_name": "keyword_extractor_1_0_0",
        "inputs": {"text": "Ray Serve batches requests."},
    },
    "keyword_extractor_1_1_0": {
        "inference_name": "keyword_extractor_1_1_0",
        "inputs": {"text": "Ray Serve batches requests."},
    },
    "zero_shot_classifier_1_0_0": {
        "inference_name": "zero_shot_classifier_1_0_0",
        "inputs": {"text": "He scored a goal."},
        "parameters": {"labels": ["sports", "cooking"]},
    },
    "semantic_cache": {
        "provider": "local",
        "model": "smollm2-135m-instruct",
        "inputs": {"prompts": ["hello"]},
        "parameters": {"max_tokens": 4, "temperature": 0},
        "enable_semantic_cache": True,
    },
}


def service_processes() -> list[tuple[psutil.Process, str]]:
    """Every Ray/Serve process (raylet, GCS, workers, replicas, engines), with its command line."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(
            k in cmd
            for k in (
                "ray::",
                "raylet",
                "gcs_server",
                "ray/_private",
                "ray/dashboard",
                "VLLM",
                "serve run",
            )
        ):
            out.append((p, cmd))
    return out


def service_rss() -> int:
    """Bytes resident in every service process."""
    total = 0
    for p, _ in service_processes():
        try:
            total += p.memory_info().rss
        except psutil.Error:  # gone since it was listed
            pass
    return total


def service_cpu() -> list[tuple[float, str]]:
    """CPU seconds each service process has used so far (at the end of start-up: what starting
    cost)."""
    out = []
    for p, cmd in service_processes():
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out.append(
            (
                t.user + t.system,
                cmd.split()[0][-60:] if cmd.startswith("ray::") or "VLLM" in cmd else cmd[:60],
            )
        )
    return sorted(out, reverse=True)


def main() -> None:
    audio = base64.b64encode(WAV.read_bytes()).decode()
    for name in ("whisper_base", "whisper_tiny_en"):
        PROBES[name]["inputs"]["audio_base64"] = audio
    print(f"# bench/startup.py on {machine()}")
    subprocess.run(["make", "stop"], cwd=REPO, capture_output=True)
    subprocess.run(
        ["make", "setup"], cwd=REPO, check=True, capture_output=True
    )  # install is not timed
    t0 = time.perf_counter()
    run = subprocess.Popen(
        ["make", "run"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    key = None
    ready: dict[str, float] = {}
    keyfile = REPO / ".rawinfer" / "dev-key"
    while key is None and time.perf_counter() - t0 < 600:
        if keyfile.exists() and keyfile.read_text().strip():
            key = keyfile.read_text().strip()
        time.sleep(0.2)
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": "dev"}

    def probe(name: str) -> None:
        """One probe per deployment, all at once: a deployment still loading holds its own probe
        only."""
        while time.perf_counter() - t0 < 600:
            try:
                if (
                    httpx.post(
                        URL + "/v1/inference", json=PROBES[name], headers=headers, timeout=60
                    ).status_code
                    == 200
                ):
                    ready[name] = time.perf_counter() - t0
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

    try:
        with cf.ThreadPoolExecutor(len(PROBES)) as pool:
            list(pool.map(probe, PROBES))
        run.wait(timeout=600)
        make_run_s = time.perf_counter() - t0
        cpu = service_cpu()
        idle = service_rss()
        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                samples.append(service_rss())
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        with cf.ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: httpx.post(
                        URL + "/v1/inference",
                        json=list(PROBES.values())[i % len(PROBES)],
                        headers=headers,
                        timeout=300,
                    ),
                    range(6 * len(PROBES)),
                )
            )
        stop.set()
        sampler.join()
    finally:
        if not KEEP:
            subprocess.run(["make", "stop"], cwd=REPO, capture_output=True)
    for name in PROBES:
        print(f"first 200 from {name:16s} {ready.get(name, float('nan')):6.1f} s after `make run`")
    print(
        f"all deployments answering: {max(ready.values(), default=float('nan')):.1f} s  (target <= "
        f"60 s); "
        f"`make run` returned after {make_run_s:.1f} s"
    )
    print(
        f"CPU seconds spent by service processes while starting: {sum(c for c, _ in cpu):.1f} (2 "
        f"cores), most:"
    )
    for c, name in cpu[:14]:
        print(f"  {c:6.1f} s  {name}")
    gib = 1024**3
    print(
        f"resident memory, idle: {idle / gib:.2f} GiB; under load (peak): "
        f"{max(samples, default=0) / gib:.2f} GiB  (target <= 8 GiB)"
    )


if __name__ == "__main__":
    import sys

    KEEP = (
        "--keep" in sys.argv
    )  # leave the service running (e.g. for scripts/tenancy-walkthrough.sh)
    main()
