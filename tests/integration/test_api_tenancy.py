"""Tenancy over HTTP with two ingress replicas: rate limits held across them, target rights,
revocation everywhere within seconds, the usage ledger, and the admin API."""

from __future__ import annotations

import concurrent.futures as cf
import time

import pytest
from helpers import assert_error

E5 = "multilingual_e5_large_instruct_v1"
EMBED = {"inference_name": E5, "inputs": {"text": "limits"}}


def test_requests_per_minute_hold_across_two_ingress_replicas(service):
    from rawinfer.tenancy.limits import window_of

    # the burst must fall in one window: a burst that straddles a boundary may see 2 x rpm
    # (documented)
    _, left = window_of(f"key:{service.key_ids['limited']}:rpm", time.time())
    if left < 20:
        time.sleep(left + 0.5)

    def one(i):
        with service.client() as c:
            return c.post(
                "/v1/inference", json=EMBED, headers=service.headers("limited", "limited")
            )

    with cf.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, range(14)))
    ok = [r for r in answers if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    assert len(ok) == 6 and len(limited) == 8, [
        r.status_code for r in answers
    ]  # margin 0 for requests
    for r in ok:
        assert (
            r.headers["x-ratelimit-limit"] == "6" and int(r.headers["x-ratelimit-remaining"]) <= 5
        )
    body = assert_error(limited[0], 429, "RateLimitError")
    assert int(limited[0].headers["retry-after"]) >= 1
    assert (
        limited[0].headers["x-ratelimit-limit"] == "6"
        and limited[0].headers["x-ratelimit-remaining"] == "0"
    )
    assert int(limited[0].headers["x-ratelimit-reset"]) <= 60 and body["error"]["message"]


def test_openai_client_raises_its_rate_limit_error(service):
    import openai

    client = openai.OpenAI(
        base_url=service.url + "/v1", api_key=service.keys["limited"], max_retries=0
    )
    with pytest.raises(openai.RateLimitError):
        for _ in range(10):
            client.embeddings.create(model=E5, input="x")


def test_a_key_limited_to_targets_gets_403_elsewhere(service):
    with service.client() as c:
        h = service.headers("minilm-only", "team-a")
        assert (
            c.post(
                "/v1/inference",
                json={"provider": "local", "model": "all-minilm-l6-v2", "inputs": {"text": "x"}},
                headers=h,
            ).status_code
            == 200
        )
        assert_error(c.post("/v1/inference", json=EMBED, headers=h), 403, "PermissionDeniedError")
        assert_error(
            c.post(
                "/v1/inference",
                json={
                    "provider": "local",
                    "model": "smollm2-135m-instruct",
                    "inputs": {"prompts": ["x"]},
                },
                headers=h,
            ),
            403,
        )


def test_revocation_reaches_every_replica_within_seconds(service):
    from rawinfer.tenancy.store import Store

    store = Store(service.database_url)
    info, secret = store.create_key("short-lived", namespaces=["team-a"])
    h = {"Authorization": f"Bearer {secret}", "X-Namespace": "team-a"}
    with service.client() as c:
        assert all(
            c.post("/v1/inference", json=EMBED, headers=h).status_code == 200 for _ in range(4)
        )
        store.revoke_key(info.id)
        time.sleep(2.5)  # the test service caches keys for 1 s
        for _ in range(10):
            assert_error(c.post("/v1/inference", json=EMBED, headers=h), 401)


def test_usage_totals_equal_the_responses_tokens(service):
    from rawinfer.tenancy.store import Store

    store = Store(service.database_url)
    ns = store.create_namespace("usage-check")
    _, secret = store.create_key("usage", namespaces=["usage-check"])
    h = {"Authorization": f"Bearer {secret}", "X-Namespace": "usage-check"}
    bodies = [
        EMBED,
        {"inference_name": E5, "inputs": {"texts": ["a b c", "d e"]}},
        {
            "provider": "local",
            "model": "smollm2-135m-instruct",
            "inputs": {"prompts": ["Hi"]},
            "parameters": {"max_tokens": 8, "temperature": 0},
        },
    ]
    prompt = completion = 0
    with service.client() as c:
        for body in bodies:
            r = c.post("/v1/inference", json=body, headers=h)
            assert r.status_code == 200, r.text
            prompt += r.json()["tokens_used"]["prompt"]
            completion += r.json()["tokens_used"]["completion"]
        assert (
            c.post(
                "/v1/inference", json={"inference_name": "nope", "inputs": {"text": "x"}}, headers=h
            ).status_code
            == 400
        )
        deadline = time.monotonic() + 20
        while True:  # the ledger writes off the request path, about once a second
            u = c.get("/v1/usage", headers=h)
            assert u.status_code == 200, u.text
            totals = u.json()["data"][0] if u.json().get("data") else {}
            if totals.get("requests") == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert totals["requests"] == 4 and totals["errors"] == 1
        assert totals["prompt_tokens"] == prompt and totals["completion_tokens"] == completion
        by_target = c.get("/v1/usage", params={"group_by": "target"}, headers=h).json()["data"]
        # the unknown name resolved to no target, so its (failed) request is recorded without one
        assert {row["target"] for row in by_target} == {E5, "local/smollm2-135m-instruct", ""}
        assert_error(c.get("/v1/usage", params={"group_by": "colour"}, headers=h), 400)
    assert ns.id


def test_admin_api_needs_an_admin_key(service):
    admin = {"Authorization": f"Bearer {service.keys['admin']}"}
    with service.client() as c:
        r = c.post("/v1/admin/namespaces", json={"name": "made-by-admin"}, headers=admin)
        assert r.status_code == 201, r.text
        r = c.post(
            "/v1/admin/keys",
            json={"name": "k", "namespaces": ["made-by-admin"], "rpm": 100},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]
        assert (
            c.post(
                "/v1/inference",
                json=EMBED,
                headers={"Authorization": f"Bearer {secret}", "X-Namespace": "made-by-admin"},
            ).status_code
            == 200
        )
        listed = c.get("/v1/admin/keys", headers=admin).json()
        assert secret not in str(listed)
        assert_error(
            c.get("/v1/admin/keys", headers={"Authorization": f"Bearer {service.keys['a']}"}), 403
        )
        assert_error(c.get("/v1/admin/keys"), 401)
        assert_error(c.get("/v1/admin/nothing-here", headers=admin), 404)


def test_a_key_may_hold_only_so_many_requests_in_flight(service, fakes):
    """limits.key_max_concurrent (20 per ingress replica here, two replicas): 60 requests at once
    from one key to a provider answering in 2 s; the ones past the cap get a 429 at once, and the
    slots come back when the requests end."""
    body = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputs": {"prompts": ["slow"]},
        "parameters": {"max_tokens": 4},
    }

    def one(i):
        with service.client(timeout=60) as c:
            t0 = time.monotonic()
            r = c.post("/v1/inference", json=body, headers=service.headers("a", "team-a"))
            return r, time.monotonic() - t0

    fakes.openai.delay_s = 2.0
    try:
        with cf.ThreadPoolExecutor(60) as pool:
            answers = list(pool.map(one, range(60)))
    finally:
        fakes.openai.delay_s = 0.0
    codes = [r.status_code for r, _ in answers]
    assert set(codes) <= {200, 429} and codes.count(200) >= 20, codes
    assert codes.count(429) >= 60 - 2 * 20, codes
    refused = next(r for r, _ in answers if r.status_code == 429)
    body_ = assert_error(refused, 429, "RateLimitError")
    assert "in flight" in body_["error"]["message"] and refused.headers["retry-after"]
    assert max(s for (r, s) in answers if r.status_code == 429) < 2.0  # not after a slot freed
    with service.client() as c:  # every slot was given back
        ok = c.post("/v1/inference", json=body, headers=service.headers("a", "team-a"))
    assert ok.status_code == 200, ok.text


def test_read_routes_are_metered(service):
    """/v1/usage, /v1/inference/models and /v1/models take the key's request limit like an
    inference: a flood of aggregate queries over the ledger is not free."""
    from rawinfer.tenancy.limits import window_of
    from rawinfer.tenancy.store import Store

    info, secret = Store(service.database_url).create_key("reads", namespaces=["limited"], rpm=3)
    _, left = window_of(f"key:{info.id}:rpm", time.time())
    if left < 20:  # the four calls in one window
        time.sleep(left + 0.5)
    headers = {"Authorization": f"Bearer {secret}", "X-Namespace": "limited"}
    with service.client() as c:
        answers = [
            c.get(path, headers=headers)
            for path in ("/v1/usage", "/v1/inference/models", "/v1/models", "/v1/usage")
        ]
        # an inference shares the budget: it is spent
        inference = c.post("/v1/inference", json=EMBED, headers=headers)
    assert [r.status_code for r in answers] == [200, 200, 200, 429], [r.text for r in answers]
    assert all(r.headers["x-ratelimit-limit"] == "3" for r in answers[:3])
    assert_error(answers[3], 429, "RateLimitError")
    assert int(answers[3].headers["retry-after"]) >= 1
    assert_error(inference, 429, "RateLimitError")
