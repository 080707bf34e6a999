"""Serve deployment handles as the gateway's plain-data backends: Ray failures become 503s, and a
request whose replica died is sent again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable

from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from rawinfer.contract.errors import InferenceFailed, Overloaded, Unavailable
from router.gateway import Backend

log = logging.getLogger("rawinfer.ingress")


REPLICA_RETRIES = 1  # times an idempotent request is sent again after its replica died
# local engines have no side effects; a provider call may have been billed and a plugin's code
# may act outside: those are never sent twice
IDEMPOTENT_ENGINES = frozenset({"chat", "clip", "text_embedding", "transcription"})
ENGINE_FAILED = "inference failed inside the model ({})"  # as deployments/base.py's guard says


def died_of_memory(exc: BaseException) -> bool:
    """The replica was killed for memory (Ray's OOM killer): its input may be what did it."""
    # Ray's own wording of a memory-monitor kill; a plain crash's message mentions the OOM killer
    # only among "common causes", so it must not match
    text = str(exc)
    return "NODE_OUT_OF_MEMORY" in text or "running low on memory" in text


def handle_backend(
    name: str,
    handle: DeploymentHandle,
    on_retry: Callable[[str], None] | None = None,
    *,
    retry: bool = False,
) -> Backend:
    """A Serve handle as the gateway's plain-data backend callable; Ray failures become 503s, and a
    request whose replica died is sent again (`on_retry(name)` counts it)."""

    retries = REPLICA_RETRIES if retry else 0

    async def replica_lost(attempt: int, give_up: bool, message: str) -> None:
        """Called while handling the RayActorError: a 503, or a short pause before sending again."""
        if give_up:
            log.exception("backend %s: replica lost (attempt %d)", name, attempt + 1)
            raise Unavailable(message) from None
        log.warning(
            "backend %s: replica lost mid-request, retrying (%d/%d)", name, attempt + 1, retries
        )
        if on_retry:
            on_retry(name)
        await asyncio.sleep(0.05 * (attempt + 1))

    async def call(payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(retries + 1):
            response = handle.remote(payload)
            try:
                return await response
            except BackPressureError:
                raise Overloaded(f"{name} is overloaded; retry shortly") from None
            except RayActorError as e:
                # the replica died (killed, OOM, node lost) before answering: inference has no
                # side effects, so the request goes again; Serve's router has dropped the dead
                # replica and sends it to another one, or holds it until the replacement is up
                # (the gateway's request deadline bounds the wait)
                await replica_lost(
                    attempt,
                    attempt == retries or died_of_memory(e),
                    f"{name} is not available right now; retry shortly",
                )
            except RayTaskError:
                log.exception("backend %s raised", name)
                raise InferenceFailed(ENGINE_FAILED.format(name)) from None
            except RayError:
                log.exception("backend %s failed", name)
                raise Unavailable(f"{name} is not available right now; retry shortly") from None
            except BaseException:
                response.cancel()  # timeout or client gone: stop the work in the replica
                raise
        raise AssertionError("unreachable")

    async def stream(payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for attempt in range(retries + 1):
            gen, sent = handle.options(stream=True, method_name="stream").remote(payload), False
            try:
                async for event in gen:
                    sent = True
                    yield event
                return
            except BackPressureError:
                raise Overloaded(f"{name} is overloaded; retry shortly") from None
            except RayActorError as e:  # once events went out, a retry would repeat them
                await replica_lost(
                    attempt,
                    sent or attempt == retries or died_of_memory(e),
                    f"{name} failed while streaming; retry",
                )
            except RayTaskError:  # the replica's code raised: the same 500 as an unstreamed call
                log.exception("backend %s raised while streaming", name)
                raise InferenceFailed(ENGINE_FAILED.format(name)) from None
            except RayError:
                log.exception("backend %s failed while streaming", name)
                raise Unavailable(f"{name} failed while streaming; retry") from None
            finally:
                gen.cancel()

    call.stream = stream
    return call
