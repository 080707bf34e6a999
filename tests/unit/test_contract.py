"""Contract types and task detection, without Ray."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rawinfer.contract import (
    ChatInputs,
    InferenceRequest,
    MultimodalInputs,
    Task,
    TextEmbeddingParams,
    TextInputs,
    TranscriptionInputs,
    VisionInputs,
    detect_task,
)
from rawinfer.contract.errors import InvalidRequest

ALL = frozenset(Task)


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "openai", "model": "gpt-4o-mini", "inputs": {"prompts": ["hi"]}},
        {"inference_name": "x", "inputs": {}},
        {
            "feature_uri": "mixpeek://a@v1/b",
            "inputs": {},
            "parameters": {"k": 1},
            "enable_semantic_cache": True,
            "semantic_cache_max_error_rate": 0.05,
        },
    ],
)
def test_valid_requests(body):
    req = InferenceRequest.model_validate(body)
    assert req.parameters == body.get("parameters", {})


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"inputs": {}}, "exactly one"),
        ({"provider": "openai", "inputs": {}}, "needs `model`"),
        ({"model": "m", "inputs": {}}, "needs `provider`"),
        (
            {"provider": "p", "model": "m", "inference_name": "x", "inputs": {}},
            "got provider+model, inference_name",
        ),
        ({"inference_name": "x", "feature_uri": "mixpeek://a@v1/b", "inputs": {}}, "exactly one"),
        ({"inference_name": "x"}, "Field required"),
        (
            {"inference_name": "x", "inputs": {}, "semantic_cache_max_error_rate": 1.5},
            "less than or equal",
        ),
        (
            {"inference_name": "x", "inputs": {}, "semantic_cache_max_error_rate": -0.1},
            "greater than or equal",
        ),
        ({"inference_name": "x", "inputs": {}, "bogus": 1}, "Extra inputs"),
        ({"inference_name": 5, "inputs": {}}, "string"),
    ],
)
def test_invalid_requests(body, fragment):
    with pytest.raises(ValidationError) as e:
        InferenceRequest.model_validate(body)
    assert fragment in str(e.value)


def test_semantic_cache_defaults():
    req = InferenceRequest.model_validate({"inference_name": "x", "inputs": {}})
    assert req.enable_semantic_cache is False and req.semantic_cache_max_error_rate is None


@pytest.mark.parametrize(
    "inputs,supported,task",
    [
        ({"text": "a"}, {Task.text_embedding}, Task.text_embedding),
        ({"texts": ["a"]}, {Task.multimodal_embedding}, Task.multimodal_embedding),
        ({"text": "a"}, ALL, Task.text_embedding),
        ({"image_url": "u"}, ALL, Task.multimodal_embedding),
        ({"video_base64": "x"}, ALL, Task.multimodal_embedding),
        ({"prompts": ["a"]}, ALL, Task.chat),
        ({"messages": []}, ALL, Task.chat),
        ({"prompts": ["a"], "image_url": "u"}, ALL, Task.vision),
        ({"audio_url": "u"}, ALL, Task.transcription),
        ({"audio_base64": "u"}, {Task.transcription}, Task.transcription),
    ],
)
def test_detect_task(inputs, supported, task):
    assert detect_task(inputs, supported) is task


def test_detect_task_refusals_name_the_supported_tasks():
    with pytest.raises(InvalidRequest) as e:
        detect_task({"prompts": ["a"]}, {Task.text_embedding, Task.multimodal_embedding})
    assert "cannot do chat" in e.value.message and e.value.details["supported_tasks"] == [
        "multimodal_embedding",
        "text_embedding",
    ]
    with pytest.raises(InvalidRequest) as e:
        detect_task({"nothing": 1}, ALL)
    assert "inputs name no task" in e.value.message


@pytest.mark.parametrize(
    "model,inputs",
    [
        (TextInputs, {}),
        (TextInputs, {"text": "a", "texts": ["b"]}),
        (TextInputs, {"texts": []}),
        (TextInputs, {"text": ""}),
        (TextInputs, {"texts": ["a", " "]}),
        (TextInputs, {"text": "a", "x": 1}),
        (MultimodalInputs, {"image_url": "u", "text": "t"}),
        (MultimodalInputs, {}),
        (MultimodalInputs, {"texts": []}),
        (ChatInputs, {}),
        (ChatInputs, {"prompts": []}),
        (ChatInputs, {"prompts": ["a"], "messages": [{"role": "user", "content": "x"}]}),
        (ChatInputs, {"messages": [{"role": "user", "content": "x"}], "system": "s"}),
        (ChatInputs, {"messages": [{"role": "bot", "content": "x"}]}),
        (
            ChatInputs,
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
        ),
        (VisionInputs, {"prompts": ["a"]}),
        (VisionInputs, {"prompts": ["a"], "image_url": "u", "image_base64": "b"}),
        (TranscriptionInputs, {}),
        (TranscriptionInputs, {"audio_url": "u", "audio_base64": "b"}),
    ],
)
def test_input_shapes_refused(model, inputs):
    with pytest.raises(ValidationError):
        model.model_validate(inputs)


def test_text_inputs_as_list():
    assert TextInputs(text="a").as_list() == ["a"] and TextInputs(texts=["a", "b"]).as_list() == [
        "a",
        "b",
    ]


def test_embedding_params():
    assert TextEmbeddingParams().model_dump() == {
        "normalize": True,
        "input_type": None,
        "truncate": False,
    }
    for bad in ({"input_type": "doc"}, {"normalize": "maybe"}, {"dimensions": 3}):
        with pytest.raises(ValidationError):
            TextEmbeddingParams.model_validate(bad)
