"""Google: Gemini chat and vision through the official `google-genai` SDK (`client.aio.models.
generate_content`, SDK retries off), and Vertex AI's `multimodalembedding` (1408-d text, image
and video embeddings).

The google-genai SDK has no public call for `multimodalembedding` (its `embed_content` sends
only text to Vertex's `:predict`, and its HTTP client is private), so that model is called with
httpx on Vertex's documented REST wire format:

    POST {vertex_base_url}/v1/projects/{vertex_project}/locations/{vertex_location}
         /publishers/google/models/multimodalembedding@001:predict
    {"instances": [{"text": ...} | {"image": {"bytesBase64Encoded": ...}}
                   | {"video": {"bytesBase64Encoded": ..., "videoSegmentConfig": {...}}}]}
    -> {"predictions": [{"textEmbedding" | "imageEmbedding": [...],
                         "videoEmbeddings": [{"startOffsetSec", "endOffsetSec", "embedding"}]}]}

Settings (`GoogleSettings`): `api_key`/`api_key_file` and `base_url` are the Gemini API's
(`x-goog-api-key`; default https://generativelanguage.googleapis.com; `gemini_api_version`
v1beta). Vertex needs
`vertex_project` (and `vertex_location`, default us-central1; `vertex_base_url`, default
https://{location}-aiplatform.googleapis.com) and credentials: `vertex_auth: adc` (default) uses
Application Default Credentials through google-auth (GOOGLE_APPLICATION_CREDENTIALS, workload
identity, the metadata server), read on the first call (none found -> 503); `vertex_auth: api_key`
sends `api_key` as `x-goog-api-key` (a Google Cloud key allowed to use Vertex AI).

Decisions: Gemini gets max_output_tokens always, temperature/top_p/seed/stop only when given;
`schema` -> response_mime_type application/json + response_json_schema. Multimodal: one
`:predict` per text (the model takes one instance a request), `normalize` L2-normalises every
vector, video is pooled as the normalised mean of its segments; `interval_sec` -> intervalSec
(Vertex wants a whole number >= 4), `max_frames` -> endOffsetSec = intervalSec * max_frames.
"""

from __future__ import annotations

import asyncio
import base64
import math
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
    media_of,
    parse_params,
    run_all,
    set_params,
    split_system,
)
from rawinfer.contract import ChatParams
from rawinfer.contract.errors import InvalidRequest, ProviderError, Unavailable

GEMINI_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
MULTIMODAL_VERSION = "multimodalembedding@001"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


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


class VertexHTTPError(Exception):
    def __init__(self, status: int, body: Any, headers: Any):
        super().__init__(f"HTTP {status}")
        self.status, self.body, self.headers = status, body, headers


