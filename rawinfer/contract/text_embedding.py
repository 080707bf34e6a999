"""The text-embedding task: its inputs, parameters, the payload that crosses the handle, and
the engine Protocol its backends implement."""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict

import numpy as np
from pydantic import Field, StrictBool, model_validator

from rawinfer.contract.base import MAX_TEXTS, Strict, check_text, exactly_one


class TextInputs(Strict):
    text: str | None = None
    texts: list[str] | None = Field(None, max_length=MAX_TEXTS)

    @model_validator(mode="after")
    def _shape(self) -> "TextInputs":
        exactly_one(self, ("text", "texts"))
        if self.text is not None:
            check_text(self.text, "inputs.text")
        if self.texts is not None:
            if not self.texts:
                raise ValueError("inputs.texts is an empty list")
            for i, t in enumerate(self.texts):
                check_text(t, f"inputs.texts[{i}]")
        return self

    def as_list(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class TextEmbeddingParams(Strict):
    normalize: StrictBool = True
    input_type: Literal["query", "passage"] | None = None
    truncate: StrictBool = False


class TextEmbeddingPayload(TypedDict):
    texts: list[str]
    single: bool  # the request gave `text` (one vector back) rather than `texts`
    parameters: dict[str, Any]  # TextEmbeddingParams.model_dump()


class TextEmbedder(Protocol):
    """A text-embedding engine (models/text_embedding.py), as deployments/text_embedding.py
    drives it: `prepare` per request, one `encode` over a batch of requests, `finish` per
    request."""

    served_model: str

    def load(self) -> None: ...

    def prepare(
        self,
        texts: list[str],
        *,
        normalize: bool = True,
        input_type: str | None = None,
        truncate: bool = False,
        single: bool = False,
    ) -> Any:
        """One request's texts checked and counted (the engine's own prepared form)."""
        ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """Raw float32 rows, one per text."""
        ...

    def finish(self, prepared: Any, rows: np.ndarray) -> dict[str, Any]:
        """`{"data": {...}, "model": str, "tokens_used": {...}}` for one request."""
        ...

    def embed(self, texts: list[str], **params: Any) -> dict[str, Any]:
        """One request, unbatched: prepare, encode, finish."""
        ...
