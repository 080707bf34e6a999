"""Plugins beside the service: `rawinfer plugins list` reporting the service's status, and the
example plugins' replicas holding no model of their own (real Ray Serve, real HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = "Autoscaled replicas answer the requests a single machine could not keep up with."


@pytest.fixture(scope="module")
def http(service):
    with service.client() as c:
        yield c


def post(http, service, body):
    return http.post("/v1/inference", json=body, headers=service.headers())


def test_cli_list_reports_the_service_status(service):
    env = {
        **os.environ,
        "RAWINFER_PLUGINS_DIRS": json.dumps(
            [str(REPO / "examples" / "plugins"), str(service.catalog_dir / "plugins")]
        ),
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rawinfer.cli",
            "plugins",
            "list",
            "--json",
            "--url",
            service.url,
            "--key",
            service.keys["a"],
            "--namespace",
            "team-a",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    rows = {x.get("inference_name") or x["source"]: x for x in json.loads(r.stdout)}
    assert rows["keyword_extractor_1_0_0"]["service"] == "available"
    assert rows["load_fails_1_0_0"]["service"] == "unavailable"
    assert "weights file missing" in rows["load_fails_1_0_0"]["service_error"]


def test_example_plugins_embed_through_the_service_and_hold_no_model(service, http):
    """context.embed() asks the text-embedding deployment, so the examples' replicas import no
    torch and load no MiniLM of their own (each such copy held ~0.8 GiB)."""
    import psutil

    assert (
        post(
            http, service, {"inference_name": "keyword_extractor_1_0_0", "inputs": {"text": DOC}}
        ).status_code
        == 200
    )
    replicas = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        for name in (
            "keyword_extractor_1_0_0",
            "keyword_extractor_1_1_0",
            "zero_shot_classifier_1_0_0",
        ):
            if f"ServeReplica:rawinfer:{name}" in cmd:
                replicas[name] = proc
    assert set(replicas) == {
        "keyword_extractor_1_0_0",
        "keyword_extractor_1_1_0",
        "zero_shot_classifier_1_0_0",
    }
    for name, proc in replicas.items():
        maps = {m.path for m in proc.memory_maps()}
        assert not any("libtorch" in path for path in maps), f"{name} loaded torch"
        assert proc.memory_info().rss < 600 * 2**20, (
            f"{name} holds {proc.memory_info().rss / 2**20:.0f} MiB"
        )
