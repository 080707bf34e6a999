"""Local chat over HTTP: the real vLLM engine in its Serve deployment, on the packaged SmolLM2."""

from __future__ import annotations

import json
import time

import httpx
import jsonschema
import pytest
from helpers import assert_error

LOCAL = {"provider": "local", "model": "smollm2-135m-instruct"}
GREEDY = {"temperature": 0, "max_tokens": 32}


@pytest.fixture(scope="module")
def http(service):
    with service.client(timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from models.smollm2 import prepare_packaged_smollm2
    from rawinfer.core.settings import Settings

    return AutoTokenizer.from_pretrained(str(prepare_packaged_smollm2(Settings().cache_dir)))


def post(http, service, body, **kw):
    return http.post("/v1/inference", json=body, headers=service.headers(), **kw)


def test_prompts_answered_each_and_equal_offline_vllm(http, service, offline_vllm):
    prompts = list(offline_vllm)
    for addressing in (LOCAL, {"inference_name": "instruct_chat_v1"}):
        r = post(
            http, service, {**addressing, "inputs": {"prompts": prompts}, "parameters": GREEDY}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (
            body["provider"] == "local"
            and body["model"] == "smollm2-135m-instruct"
            and not body["cache_hit"]
        )
        responses = body["data"]["responses"]
        assert [x["text"] for x in responses] == [offline_vllm[p]["text"] for p in prompts]
        assert all(
            x["finish_reason"] in ("stop", "length") and "parsed" not in x for x in responses
        )
        want_prompt = sum(offline_vllm[p]["prompt_tokens"] for p in prompts)
        want_completion = sum(offline_vllm[p]["completion_tokens"] for p in prompts)
        assert body["tokens_used"] == {
            "prompt": want_prompt,
            "completion": want_completion,
            "total": want_prompt + want_completion,
        }


def test_messages_use_the_chat_template(http, service, tokenizer):
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "My name is Ann."},
        {"role": "assistant", "content": "Hello Ann."},
        {"role": "user", "content": "What is my name?"},
    ]
    r = post(http, service, {**LOCAL, "inputs": {"messages": messages}, "parameters": GREEDY})
    assert r.status_code == 200, r.text
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert r.json()["tokens_used"]["prompt"] == len(ids)
    assert len(r.json()["data"]["responses"]) == 1


def test_system_prompt_is_applied(http, service, tokenizer):
    r = post(
        http,
        service,
        {**LOCAL, "inputs": {"prompts": ["Hi"], "system": "Be brief."}, "parameters": GREEDY},
    )
    ids = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
        tokenize=True,
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert r.status_code == 200 and r.json()["tokens_used"]["prompt"] == len(ids)


def test_schema_output_parses_and_validates(http, service):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    r = post(
        http,
        service,
        {
            **LOCAL,
            "inputs": {"prompts": ["Give a city and its population as JSON."]},
            "parameters": {"temperature": 0, "max_tokens": 64, "schema": schema},
        },
    )
    assert r.status_code == 200, r.text
    (resp,) = r.json()["data"]["responses"]
    jsonschema.validate(resp["parsed"], schema)
    assert json.loads(resp["text"]) == resp["parsed"]


def sse_events(response: httpx.Response):
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            yield event, json.loads(line[len("data: ") :])


def test_stream_deltas_concatenate_to_the_final_response(http, service):
    body = {
        **LOCAL,
        "inputs": {"prompts": ["Count from one to ten in words."]},
        "parameters": {"temperature": 0, "max_tokens": 48, "stream": True},
    }
    with http.stream("POST", "/v1/inference", json=body, headers=service.headers()) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    deltas = [d["delta"] for e, d in events if e == "delta"]
    finals = [d for e, d in events if e == "final"]
    assert len(deltas) >= 3 and len(finals) == 1 and events[-1][0] == "final"
    final = finals[0]
    assert set(final) == {
        "data",
        "provider",
        "model",
        "latency_ms",
        "tokens_used",
        "cache_hit",
        "request_id",
    }
    assert "".join(deltas) == final["data"]["responses"][0]["text"]
    assert final["tokens_used"]["completion"] >= len(deltas)


def test_cancelled_stream_frees_the_engine(http, service):
    from ray import serve

    handle = serve.get_deployment_handle("chat", app_name="rawinfer")
    body = {
        **LOCAL,
        "inputs": {"prompts": ["Write a long story about a dragon."]},
        "parameters": {"temperature": 0.8, "max_tokens": 1500, "stream": True},
    }
    with service.client(timeout=120) as c:
        with c.stream("POST", "/v1/inference", json=body, headers=service.headers()) as r:
            for n, _ in enumerate(sse_events(r)):
                if n == 3:
                    assert handle.num_running.remote().result() >= 1
                    break  # leave mid-stream: the connection closes
    deadline = time.monotonic() + 30
    while handle.num_running.remote().result() != 0:
        assert time.monotonic() < deadline, "the engine still runs the abandoned request"
        time.sleep(0.5)


@pytest.mark.parametrize(
    "parameters",
    [
        {"max_tokens": -1},
        {"max_tokens": 0},
        {"temperature": -0.1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"frequency": 1},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"max_tokens": 5000},
        {"schema": {"type": "nonsense"}},
        {"stream": True, "max_tokens": 4},
        {"seed": -1},
    ],
)
def test_bad_parameters(http, service, parameters):
    prompts = ["one", "two"] if parameters.get("stream") else ["hi"]  # streaming takes one prompt
    assert_error(
        post(http, service, {**LOCAL, "inputs": {"prompts": prompts}, "parameters": parameters}),
        400,
    )


@pytest.mark.parametrize(
    "inputs",
    [
        {"prompts": []},
        {"prompts": [""]},
        {"messages": []},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "robot", "content": "a"}]},
        {"prompts": ["a"], "messages": [{"role": "user", "content": "b"}]},
        {"prompts": "not a list"},
    ],
)
def test_bad_inputs(http, service, inputs):
    assert_error(post(http, service, {**LOCAL, "inputs": inputs}), 400)


def test_max_tokens_over_context_says_the_limits(http, service):
    err = assert_error(
        post(
            http,
            service,
            {**LOCAL, "inputs": {"prompts": ["hi"]}, "parameters": {"max_tokens": 5000}},
        ),
        400,
    )
    assert "2048" in err["error"]["message"]
