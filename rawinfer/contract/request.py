"""The request and response of `POST /v1/inference` (../shared/CONTRACT.md), the task names,
and which task a request's inputs ask for. Plain pydantic: no Ray, web framework or model lib."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, model_validator

from rawinfer.contract.base import Strict
from rawinfer.contract.errors import InvalidRequest


class Task(str, Enum):
    chat = "chat"
    vision = "vision"
    text_embedding = "text_embedding"
    multimodal_embedding = "multimodal_embedding"
    transcription = "transcription"
    plugin = "plugin"  # a custom model: inputs, parameters and data are its own (docs/plugins.md)


class InferenceRequest(Strict):
    """`POST /v1/inference` body. Exactly one addressing mode."""

    provider: str | None = None
    model: str | None = None
    inference_name: str | None = None
    feature_uri: str | None = None
    inputs: dict[str, Any]
    parameters: dict[str, Any] = Field(default_factory=dict)
    enable_semantic_cache: StrictBool = False  # strict like every boolean: "yes" is a 400
    semantic_cache_max_error_rate: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_addressing_mode(self) -> "InferenceRequest":
        if self.model is not None and self.provider is None:
            raise ValueError("`model` needs `provider` (for example provider='local')")
        if self.provider is not None and self.model is None:
            raise ValueError("`provider` needs `model`")
        modes = [
            m
            for m, on in (
                ("provider+model", self.provider is not None),
                ("inference_name", self.inference_name is not None),
                ("feature_uri", self.feature_uri is not None),
            )
            if on
        ]
        if len(modes) != 1:
            raise ValueError(
                "give exactly one of provider+model, inference_name or feature_uri"
                + (f" (got {', '.join(modes)})" if modes else " (got none)")
            )
        return self


def detect_task(inputs: dict[str, Any], supported: frozenset[Task] | set[Task]) -> Task:
    """Which task the inputs ask for, among those the target supports.

    `text`/`texts` are a text embedding on a text model and a multimodal embedding on a
    multimodal one; `prompts` with an image is vision. Raises InvalidRequest when the inputs ask
    for nothing or for a task the target cannot do (saying which it can).
    """
    keys = set(inputs)
    media = {"image_url", "image_base64"} & keys
    if {"audio_url", "audio_base64"} & keys:
        wanted = [Task.transcription]
    elif {"prompts", "messages"} & keys:
        wanted = [Task.vision] if media else [Task.chat]
    elif media or {"video_url", "video_base64"} & keys:
        wanted = [Task.multimodal_embedding]
    elif {"text", "texts"} & keys:
        wanted = [Task.text_embedding, Task.multimodal_embedding]
    else:
        raise InvalidRequest(
            "inputs name no task: give prompts or messages (chat), text or texts (embedding), "
            "image_url/image_base64/video_url/video_base64 (multimodal embedding), "
            "prompts with image_url/image_base64 (vision), "
            "or audio_url/audio_base64 (transcription)",
            {"inputs": sorted(keys)},
        )
    for task in wanted:
        if task in supported:
            return task
    can = sorted(t.value for t in supported)
    raise InvalidRequest(
        f"this target cannot do {wanted[0].value}; it can do: {', '.join(can)}",
        {"requested_task": wanted[0].value, "supported_tasks": can},
    )


class TokensUsed(BaseModel):
    prompt: int = 0
    completion: int = 0
    total: int = 0


class InferenceResponse(BaseModel):
    data: dict[str, Any]
    provider: str
    model: str
    latency_ms: float
    tokens_used: TokensUsed | None = None
    cache_hit: bool = False
    request_id: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    success: Literal[False] = False
    status: int
    error: ErrorDetail
    request_id: str
