"""Rate limits: the shared window counters and several LocalLimiters sharing them under
concurrent asyncio load (the shared limiter is called through an async callable with a random
delay, as a Serve handle would be). Clocks are injected, so windows are exact."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from rawinfer.contract.errors import RateLimited
from rawinfer.core.settings import LimitSettings
from rawinfer.tenancy.keys import KeyInfo, NamespaceInfo
from rawinfer.tenancy.limits import (
    REQUESTS,
    TOKENS,
    LocalLimiter,
    Subject,
    denial_headers,
    effective,
    subjects_for,
)
from rawinfer.tenancy.shared_limiter import SharedLimiter


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def remote(shared: SharedLimiter, max_delay: float = 0.002, seed: int = 0):
    """The shared limiter as an async callable with a random round-trip delay."""
    rnd = random.Random(seed)

    async def call(req):
        await asyncio.sleep(rnd.random() * max_delay)
        out = shared.handle(req)
        await asyncio.sleep(rnd.random() * max_delay)
        return out

    return call


RPM = Subject("key:k1:rpm", 300, REQUESTS, "key")


def test_shared_acquire_windows_reset_and_retry_after():
    clock = Clock()
    shared = SharedLimiter(60.0, clock)
    sub = Subject("key:k:rpm", 3)
    g = shared.acquire(sub)
    end = clock.t + g.reset_s  # where this subject's window ends (phase-shifted per subject)
    assert 0 < g.reset_s <= 60 and (g.allowed, g.remaining, g.retry_after_s) == (True, 2, 0.0)
    assert shared.acquire(sub, 2).remaining == 0
    denied = shared.acquire(sub)
    assert (
        not denied.allowed
        and denied.remaining == 0
        and denied.retry_after_s == pytest.approx(end - clock.t)
    )
    clock.t = end - 0.5
    assert shared.acquire(sub).retry_after_s == pytest.approx(0.5)
    clock.t = end  # a new window: the full limit again
    g = shared.acquire(sub)
    assert (
        g.allowed
        and g.remaining == 2
        and g.reset_s == pytest.approx(60.0)
        and g.window == denied.window + 1
    )
    # cost 0 (tokens): admitted while anything is left; tokens are charged when they are known
    tok = Subject("ns:n:tpm", 100, TOKENS)
    g = shared.acquire(tok, 0)
    shared.debit(tok.name, g.window, 150)
    assert not shared.acquire(tok, 0).allowed and shared.used(tok.name) == 150
    # a request admitted in an earlier window that ends now pays in the current one
    shared.debit(tok.name, g.window - 1, 1000)
    assert shared.used(tok.name) == 1150
    clock.t += 60.0  # the next window: a request admitted before it ends after its start
    assert shared.acquire(tok, 0).allowed
    shared.debit(tok.name, g.window, 30)
    assert shared.used(tok.name) == 30 and shared.acquire(tok, 0).allowed
    # phases differ per subject, so not every counter resets at once
    assert (
        len(
            {
                round(SharedLimiter(60.0, clock).acquire(Subject(f"key:{i}:rpm", 5)).reset_s, 3)
                for i in range(20)
            }
        )
        > 10
    )


async def _hammer(limiters, subjects, workers: int, attempts: int, clock=None, log=None, seed=1):
    rnd = random.Random(seed)
    admitted = 0

    async def worker(i):
        nonlocal admitted
        lim = limiters[i % len(limiters)]
        for _ in range(attempts):
            try:
                await lim.acquire(subjects)
                admitted += 1
                if log is not None:
                    log.append(clock())
            except RateLimited:
                pass
            await asyncio.sleep(rnd.random() * 0.002)

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return admitted


def test_request_limit_is_exact_across_replicas():
    """4 ingress replicas, 200 concurrent clients, 2000 attempts for 300 units: exactly 300 are
    admitted (never more; and none are stranded once idle leases are returned)."""

    async def main():
        shared = SharedLimiter(60.0, Clock())
        limiters = [
            LocalLimiter(remote(shared, seed=i), idle_return_s=0.05, deny_cache_s=0.0)
            for i in range(4)
        ]
        admitted = await _hammer(limiters, [RPM], workers=200, attempts=10)
        assert admitted <= RPM.limit and shared.used(RPM.name) <= RPM.limit
        for lim in limiters:
            await lim.close()  # give back what is leased and unspent
        while True:  # drain what is left through one replica
            try:
                await limiters[0].acquire([RPM])
                admitted += 1
            except RateLimited:
                break
        assert (
            admitted
            == RPM.limit
            == shared.used(RPM.name) - sum(lim._state[RPM.name].balance for lim in limiters)
        )

    asyncio.run(main())


def test_no_window_admits_more_than_the_limit_while_time_moves():
    """Time advances during the load across several windows; admissions are attributed to the
    shared limiter's window at the moment they happen: none has more than the limit."""

    async def main():
        clock = Clock(0.0)
        shared = SharedLimiter(1.0, clock)  # 1 s windows to cross many of them
        sub = Subject("key:fast:rpm", 50)
        limiters = [
            LocalLimiter(remote(shared, seed=i), idle_return_s=0.2, deny_cache_s=0.0, clock=clock)
            for i in range(3)
        ]
        times: list[float] = []

        async def tick():
            for _ in range(300):
                clock.t += 0.017
                await asyncio.sleep(0.0005)

        task = asyncio.create_task(tick())
        await _hammer(limiters, [sub], workers=40, attempts=40, clock=clock, log=times)
        await task
        per_window: dict[int, int] = {}
        for t in times:
            w = shared._window(sub.name, t)[0]
            per_window[w] = per_window.get(w, 0) + 1
        assert len(per_window) >= 4 and max(per_window.values()) <= sub.limit, per_window
        assert max(per_window.values()) >= sub.limit * 0.8  # and the budget is actually usable

    asyncio.run(main())


