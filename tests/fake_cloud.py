"""Anthropic's Messages API and Google's Gemini and Vertex AI, as local wire-format servers."""

from __future__ import annotations

import json
import re

from fake_base import MM_DIMS, VIDEO_SECONDS, FakeProvider, Reply, vector, words
from fake_openai import _text_of


class FakeAnthropic(FakeProvider):
    def authorized(self, req):  # the API's x-api-key, or the Bearer form the installed SDK sends
        return self.key in (
            req.headers.get("x-api-key"),
            req.headers.get("authorization", "").removeprefix("Bearer "),
        )

    def unauthorized(self, req):
        return Reply(
            401,
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            },
        )

    def route(self, req):
        if req.path != "/v1/messages":
            return Reply(
                404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}
            )
        body = req.json
        if "anthropic-version" not in req.headers:
            return Reply(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "anthropic-version: header is required",
                    },
                },
            )
        if not body.get("max_tokens"):
            return Reply(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "max_tokens: Field required",
                    },
                },
            )
        last = _text_of(body["messages"][-1]["content"])
        if body.get("tool_choice", {}).get("type") == "tool":
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": body["tool_choice"]["name"],
                    "input": self.structured,
                }
            ]
            stop, n_out = "tool_use", 7
        else:
            content = [{"type": "text", "text": f"echo: {last}"}]
            stop, n_out = "end_turn", words(f"echo: {last}")
        n_in = sum(words(_text_of(m["content"])) for m in body["messages"]) + words(
            body.get("system") or ""
        )
        return Reply(
            200,
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": n_in, "output_tokens": n_out},
            },
        )


# ------------------------------------------------------------------------------ Google


def google_error(status: int, message: str, state: str, details: list | None = None) -> dict:
    return {
        "error": {"code": status, "message": message, "status": state, "details": details or []}
    }


class FakeGemini(FakeProvider):
    PATH = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")

    def authorized(self, req):
        return req.headers.get("x-goog-api-key") == self.key

    def unauthorized(self, req):
        return Reply(
            400,
            google_error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            ),
        )

    def route(self, req):
        m = self.PATH.match(req.path)
        if not m:
            return Reply(404, google_error(404, "not found", "NOT_FOUND"))
        body = req.json
        last = " ".join(p.get("text", "") for p in body["contents"][-1]["parts"])
        cfg = body.get("generationConfig") or {}
        text = (
            json.dumps(self.structured)
            if cfg.get("responseMimeType") == "application/json"
            else f"echo: {last}"
        )
        n_in = sum(words(p.get("text", "")) for c in body["contents"] for p in c["parts"])
        return Reply(
            200,
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": n_in,
                    "candidatesTokenCount": words(text),
                    "totalTokenCount": n_in + words(text),
                },
                "modelVersion": m.group(1) + "-001",
                "responseId": "r1",
            },
        )


class FakeVertex(FakeProvider):
    PATH = re.compile(
        r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):predict$"
    )

    def __init__(self, key: str, token: str = "ya29.fake-access-token"):
        self.token = token
        super().__init__(key)

    def authorized(self, req):
        return (
            req.headers.get("authorization") == f"Bearer {self.token}"
            or req.headers.get("x-goog-api-key") == self.key
        )

    def unauthorized(self, req):
        return Reply(
            401,
            google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
        )

    def route(self, req):
        if not self.PATH.match(req.path):
            return Reply(404, google_error(404, "not found", "NOT_FOUND"))
        instances = req.json.get("instances") or []
        if len(instances) != 1:
            return Reply(
                400, google_error(400, "exactly one instance is allowed", "INVALID_ARGUMENT")
            )
        inst = instances[0]
        if "text" in inst:
            pred = {"textEmbedding": vector(inst["text"], MM_DIMS)}
        elif "image" in inst:
            pred = {"imageEmbedding": vector(inst["image"]["bytesBase64Encoded"], MM_DIMS)}
        elif "video" in inst:
            cfg = inst["video"].get("videoSegmentConfig") or {}
            step = float(cfg.get("intervalSec", 16))
            start, end = (
                float(cfg.get("startOffsetSec", 0)),
                min(float(cfg.get("endOffsetSec", 120)), VIDEO_SECONDS),
            )
            segs, t = [], start
            while t < end:
                segs.append(
                    {
                        "startOffsetSec": int(t),
                        "endOffsetSec": int(min(t + step, end)),
                        "embedding": vector(f"seg{t}", MM_DIMS),
                    }
                )
                t += step
            pred = {"videoEmbeddings": segs}
        else:
            return Reply(400, google_error(400, "unsupported instance", "INVALID_ARGUMENT"))
        return Reply(200, {"predictions": [pred], "deployedModelId": "1234"})


# ------------------------------------------------------------------------------ harness
