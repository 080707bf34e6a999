"""The handle adaptor (router/handles.py) against a real Serve deployment: an engine that raises
something unexpected is the same 500 whether the call streams or not."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from rawinfer.contract.errors import InferenceFailed, Unavailable


@pytest.fixture(scope="module")
def boom(service):
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.01})
    class Boom:
        async def __call__(self, payload):
            if payload.get("ok"):
                return {"data": {"echo": payload["ok"]}}
            raise RuntimeError("a secret internal detail")

        async def stream(self, payload):
            yield {"delta": "first"}
            raise RuntimeError("a secret internal detail")

    handle = serve.run(Boom.bind(), name="boom-test", route_prefix=None)
    yield handle
    serve.delete("boom-test")


def test_unexpected_engine_error_is_a_500_on_both_paths(boom):
    from router.handles import handle_backend

    call = handle_backend("boom", boom)
    assert asyncio.run(call({"ok": 1})) == {"data": {"echo": 1}}
    with pytest.raises(InferenceFailed) as unstreamed:
        asyncio.run(call({}))
    events = []

    async def stream():
        async for event in call.stream({}):
            events.append(event)

    with pytest.raises(InferenceFailed) as streamed:
        asyncio.run(stream())
    assert events == [{"delta": "first"}]
    for exc in (unstreamed.value, streamed.value):
        assert not isinstance(exc, Unavailable)
        assert "secret" not in exc.message and "boom" in exc.message


@pytest.fixture(scope="module")
def poison(service, tmp_path_factory):
    """A deployment that dies on every request, counting the requests that reached it."""
    from ray import serve

    log = tmp_path_factory.mktemp("poison") / "calls.log"

    @serve.deployment(ray_actor_options={"num_cpus": 0.01}, health_check_period_s=1)
    class Poison:
        def __init__(self, path: str):
            self.path = path

        async def __call__(self, payload):
            with open(self.path, "a") as f:
                f.write(payload["id"] + "\n")
            # dies mid-work, after its acceptance reached the router: Serve itself re-routes a
            # request whose replica died before accepting it (strict max_ongoing_requests), a
            # race a replica dying in the same millisecond loses on a fast machine
            await asyncio.sleep(0.5)
            os._exit(1)

    handle = serve.run(Poison.bind(str(log)), name="poison-test", route_prefix=None)
    yield handle, log
    serve.delete("poison-test")


@pytest.mark.parametrize("retry, sent", [(True, 2), (False, 1)])
def test_a_request_that_kills_its_replica_is_sent_again_at_most_once(poison, retry, sent):
    from router.handles import handle_backend

    handle, log = poison
    call = handle_backend("poison", handle, retry=retry)
    rid = f"r-{retry}"
    with pytest.raises(Unavailable):
        asyncio.run(asyncio.wait_for(call({"id": rid}), 120))
    assert log.read_text().split().count(rid) == sent


@pytest.fixture(scope="module")
def slow(service):
    """One replica, one request at a time, one waiting: the rest must be refused at once."""
    from ray import serve

    @serve.deployment(
        ray_actor_options={"num_cpus": 0.01}, max_ongoing_requests=1, max_queued_requests=1
    )
    class Slow:
        async def __call__(self, payload):
            await asyncio.sleep(3)
            return {"data": {}}

    handle = serve.run(Slow.bind(), name="slow-test", route_prefix=None)
    yield handle
    serve.delete("slow-test")


def test_a_full_queue_is_a_fast_503_with_retry_after(slow):
    from rawinfer.contract.errors import Overloaded
    from router.errors import error_headers, status_of
    from router.handles import handle_backend

    call = handle_backend("slow", slow)

    async def one():
        t0 = time.monotonic()
        try:
            await call({})
            return "ok", time.monotonic() - t0
        except Overloaded as e:
            return e, time.monotonic() - t0

    async def burst():
        return await asyncio.gather(*(one() for _ in range(6)))

    results = asyncio.run(burst())
    refused = [(e, t) for e, t in results if isinstance(e, Overloaded)]
    assert len(refused) >= 3 and all(t < 1.5 for _, t in refused), results
    exc = refused[0][0]
    assert status_of(exc)[0] == 503 and error_headers(exc)["Retry-After"] == "1"


def test_only_a_memory_kill_counts_as_one():
    from router.handles import died_of_memory

    crash = (
        "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
        "Worker exit detail: ... (1) the process was killed by the OOM killer due to high memory"
    )
    oom = "The actor is dead. Worker exit type: NODE_OUT_OF_MEMORY Worker exit detail: ..."
    assert not died_of_memory(RuntimeError(crash)) and died_of_memory(RuntimeError(oom))
