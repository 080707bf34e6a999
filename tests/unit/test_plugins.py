"""Plugins without Ray: the manifest's rules, discovery (folders, versions side by side, entry
points, failures captured), the catalog merge and resolution, the runner's isolation and output
validation, the gateway's validation at the ingress, and the CLI (new, check, list)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from plugin_fixtures import PLUGINS, write_test_plugins
from pydantic import BaseModel, ValidationError

from rawinfer.contract import Task
from rawinfer.contract.errors import InvalidRequest, PluginFailed, Unavailable
from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT
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
from router.errors import status_of
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


# ---------------------------------------------------------------------gateway (ingress validation)


SLOW = """from __future__ import annotations
import time
from pydantic import BaseModel
from rawinfer.plugins.api import Manifest, Plugin, Resources, check_deadline, time_left
class Slow(Plugin):
    class Inputs(BaseModel):
        steps: int
    class Outputs(BaseModel):
        done: int
        left: float
    manifest = Manifest(name="slow", version="1.0.0", Inputs=Inputs, Outputs=Outputs,
                        outputs=["done"], resources=Resources(num_cpus=0.01), example={"steps": 1})
    calls = 0
    def infer(self, inputs, parameters):
        type(self).calls += 1
        out = []
        for x in inputs:
            for _ in range(x.steps):
                check_deadline()
                time.sleep(0.05)
            out.append({"done": x.steps, "left": min(time_left(), 1e9)})
        return out
"""


def test_a_plugin_sees_its_deadline_and_stops_at_it(tmp_path):
    """`check_deadline()` in a plugin's loop stops it once the request is due (200 steps would
    take 10 s); a request already due when its batch runs is not run at all."""
    from rawinfer.contract.errors import DeadlineExceeded
    from rawinfer.core.deadline import Deadline

    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "plugin.py").write_text(SLOW)
    r = runner(tmp_path / "slow", tmp_path / "cache")
    assert asyncio.run(r.run([{"inputs": {"steps": 2}}])) == [{"done": 2, "left": 1e9}]
    (ok,) = asyncio.run(r.run([{"inputs": {"steps": 1}, "deadline": Deadline(30)}]))
    assert ok["done"] == 1 and 25 < ok["left"] <= 30
    t0 = time.perf_counter()
    (res,) = asyncio.run(r.run([{"inputs": {"steps": 200}, "deadline": Deadline(0.3)}]))
    assert isinstance(res, DeadlineExceeded) and status_of(res)[0] == 504
    assert time.perf_counter() - t0 < 1.5
    calls = type(r.plugin).calls
    (res,) = asyncio.run(r.run([{"inputs": {"steps": 1}, "deadline": Deadline(0)}]))
    assert isinstance(res, DeadlineExceeded) and type(r.plugin).calls == calls  # not run
