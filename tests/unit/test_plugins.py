"""Plugins without Ray: the manifest's rules, discovery (folders, versions side by side, entry
points, failures captured), the catalog merge and resolution, the runner's isolation and output
validation, the gateway's validation at the ingress, and the CLI (new, check, list)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_fixtures import PLUGINS, write_test_plugins
from pydantic import BaseModel, ValidationError

from rawinfer.contract import InferenceRequest, Task
from rawinfer.contract.errors import InvalidRequest, PluginFailed, Unavailable
from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT, Settings
from rawinfer.plugins.api import Manifest, Resources, feature_uri, inference_name
from rawinfer.plugins.discovery import (
    deployment_options,
    discover,
    from_folder,
    load_reference,
    merge_into_catalog,
    scan_dir,
)
from rawinfer.plugins.runner import PluginRunner
from rawinfer.tenancy.store import Store
from router.errors import status_of
from router.gateway import Gateway
from router.resolution import Addressing, CatalogIndex, resolve

EXAMPLES = REPO_ROOT / "examples" / "plugins"


class In(BaseModel):
    text: str


class Out(BaseModel):
    label: str


def manifest(**kw) -> Manifest:
    base = dict(
        name="my_plugin",
        version="1.2.3",
        Inputs=In,
        Outputs=Out,
        outputs=["label"],
        example={"text": "x"},
    )
    return Manifest(**(base | kw))


@pytest.fixture(scope="module")
def test_plugins(tmp_path_factory) -> Path:
    return write_test_plugins(tmp_path_factory.mktemp("plugins") / "plugins")


# ------------------------------------------------------------------------------ manifest


def test_names_and_feature_uris():
    m = manifest()
    assert m.inference_name == "my_plugin_1_2_3" == inference_name("my_plugin", "1.2.3")
    assert (
        m.feature_uris
        == ["mixpeek://my_plugin@1.2.3/label"]
        == [feature_uri("my_plugin", "1.2.3", "label")]
    )
    assert m.resources == Resources() and m.resources.num_cpus <= 0.1


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"name": "MyPlugin"}, "snake_case"),
        ({"name": "my__plugin"}, "snake_case"),
        ({"version": "1.0"}, "MAJOR.MINOR.PATCH"),
        ({"version": "v1.0.0"}, "MAJOR.MINOR.PATCH"),
        ({"version": "01.0.0"}, "MAJOR.MINOR.PATCH"),
        ({"outputs": ["score"]}, "not fields of Outputs"),
        ({"outputs": []}, "at least 1"),
        ({"example": {"txt": "x"}}, "example does not validate"),
        ({"Inputs": dict}, "BaseModel"),
        ({"resources": {"num_cpus": -1}}, "greater than or equal"),
        ({"batch": {"max_batch_size": 0}}, "greater than or equal"),
    ],
)
def test_invalid_manifests_say_what_is_wrong(kw, message):
    with pytest.raises(ValidationError, match=message):
        manifest(**kw)


def test_unknown_input_and_parameter_keys_are_refused_even_if_the_model_allows_them():
    m = manifest()
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        m.Inputs.model_validate({"text": "x", "typo": 1})
    assert isinstance(m.Inputs.model_validate({"text": "x"}), In)  # still the author's class
    with pytest.raises(ValidationError):
        m.Parameters.model_validate({"anything": 1})  # no Parameters declared: none accepted


# ------------------------------------------------------------------------------ discovery


def test_examples_are_found_with_two_versions_side_by_side():
    found = {d.manifest.inference_name: d for d in scan_dir(EXAMPLES)}
    assert set(found) == {
        "keyword_extractor_1_0_0",
        "keyword_extractor_1_1_0",
        "zero_shot_classifier_1_0_0",
    }
    old, new = found["keyword_extractor_1_0_0"], found["keyword_extractor_1_1_0"]
    assert old.cls is not new.cls and old.cls.__module__ != new.cls.__module__  # imported apart
    assert (
        "diversity" in new.manifest.Parameters.model_fields
        and "diversity" not in old.manifest.Parameters.model_fields
    )
    assert (
        load_reference(old.ref) is old.cls
    )  # the ref imports the same class again (cached module)


def test_failures_are_captured_not_raised(test_plugins):
    found = {Path(d.source).name: d for d in scan_dir(test_plugins)}
    assert (
        "ModuleNotFoundError" in found["broken_import"].error
        and found["broken_import"].manifest is None
    )
    assert "invalid manifest: version" in found["bad_manifest"].error
    assert found["load_fails"].error is None  # importable: its load() fails later, in the replica
    assert found["my_text_embedder"].manifest.feature_uris == [
        "mixpeek://my_text_embedder@1.0.0/embedding"
    ]


def test_a_folder_without_a_plugin_class_and_a_duplicate_version_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "plugin.py").write_text("x = 1\n")
    for copy in ("a", "b"):
        (tmp_path / copy).mkdir()
        (tmp_path / copy / "plugin.py").write_text(PLUGINS["echo_raiser"])
    found = {Path(d.source).name: d for d in discover([tmp_path], entry_points=False)}
    assert "defines no Plugin subclass" in found["empty"].error
    assert found["a"].error is None and "echo_raiser@1.0.0 is defined twice" in found["b"].error


def test_entry_points_are_discovered(tmp_path, monkeypatch):
    pkg = tmp_path / "ep_demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGINS["echo_raiser"].replace('"echo_raiser"', '"ep_echo"'))
    dist = tmp_path / "ep_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[rawinfer.plugins]\nep_echo = ep_demo_plugin:EchoRaiser\n"
        "ep_broken = ep_demo_plugin:Missing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = {d.source.split()[2]: d for d in discover([], entry_points=True) if "ep_" in d.source}
    assert found["ep_echo"].manifest.inference_name == "ep_echo_1_0_0"
    assert found["ep_echo"].ref == "module:ep_demo_plugin#EchoRaiser"
    assert "has no Missing" in found["ep_broken"].error


def test_catalog_merge_and_resolution(test_plugins):
    catalog = merge_into_catalog(
        load_catalog(REPO_ROOT / "catalog.yaml"), discover([EXAMPLES, test_plugins])
    )
    index = CatalogIndex(catalog)
    by_name = resolve(Addressing(inference_name="zero_shot_classifier_1_0_0"), index)
    by_uri = resolve(Addressing(feature_uri="mixpeek://zero_shot_classifier@1.0.0/scores"), index)
    by_pair = resolve(Addressing(provider="local", model="zero_shot_classifier@1.0.0"), index)
    assert by_name.backend == by_uri.backend == by_pair.backend == "zero_shot_classifier_1_0_0"
    assert by_name.engine == "plugin" and by_name.tasks == {Task.plugin}
    assert by_name.served_model == "zero_shot_classifier@1.0.0" and by_name.provider == "local"
    assert (
        resolve(Addressing(feature_uri="mixpeek://keyword_extractor@1.1.0/keywords"), index).backend
        == "keyword_extractor_1_1_0"
    )
    with pytest.raises(InvalidRequest, match="it has outputs keywords, not 'labels'"):
        resolve(Addressing(feature_uri="mixpeek://keyword_extractor@1.0.0/labels"), index)
    with pytest.raises(InvalidRequest, match="plugin inference name keyword_extractor_9_9_9"):
        resolve(Addressing(feature_uri="mixpeek://keyword_extractor@9.9.9/keywords"), index)
    errors = {Path(e["source"]).name: e["error"] for e in catalog.plugin_errors}
    assert set(errors) == {"broken_import", "bad_manifest"}
    spec = catalog.backends["keyword_extractor_1_0_0"]
    assert deployment_options(spec) == {
        "ray_actor_options": {"num_cpus": 0.05, "num_gpus": 0.0},
        "user_config": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
    }


def test_a_plugin_clashing_with_a_catalog_name_is_an_error(tmp_path):
    (tmp_path / "clash").mkdir()
    (tmp_path / "clash" / "plugin.py").write_text(PLUGINS["echo_raiser"])
    catalog = load_catalog(REPO_ROOT / "catalog.yaml").model_dump()
    catalog["targets"].append({"inference_name": "echo_raiser_1_0_0", "backend": "text_embedding"})
    from rawinfer.core.catalog import Catalog

    merged = merge_into_catalog(
        Catalog.model_validate(catalog), discover([tmp_path], entry_points=False)
    )
    assert "already a name in the catalog" in merged.plugin_errors[0]["error"]
    assert "echo_raiser_1_0_0" not in merged.backends


# ------------------------------------------------------------------------------ runner


def runner(folder: Path, cache: Path) -> PluginRunner:
    (d,) = from_folder(folder)
    r = PluginRunner(d.ref, cache_dir=cache, plugin_dir=folder)
    r.load()
    return r


def test_load_failure_is_kept_and_every_call_is_unavailable(test_plugins, tmp_path):
    r = runner(test_plugins / "load_fails", tmp_path)
    assert r.status == {
        "plugin": "load_fails@1.0.0",
        "ready": False,
        "error": "RuntimeError: weights file missing: demo",
    }
    (res,) = asyncio.run(r.run([{"inputs": {"text": "x"}}]))
    assert isinstance(res, Unavailable) and "load_fails@1.0.0 failed to load" in res.message


def test_a_raising_request_fails_alone_in_its_batch(test_plugins, tmp_path):
    r = runner(test_plugins / "echo_raiser", tmp_path)
    batch = [
        {"inputs": {"text": "a"}, "parameters": {}},
        {"inputs": {"text": "boom"}, "parameters": {}},
        {"inputs": {"text": "c"}, "parameters": {"upper": True}},
    ]
    a, boom, c = asyncio.run(r.run(batch))
    assert a == {"text": "a"} and c == {"text": "C"}
    assert isinstance(boom, PluginFailed) and status_of(boom)[0] == 500
    assert "echo_raiser@1.0.0" in boom.message and "secret" not in boom.message


@pytest.mark.parametrize(
    "mode, message",
    [
        ("wrong_type", "outputs.score: Input should be a valid number"),
        ("missing_field", "outputs.score: Field required"),
        ("not_a_dict", "outputs: Input should be a valid dictionary"),
        ("wrong_count", "returned 0 items for a batch of 1"),
    ],
)
def test_garbage_outputs_are_a_500_naming_the_plugin(test_plugins, tmp_path, mode, message):
    r = runner(test_plugins / "garbage_outputs", tmp_path)
    (res,) = asyncio.run(r.run([{"inputs": {"mode": mode}}]))
    assert (
        isinstance(res, PluginFailed)
        and "garbage_outputs@1.0.0" in res.message
        and message in res.message
    )
    (ok,) = asyncio.run(r.run([{"inputs": {"mode": "ok"}}]))
    assert ok == {"score": 0.5}


# ------------------------------------------------------------------------------ gateway (ingress validation)


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
