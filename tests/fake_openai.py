"""OpenAI's wire format (chat completions, embeddings, transcriptions) as a local server."""

from __future__ import annotations

import json
from typing import Any

from fake_base import FakeProvider, Reply, vector, words


def _openai_error(status: int, message: str, type_: str, code: str | None = None) -> Reply:
    return Reply(
        status, {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return str(content)


class FakeOpenAI(FakeProvider):
    def authorized(self, req):
        return req.headers.get("authorization") == f"Bearer {self.key}"

    def unauthorized(self, req):
        got = req.headers.get("authorization", "").removeprefix("Bearer ")
        return _openai_error(
            401,
            f"Incorrect API key provided: {got}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    def route(self, req):
        if req.path == "/v1/chat/completions":
            return self.chat(req.json)
        if req.path == "/v1/embeddings":
            return self.embeddings(req.json)
        if req.path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
            return self.audio(req)
        return _openai_error(404, f"Invalid URL (POST {req.path})", "invalid_request_error")

    def chat(self, body):
        if not body.get("model") or not body.get("messages"):
            return _openai_error(400, "you must provide a model parameter", "invalid_request_error")
        last = _text_of(body["messages"][-1]["content"])
        schema = (body.get("response_format") or {}).get("type") == "json_schema"
        content = json.dumps(self.structured) if schema else f"echo: {last}"
        prompt = sum(words(_text_of(m["content"])) for m in body["messages"])
        return Reply(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body["model"] + "-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "logprobs": None,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": words(content),
                    "total_tokens": prompt + words(content),
                },
            },
        )

    def embeddings(self, body):
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t, 16)}
            for i, t in enumerate(texts)
        ]
        n = sum(words(t) for t in texts)
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": n, "total_tokens": n},
            },
        )

    def audio(self, req):
        if "file" not in req.files or req.form.get("model") != ["whisper-1"]:
            return _openai_error(400, "file and model are required", "invalid_request_error")
        if req.form.get("response_format") != ["verbose_json"]:
            return Reply(200, {"text": "hello world"})
        translate = req.path.endswith("translations")
        out = {
            "task": "translate" if translate else "transcribe",
            "language": "english",
            "duration": 3.52,
            "text": " Hello world. Good morning.",
            "segments": [
                {
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": 1.5,
                    "text": " Hello world.",
                    "tokens": [1, 2],
                    "temperature": 0.0,
                    "avg_logprob": -0.2,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.01,
                },
                {
                    "id": 1,
                    "seek": 0,
                    "start": 1.5,
                    "end": 3.52,
                    "text": " Good morning.",
                    "tokens": [3, 4],
                    "temperature": 0.0,
                    "avg_logprob": -0.2,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.01,
                },
            ],
        }
        if "word" in req.form.get("timestamp_granularities[]", []):
            out["words"] = [
                {"word": w, "start": s, "end": e}
                for w, s, e in (
                    ("Hello", 0.0, 0.6),
                    ("world.", 0.7, 1.4),
                    ("Good", 1.6, 2.2),
                    ("morning.", 2.3, 3.4),
                )
            ]
        return Reply(200, out)


# ------------------------------------------------------------------------------ Anthropic
