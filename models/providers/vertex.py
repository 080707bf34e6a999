"""Vertex AI's `multimodalembedding` (1408-d text, image and video embeddings) for the Google
adapter, called with httpx on Vertex's documented REST wire format (the google-genai SDK has no
public call for it). Wire format and decisions: docs/notes/engines.md#google."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np

from models.providers.base import Deadline
from models.providers.helpers import media_of, parse_params, run_all
from rawinfer.contract.errors import InvalidRequest, ProviderError, Unavailable
from rawinfer.core.vectors import l2_normalize

MULTIMODAL_VERSION = "multimodalembedding@001"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class VertexHTTPError(Exception):
    def __init__(self, status: int, body: Any, headers: Any):
        super().__init__(f"HTTP {status}")
        self.status, self.body, self.headers = status, body, headers


class VertexEmbedding:
    """The `multimodal_embedding` task of GoogleAdapter (a mixin over ProviderAdapter)."""

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
    return l2_normalize(v, np.float64).tolist()
