"""The semantic tier over HTTP: the real ingress, text-embedding, chat (vLLM) and cache
deployments. The service runs with `semantic_cache.seed` set (tests/conftest.py), so the
explore/exploit draws repeat from run to run. An identical greedy prompt is the exact tier's
(test_api_exact_cache.py): these tests clear that tier before a repeat so the semantic rule
decides."""

from __future__ import annotations

import concurrent.futures
import time
import uuid

import pytest
from helpers import assert_error

LOCAL = {"provider": "local", "model": "smollm2-135m-instruct"}


@pytest.fixture(scope="module")
def http(service):
    with service.client(timeout=300) as c:
        yield c


def admin(service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.keys['admin']}"}


@pytest.fixture
def namespace(http, service) -> str:
    """A fresh namespace (the `all` key may use it), so each test sees only its own partitions."""
    name = f"cache-{uuid.uuid4().hex[:8]}"
    r = http.post("/v1/admin/namespaces", json={"name": name}, headers=admin(service))
    assert r.status_code == 201, r.text
    return name


def ask(http, service, ns: str, prompt: str, *, max_tokens: int = 16, **extra):
    body = {
        **LOCAL,
        "inputs": {"prompts": [prompt]},
        "parameters": {"temperature": 0, "max_tokens": max_tokens},
        "enable_semantic_cache": True,
        **extra,
    }
    r = http.post("/v1/inference", json=body, headers=service.headers("all", ns))
    assert r.status_code == 200, r.text
    return r.json()


def stats(http, service, ns: str) -> dict:
    r = http.get("/v1/admin/cache", params={"namespace": ns}, headers=admin(service))
    assert r.status_code == 200, r.text
    return r.json()


def settle(http, service, ns: str, observations: int, timeout: float = 30) -> dict:
    """Waits until the background work has added an entry and recorded `observations` in the
    namespace."""
    deadline = time.monotonic() + timeout
    while True:
        s = stats(http, service, ns)
        done = s["entries"] >= 1 and sum(p["observations"] for p in s["partitions"]) >= observations
        if done or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


def forget_exact(http, service, ns: str) -> None:
    """The exact tier's answers of `ns` dropped (the semantic tier's kept)."""
    time.sleep(0.2)  # the fresh answer's exact entry is written off the request path
    r = http.delete(
        "/v1/admin/cache", params={"namespace": ns, "tier": "exact"}, headers=admin(service)
    )
    assert r.status_code == 200, r.text
    time.sleep(1.05)  # another ingress replica's copy expires (exact_local_ttl_s, conftest.py)


def warm(http, service, ns: str, prompt: str, tries: int = 20) -> tuple[dict, dict]:
    """Asks until the answer comes from the semantic tier: (first answer, cached answer)."""
    first = ask(http, service, ns, prompt)
    assert first["cache_hit"] is False
    for i in range(1, tries):
        settle(http, service, ns, i - 1)
        forget_exact(http, service, ns)
        body = ask(http, service, ns, prompt)
        if body["cache_hit"]:
            return first, body
    pytest.fail(f"no cache hit after {tries} identical greedy requests")


def test_a_repeated_prompt_is_served_from_the_cache(http, service, namespace):
    first, hit = warm(http, service, namespace, "What is the capital of France?")
    assert hit["data"] == first["data"] and hit["tokens_used"] == first["tokens_used"]
    assert hit["model"] == first["model"] == "smollm2-135m-instruct" and hit["provider"] == "local"
    (p,) = stats(http, service, namespace)["partitions"]
    # vCache's rule: an entry is served only after min_observations (4) explorations agreed with it
    assert p["entries"] == 1 and p["misses"] == 1 and p["hits"] >= 1 and p["explores"] >= 4
    assert p["observations"] >= 4 and p["incorrect"] == 0
    # δ = 0 tolerates no error at all: the semantic tier always asks the model
    for _ in range(3):
        forget_exact(http, service, namespace)
        assert (
            ask(
                http,
                service,
                namespace,
                "What is the capital of France?",
                semantic_cache_max_error_rate=0,
            )["cache_hit"]
            is False
        )
    # usage counts the cached answer's tokens apart from the tokens the model spent
    deadline = time.monotonic() + 20
    while True:
        r = http.get("/v1/usage", headers=service.headers("all", namespace))
        assert r.status_code == 200, r.text
        (row,) = r.json()["data"]
        if row["requests"] >= p["lookups"] + 3 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert row["requests"] == p["lookups"] + 3
    assert (
        row["cache_hits"] == p["hits"]
        and row["cached_tokens"] == p["hits"] * first["tokens_used"]["total"]
    )
    fresh = row["requests"] - row["cache_hits"]
    assert row["total_tokens"] == fresh * first["tokens_used"]["total"]


