"""Resolution is a pure function: exhaustive unit tests, no Ray, no I/O besides the YAML."""

from __future__ import annotations

import pytest

from rawinfer.contract import Task
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.catalog import Catalog, load_catalog
from rawinfer.core.settings import REPO_ROOT
from router.resolution import Addressing, CatalogIndex, parse_feature_uri, resolve

CATALOG = Catalog.model_validate(
    {
        "backends": {
            "emb": {
                "engine": "text_embedding",
                "served_model": "all-minilm-l6-v2",
                "model_path": "/m",
                "tasks": ["text_embedding"],
            },
            "clip": {
                "engine": "clip",
                "served_model": "clip-vit-l-14",
                "model_path": None,
                "tasks": ["multimodal_embedding"],
            },
            "kw1": {
                "engine": "plugin",
                "served_model": "keywords@1.0.0",
                "model_path": "/p",
                "tasks": ["text_embedding"],
            },
            "kw2": {
                "engine": "plugin",
                "served_model": "keywords@2.1.3",
                "model_path": "/p",
                "tasks": ["text_embedding"],
            },
            "whisper": {
                "engine": "transcription",
                "served_model": "whisper-base",
                "model_path": "/w",
                "tasks": ["transcription"],
            },
        },
        "targets": [
            {"provider": "local", "model": "all-minilm-l6-v2", "backend": "emb"},
            {
                "inference_name": "multilingual_e5_large_instruct_v1",
                "backend": "emb",
                "feature_uris": ["mixpeek://text_extractor@v1/multilingual_e5_large_instruct_v1"],
            },
            {
                "inference_name": "laion_clip_vit_l_14_v1",
                "backend": "clip",
                "feature_uris": [
                    "mixpeek://clip_vit_l_14@v1/image_embedding",
                    "mixpeek://clip_vit_l_14@v1/text_embedding",
                ],
            },
            {"inference_name": "keywords_1_0_0", "backend": "kw1"},
            {"inference_name": "keywords_2_1_3", "backend": "kw2"},
            {"provider": "openai", "model": "whisper-1", "backend": "whisper"},
        ],
    }
)
INDEX = CatalogIndex(CATALOG)


def r(**kw):
    return resolve(Addressing(**kw), INDEX)


def test_provider_model():
    t = r(provider="local", model="all-minilm-l6-v2")
    assert (t.backend, t.provider, t.served_model, t.address) == (
        "emb",
        "local",
        "all-minilm-l6-v2",
        "local/all-minilm-l6-v2",
    )
    assert t.tasks == frozenset({Task.text_embedding}) and t.configured


def test_cloud_pair_routed_to_local_reports_local():
    t = r(provider="openai", model="whisper-1")
    assert t.backend == "whisper" and t.provider == "local" and t.served_model == "whisper-base"


def test_inference_name_and_builtin_uri_resolve_to_the_same_backend():
    a = r(inference_name="multilingual_e5_large_instruct_v1")
    b = r(feature_uri="mixpeek://text_extractor@v1/multilingual_e5_large_instruct_v1")
    assert a.backend == b.backend == "emb"
    assert b.address == "mixpeek://text_extractor@v1/multilingual_e5_large_instruct_v1"


def test_builtin_uri_with_other_output_segment():
    assert r(feature_uri="mixpeek://clip_vit_l_14@v1/image_embedding").backend == "clip"
    assert not r(inference_name="laion_clip_vit_l_14_v1").configured


@pytest.mark.parametrize(
    "uri,backend",
    [
        ("mixpeek://keywords@1.0.0/embedding", "kw1"),
        ("mixpeek://keywords@2.1.3/anything", "kw2"),
        ("mixpeek://keywords@v2.1.3/embedding", "kw2"),
    ],
)
def test_plugin_uri_rule(uri, backend):
    assert r(feature_uri=uri).backend == backend


