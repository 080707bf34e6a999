"""vLLM's engine inside the calling process, behind the part of AsyncLLM's interface that
models/chat.py uses: one thread drives a synchronous `LLMEngine` (no second process that imports
torch and vLLM again). Used on CPU with one worker (docs/notes/engines.md#chat)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from typing import Any, AsyncIterator

log = logging.getLogger("rawinfer.chat")
_ABORTED = object()  # queue item: the request was aborted (its stream ends)


def _resolve(marker: tuple[asyncio.AbstractEventLoop, asyncio.Future]) -> None:
    loop, fut = marker
    try:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))
    except RuntimeError:  # its event loop is closed
        pass


class InprocEngine:
    def __init__(self, engine_args: Any):
        """Blocks until the engine is built (tens of seconds on CPU): call it in a worker thread.
        The engine is built on the thread that will drive it (vLLM's CPU worker binds that
        thread's OpenMP threads when it initialises)."""
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        self._engine: Any = None
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self._cond = threading.Condition()
        self._adds: list[tuple[str, dict, Any]] = []
        self._aborts: list[Any] = []  # request ids, and (loop, future) markers of abort() calls
        self._queues: dict[
            str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]
        ] = {}  # engine key -> its caller
        self._keys: dict[
            str, set[str]
        ] = {}  # the caller's request id -> engine keys of its live calls
        self._serial = itertools.count()
        self._unfinished = 0
        self._stopped = False
        self.errored = False
        self._thread = threading.Thread(
            target=self._run, args=(engine_args,), name="vllm-engine", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._init_error is not None:
            raise self._init_error

    # ---- the driver thread

    def _deliver(self, rid: str, item: Any) -> None:
        entry = self._queues.get(rid)
        if entry is None:
            return
        loop, queue = entry
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # its event loop is closed: nobody is waiting
            pass

    def _run(self, engine_args: Any) -> None:
        try:
            from vllm.v1.engine.llm_engine import LLMEngine

            self._engine = engine = LLMEngine.from_engine_args(
                engine_args, enable_multiprocessing=False
            )
        except BaseException as e:
            self._init_error = e
            return
        finally:
            self._ready.set()
        try:
            while True:
                with self._cond:
                    while not (
                        self._adds
                        or self._aborts
                        or self._stopped
                        or engine.has_unfinished_requests()
                    ):
                        self._cond.wait()
                    if self._stopped:
                        break
                    adds, self._adds = self._adds, []
                    aborts, self._aborts = self._aborts, []
                for rid, prompt, params in adds:
                    try:
                        engine.add_request(rid, prompt, params)
                    except (
                        Exception
                    ) as e:  # the request itself is invalid (e.g. a schema vLLM refuses)
                        self._deliver(rid, e)
                if aborts:
                    engine.abort_request([rid for rid in aborts if isinstance(rid, str)])
                    self._unfinished = engine.get_num_unfinished_requests()
                    for rid in aborts:
                        if isinstance(rid, str):
                            self._deliver(rid, _ABORTED)
                        else:  # (loop, future) of an abort() call waiting for this to be done
                            _resolve(rid)
                if engine.has_unfinished_requests():
                    outs = engine.step()
                    self._unfinished = (
                        engine.get_num_unfinished_requests()
                    )  # before a caller sees its end
                    for out in outs:
                        self._deliver(out.request_id, out)
        except BaseException as e:  # the engine is broken: every waiting request learns it
            log.exception("the in-process vLLM engine died")
            self.errored = True
            self._fail_all(f"engine died: {type(e).__name__}")
            return
        self._fail_all("the engine was shut down")  # stopped: nothing waits forever

    def _fail_all(self, why: str) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        for rid in list(self._queues):
            self._deliver(rid, EngineDeadError(why))
        with self._cond:
            pending, self._aborts = self._aborts, []
        for marker in pending:  # abort() calls still waiting: there is nothing left to abort
            if not isinstance(marker, str):
                _resolve(marker)

    # ---- AsyncLLM's interface, as models/chat.py uses it

    async def generate(self, prompt: dict, params: Any, request_id: str) -> AsyncIterator[Any]:
        from vllm.v1.engine.exceptions import EngineDeadError

        if self.errored or self._stopped:
            raise EngineDeadError("the engine is not running")
        # the engine sees a key unique to this call: two calls may bring the same request id (a
        # client's X-Request-Id), and their outputs must not meet in one queue
        key = f"{request_id}#{next(self._serial)}"
        self._keys.setdefault(request_id, set()).add(key)
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[key] = (asyncio.get_running_loop(), queue)
        with self._cond:
            self._adds.append((key, prompt, params))
            self._cond.notify()
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is _ABORTED:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = bool(item.finished)
                yield item
                if finished:
                    return
        finally:
            self._queues.pop(key, None)
            keys = self._keys.get(request_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[request_id]
            if not finished:  # cancelled or closed early: stop generating for nobody
                self._abort_now([key])

    def _abort_now(self, request_ids: list[str]) -> None:
        with self._cond:
            self._aborts.extend(request_ids)
            self._cond.notify()

    async def abort(self, request_ids: list[str]) -> None:
        """Returns once the engine has dropped them (as AsyncLLM.abort does)."""
        if self.errored or self._stopped or not self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        keys = [k for rid in request_ids for k in self._keys.get(rid, ())]
        self._abort_now([*keys, (loop, done)])
        await done

    async def check_health(self) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        if self.errored or not self._thread.is_alive():
            raise EngineDeadError("the engine thread is not running")

    def get_num_unfinished_requests(self) -> int:
        return self._unfinished + len(self._adds)

    def shutdown(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=30)
        shutdown = getattr(self._engine.engine_core, "shutdown", None)
        if shutdown is not None:
            shutdown()
