"""The limiter under faults: a shared limiter that hangs costs a request at most its call
timeout (then fail_open decides), leased units idle at one replica go back on their own, and a
request that ends after its window still pays its tokens."""

from __future__ import annotations

import asyncio
import time

import pytest

from rawinfer.contract.errors import RateLimited
from rawinfer.tenancy.limits import REQUESTS, TOKENS, LocalLimiter, Subject, window_of
from rawinfer.tenancy.shared_limiter import SharedLimiter


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def direct(shared: SharedLimiter):
    async def call(req):
        return shared.handle(req)

    return call


SUB = Subject("key:k1:rpm", 100, REQUESTS, "key")


async def hang(req):
    await asyncio.sleep(3600)


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_hanging_shared_limiter_costs_at_most_the_call_timeout(fail_open):
    limiter = LocalLimiter(hang, fail_open=fail_open, call_timeout_s=0.3)

    async def main():
        t0 = time.monotonic()
        try:
            adm = await limiter.acquire([SUB])
            outcome = "admitted"
            await limiter.settle(adm, 0)
        except (RateLimited, asyncio.TimeoutError, TimeoutError):
            outcome = "refused"
        took = time.monotonic() - t0
        await limiter.close()
        return outcome, took

    outcome, took = asyncio.run(main())
    assert took < 1.0
    assert outcome == ("admitted" if fail_open else "refused")


def test_idle_leases_go_back_without_anyone_calling_start():
    # the run must fall in one window: a new window would refill the limit (back == 100)
    _, left = window_of(SUB.name, time.time())
    if left < 6:
        time.sleep(left + 0.2)
    shared = SharedLimiter(60.0)

    async def call(req):
        return shared.handle(req)

    a = LocalLimiter(call, idle_return_s=1.0, lease_fraction=0.5)

    async def main():
        for _ in range(20):  # demand grows the leases beyond what is spent
            await a.settle(await a.acquire([SUB]), 0)
        leased_left = shared.acquire(SUB, 0).remaining
        await asyncio.sleep(2.5)  # the sweeper (started by acquire) gives the rest back
        back = shared.acquire(SUB, 0).remaining
        await a.close()
        return leased_left, back

    leased_left, back = asyncio.run(main())
    assert leased_left < 80 and back == 80


def test_tokens_of_a_request_that_ends_after_its_window_are_charged_to_the_current_one():
    """tpm 100: a request admitted in one window that ends in the next uses 80 tokens; they count
    in the window it ended in, so a second 80 there is the last one admitted."""

    async def main():
        clock = Clock()
        shared = SharedLimiter(60.0, clock)
        tpm = Subject("key:late:tpm", 100, TOKENS)
        lim = LocalLimiter(direct(shared), idle_return_s=100, clock=clock)
        long_one = await lim.acquire([tpm])
        clock.t += 61.0  # the window it was admitted in is over when it ends
        await lim.settle(long_one, 80)
        assert shared.used(tpm.name) == 80
        await lim.settle(await lim.acquire([tpm]), 80)
        with pytest.raises(RateLimited):
            await lim.acquire([tpm])
        await lim.close()

    asyncio.run(main())