class GoogleAdapter(ProviderAdapter):
    name = "google"
    sdk_modules = ("google.genai", "google.genai.models", "httpx")
    settings_model = GoogleSettings
    settings: GoogleSettings

    def __init__(self, settings=None):
        super().__init__(settings)
        self._adc: Any = None

    def tasks_for(self, model: str) -> set[str]:
        if model.startswith("multimodalembedding"):
            return {"multimodal_embedding"}
        return {"chat", "vision"} if model.startswith("gemini-") else set()

    @property
    def available(self) -> bool:
        return self.available_for("gemini-") or self.available_for("multimodalembedding")

    def available_for(self, model: str) -> bool:
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

    # ---- Vertex multimodal embedding

    def _predict_url(self, model: str) -> str:
        s = self.settings
        base = (
            s.vertex_base_url or f"https://{s.vertex_location}-aiplatform.googleapis.com"
        ).rstrip("/")
        version = model if "@" in model else MULTIMODAL_VERSION
        return (
            f"{base}/v1/projects/{s.vertex_project}/locations/{s.vertex_location}"
            f"/publishers/google/models/{version}:predict"
        )

    async def _auth_headers(self) -> dict[str, str]:
        if self.settings.vertex_auth == "api_key":
            return {"x-goog-api-key": self.settings.key() or ""}
        import google.auth
        from google.auth import exceptions as auth_errors
        from google.auth.transport.requests import Request

        try:
            if self._adc is None:
                self._adc, _ = await asyncio.to_thread(google.auth.default, scopes=_SCOPES)
            if not self._adc.valid:
                await asyncio.to_thread(self._adc.refresh, Request())
        except auth_errors.DefaultCredentialsError:
            raise Unavailable(
                "no Google Cloud credentials for Vertex AI on this server (Application Default "
                "Credentials not found)",
                {"provider": self.name},
            ) from None
        except auth_errors.GoogleAuthError as e:
            raise ProviderError(
                "Google refused this server's Vertex AI credentials; the operator must fix them",
                {"provider": self.name, "error_type": type(e).__name__},
            ) from None
        return {"Authorization": f"Bearer {self._adc.token}"}

    async def _predict(self, model: str, instance: dict, deadline: Deadline) -> dict:
        import httpx

        http = self._loop_client(lambda: httpx.AsyncClient(), "vertex")
        url, headers = self._predict_url(model), await self._auth_headers()

        async def attempt(timeout_s: float) -> dict:
            r = await http.post(
                url, json={"instances": [instance]}, headers=headers, timeout=timeout_s
            )
            try:
                body = r.json()
            except ValueError:
                body = r.text
            if r.status_code >= 400:
                raise VertexHTTPError(r.status_code, body, r.headers)
            return body

        body = await self.call(attempt, deadline, "the embedding")
        preds = body.get("predictions") if isinstance(body, dict) else None
        if not preds:
            raise ProviderError("vertex returned no predictions", {"provider": self.name})
        return preds[0]

    async def _multimodal_embedding(
        self, model: str, inputs: dict, parameters: dict, deadline: Deadline
    ) -> dict:
        from rawinfer.contract import MultimodalParams, TextInputs

        params = parse_params(MultimodalParams, parameters)
        version = model if "@" in model else MULTIMODAL_VERSION
        norm = _unit if params.normalize else (lambda v: v)
        if inputs.get("text") is not None or inputs.get("texts") is not None:
            texts = parse_params(
                TextInputs, {k: inputs.get(k) for k in ("text", "texts")}, "inputs"
            ).as_list()
            preds = await run_all(
                [lambda t=t: self._predict(model, {"text": t}, deadline) for t in texts]
            )
            vectors = [norm(_floats(p, "textEmbedding")) for p in preds]
            data = (
                {"embedding": vectors[0]}
                if inputs.get("text") is not None
                else {"embeddings": vectors}
            )
            return {
                "data": {**data, "dimensions": len(vectors[0])},
                "model": version,
                "tokens_used": None,
            }
        kind = inputs.get("media_kind")
        if kind not in ("image", "video"):
            raise InvalidRequest("multimodal embedding needs text, texts, an image or a video")
        data_bytes, _, _ = media_of(inputs, kind)
        b64 = base64.b64encode(data_bytes).decode("ascii")
        if kind == "image":
            vec = norm(
                _floats(
                    await self._predict(model, {"image": {"bytesBase64Encoded": b64}}, deadline),
                    "imageEmbedding",
                )
            )
            return {
                "data": {"embedding": vec, "dimensions": len(vec)},
                "model": version,
                "tokens_used": None,
            }
        segment_cfg: dict[str, Any] = {}
        interval = 16
        if params.interval_sec is not None:
            if params.interval_sec < 4:
                raise InvalidRequest(
                    "parameters.interval_sec must be at least 4 for google/multimodalembedding"
                )
            interval = segment_cfg["intervalSec"] = int(round(params.interval_sec))
        if params.max_frames is not None:
            segment_cfg.update(startOffsetSec=0, endOffsetSec=interval * params.max_frames)
        video: dict[str, Any] = {"bytesBase64Encoded": b64}
        if segment_cfg:
            video["videoSegmentConfig"] = segment_cfg
        pred = await self._predict(model, {"video": video}, deadline)
        segments = [
            {
                "start": float(s.get("startOffsetSec", 0)),
                "end": float(s.get("endOffsetSec", 0)),
                "embedding": norm(_floats(s, "embedding")),
            }
            for s in pred.get("videoEmbeddings") or []
        ]
        if not segments:
            raise ProviderError("vertex returned no video embeddings", {"provider": self.name})
        dims = len(segments[0]["embedding"])
        pooled = _unit(
            [sum(s["embedding"][i] for s in segments) / len(segments) for i in range(dims)]
        )
        return {
            "data": {"embedding": pooled, "dimensions": dims, "segments": segments},
            "model": version,
            "tokens_used": None,
        }


def _floats(obj: dict, key: str) -> list[float]:
    values = obj.get(key)
    if not isinstance(values, list) or not values:
        raise ProviderError(f"vertex returned no {key}", {"provider": "google"})
    return [float(x) for x in values]


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm > 0 else v


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
