"""Autoscaling under a load step (bench/autoscale.py, in a process of its own): the embedding
deployment and the ingress ask for more replicas and come back to one, the scale-to-zero OpenAI
proxy wakes on a request, the shared limiter stays exact and the cache never crosses namespaces
while replicas come and go. About two and a half minutes; the timings are the benchmark's
(bench/RESULTS.md), not this test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_load_step_scales_up_and_back_limiter_and_cache_hold():
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "autoscale.py"),
            *("--clients", "16", "--step-s", "30", "--push-s", "1", "--limit", "25"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    # the step made the autoscaler ask for more replicas of both, and both came back to one
    assert report["peak_asked"]["text_embedding"] > 1, report["replicas"]
    assert report["peak_asked"]["ingress"] == 2, report["replicas"]
    for name in ("text_embedding", "ingress"):
        assert report["asked_up_s"][name] is not None, (name, report["replicas"])
        assert report["scaled_down_s"][name] is not None, (name, report["replicas"])
    last = report["replicas"][-1][1]
    assert last["text_embedding"] == 1 and last["ingress"] == 1, last
    # scale to zero: the proxy had no replica, and the request that woke it was answered
    for wake in report["wake"]:
        assert wake["zero_after_s"] is not None, wake
        assert wake["status"] == 200 and wake["warm_status"] == 200, wake
    # every embedding request answered or refused with a contract status while replicas changed
    assert set(report["embed"]["statuses"]) <= {200, 503}, report["embed"]
    assert 200 in report["embed"]["statuses"], report["embed"]
    # the shared limiter is exact across ingress replicas: the key's minute allows 25, no more
    lim = report["limited"]
    assert lim["sent"] > lim["limit"], lim
    assert lim["ok"] == lim["limit"] and lim["other"] == [], lim
    assert lim["refused"] == lim["sent"] - lim["limit"], lim
    # the exact cache serves a namespace its own entry and never another namespace's
    cache = report["cache"]
    assert cache["a_asked"] > 0 and cache["a_hits"] > 0, cache
    assert cache["b_hits"] == 0 and cache.get("first_hits", 0) == 0, cache
