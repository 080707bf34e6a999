"""Per-task handling at the ingress: which input and parameter models validate a request, and
how the validated request becomes the plain-data payload a backend deployment receives.

A registry (task -> TaskSpec), no if/elif over tasks. Media given by URL or base64 is fetched and
decoded to bytes here, once, so backends receive bytes and never reach the network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from pydantic import BaseModel

from rawinfer.contract import (
    ChatInputs,
    ChatParams,
    MultimodalInputs,
    MultimodalParams,
    Task,
    TextEmbeddingParams,
    TextInputs,
    TranscriptionInputs,
    VisionInputs,
)
from rawinfer.contract.errors import InvalidRequest, Unavailable
from rawinfer.contract.transcription import TranscriptionParams
from rawinfer.core.settings import LimitSettings


class MediaLoader(Protocol):
    async def load(self, url: str | None, b64: str | None) -> bytes: ...


Build = Callable[..., Awaitable[dict[str, Any]]]  # (inputs, params, media, *, task, model)


@dataclass(frozen=True)
class TaskSpec:
    inputs: type[BaseModel]
    params: type[BaseModel]
    build: Build


async def _text_embedding(
    inputs: TextInputs, params: TextEmbeddingParams, media: MediaLoader, **_
) -> dict[str, Any]:
    return {
        "texts": inputs.as_list(),
        "single": inputs.text is not None,
        "parameters": params.model_dump(),
    }


async def _transcription(
    inputs: TranscriptionInputs, params: TranscriptionParams, media: MediaLoader, **_
) -> dict[str, Any]:
    audio = await media.load(inputs.audio_url, inputs.audio_base64)
    return {"audio": audio, "parameters": params.model_dump()}


async def _chat(inputs: ChatInputs, params: ChatParams, media: MediaLoader, **_) -> dict[str, Any]:
    return {**inputs.model_dump(exclude_none=True), "parameters": params.model_dump(by_alias=True)}


async def _multimodal(
    inputs: MultimodalInputs, params: MultimodalParams, media: MediaLoader, **_
) -> dict[str, Any]:
    base = {"parameters": params.model_dump()}
    if inputs.text is not None or inputs.texts is not None:
        texts = [inputs.text] if inputs.text is not None else inputs.texts
        return {**base, "kind": "text", "texts": texts, "single": inputs.text is not None}
    if inputs.image_url is not None or inputs.image_base64 is not None:
        return {
            **base,
            "kind": "image",
            "media": await media.load(inputs.image_url, inputs.image_base64),
        }
    return {
        **base,
        "kind": "video",
        "media": await media.load(inputs.video_url, inputs.video_base64),
    }


MEDIA_FIELDS = {
    "image": ("image_url", "image_base64"),
    "video": ("video_url", "video_base64"),
    "audio": ("audio_url", "audio_base64"),
}


async def provider_payload(
    inputs: BaseModel, params: BaseModel, media: MediaLoader, *, task: Task, model: str | None
) -> dict[str, Any]:
    """The request a cloud proxy's adapter takes (models/providers/base.py): the validated
    inputs, with any media fetched here (the provider never sees our URLs or fetches them)."""
    data = inputs.model_dump(exclude_none=True)
    for kind, (url_field, b64_field) in MEDIA_FIELDS.items():
        if url_field in data or b64_field in data:
            data["media"] = await media.load(data.pop(url_field, None), data.pop(b64_field, None))
            data["media_kind"] = kind
    return {
        "task": task.value,
        "model": model,
        "inputs": data,
        "parameters": params.model_dump(by_alias=True),
    }


async def _vision_local(
    inputs: VisionInputs, params: ChatParams, media: MediaLoader, **_
) -> dict[str, Any]:
    raise InvalidRequest("vision is served by cloud providers only on this server")


async def _plugin(inputs: BaseModel, params: BaseModel, media: MediaLoader, **_) -> dict[str, Any]:
    return {"inputs": inputs.model_dump(), "parameters": params.model_dump()}


@functools.lru_cache(maxsize=256)
def plugin_task(ref: str, label: str) -> TaskSpec:
    """A plugin target's TaskSpec: its own Inputs and Parameters (unknown keys refused), so a bad
    request is a 400 at the ingress and never reaches the plugin's replica."""
    from rawinfer.plugins.discovery import load_reference

    try:
        m = load_reference(ref).manifest
    except Exception as e:
        raise Unavailable(
            f"plugin {label} cannot be imported by the ingress: {type(e).__name__}",
            {"plugin": label},
        ) from None
    return TaskSpec(m.Inputs, m.Parameters, _plugin)


TASKS: dict[Task, TaskSpec] = {
    Task.vision: TaskSpec(VisionInputs, ChatParams, _vision_local),
    Task.multimodal_embedding: TaskSpec(MultimodalInputs, MultimodalParams, _multimodal),
    Task.chat: TaskSpec(ChatInputs, ChatParams, _chat),
    Task.text_embedding: TaskSpec(TextInputs, TextEmbeddingParams, _text_embedding),
    Task.transcription: TaskSpec(TranscriptionInputs, TranscriptionParams, _transcription),
}


def check_provider_spend(task: Task, inputs: Any, params: Any, limits: LimitSettings) -> None:
    """A request toward a cloud provider is refused before any upstream call when it would make
    more than `limits.provider_max_calls` calls (each chat or vision prompt is one call, and each
    text of a multimodal embedding: Vertex embeds one per call) or ask prompts x max_tokens over
    `limits.provider_max_output_tokens` (each call billed up to max_tokens)."""
    cap, max_calls = limits.provider_max_output_tokens, limits.provider_max_calls
    prompts = getattr(inputs, "prompts", None)
    texts = getattr(inputs, "texts", None) if task is Task.multimodal_embedding else None
    calls = prompts if isinstance(prompts, list) else texts
    n = len(calls) if isinstance(calls, list) else 1
    if max_calls is not None and n > max_calls:
        what = "prompts" if calls is prompts else "texts"
        raise InvalidRequest(
            f"{n} {what} make {n} calls to a cloud provider in one request; the limit is "
            f"{max_calls}: send at most {max_calls} per request",
            {"limit": max_calls, what: n},
        )
    max_tokens = getattr(params, "max_tokens", None)
    if cap is None or not isinstance(max_tokens, int):
        return
    if n * max_tokens > cap:
        raise InvalidRequest(
            f"{n} prompt(s) x max_tokens {max_tokens} = {n * max_tokens} output tokens asked of a "
            f"cloud provider in one request; the limit is {cap}: send fewer prompts per request "
            "or a lower max_tokens",
            {"limit": cap, "prompts": n, "max_tokens": max_tokens},
        )
