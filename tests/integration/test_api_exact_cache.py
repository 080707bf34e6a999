"""The exact tier over HTTP: the real ingress, chat (vLLM) and cache deployments. An identical
deterministic request is answered from the exact tier, never across namespaces, and a sampled
one only when its seed is fixed."""

from __future__ import annotations

import time
import uuid

import pytest
from helpers import assert_error
from test_api_semantic_cache import LOCAL, admin, stats


@pytest.fixture(scope="module")
def http(service):
    with service.client(timeout=300) as c:
        yield c


def fresh_namespace(http, service) -> str:
    name = f"exact-{uuid.uuid4().hex[:8]}"
    r = http.post("/v1/admin/namespaces", json={"name": name}, headers=admin(service))
    assert r.status_code == 201, r.text
    return name


def ask(http, service, ns: str, prompt: str, **params) -> dict:
    body = {
        **LOCAL,
        "inputs": {"prompts": [prompt]},
        "parameters": {"max_tokens": 12, **params},
        "enable_semantic_cache": True,
    }
    r = http.post("/v1/inference", json=body, headers=service.headers("all", ns))
    assert r.status_code == 200, r.text
    return r.json()


def exact_written(http, service, ns: str, n: int = 1) -> None:
    """Waits for the fresh answers' exact entries (written off the request path)."""
    deadline = time.monotonic() + 15
    while stats(http, service, ns)["exact_entries"] < n:
        assert time.monotonic() < deadline, "the exact tier never got the answer"
        time.sleep(0.1)


def counts(http, service, ns: str, field: str, at_least: int) -> int:
    """A partition count of the namespace once it reaches `at_least` (hits are reported ~1 s
    after they were served), or whatever it is after 15 s."""
    deadline = time.monotonic() + 15
    while True:
        total = sum(p[field] for p in stats(http, service, ns)["partitions"])
        if total >= at_least or time.monotonic() > deadline:
            return total
        time.sleep(0.2)


def test_an_exact_repeat_is_answered_from_the_exact_tier(http, service):
    ns = fresh_namespace(http, service)
    prompt = "Which planet is known as the red planet?"
    first = ask(http, service, ns, prompt, temperature=0)
    assert first["cache_hit"] is False
    exact_written(http, service, ns)
    # whitespace is normalised; the rest of the request is identical
    again = ask(http, service, ns, f"  {prompt.replace(' ', '  ')}\n", temperature=0)
    assert again["cache_hit"] is True
    assert again["data"] == first["data"] and again["tokens_used"] == first["tokens_used"]
    assert again["model"] == first["model"] == "smollm2-135m-instruct"
    assert counts(http, service, ns, "exact_hits", 1) == 1
    (p,) = stats(http, service, ns)["partitions"]
    # the exact hit never reached the semantic tier: one lookup (the first request's miss)
    assert (p["lookups"], p["misses"], p["hits"]) == (1, 1, 0)
    # other case is another prompt (it can change the answer)
    assert ask(http, service, ns, prompt.upper(), temperature=0)["cache_hit"] is False
    # usage counts the exact hit as cached tokens, not as tokens the model spent
    deadline = time.monotonic() + 20
    while True:
        (row,) = http.get("/v1/usage", headers=service.headers("all", ns)).json()["data"]
        if row["requests"] >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert row["requests"] == 3 and row["cache_hits"] == 1
    assert row["cached_tokens"] == first["tokens_used"]["total"]


def test_an_exact_answer_is_never_served_in_another_namespace(http, service):
    mine, other = fresh_namespace(http, service), fresh_namespace(http, service)
    prompt = "Name the largest ocean on Earth."
    ask(http, service, mine, prompt, temperature=0)
    exact_written(http, service, mine)
    assert ask(http, service, mine, prompt, temperature=0)["cache_hit"] is True
    assert ask(http, service, other, prompt, temperature=0)["cache_hit"] is False
    assert counts(http, service, other, "exact_misses", 1) == 1
    assert sum(p["exact_hits"] for p in stats(http, service, other)["partitions"]) == 0
    # clearing one tier of one namespace: `mine` answers afresh, `other` keeps its answer
    exact_written(http, service, other)
    r = http.delete(
        "/v1/admin/cache", params={"namespace": mine, "tier": "exact"}, headers=admin(service)
    )
    assert r.status_code == 200 and r.json()["cleared"] == 1, r.text
    time.sleep(1.05)  # any other ingress replica's copy expires (exact_local_ttl_s, conftest.py)
    assert ask(http, service, mine, prompt, temperature=0)["cache_hit"] is False
    assert ask(http, service, other, prompt, temperature=0)["cache_hit"] is True
    bad = http.delete(
        "/v1/admin/cache", params={"namespace": mine, "tier": "all"}, headers=admin(service)
    )
    assert_error(bad, 400, "BadRequestError")


def test_sampled_requests_are_exact_cached_only_with_a_seed(http, service):
    ns = fresh_namespace(http, service)
    prompt = "Write one word about the sea."
    for _ in range(2):
        assert ask(http, service, ns, prompt, temperature=0.8)["cache_hit"] is False
    assert stats(http, service, ns)["partitions"] == []  # neither tier saw them
    seeded = ask(http, service, ns, prompt, temperature=0.8, seed=11)
    assert seeded["cache_hit"] is False
    exact_written(http, service, ns)
    again = ask(http, service, ns, prompt, temperature=0.8, seed=11)
    assert again["cache_hit"] is True and again["data"] == seeded["data"]
    assert ask(http, service, ns, prompt, temperature=0.8, seed=12)["cache_hit"] is False
    parts = stats(http, service, ns)["partitions"]
    assert len(parts) == 2 and all(p["lookups"] == 0 for p in parts)  # never the semantic tier
