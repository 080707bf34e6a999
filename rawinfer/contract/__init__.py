"""The contract: the bottom layer every other package builds on (docs/architecture.md).

One module per task (inputs, parameters, the payload that crosses a handle, the engine
Protocol), the request and response of `POST /v1/inference`, and the errors with their one
status table. No Ray, no web framework, no model library."""

from __future__ import annotations

from rawinfer.contract.base import Strict  # noqa: F401
from rawinfer.contract.chat import ChatInputs, ChatParams, ChatPayload, Message, VisionInputs  # noqa: F401
from rawinfer.contract.errors import InvalidRequest, RawInferError  # noqa: F401  (first: the others use it)
from rawinfer.contract.multimodal import MultimodalInputs, MultimodalParams, MultimodalPayload  # noqa: F401
from rawinfer.contract.request import (  # noqa: F401
    ErrorBody,
    ErrorDetail,
    InferenceRequest,
    InferenceResponse,
    Task,
    TokensUsed,
    detect_task,
)
from rawinfer.contract.text_embedding import TextEmbeddingParams, TextEmbeddingPayload, TextInputs  # noqa: F401
from rawinfer.contract.transcription import (  # noqa: F401
    TranscriptionInputs,
    TranscriptionParams,
    TranscriptionPayload,
)
