"""Per-task handling at the ingress: which input and parameter models validate a request, and
how the validated request becomes the plain-data payload a backend deployment receives.

A registry (task -> TaskSpec), no if/elif over tasks. Media given by URL or base64 is fetched and
decoded to bytes here, once, so backends receive bytes and never reach the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from pydantic import BaseModel

from models.chat import ChatParams
from models.transcription import TranscriptionParams
from router.contract import ChatInputs, MultimodalInputs, MultimodalParams, Task, TextEmbeddingParams, TextInputs, TranscriptionInputs


class MediaLoader(Protocol):
    async def load(self, url: str | None, b64: str | None) -> bytes: ...


Build = Callable[[Any, Any, MediaLoader], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class TaskSpec:
    inputs: type[BaseModel]
    params: type[BaseModel]
    build: Build


async def _text_embedding(inputs: TextInputs, params: TextEmbeddingParams, media: MediaLoader) -> dict[str, Any]:
    return {"texts": inputs.as_list(), "single": inputs.text is not None, "parameters": params.model_dump()}


async def _transcription(inputs: TranscriptionInputs, params: TranscriptionParams, media: MediaLoader) -> dict[str, Any]:
    audio = await media.load(inputs.audio_url, inputs.audio_base64)
    return {"audio": audio, "parameters": params.model_dump()}


async def _chat(inputs: ChatInputs, params: ChatParams, media: MediaLoader) -> dict[str, Any]:
    return {**inputs.model_dump(exclude_none=True), "parameters": params.model_dump(by_alias=True)}


async def _multimodal(inputs: MultimodalInputs, params: MultimodalParams, media: MediaLoader) -> dict[str, Any]:
    base = {"parameters": params.model_dump()}
    if inputs.text is not None or inputs.texts is not None:
        texts = [inputs.text] if inputs.text is not None else inputs.texts
        return {**base, "kind": "text", "texts": texts, "single": inputs.text is not None}
    if inputs.image_url is not None or inputs.image_base64 is not None:
        return {**base, "kind": "image", "media": await media.load(inputs.image_url, inputs.image_base64)}
    return {**base, "kind": "video", "media": await media.load(inputs.video_url, inputs.video_base64)}


TASKS: dict[Task, TaskSpec] = {
    Task.multimodal_embedding: TaskSpec(MultimodalInputs, MultimodalParams, _multimodal),
    Task.chat: TaskSpec(ChatInputs, ChatParams, _chat),
    Task.text_embedding: TaskSpec(TextInputs, TextEmbeddingParams, _text_embedding),
    Task.transcription: TaskSpec(TranscriptionInputs, TranscriptionParams, _transcription),
}
