"""The limiter under faults: a shared limiter that hangs costs a request at most its call
timeout (then fail_open decides), and leased units idle at one replica go back on their own."""

from __future__ import annotations

import asyncio
import time

import pytest

from rawinfer.contract.errors import RateLimited
from rawinfer.tenancy.limits import REQUESTS, LocalLimiter, Subject, window_of
from rawinfer.tenancy.shared_limiter import SharedLimiter

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