def test_leases_die_with_their_window():
    """A replica's unspent units of a window are void when it ends, even with round trips that
    take time: the local expiry is measured from the ask, never later than the shared end."""

    async def main():
        clock = Clock()
        shared = SharedLimiter(60.0, clock)
        sub = Subject("key:w:rpm", 10)

        async def slow(req):  # 0.25 s each way, in the shared clock's time
            clock.t += 0.25
            out = shared.handle(req)
            if req["op"] == "lease":
                slow.end = clock.t + out["reset_s"]
            clock.t += 0.25
            return out

        a = LocalLimiter(slow, lease_fraction=1.0, idle_return_s=100, clock=clock)
        b = LocalLimiter(slow, idle_return_s=100, deny_cache_s=0.0, clock=clock)
        for _ in range(3):
            await a.acquire([sub])
        st = a._state[sub.name]
        assert st.balance > 0 and st.expires <= slow.end
        clock.t = slow.end  # the window is over: a still holds units of it
        admitted_b = 0
        while True:
            try:
                await b.acquire([sub])
                admitted_b += 1
            except RateLimited:
                break
        with pytest.raises(RateLimited):
            await a.acquire([sub])  # its old units are void; the new window is spent
        assert admitted_b == sub.limit and a._state[sub.name].expires <= slow.end

    asyncio.run(main())


def test_token_overshoot_is_the_in_flight_requests_exactly():
    """tpm 100; 10 requests admitted together (the budget is > 0 for each), each uses 50 tokens.
    The budget runs out when the 2nd finishes, with 8 in flight: the overshoot is their 400
    tokens, and nothing is admitted after that in this window."""

    async def main():
        shared = SharedLimiter(60.0, Clock())
        tpm = Subject("key:k:tpm", 100, TOKENS)
        lim = LocalLimiter(remote(shared), lease_fraction=1.0)
        adms = [await lim.acquire([tpm]) for _ in range(10)]
        for adm in adms:
            await lim.settle(adm, 50)
            await lim.settle(adm, 50)  # settling twice charges once
        await lim.close()
        assert shared.used(tpm.name) == 500 == 100 + 8 * 50
        with pytest.raises(RateLimited) as e:
            await lim.acquire([tpm])
        assert e.value.details["limit_type"] == "tokens"

    asyncio.run(main())


def test_token_overshoot_bound_under_concurrent_load():
    """3 replicas, at most 24 requests in flight, each 1-40 tokens: the window's charge stays
    within tpm + 24 x 40, and the budget is used up."""

    async def main():
        shared = SharedLimiter(60.0, Clock())
        tpm = Subject("ns:n:tpm", 2000, TOKENS, "namespace")
        limiters = [LocalLimiter(remote(shared, seed=i), idle_return_s=0.05) for i in range(3)]
        rnd, in_flight, peak = random.Random(7), 0, 0

        async def client(i):
            nonlocal in_flight, peak
            lim = limiters[i % 3]
            for _ in range(40):
                try:
                    adm = await lim.acquire([tpm])
                except RateLimited:
                    await asyncio.sleep(0.001)
                    continue
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(rnd.random() * 0.004)
                in_flight -= 1
                await lim.settle(adm, rnd.randint(1, 40))

        await asyncio.gather(*(client(i) for i in range(24)))
        for lim in limiters:
            await lim.close()
        charged = shared.used(tpm.name)
        assert peak <= 24 and tpm.limit <= charged <= tpm.limit + peak * 40, (charged, peak)

    asyncio.run(main())


