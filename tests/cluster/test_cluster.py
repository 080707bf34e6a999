"""The service on a multi-node Ray cluster on this machine (bench/cluster.py, in a process of its
own: this session's Ray is another cluster): placement by node kind, a model node lost under a
mixed load, then a model node returning while the other is lost. About a minute and a half."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_placement_node_loss_and_return():
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cluster.py"), "--rate", "5", "--seconds", "45"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    head, model = report["nodes"]["head"], set(report["nodes"]["model"])
    # by node kind: the ingress on the CPU node, every model deployment (plugins too) on model nodes
    placed = report["placement"]
    assert placed["ingress"] == [head]
    assert len(placed) >= 3, placed  # text_embedding and the example plugins
    for name, nodes in placed.items():
        if name != "ingress":
            assert set(nodes) <= model, (name, placed)
    (first,) = placed["text_embedding"]
    # the node is gone: Serve placed a replacement on the surviving model node, unaided
    (second,) = report["placement_after_loss"]["text_embedding"]
    assert second in model - {first}
    assert report["replacement_running_s"] is not None
    # a model node returns and the other goes: the returned node is used
    back = report["returned_node"]
    assert report["placement_after_return"]["text_embedding"] == [back]
    for name, nodes in report["placement_after_return"].items():
        assert nodes == ([head] if name == "ingress" else [back]), (name, nodes)
    assert report["on_returned_node_s"] is not None
    # meanwhile requests succeed or fail fast with a contract status, none past its deadline (60 s)
    assert set(report["statuses"]) <= {200, 503}, report
    assert report["failed"] <= 0.01 * report["requests"], report
    assert report["longest_s"] < 60, report
    # recovered unaided: requests sent after each event answered (the 30 s recovery target is
    # the benchmark's, bench/RESULTS.md, not a timed test's)
    assert report["latency"]["after_loss"]["p50_ms"] is not None, report
    assert report["latency"]["after_return"]["p50_ms"] is not None, report
