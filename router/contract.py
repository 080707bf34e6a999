"""The HTTP contract's types in one module: request, response, error body, and the per-task
inputs and parameters (see ../shared/CONTRACT.md).

Everything here is plain pydantic: no Ray, no FastAPI, no model libraries, so the ingress can
validate a request before anything reaches a replica and unit tests can exercise it alone.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from rawinfer.errors import InvalidRequest


class Task(str, Enum):
    chat = "chat"
    vision = "vision"
    text_embedding = "text_embedding"
    multimodal_embedding = "multimodal_embedding"
    transcription = "transcription"
    plugin = "plugin"  # a custom model: inputs/parameters/data are the plugin's own models (docs/plugins.md)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------- request

class InferenceRequest(_Strict):
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
        modes = [m for m, on in (
            ("provider+model", self.provider is not None),
            ("inference_name", self.inference_name is not None),
            ("feature_uri", self.feature_uri is not None),
        ) if on]
        if len(modes) != 1:
            raise ValueError(
                "give exactly one of provider+model, inference_name or feature_uri"
                + (f" (got {', '.join(modes)})" if modes else " (got none)")
            )
        return self


# --------------------------------------------------------------------------------- inputs

def _exactly_one(model: BaseModel, fields: tuple[str, ...]) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(fields)}" + (f" (got {', '.join(given)})" if given else ""))


def _check_text(value: str, where: str) -> str:
    if not value.strip():
        raise ValueError(f"{where} is empty")
    return value


class TextInputs(_Strict):
    text: str | None = None
    texts: list[str] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "TextInputs":
        _exactly_one(self, ("text", "texts"))
        if self.text is not None:
            _check_text(self.text, "inputs.text")
        if self.texts is not None:
            if not self.texts:
                raise ValueError("inputs.texts is an empty list")
            for i, t in enumerate(self.texts):
                _check_text(t, f"inputs.texts[{i}]")
        return self

    def as_list(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class MultimodalInputs(_Strict):
    text: str | None = None
    texts: list[str] | None = None
    image_url: str | None = None
    image_base64: str | None = None
    video_url: str | None = None
    video_base64: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "MultimodalInputs":
        _exactly_one(self, ("text", "texts", "image_url", "image_base64", "video_url", "video_base64"))
        if self.text is not None or self.texts is not None:
            TextInputs(text=self.text, texts=self.texts)
        return self


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatInputs(_Strict):
    prompts: list[str] | None = None
    system: str | None = None
    messages: list[Message] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "ChatInputs":
        _exactly_one(self, ("prompts", "messages"))
        if self.prompts is not None:
            if not self.prompts:
                raise ValueError("inputs.prompts is an empty list")
            for i, p in enumerate(self.prompts):
                _check_text(p, f"inputs.prompts[{i}]")
        if self.messages is not None:
            if not self.messages:
                raise ValueError("inputs.messages is an empty list")
            if self.system is not None:
                raise ValueError("put the system prompt in messages (role 'system') when using messages")
            if self.messages[-1].role != "user":
                raise ValueError("the last message must have role 'user'")
        return self


class VisionInputs(_Strict):
    prompts: list[str]
    system: str | None = None
    image_url: str | None = None
    image_base64: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "VisionInputs":
        _exactly_one(self, ("image_url", "image_base64"))
        if not self.prompts:
            raise ValueError("inputs.prompts is an empty list")
        for i, p in enumerate(self.prompts):
            _check_text(p, f"inputs.prompts[{i}]")
        return self


class TranscriptionInputs(_Strict):
    audio_url: str | None = None
    audio_base64: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "TranscriptionInputs":
        _exactly_one(self, ("audio_url", "audio_base64"))
        return self


# --------------------------------------------------------------------------------- parameters

class TextEmbeddingParams(_Strict):
    normalize: StrictBool = True
    input_type: Literal["query", "passage"] | None = None
    truncate: StrictBool = False


class MultimodalParams(_Strict):
    normalize: StrictBool = True
    interval_sec: float | None = Field(None, gt=0, le=3600)
    max_frames: int | None = Field(None, ge=1, le=10_000)


INPUT_MODELS: dict[Task, type[BaseModel]] = {
    Task.chat: ChatInputs,
    Task.vision: VisionInputs,
    Task.text_embedding: TextInputs,
    Task.multimodal_embedding: MultimodalInputs,
    Task.transcription: TranscriptionInputs,
}


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
            "prompts with image_url/image_base64 (vision), or audio_url/audio_base64 (transcription)",
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


# --------------------------------------------------------------------------------- response

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
