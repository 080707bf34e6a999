"""The exact tier: its key, its bounded LRU, the shared tier's ops in the cache object, and the
ingress client answering exact repeats without embedding (the real SemanticCache behind a plain
async call, as the deployment holds it)."""

from __future__ import annotations

import asyncio

import pytest
from test_semantic_cache_store import answers

from rawinfer.cache.cache import SemanticCache
from rawinfer.cache.client import SemanticCacheClient
from rawinfer.cache.exact import ExactLRU, deterministic, exact_key, normalise
from rawinfer.cache.judge import ExactMatchJudge
from rawinfer.core.settings import SemanticCacheSettings


def test_normalise_and_key():
    assert normalise("  What is\n the  capital?\t") == "What is the capital?"
    assert normalise("e\u0301") == "\u00e9"  # NFC
    assert normalise("Paris") != normalise("paris")  # case can change the answer
    k = exact_key("p1", ["What is  the capital?"])
    assert k == exact_key("p1", ["What is the capital?"])
    assert k != exact_key("p2", ["What is the capital?"])  # another partition
    assert exact_key("p1", ["a", "b"]) != exact_key("p1", ["a b"])  # prompts stay apart


def test_deterministic():
    assert deterministic({"temperature": 0, "seed": None})
    assert deterministic({"temperature": 0.8, "seed": 3})
    assert not deterministic({"temperature": 0.8, "seed": None})
    assert not deterministic({})  # OpenAI's default temperature is 1


def test_lru_bounds_quota_and_ttl():
    now = [0.0]
    lru = ExactLRU(3, 10_000, max_namespace_entries=2, ttl_s=5, clock=lambda: now[0])
    for i in range(3):
        assert lru.put(f"a{i}", "a", {"data": i})
    assert lru.entries("a") == 2 and lru.get("a0") is None  # the namespace quota evicted a0
    lru.put("b0", "b", {"data": 0})
    lru.put("b1", "b", {"data": 1})
    assert len(lru) == 3 and lru.get("a1") is None  # the global bound: least recently used
    assert lru.get("b1") == {"data": 1}
    now[0] = 6.0
    assert lru.get("b1") is None  # expired
    small = ExactLRU(10, 100)
    assert small.put("k", "n", {"data": "x" * 20})
    assert not small.put("big", "n", {"data": "x" * 200})  # alone over the byte bound
    small.put("k2", "n", {"data": "y" * 40})
    small.put("k3", "n", {"data": "z" * 40})
    assert small.bytes <= 100 and small.get("k") is None
    held = len(small)
    assert held and small.clear("n") == held and len(small) == 0 and small.bytes == 0


def test_shared_tier_ops_and_clear():
    core = SemanticCache(SemanticCacheSettings(exact_namespace_max_entries=1))
    where = {"partition": "p", "namespace": "ns", "label": "local/m"}
    assert core.handle({"op": "exact_get", "key": "k", **where}) == {"found": False}
    core.handle({"op": "exact_put", "key": "k", **where, "response": {"data": 1}})
    assert core.handle({"op": "exact_get", "key": "k", **where})["response"] == {"data": 1}
    core.handle({"op": "exact_report", **where, "hits": 3, "audits": 2, "audit_incorrect": 1})
    (row,) = core.partition_stats("ns")
    assert (row["exact_hits"], row["exact_misses"], row["exact_audits"]) == (4, 1, 2)
    assert row["exact_audit_incorrect"] == 1
    other = {**where, "namespace": "other", "partition": "q"}
    core.handle({"op": "exact_put", "key": "k2", **other, "response": {"data": 2}})
    core.handle({"op": "exact_put", "key": "k3", **where, "response": {"data": 3}})
    assert core.exact.entries("ns") == 1  # the namespace quota
    assert core.handle({"op": "stats", "namespace": "other"})["exact_entries"] == 1
    assert core.handle({"op": "clear", "namespace": "ns", "tier": "semantic"})["cleared"] == 0
    assert core.handle({"op": "clear", "namespace": "ns", "tier": "exact"})["cleared"] == 1
    assert core.exact.entries("other") == 1
    with pytest.raises(ValueError):
        core.handle({"op": "clear", "namespace": "ns", "tier": "bogus"})


