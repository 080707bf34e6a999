"""The multimodal-embedding task (text, image or video into one space, as CLIP does): inputs,
parameters, the payload that crosses the handle, and the engine Protocol."""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict

import numpy as np
from pydantic import Field, StrictBool, model_validator

from rawinfer.contract.base import MAX_TEXTS, Strict, exactly_one
from rawinfer.contract.text_embedding import TextInputs


class MultimodalInputs(Strict):
    text: str | None = None
    texts: list[str] | None = Field(None, max_length=MAX_TEXTS)
    image_url: str | None = None
    image_base64: str | None = None
    video_url: str | None = None
    video_base64: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "MultimodalInputs":
        exactly_one(
            self, ("text", "texts", "image_url", "image_base64", "video_url", "video_base64")
        )
        if self.text is not None or self.texts is not None:
            TextInputs(text=self.text, texts=self.texts)
        return self


class MultimodalParams(Strict):
    normalize: StrictBool = True
    interval_sec: float | None = Field(None, gt=0, le=3600)
    max_frames: int | None = Field(None, ge=1, le=10_000)


class MultimodalPayload(TypedDict, total=False):
    kind: Literal["text", "image", "video"]
    texts: list[str]  # kind text
    single: bool  # kind text: the request gave `text`
    media: bytes  # kind image or video: fetched and decoded at the ingress
    parameters: dict[str, Any]  # MultimodalParams.model_dump()


class MultimodalEmbedder(Protocol):
    """A multimodal-embedding engine (models/clip.py), as deployments/clip.py drives it. Rows
    are raw float32; the deployment L2-normalises them (rawinfer/core/vectors.py)."""

    served_model: str

    def load(self) -> None: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...

    def preprocess(self, images: list) -> Any:
        """A batch tensor from decoded images, for `encode_batch`."""
        ...

    def encode_batch(self, pixels: Any) -> np.ndarray: ...

    def embed_images(self, images: list) -> np.ndarray: ...

    def embed_video(
        self,
        data: bytes,
        *,
        interval_sec: float,
        max_frames: int,
        normalize: bool = True,
        max_duration_s: float = ...,
    ) -> dict[str, Any]:
        """The contract's video data: a pooled `embedding`, `dimensions`, `segments`."""
        ...
