"""Google: Gemini chat and vision through the official `google-genai` SDK
(`client.aio.models.generate_content`, SDK retries off); Vertex AI's `multimodalembedding` lives
in models/providers/vertex.py. Settings and decisions: docs/notes/engines.md#google."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from models.providers.base import (
    Deadline,
    Failure,
    ProviderAdapter,
    ProviderSettings,
    body_message,
    retry_after_from_headers,
)
from models.providers.helpers import (
    Completion,
    chat_conversations,
    chat_data,
    image_of,
    parse_params,
    run_all,
    set_params,
    split_system,
)
from models.providers.vertex import VertexEmbedding, VertexHTTPError
from rawinfer.contract import ChatParams
from rawinfer.contract.errors import ProviderError

GEMINI_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")


class GoogleSettings(ProviderSettings):
    gemini_api_version: str = Field(
        "v1beta",
        description="the Gemini API version path (v1beta has every "
        "generation feature used here; the SDK's own default is v1)",
    )
    vertex_project: str | None = Field(None, description="Google Cloud project for Vertex AI")
    vertex_location: str = "us-central1"
    vertex_base_url: str | None = Field(
        None, description="default https://{location}-aiplatform.googleapis.com"
    )
    vertex_auth: Literal["adc", "api_key"] = "adc"


class GoogleAdapter(VertexEmbedding, ProviderAdapter):
    name = "google"
    sdk_modules = ("google.genai", "google.genai.models", "httpx")
    settings_model = GoogleSettings
    settings: GoogleSettings

    def __init__(self, settings=None, models=None):
        super().__init__(settings, models)
        self._adc: Any = None  # Vertex's Application Default Credentials, read on first use

    @property
    def available(self) -> bool:
        return self.available_for("gemini-") or self.available_for("multimodalembedding")

    def available_for(self, model: str) -> bool:
        """Vertex (`multimodalembedding*`) needs a project and credentials; Gemini a key."""
        if model.startswith("multimodalembedding"):
            s = self.settings
            return bool(s.vertex_project) and (s.vertex_auth == "adc" or s.key() is not None)
        return self.settings.key() is not None

    def secrets(self) -> list[str]:
        token = getattr(self._adc, "token", None)
        return super().secrets() + ([token] if isinstance(token, str) and token else [])

    def classify(self, exc: BaseException) -> Failure | None:
        from google.genai import errors

        if isinstance(exc, (errors.APIError, VertexHTTPError)):
            status = exc.code if isinstance(exc, errors.APIError) else exc.status
            body = exc.details if isinstance(exc, errors.APIError) else exc.body
            response_headers = getattr(getattr(exc, "response", None), "headers", None) or getattr(
                exc, "headers", None
            )
            message, typ = body_message(body)
            wait = (
                retry_after_from_headers(response_headers) if response_headers is not None else None
            )
            return Failure(
                "status",
                int(status or 0),
                message,
                typ,
                wait if wait is not None else _retry_info(body),
                credentials_refused="API_KEY_INVALID" in _reasons(body),
            )
        names = {c.__name__ for c in type(exc).__mro__}
        if any("Timeout" in n for n in names):
            return Failure("timeout")
        if isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in (
            "aiohttp",
            "httpx",
            "httpx2",
            "httpcore",
        ):
            return Failure("connection")
        return None

    async def aclose(self) -> None:
        held = self._clients.pop("sdk", None)
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[1].aio.aclose()
        await super().aclose()

    # ---- Gemini

    def client(self):
        def make():
            from google import genai
            from google.genai import types

            s = self.settings
            return genai.Client(
                vertexai=False,
                api_key=s.key(),
                http_options=types.HttpOptions(
                    base_url=s.base_url or None,
                    api_version=s.gemini_api_version,
                    timeout=int(s.timeout_s * 1000),
                    retry_options=types.HttpRetryOptions(attempts=1),
                ),
            )  # one attempt: the retries are ours

        return self._loop_client(make)

    async def _complete(
        self,
        model: str,
        system: str | None,
        turns: list[dict],
        image: tuple[bytes, str] | None,
        params: ChatParams,
        deadline: Deadline,
    ) -> Completion:
        from google.genai import types

        contents = []
        for t in turns:
            parts = [types.Part(text=t["content"])]
            if image is not None:
                parts.insert(0, types.Part.from_bytes(data=image[0], mime_type=image[1]))
            contents.append(
                types.Content(role="model" if t["role"] == "assistant" else "user", parts=parts)
            )
        config: dict[str, Any] = {
            "max_output_tokens": params.max_tokens,
            **set_params(params, "temperature", "top_p", "seed"),
        }
        if system:
            config["system_instruction"] = system
        if params.stop is not None:
            config["stop_sequences"] = params.stop_list()
        if params.json_schema is not None:
            config.update(
                response_mime_type="application/json", response_json_schema=params.json_schema
            )
        client = self.client()

        def attempt(timeout_s: float):
            cfg = types.GenerateContentConfig(
                **config, http_options=types.HttpOptions(timeout=max(int(timeout_s * 1000), 1))
            )
            return client.aio.models.generate_content(model=model, contents=contents, config=cfg)

        resp = await self.call(attempt, deadline, "the generation")
        if not resp.candidates:
            block = getattr(getattr(resp, "prompt_feedback", None), "block_reason", None)
            raise ProviderError(
                "google returned no answer"
                + (f" (prompt blocked: {_enum(block)})" if block else ""),
                {"provider": self.name, "block_reason": _enum(block)},
            )
        cand = resp.candidates[0]
        parts = (cand.content.parts if cand.content else None) or []
        text = "".join(p.text for p in parts if p.text and not p.thought)
        usage = resp.usage_metadata
        completion = (
            ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0))
            if usage
            else 0
        )
        return Completion(
            text,
            "length" if _enum(cand.finish_reason) == "MAX_TOKENS" else "stop",
            (usage.prompt_token_count or 0) if usage else 0,
            completion,
            resp.model_version,
        )

    async def _answer(
        self,
        task: str,
        model: str,
        inputs: dict,
        parameters: dict,
        deadline: Deadline,
        image: tuple[bytes, str] | None,
    ) -> dict:
        params = parse_params(ChatParams, parameters)
        system, conversations = chat_conversations(task, inputs)
        jobs = []
        for conv in conversations:
            sys_text, turns = split_system(conv, system)
            jobs.append(
                lambda s=sys_text, m=turns: self._complete(model, s, m, image, params, deadline)
            )
        return chat_data(self.name, await run_all(jobs), params, model)

    async def _chat(self, model: str, inputs: dict, parameters: dict, deadline: Deadline) -> dict:
        return await self._answer("chat", model, inputs, parameters, deadline, None)

    async def _vision(self, model: str, inputs: dict, parameters: dict, deadline: Deadline) -> dict:
        return await self._answer(
            "vision", model, inputs, parameters, deadline, image_of(inputs, GEMINI_IMAGE_TYPES)
        )


def _enum(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _error_details(body: Any) -> list[dict]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _reasons(body: Any) -> set[str]:
    """google.rpc.ErrorInfo reasons; Gemini answers a bad key with 400 + reason API_KEY_INVALID."""
    return {str(d.get("reason")) for d in _error_details(body) if d.get("reason")}


def _retry_info(body: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (`"retryDelay": "20s"`) in an error body."""
    for d in _error_details(body):
        if str(d.get("@type", "")).endswith("RetryInfo"):
            try:
                return max(float(str(d.get("retryDelay", "")).rstrip("s")), 0.0)
            except ValueError:
                return None
    return None