class Harness:
    def __init__(self, **settings):
        self.settings = SemanticCacheSettings(seed=3, **settings)
        self.core = SemanticCache(self.settings)
        self.embedded: list[list[str]] = []
        self.calls = 0
        self.client = SemanticCacheClient(
            self.settings, self._cache, self._embed, ExactMatchJudge()
        )

    async def _cache(self, req):
        return self.core.handle(req)

    async def _embed(self, texts):
        self.embedded.append(list(texts))
        return [[1.0, float(len(t) % 7), 0.5] for t in texts]

    def plan(self, prompt, namespace="ns", **params):
        return self.client.plan(
            enabled=True,
            max_error_rate=None,
            task="chat",
            stream=False,
            namespace=namespace,
            label="local/m",
            payload={"prompts": [prompt], "parameters": {"max_tokens": 8, **params}},
        )

    async def ask(self, prompt, namespace="ns", **params):
        async def fresh():
            self.calls += 1
            return {"data": answers(f"answer {self.calls}"), "tokens_used": {"total": 5}}

        out = await self.client.execute(self.plan(prompt, namespace, **params), fresh)
        await self.client.close()
        return out


def test_client_answers_an_exact_repeat_without_embedding():
    async def scenario():
        h = Harness(exact_audit_fraction=0.0)
        first = await h.ask("What is the capital of France?", temperature=0)
        assert first["cache_hit"] is False and len(h.embedded) == 1
        again = await h.ask("What is  the capital of France? ", temperature=0)
        assert again["cache_hit"] is True and again["data"] == first["data"]
        assert h.calls == 1 and len(h.embedded) == 1  # nothing embedded for the repeat
        # another namespace, another max_tokens: not the same answer
        assert (await h.ask("What is the capital of France?", "other", temperature=0))[
            "cache_hit"
        ] is False
        assert (await h.ask("What is the capital of France?", temperature=0, max_tokens=9))[
            "cache_hit"
        ] is False
        # this replica's LRU gone: the shared tier answers, and the replica holds it again
        h.client.forget("ns")
        assert (await h.ask("What is the capital of France?", temperature=0))["cache_hit"]
        assert h.client.local.entries("ns") == 1
        return h

    h = asyncio.run(scenario())
    rows = {r["partition"]: r for r in h.core.partition_stats("ns")}
    exact_rows = [r for r in rows.values() if r["exact_hits"] or r["exact_misses"]]
    assert sum(r["exact_hits"] for r in exact_rows) == 2  # one local (reported), one shared


def test_sampling_is_exact_cached_only_with_a_seed():
    async def scenario():
        h = Harness()
        assert h.plan("Tell me a story.", temperature=0.9) is None
        seeded = h.plan("Tell me a story.", temperature=0.9, seed=42)
        assert seeded.exact_key is not None and seeded.semantic is False
        await h.ask("Tell me a story.", temperature=0.9, seed=42)
        assert (await h.ask("Tell me a story.", temperature=0.9, seed=42))["cache_hit"]
        assert not (await h.ask("Tell me a story.", temperature=0.9, seed=43))["cache_hit"]
        assert h.embedded == []  # the semantic tier never saw a sampled request
        assert h.calls == 2

    asyncio.run(scenario())


def test_audits_are_judged_and_reported():
    async def scenario():
        h = Harness(exact_audit_fraction=1.0, exact_local_entries=0)
        await h.ask("Name a colour.", temperature=0)
        hit = await h.ask("Name a colour.", temperature=0)
        assert hit["cache_hit"] is True
        assert h.calls == 2  # the audit asked the model too, after the answer
        return h

    h = asyncio.run(scenario())
    audits = sum(r["exact_audits"] for r in h.core.partition_stats("ns"))
    wrong = sum(r["exact_audit_incorrect"] for r in h.core.partition_stats("ns"))
    assert (audits, wrong) == (1, 1)  # "answer 2" is not "answer 1": the audit saw it


def test_background_work_is_bounded_and_dropped_work_counted():
    async def scenario():
        h = Harness(max_background_tasks=2, exact_audit_fraction=0.0, exact_local_entries=0)
        gate = asyncio.Event()
        slow = h._cache

        async def stalled(req):  # the cache deployment stops answering writes
            if req["op"] in ("exact_put", "add"):
                await gate.wait()
            return await slow(req)

        h.client.cache = stalled
        plans = [h.plan(f"Question {i}?", temperature=0) for i in range(6)]

        async def fresh():
            h.calls += 1
            return {"data": answers("a"), "tokens_used": {"total": 1}}

        for plan in plans:  # each answered at once although its write cannot finish
            out = await asyncio.wait_for(h.client.execute(plan, fresh), 2)
            assert out["cache_hit"] is False
        assert len(h.client.pending) == 2 and h.client.dropped >= 4
        gate.set()
        await h.client.close()
        assert h.client.pending == set()
        return h

    h = asyncio.run(scenario())
    assert h.calls == 6