def test_without_opting_in_or_sampling_the_cache_is_not_used(http, service, namespace):
    prompt = "Name a primary colour."
    body = {
        **LOCAL,
        "inputs": {"prompts": [prompt]},
        "parameters": {"temperature": 0, "max_tokens": 8},
    }
    assert (
        http.post("/v1/inference", json=body, headers=service.headers("all", namespace)).status_code
        == 200
    )
    sampled = {
        **body,
        "enable_semantic_cache": True,
        "parameters": {"temperature": 0.7, "max_tokens": 8},
    }
    assert (
        http.post(
            "/v1/inference", json=sampled, headers=service.headers("all", namespace)
        ).status_code
        == 200
    )
    assert stats(http, service, namespace)["partitions"] == []


def test_namespaces_and_parameters_do_not_share_entries(http, service, namespace):
    prompt = "What is the capital of Italy?"
    warm(http, service, namespace, prompt)
    other = f"cache-{uuid.uuid4().hex[:8]}"
    assert (
        http.post("/v1/admin/namespaces", json={"name": other}, headers=admin(service)).status_code
        == 201
    )
    assert ask(http, service, other, prompt)["cache_hit"] is False
    (p,) = stats(http, service, other)["partitions"]
    assert (p["lookups"], p["misses"], p["explores"]) == (
        1,
        1,
        0,
    )  # nothing found: not even explored
    # another max_tokens (or system prompt) is another partition in the same namespace
    assert ask(http, service, namespace, prompt, max_tokens=17)["cache_hit"] is False
    body = {
        **LOCAL,
        "inputs": {"prompts": [prompt], "system": "Answer briefly."},
        "enable_semantic_cache": True,
        "parameters": {"temperature": 0, "max_tokens": 16},
    }
    assert (
        http.post("/v1/inference", json=body, headers=service.headers("all", namespace)).json()[
            "cache_hit"
        ]
        is False
    )
    parts = stats(http, service, namespace)["partitions"]
    assert len(parts) == 3 and sorted(p["misses"] for p in parts) == [1, 1, 1]


def test_many_identical_prompts_at_once_make_one_entry(http, service, namespace):
    prompt = "Give one word that rhymes with cat."
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: ask(http, service, namespace, prompt), range(8)))
    assert all(b["cache_hit"] is False for b in bodies)
    (p,) = settle(http, service, namespace, 7)["partitions"]
    # the first answer became the entry; every other one was judged against it (an observation)
    assert p["lookups"] == 8 and p["observations"] == 7
    assert p["entries"] == 1 + p["incorrect"]


def test_clearing_a_namespace(http, service, namespace):
    from rawinfer import cli

    ask(http, service, namespace, "What is two plus two?")
    assert settle(http, service, namespace, 0)["entries"] == 1  # added off the request path
    deadline = time.monotonic() + 10
    while stats(http, service, namespace)["exact_entries"] < 1:  # written off the path too
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = http.delete("/v1/admin/cache", params={"namespace": namespace}, headers=admin(service))
    # the semantic entry and the exact tier's answer
    assert r.status_code == 200 and r.json()["cleared"] == 2, r.text
    assert stats(http, service, namespace)["partitions"] == []
    time.sleep(1.05)  # the other ingress replica's exact copy expires (exact_local_ttl_s)
    assert ask(http, service, namespace, "What is two plus two?")["cache_hit"] is False
    (p,) = settle(http, service, namespace, 0)["partitions"]
    assert p["misses"] == 1 and p["entries"] == 1
    # the CLI, through the running Serve app's cache deployment (this process is on the Ray cluster)
    cli.main(["--database-url", service.database_url, "cache", "clear", "--namespace", namespace])
    assert stats(http, service, namespace)["partitions"] == []
    # errors: not an admin key, unknown namespace, no namespace
    assert_error(
        http.delete(
            "/v1/admin/cache",
            params={"namespace": namespace},
            headers=service.headers("all", namespace),
        ),
        403,
    )
    assert_error(
        http.delete("/v1/admin/cache", params={"namespace": "no-such-ns"}, headers=admin(service)),
        404,
    )
    assert_error(http.delete("/v1/admin/cache", headers=admin(service)), 400)
