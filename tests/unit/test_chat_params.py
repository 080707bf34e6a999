"""The chat task's parameters and an engine that is not started: no vLLM needed."""

from __future__ import annotations

import asyncio

import pytest
from chat_fixtures import PERSON, SERVED
from pydantic import ValidationError

from models.chat import ChatEngine
from rawinfer.contract import ChatParams
from rawinfer.contract.errors import InvalidRequest, Unavailable


@pytest.mark.parametrize(
    "bad",
    [
        {"max_tokens": -1},
        {"max_tokens": 0},
        {"temperature": -0.1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"seed": -1},
        {"n": 2},
        {"frequency_penalty": 1},
    ],
)
def test_params_refused(bad):
    with pytest.raises(ValidationError):
        ChatParams(**bad)


def test_params_defaults_and_schema_alias():
    p = ChatParams()
    assert (p.temperature, p.top_p, p.max_tokens, p.stop, p.stream) == (1.0, 1.0, 256, None, False)
    assert ChatParams(schema=PERSON).json_schema == PERSON
    assert ChatParams(stop="END").stop_list() == ["END"]


def test_invalid_schema_is_invalid_request():
    with pytest.raises(InvalidRequest, match="schema"):
        ChatParams(schema={"type": "not-a-type"})
    with pytest.raises(InvalidRequest):
        ChatParams(schema={"properties": {"a": {"minLength": "three"}}})


def test_engine_not_started_is_unavailable():
    engine = ChatEngine("/nonexistent", served_model=SERVED)
    with pytest.raises(Unavailable):
        asyncio.run(engine.check_health())
    with pytest.raises(Unavailable):
        asyncio.run(
            engine.generate(prompts=["x"], params=ChatParams(), request_id="r", timeout_s=1)
        )
    assert engine.num_running() == 0
