"""Typed engine options: every backend's catalog `options` validate against its deployment's
options model, an unknown option is refused, and each default is written once (the engine's
signature, or the options model for what only the deployment reads)."""

from __future__ import annotations

import inspect

import pytest
import yaml
from pydantic import ValidationError

from deployments import REGISTRY, options_model
from deployments.base import engine_defaults
from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT
from rawinfer.plugins.discovery import with_plugins

CATALOGS = ["catalog.yaml", "catalog.gpu.yaml"]
BACKENDS = [(path, name) for path in CATALOGS for name in load_catalog(REPO_ROOT / path).backends]
# each engine kind, with one option it takes (to prove the model is the one the deployment uses)
KINDS = {
    "text_embedding": ("local", {"max_texts": 8}),
    "chat": ("local", {"max_model_len": 512}),
    "clip": ("local", {"model_name": "ViT-B-32"}),
    "transcription": ("local", {"compute_type": "float16"}),
    "plugin": ("local", {"plugin_dir": "/x"}),
    "provider": ("openai", {"base_url": "http://127.0.0.1:9"}),
}


@pytest.mark.parametrize("path,name", BACKENDS, ids=lambda x: x)
def test_catalog_options_validate(path, name):
    spec = load_catalog(REPO_ROOT / path).backends[name]
    model = options_model(spec.engine, spec.provider)
    model.model_validate(spec.options)


def test_plugin_backends_options_validate():
    catalog = with_plugins(load_catalog(REPO_ROOT / "catalog.yaml"), ["examples/plugins"])
    plugins = [s for s in catalog.backends.values() if s.engine == "plugin"]
    assert plugins
    for spec in plugins:
        opts = options_model("plugin").model_validate(spec.options)
        assert opts.plugin_tasks and opts.batch.max_batch_size >= 1


@pytest.mark.parametrize("engine", sorted(KINDS))
def test_unknown_option_is_refused(engine):
    provider, good = KINDS[engine]
    model = options_model(engine, provider)
    model.model_validate(good)
    with pytest.raises(ValidationError, match="max_textz"):
        model.model_validate({**good, "max_textz": 8})


def test_every_engine_has_an_options_model():
    assert set(KINDS) == set(REGISTRY)


ENGINES = {
    "text_embedding": ("models.text_embedding", "TextEmbeddingEngine", {"torch_threads": 2}),
    "chat": ("models.chat", "ChatEngine", {"kv_cache_space_gb": 0.5}),
    "transcription": ("models.transcription", "WhisperEngine", {"cpu_threads": 2}),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_defaults_are_the_options_defaults(engine):
    """Options the engine takes default to its signature; the deployment hands them all over."""
    import importlib

    module, cls_name, given = ENGINES[engine]
    cls = getattr(importlib.import_module(module), cls_name)
    defaults = engine_defaults(cls)
    opts = options_model(engine)()
    shared = set(type(opts).model_fields) & set(defaults)
    assert shared and all(getattr(opts, k) == defaults[k] for k in shared)
    dumped = options_model(engine).model_validate(given).model_dump()
    takes = set(inspect.signature(cls.__init__).parameters)
    # what only the deployment reads (engine_args reaches the engine as extra_engine_args)
    assert set(dumped) - takes <= {"engine_args", "prepare_packaged", "max_audio_s"}


def test_the_defaults_that_used_to_be_repeated():
    from deployments.plugin import EMBED_CHUNK
    from models.chat import MAX_PROMPTS
    from models.providers.helpers import MAX_PROMPTS as PROVIDER_PROMPTS

    assert options_model("text_embedding")().max_texts == EMBED_CHUNK == 256
    assert options_model("clip")().max_texts == 256
    assert options_model("chat")().max_prompts == MAX_PROMPTS == PROVIDER_PROMPTS == 64


@pytest.mark.parametrize("path", ["serve_config.yaml", "serve_config.gpu.yaml"])
def test_serve_user_configs_validate(path):
    """`user_config` (Serve's batch settings) over each deployment's typed defaults."""
    import importlib

    batches = {
        "text_embedding": "deployments.text_embedding",
        "clip": "deployments.clip",
    }
    config = yaml.safe_load((REPO_ROOT / path).read_text())
    catalog = load_catalog(REPO_ROOT / ("catalog.gpu.yaml" if "gpu" in path else "catalog.yaml"))
    seen = 0
    for app in config["applications"]:
        for dep in app.get("deployments", []):
            spec = catalog.backends.get(dep["name"])
            if "user_config" not in dep or spec is None or spec.engine not in batches:
                continue
            batch = importlib.import_module(batches[spec.engine]).BATCH
            assert (
                batch.over(dep["user_config"]).max_batch_size
                == dep["user_config"]["max_batch_size"]
            )
            with pytest.raises(ValidationError):
                batch.over({**dep["user_config"], "max_batch": 1})
            seen += 1
    assert seen


def test_limiter_and_semantic_cache_configs(tmp_path):
    from deployments.limiter import LimiterConfig
    from deployments.semantic_cache import SemanticCacheConfig
    from rawinfer.core.settings import Settings

    s = Settings()
    assert LimiterConfig().window_s == s.limits.window_s
    assert LimiterConfig.model_validate({"window_s": 5}).window_s == 5
    with pytest.raises(ValidationError):
        LimiterConfig.model_validate({"window": 5})
    path = tmp_path / "c.npz"
    typed = SemanticCacheConfig.model_validate(
        {"settings": s.semantic_cache.model_dump(mode="json"), "snapshot_path": str(path)}
    )
    assert typed.snapshot_path == path and typed.settings == s.semantic_cache
