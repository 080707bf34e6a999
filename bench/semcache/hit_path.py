"""The cache's hit path through the real service (the embedded default's Serve path), side by
side in one run: `GET /healthz` (the proxy and ingress alone), uncached greedy chat requests,
exact-tier hits (identical repeats), and requests that miss both tiers (new prompts with the cache
on). Targets (issue 19): exact p50 <= 10 ms; a miss pays at most 15 ms over an uncached request.

Run: `.venv/bin/python bench/semcache/hit_path.py [--n 40]`
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import machine, pct, start_service, stop_service  # noqa: E402

LOCAL = {"provider": "local", "model": "smollm2-135m-instruct"}


def timed(http: httpx.Client, method: str, path: str, **kw) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    r = http.request(method, path, **kw)
    return (time.perf_counter() - t0) * 1000, r


def body(prompt: str, cache: bool) -> dict:
    return {
        **LOCAL,
        "inputs": {"prompts": [prompt]},
        "parameters": {"temperature": 0, "max_tokens": 4},
        "enable_semantic_cache": cache,
        # δ = 0: the semantic tier never serves, so a new prompt misses both tiers (similar
        # prompts with equal answers would be served after a few explorations); exact hits are
        # exact whatever δ
        **({"semantic_cache_max_error_rate": 0.0} if cache else {}),
    }


def line(name: str, ms: list[float]) -> str:
    return f"{name:<34} p50 {statistics.median(ms):8.2f} ms  p99 {pct(ms, 99):8.2f} ms  n={len(ms)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40)
    a = p.parse_args()
    url, headers = start_service(num_cpus=2)
    print(machine())
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            for i in range(3):  # warm every path once
                timed(http, "POST", "/v1/inference", json=body(f"warm {i}", True), headers=headers)
            health, plain, miss, exact = [], [], [], []
            for i in range(a.n):
                health.append(timed(http, "GET", "/healthz")[0])
                ms, r = timed(
                    http, "POST", "/v1/inference", json=body(f"Plain {i}?", False), headers=headers
                )
                assert r.status_code == 200 and not r.json()["cache_hit"], r.text
                plain.append(ms)
                ms, r = timed(
                    http, "POST", "/v1/inference", json=body(f"Novel {i}?", True), headers=headers
                )
                assert r.status_code == 200 and not r.json()["cache_hit"], r.text
                miss.append(ms)
            time.sleep(1)  # the misses' exact entries are written off the request path
            for i in range(a.n):
                ms, r = timed(
                    http, "POST", "/v1/inference", json=body(f"Novel {i}?", True), headers=headers
                )
                assert r.status_code == 200 and r.json()["cache_hit"], r.text
                exact.append(ms)
        print(line("GET /healthz", health))
        print(line("chat, cache off", plain))
        print(line("chat, cache on, miss (both tiers)", miss))
        print(line("chat, exact-tier hit", exact))
        extra = statistics.median(miss) - statistics.median(plain)
        print(
            f"exact hit p50 {statistics.median(exact):.1f} ms (target <= 10: "
            f"{'met' if statistics.median(exact) <= 10 else 'missed'}); miss pays {extra:+.1f} ms "
            f"over uncached (target <= 15: {'met' if extra <= 15 else 'missed'})"
        )
    finally:
        stop_service()


if __name__ == "__main__":
    main()
