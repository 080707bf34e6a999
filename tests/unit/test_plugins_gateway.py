"""Plugins at the ingress (validation before the replica) and the plugins CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from plugin_fixtures import PLUGINS
from test_plugins import (
    EXAMPLES,
    runner,
    test_plugins,  # noqa: F401  (fixtures)
)

from rawinfer.contract import InferenceRequest, Task
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT, Settings
from rawinfer.plugins.discovery import (
    discover,
    merge_into_catalog,
)
from rawinfer.tenancy.store import Store
from router.gateway import Gateway


@pytest.fixture
def gateway(tmp_path, test_plugins):
    """The real gateway over the merged catalog; the plugin backend is a PluginRunner called
    in-process (what the Serve deployment does), counting calls."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    store.create_schema()
    catalog = merge_into_catalog(
        load_catalog(REPO_ROOT / "catalog.yaml"), discover([test_plugins], entry_points=False)
    )
    r = runner(test_plugins / "echo_raiser", tmp_path)
    calls = []

    async def echo(payload):
        calls.append(payload)
        (res,) = await r.run([payload])
        return {"data": res, "model": "echo_raiser@1.0.0", "tokens_used": None}

    gw = Gateway(Settings(database_url=url), catalog, {"echo_raiser_1_0_0": echo}, store, {})
    ns = store.create_namespace("team")
    key, _ = store.create_key("k", namespaces=["team"])
    return gw, key, ns, calls


def test_plugin_inputs_and_parameters_are_validated_at_the_ingress(gateway):
    gw, key, ns, calls = gateway

    def prepare(**body):
        return asyncio.run(
            gw.prepare(InferenceRequest(inference_name="echo_raiser_1_0_0", **body), key, ns)
        )

    for body, field in (
        ({"inputs": {}}, "inputs.text"),
        ({"inputs": {"text": 3}}, "inputs.text"),
        ({"inputs": {"text": "x", "extra": 1}}, "inputs.extra"),
        ({"inputs": {"text": "x"}, "parameters": {"upper": "maybe"}}, "parameters.upper"),
        ({"inputs": {"text": "x"}, "parameters": {"lower": True}}, "parameters.lower"),
    ):
        with pytest.raises(InvalidRequest) as e:
            prepare(**body)
        assert [x["field"] for x in e.value.details["errors"]] == [field], body
    assert calls == []  # nothing reached the plugin
    p = prepare(inputs={"text": "hi"}, parameters={"upper": True})
    assert p.task is Task.plugin and p.payload == {
        "inputs": {"text": "hi"},
        "parameters": {"upper": True},
    }
    out = asyncio.run(gw.execute(p))
    assert (
        out["data"] == {"text": "HI"}
        and out["model"] == "echo_raiser@1.0.0"
        and out["provider"] == "local"
    )


def test_listing_shows_plugins_and_failures(gateway):
    gw, *_ = gateway
    entries = gw.listing()
    (echo,) = [e for e in entries if e["inference_name"] == "echo_raiser_1_0_0"]
    assert echo["status"] == "available" and echo["tasks"] == ["plugin"]
    assert echo["plugin"]["version"] == "1.0.0" and echo["feature_uris"] == [
        "mixpeek://echo_raiser@1.0.0/text"
    ]
    failed = {
        e["plugin"]["source"].split("/")[-1]: e
        for e in entries
        if e["status"] == "unavailable" and e.get("error")
    }
    assert "ModuleNotFoundError" in failed["broken_import"]["error"]
    assert not any(
        e["plugin"]["source"].startswith("/") for e in failed.values()
    )  # no server paths


# ------------------------------------------------------------------------------ CLI


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rawinfer.cli", "plugins", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        env=env,
    )


def test_scaffold_then_check_passes(tmp_path):
    r = cli("new", "word_vectors", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "word_vectors" / "plugin.py").is_file()
    r = cli("check", str(tmp_path / "word_vectors"))
    assert r.returncode == 0, r.stderr
    assert (
        "ok word_vectors@1.0.0" in r.stdout and "mixpeek://word_vectors@1.0.0/embedding" in r.stdout
    )
    assert cli("new", "word_vectors", "--dir", str(tmp_path)).returncode == 1  # exists
    bad = cli("new", "Word-Vectors", "--dir", str(tmp_path))
    assert bad.returncode == 1 and "snake_case" in bad.stderr


@pytest.mark.parametrize(
    "name, message",
    [
        ("broken_import", "ModuleNotFoundError"),
        ("bad_manifest", "invalid manifest: version"),
        ("load_fails", "load() failed: RuntimeError: weights file missing"),
    ],
)
def test_check_fails_with_a_clear_message(test_plugins, name, message):
    r = cli("check", str(test_plugins / name))
    last = r.stderr.strip().splitlines()[
        -1
    ]  # above it, a failing load() logs the author's traceback
    assert r.returncode == 1 and last.startswith("error: ") and message in last, r.stderr


def test_check_runs_the_example_and_catches_garbage(tmp_path):
    folder = tmp_path / "garbage"
    folder.mkdir()
    (folder / "plugin.py").write_text(
        PLUGINS["garbage_outputs"].replace(
            'example={"mode": "ok"}', 'example={"mode": "wrong_type"}'
        )
    )
    r = cli("check", str(folder / "plugin.py"))
    assert (
        r.returncode == 1
        and "the example failed: plugin garbage_outputs@1.0.0 returned outputs" in r.stderr
    )


def test_list_shows_found_plugins_and_errors(test_plugins):
    import os

    env = {**os.environ, "RAWINFER_PLUGINS_DIRS": json.dumps([str(EXAMPLES), str(test_plugins)])}
    r = cli("list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    ok = {x["inference_name"] for x in rows if x["status"] == "ok"}
    assert {
        "keyword_extractor_1_0_0",
        "keyword_extractor_1_1_0",
        "zero_shot_classifier_1_0_0",
        "my_text_embedder_1_0_0",
        "load_fails_1_0_0",
    } <= ok
    assert sum(x["status"] == "error" for x in rows) == 2