def test_denial_refunds_other_limits_and_sets_headers():
    async def main():
        clock = Clock()
        shared = SharedLimiter(60.0, clock)
        key = Subject("key:k:rpm", 100)
        ns = Subject("ns:n:rpm", 2, REQUESTS, "namespace")
        key_tpm = Subject("key:k:tpm", 1000, TOKENS)
        lim = LocalLimiter(remote(shared), clock=clock)
        ok = await lim.acquire([key, ns, key_tpm])
        h = ok.headers()
        assert (
            h["X-RateLimit-Limit"] == "2" and h["X-RateLimit-Remaining"] == "1"
        )  # the tightest: the namespace
        assert h["X-RateLimit-Limit-Tokens"] == "1000" and 1 <= int(h["X-RateLimit-Reset"]) <= 60
        await lim.acquire([key, ns])
        clock.t += 10
        with pytest.raises(RateLimited) as e:
            await lim.acquire([key, ns])
        reset = e.value.retry_after_s
        assert e.value.details["scope"] == "namespace" and 0 < reset <= 50
        hd = denial_headers(e.value)
        assert hd["Retry-After"] == str(math.ceil(reset)) == hd["X-RateLimit-Reset"]
        assert hd["X-RateLimit-Limit"] == "2" and hd["X-RateLimit-Remaining"] == "0"
        await lim.close()
        assert (
            shared.used(key.name) == 2
        )  # the refused request's key unit was refunded, then returned

    asyncio.run(main())


def test_idle_leases_are_given_back_to_other_replicas():
    async def main():
        clock = Clock()
        shared = SharedLimiter(60.0, clock)
        sub = Subject("key:k:rpm", 20)
        a = LocalLimiter(
            remote(shared), lease_fraction=0.5, idle_return_s=1.0, deny_cache_s=0.0, clock=clock
        )
        b = LocalLimiter(remote(shared), idle_return_s=1.0, deny_cache_s=0.0, clock=clock)
        for _ in range(4):  # demand builds up: a leases more than it spends
            await a.acquire([sub])
        held = a._state[sub.name].balance
        assert held > 0 and shared.used(sub.name) == 4 + held
        while True:
            try:
                await b.acquire([sub])
            except RateLimited:
                break
        assert shared.used(sub.name) == 20 and a._state[sub.name].balance == held
        assert await a.sweep() == 0  # not idle yet
        clock.t += 1.5
        assert await a.sweep() == held and shared.used(sub.name) == 20 - held
        for _ in range(held):
            await b.acquire([sub])  # b gets them now
        with pytest.raises(RateLimited):
            await b.acquire([sub])

    asyncio.run(main())


def test_fail_open_when_the_shared_limiter_is_down():
    async def down(req):
        raise ConnectionError("limiter gone")

    async def main():
        adm = await LocalLimiter(down).acquire([RPM])
        assert adm.headers() == {}
        with pytest.raises(ConnectionError):
            await LocalLimiter(down, fail_open=False).acquire([RPM])

    asyncio.run(main())


def test_subjects_from_keys_namespaces_and_defaults():
    key = KeyInfo("key_a", "", "org", None, False, False, None, rpm=None, tpm=0)
    ns = NamespaceInfo("ns_a", "a", "org", rpm=30)
    subs = subjects_for(key, ns, LimitSettings(key_rpm=60, key_tpm=1000, namespace_tpm=5000))
    assert [(s.name, s.limit, s.kind, s.scope) for s in subs] == [
        ("key:key_a:rpm", 60, REQUESTS, "key"),
        ("ns:ns_a:rpm", 30, REQUESTS, "namespace"),
        ("ns:ns_a:tpm", 5000, TOKENS, "namespace"),
    ]
    assert subjects_for(key, ns, LimitSettings(enabled=False)) == []
    assert (effective(None, None), effective(None, 5), effective(0, 5), effective(7, 5)) == (
        None,
        5,
        None,
        7,
    )


def test_the_serve_deployment_behind_local_limiters():
    """deployments/limiter.py through a real Serve handle (local testing mode: no cluster)."""
    from ray import serve

    from deployments.limiter import RateLimiterDeployment, shared_caller

    handle = serve.run(
        RateLimiterDeployment.bind({"window_s": 60}),
        name="limiter-test",
        route_prefix=None,
        _local_testing_mode=True,
    )

    async def main():
        sub = Subject("key:serve:rpm", 25)
        limiters = [LocalLimiter(shared_caller(handle), deny_cache_s=0.0) for _ in range(3)]
        admitted = await _hammer(limiters, [sub], workers=12, attempts=5)
        assert admitted <= 25
        for lim in limiters:
            await lim.close()
        while True:
            try:
                await limiters[0].acquire([sub])
                admitted += 1
            except RateLimited:
                return admitted

    assert asyncio.run(main()) == 25
