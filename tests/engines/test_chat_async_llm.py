"""The AsyncLLM path of the chat engine (GPUs, tensor parallelism; in_process: false on CPU)."""

from __future__ import annotations

import asyncio

import pytest
from chat_fixtures import MAX_MODEL_LEN, SERVED, needs_vllm
from test_chat_engine import greedy, model_dir  # noqa: F401  (fixture)

from models.chat import ChatEngine
from rawinfer.contract.errors import Unavailable


@needs_vllm
def test_async_llm_path_answers_the_same_and_reports_its_dead_engine(model_dir, offline_vllm):
    """The AsyncLLM path (GPUs, tensor parallelism; `in_process: false` on CPU): the same greedy
    answers, and when its engine process dies, 503s."""
    import time

    import psutil

    loop = asyncio.new_event_loop()
    engine = ChatEngine(
        str(model_dir), served_model=SERVED, max_model_len=MAX_MODEL_LEN, in_process=False
    )
    try:
        loop.run_until_complete(engine.start())
        assert type(engine.engine).__name__ == "AsyncLLM"
        prompt, ref = next(iter(offline_vllm.items()))
        out = loop.run_until_complete(
            engine.generate(
                prompts=[prompt],
                params=greedy(ref["completion_tokens"]),
                request_id="async-path",
                timeout_s=60,
            )
        )
        assert out["responses"][0]["text"] == ref["text"]
        for child in psutil.Process().children(
            recursive=False
        ):  # this engine's own VLLM::* processes
            if child.name().startswith("VLLM::"):
                for p in child.children(recursive=True) + [child]:
                    p.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                loop.run_until_complete(engine.check_health())
            except Unavailable:
                break
            loop.run_until_complete(asyncio.sleep(0.5))
        else:
            pytest.fail("check_health still passes after the engine died")
        with pytest.raises(Unavailable):
            loop.run_until_complete(
                engine.generate(prompts=["Hi"], params=greedy(4), request_id="dead", timeout_s=30)
            )
    finally:
        engine.shutdown()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