def test_plugin_outputs_are_checked_when_declared():
    index = CatalogIndex(CATALOG)
    index.outputs["keywords_1_0_0"] = frozenset({"keywords"})
    assert (
        resolve(Addressing(feature_uri="mixpeek://keywords@1.0.0/keywords"), index).backend == "kw1"
    )
    with pytest.raises(InvalidRequest) as e:
        resolve(Addressing(feature_uri="mixpeek://keywords@1.0.0/embedding"), index)
    assert "outputs keywords" in e.value.message


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "mixpeek://",
        "mixpeek://name",
        "mixpeek://name@1.0.0",
        "mixpeek://name@1.0.0/",
        "mixpeek://@1.0.0/out",
        "mixpeek://name@/out",
        "http://name@1.0.0/out",
        "mixpeek:/name@1.0.0/out",
        "mixpeek://na me@1.0.0/out",
        "mixpeek://name@1.0.0/out/extra",
        "mixpeek://name@1.0.0/out?x=1",
        "MIXPEEK://name@1.0.0/out",
        "mixpeek://name@@1.0.0/out",
        "mixpeek://name@1.0.0/o\nut",
        " mixpeek://name@1.0.0/out",
    ],
)
def test_malformed_uris(uri):
    with pytest.raises(InvalidRequest) as e:
        r(feature_uri=uri)
    assert (
        "malformed" in e.value.message and "mixpeek://{name}@{version}/{output}" in e.value.message
    )


@pytest.mark.parametrize(
    "uri,fragment",
    [
        ("mixpeek://keywords@3.0.0/embedding", "plugin inference name keywords_3_0_0"),
        ("mixpeek://keywords@1.0/embedding", "not MAJOR.MINOR.PATCH"),
        ("mixpeek://text_extractor@v2/multilingual_e5_large_instruct_v1", "built-in feature URI"),
        ("mixpeek://keywords@01.0.0/embedding", "not MAJOR.MINOR.PATCH"),
    ],
)
def test_uris_that_resolve_to_nothing_say_what_was_tried(uri, fragment):
    with pytest.raises(InvalidRequest) as e:
        r(feature_uri=uri)
    assert "resolves to nothing" in e.value.message and fragment in e.value.message
    assert e.value.details["known_feature_uris"]


def test_parse_feature_uri():
    assert parse_feature_uri("mixpeek://my_text_embedder@1.0.0/embedding") == (
        "my_text_embedder",
        "1.0.0",
        "embedding",
    )


@pytest.mark.parametrize(
    "kw,fragment,known",
    [
        ({"inference_name": "nope"}, "unknown inference_name", "known_inference_names"),
        ({"provider": "acme", "model": "x"}, "unknown provider", "known_providers"),
        (
            {"provider": "openai", "model": "gpt-5"},
            "unknown model 'gpt-5' for provider 'openai'",
            "known_models",
        ),
        ({"provider": "local"}, "give provider and model", None),
        ({}, "give provider and model", None),
    ],
)
def test_unknown_names(kw, fragment, known):
    with pytest.raises(InvalidRequest) as e:
        r(**kw)
    assert fragment in e.value.message
    if known:
        assert e.value.details[known]


def test_known_lists_are_bounded():
    many = Catalog.model_validate(
        {
            "backends": {
                "b": {"engine": "e", "served_model": "m", "model_path": "/", "tasks": ["chat"]}
            },
            "targets": [{"inference_name": f"n{i}", "backend": "b"} for i in range(100)],
        }
    )
    with pytest.raises(InvalidRequest) as e:
        resolve(Addressing(inference_name="zzz"), CatalogIndex(many))
    assert len(e.value.details["known_inference_names"]) == 26


@pytest.mark.parametrize(
    "bad",
    [
        {"targets": [{"inference_name": "x", "backend": "missing"}]},
        {"targets": [{"provider": "local", "backend": "b"}]},
        {"targets": [{"backend": "b"}]},
        {"targets": [{"provider": "nope", "model": "m", "backend": "b"}]},
        {
            "targets": [
                {"inference_name": "x", "backend": "b"},
                {"inference_name": "x", "backend": "b"},
            ]
        },
        {
            "targets": [
                {
                    "provider": "local",
                    "model": "m",
                    "backend": "b",
                    "feature_uris": ["mixpeek://a@v1/b"],
                }
            ]
        },
    ],
)
def test_inconsistent_catalogs_are_refused(bad):
    with pytest.raises(ValueError):
        Catalog.model_validate(
            {
                "backends": {
                    "b": {"engine": "e", "served_model": "m", "model_path": "/", "tasks": ["chat"]}
                },
                **bad,
            }
        )


def test_the_shipped_catalog_loads_and_resolves_the_seed_names():
    index = CatalogIndex(load_catalog(REPO_ROOT / "catalog.yaml"))
    assert resolve(
        Addressing(inference_name="multilingual_e5_large_instruct_v1"), index
    ).served_model
    assert resolve(
        Addressing(feature_uri="mixpeek://text_extractor@v1/multilingual_e5_large_instruct_v1"),
        index,
    )
