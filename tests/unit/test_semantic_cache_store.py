"""The semantic cache's store (isolation, persistence, eviction) and its judges."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from rawinfer.cache.cache import SemanticCache
from rawinfer.cache.judge import EmbeddingJudge, ExactMatchJudge, LLMJudge, make_judge, normalise
from rawinfer.cache.keys import cache_key, combine
from rawinfer.cache.store import SemanticStore
from rawinfer.core.settings import SemanticCacheSettings


def vec(*xs: float) -> list[float]:
    return list(xs)


def test_partitions_and_namespaces_are_isolated():
    store = SemanticStore(100)
    a = store.add("ns1:p", "ns1", "t", vec(1, 0, 0), {"data": "a"})
    store.add("ns2:p", "ns2", "t", vec(1, 0, 0), {"data": "b"})
    entry, sim = store.nearest("ns1:p", vec(1, 0.01, 0))
    assert entry.id == a.id and sim == pytest.approx(0.99995, abs=1e-4)
    assert store.nearest("ns3:p", vec(1, 0, 0)) is None
    assert store.nearest("ns1:p", vec(1, 0, 0, 0)) is None  # another embedding size: nothing shared
    assert store.clear_namespace("ns1") == 1
    assert store.nearest("ns1:p", vec(1, 0, 0)) is None and "ns1:p" not in store.partitions
    assert store.nearest("ns2:p", vec(1, 0, 0))[0].response == {"data": "b"}


def test_keys_separate_every_output_changing_parameter():
    base = {
        "prompts": ["Hi there"],
        "parameters": {
            "temperature": 0,
            "max_tokens": 16,
            "top_p": 1.0,
            "stop": None,
            "seed": None,
            "schema": None,
            "stream": False,
        },
    }
    k = cache_key("ns", "local/m", "chat", base)
    assert k.texts == ("Hi there",)
    assert (
        cache_key(
            "ns", "local/m", "chat", {**base, "parameters": {**base["parameters"], "stream": True}}
        )
        == k
    )
    others = [
        cache_key("ns2", "local/m", "chat", base),
        cache_key("ns", "local/other", "chat", base),
        cache_key("ns", "local/m", "chat", {**base, "system": "Be brief."}),
        cache_key("ns", "local/m", "chat", {**base, "prompts": ["Hi there", "Bye"]}),
    ]
    for name, value in (
        ("max_tokens", 17),
        ("temperature", 0.5),
        ("top_p", 0.9),
        ("stop", ["\n"]),
        ("seed", 3),
        ("schema", {"type": "object"}),
    ):
        others.append(
            cache_key(
                "ns", "local/m", "chat", {**base, "parameters": {**base["parameters"], name: value}}
            )
        )
    assert len({o.partition for o in others} | {k.partition}) == len(others) + 1
    conv = {
        "messages": [
            {"role": "user", "content": "I am Ann."},
            {"role": "assistant", "content": "Hi Ann."},
            {"role": "user", "content": "My name?"},
        ],
        "parameters": base["parameters"],
    }
    other_history = {
        **conv,
        "messages": [{"role": "user", "content": "I am Bob."}, *conv["messages"][1:]],
    }
    assert cache_key("ns", "m", "chat", conv).texts == ("My name?",)
    assert (
        cache_key("ns", "m", "chat", conv).partition
        != cache_key("ns", "m", "chat", other_history).partition
    )
    provider = {
        "task": "vision",
        "model": "gpt-4o",
        "inputs": {"prompts": ["What is it?"], "media": b"img1"},
        "parameters": base["parameters"],
    }
    assert (
        cache_key("ns", "openai/gpt-4o", "vision", provider).partition
        != cache_key(
            "ns",
            "openai/gpt-4o",
            "vision",
            {**provider, "inputs": {**provider["inputs"], "media": b"img2"}},
        ).partition
    )
    # several prompts: the cosine of the combined vectors is the mean of the prompts' cosines
    a, b = combine([[1, 0], [0, 1]]), combine([[1, 0], [1, 1]])
    assert float(np.dot(a, b)) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    frozen = np.array([[3.0, 4.0]], dtype=np.float32)
    frozen.flags.writeable = False  # what an embedding read from Ray's object store is
    assert combine(frozen) == pytest.approx([0.6, 0.8])


def test_snapshot_and_restore(tmp_path):
    cache = SemanticCache(SemanticCacheSettings(seed=3))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 16))
    for i, v in enumerate(vectors):
        cache.add(
            f"p{i % 3}",
            f"ns{i % 2}",
            "t",
            v.tolist(),
            {"data": {"i": i}, "tokens_used": {"total": i}},
        )
    entry = cache.store.get(5)
    for s in (0.99, 0.97, 0.98, 0.95):
        cache.observe(entry.partition, entry.namespace, "t", 5, s, True, 1.0)
    path = tmp_path / "sub" / "cache.npz"
    cache.store.snapshot(path)
    assert [p.name for p in path.parent.iterdir()] == ["cache.npz"]  # no temporary file left behind
    again = SemanticCache.restore(path, SemanticCacheSettings(seed=3))
    assert len(again.store) == 30 and again.store.next_id == cache.store.next_id
    for e in cache.store:
        r = again.store.get(e.id)
        assert (r.partition, r.namespace, r.response, r.observations) == (
            e.partition,
            e.namespace,
            e.response,
            e.observations,
        )
        found, sim = again.store.nearest(e.partition, vectors[e.id - 1].tolist())
        assert found.id == e.id and sim == pytest.approx(1.0, abs=1e-5)
    assert list(again.store.entries) == list(cache.store.entries)  # LRU order kept
    assert again.partition_stats() and {p["namespace"] for p in again.partition_stats()} == {
        "ns0",
        "ns1",
    }
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a snapshot")
    with pytest.raises(ValueError):
        SemanticCache.restore(bad)


def test_eviction_keeps_the_most_recently_used_within_the_bound():
    store = SemanticStore(max_entries=5)
    first = store.add("a", "ns", "t", vec(1, 0, 0), {})
    for i in range(1, 12):
        store.touch(first.id)  # used all the time: survives
        store.add("a" if i % 2 else "b", "ns", "t", vec(1, i, i * i), {"i": i})
        assert len(store) <= 5
    assert len(store) == 5 and store.get(first.id) is not None and store.evicted == 7
    assert {e.response.get("i") for e in store} == {None, 8, 9, 10, 11}
    assert sum(len(p.live) for p in store.partitions.values()) == 5
    for e in list(store):
        store.remove(e.id)
    assert store.partitions == {}  # an emptied partition is dropped


def test_a_namespace_at_its_quota_evicts_its_own_entries_never_another_s(tmp_path):
    cache = SemanticCache(SemanticCacheSettings(max_entries=100, namespace_max_entries=3))
    rng = np.random.default_rng(7)
    quiet = [
        cache.add("q:p", "quiet", "t", rng.normal(size=8), {"i": i})["entry_id"] for i in range(3)
    ]
    for i in range(50):  # a flood from one namespace, over two partitions
        cache.add(f"loud:p{i % 2}", "loud", "t", rng.normal(size=8), {"i": i})
    store = cache.store
    assert store.namespace_entries("loud") == 3 and store.namespace_entries("quiet") == 3
    assert all(store.get(i) is not None for i in quiet)  # the flood evicted none of these
    assert {e.response["i"] for e in store if e.namespace == "loud"} == {47, 48, 49}
    assert store.evicted == 47 and len(store) == 6
    assert sum(len(p.live) for p in store.partitions.values()) == 6  # index memory bounded too
    stats = cache.handle({"op": "stats", "namespace": "loud"})
    assert stats["entries"] == 3 and stats["total_entries"] == 6
    # the quota holds across a restart, and clearing a namespace leaves none of its ids behind
    cache.store.snapshot(tmp_path / "s.npz")
    again = SemanticCache.restore(
        tmp_path / "s.npz", SemanticCacheSettings(namespace_max_entries=2)
    )
    assert (
        again.store.namespace_entries("loud") == 2 and again.store.namespace_entries("quiet") == 2
    )
    assert cache.clear("loud")["cleared"] == 3 and "loud" not in store.by_namespace
    assert len(store) == 3


def test_an_entry_added_after_its_partition_was_evicted_empty_is_found():
    for store in (SemanticStore(100, namespace_max_entries=1), SemanticStore(max_entries=1)):
        store.add("p", "ns", "t", vec(1, 0, 0), {"i": 1})
        second = store.add("p", "ns", "t", vec(0, 1, 0), {"i": 2})  # evicts the only other one
        entry, _ = store.nearest("p", vec(0, 1, 0))
        assert entry.id == second.id and list(store.partitions) == ["p"]


def test_concurrent_misses_of_one_prompt_add_one_entry():
    cache = SemanticCache(SemanticCacheSettings())
    assert cache.add("p", "ns", "t", vec(0.6, 0.8), {"data": 1})["added"] is True
    again = cache.add("p", "ns", "t", vec(0.6, 0.8), {"data": 1})
    assert again["added"] is False and again["response"] == {"data": 1} and len(cache.store) == 1


# ---------------------------------------------------------------- judges


def answers(*texts, parsed=None):
    return {
        "responses": [
            {
                "text": t,
                "finish_reason": "stop",
                **({"parsed": parsed} if parsed is not None else {}),
            }
            for t in texts
        ]
    }


def test_exact_judge_normalises():
    judge = ExactMatchJudge()
    assert normalise("  The capital\n of France is  PARIS. ") == "the capital of france is paris"
    assert asyncio.run(judge(answers("Paris."), answers("paris")))
    assert not asyncio.run(judge(answers("Paris"), answers("Berlin")))
    assert not asyncio.run(judge(answers("Paris", "Rome"), answers("Paris")))
    assert not asyncio.run(judge(answers("{}", parsed={"a": 1}), answers("{}", parsed={"a": 2})))


def test_embedding_and_llm_judges():
    async def embed(texts):  # read-only, as arrays from Ray's object store are
        out = np.array([[1.0, 0.0] if "paris" in t else [0.0, 1.0] for t in texts])
        out.flags.writeable = False
        return out

    questions = []

    async def ask(prompt):
        questions.append(prompt)
        return "Yes." if "Paris" in prompt and "capital is Paris" in prompt else "No"

    assert asyncio.run(EmbeddingJudge(embed)(answers("It is Paris"), answers("paris, of course")))
    assert not asyncio.run(EmbeddingJudge(embed)(answers("It is Paris"), answers("Berlin")))
    assert asyncio.run(LLMJudge(ask)(answers("Paris"), answers("The capital is Paris")))
    assert not asyncio.run(LLMJudge(ask)(answers("Paris"), answers("Berlin")))
    assert (
        asyncio.run(LLMJudge(ask)(answers("Same"), answers("same."))) and len(questions) == 2
    )  # no model needed
    with pytest.raises(ValueError):
        make_judge("llm")
