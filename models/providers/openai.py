"""OpenAI through the official `openai` SDK (AsyncOpenAI, SDK retries off): chat and vision
(`chat.completions.create`), text embeddings (`embeddings.create`) and transcription (whisper-1,
verbose_json). Decisions: docs/notes/engines.md#openai."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.providers.base import (
    Deadline,
    Failure,
    ProviderAdapter,
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
    sniff,
)
from rawinfer.contract import ChatParams
from rawinfer.contract.errors import InvalidRequest, ProviderError
from rawinfer.contract.transcription import LANGUAGE_BY_NAME, TranscriptionParams
from rawinfer.core.vectors import l2_normalize

_MAX_EMBED_BATCH = 2048  # OpenAI's cap on inputs per embeddings request
_AUDIO_EXTS = {"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"}
_AUDIO_MIME_EXT = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "video/webm": "webm",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "video/mp4": "mp4",
}


class OpenAIAdapter(ProviderAdapter):
    name = "openai"
    sdk_modules = (
        "openai",
        "openai.resources.chat",
        "openai.resources.embeddings",
        "openai.resources.audio",
    )

    def client(self):
        def make():
            from openai import AsyncOpenAI

            return AsyncOpenAI(
                api_key=self.settings.key(),
                base_url=self.settings.base_url or None,
                timeout=self.settings.timeout_s,
                max_retries=0,
            )

        return self._loop_client(make)

    def classify(self, exc: BaseException) -> Failure | None:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return Failure("timeout")
        if isinstance(exc, openai.APIConnectionError):
            return Failure("connection")
        if isinstance(exc, openai.APIStatusError):
            message, typ = body_message(exc.body)
            return Failure(
                "status",
                exc.status_code,
                message or exc.message,
                typ,
                retry_after_from_headers(exc.response.headers),
            )
        return None

    # ---- chat / vision

    async def _complete(
        self, model: str, messages: list[dict], params: ChatParams, deadline: Deadline
    ) -> Completion:
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_completion_tokens": params.max_tokens,
            **set_params(params, "temperature", "top_p", "seed"),
        }
        if params.stop is not None:
            kwargs["stop"] = params.stop_list()
        if params.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": params.json_schema, "strict": True},
            }
        client = self.client()
        resp = await self.call(
            lambda t: client.chat.completions.create(**kwargs, timeout=t),
            deadline,
            "the chat completion",
        )
        if not resp.choices:
            raise ProviderError("openai answered with no choices", {"provider": self.name})
        choice = resp.choices[0]
        text, refusal = choice.message.content, getattr(choice.message, "refusal", None)
        if text is None and refusal:
            if params.json_schema is not None:
                raise ProviderError(f"openai refused to answer: {refusal}", {"provider": self.name})
            text = refusal
        usage = resp.usage
        return Completion(
            text or "",
            "length" if choice.finish_reason == "length" else "stop",
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            resp.model,
        )

    async def _answer(
        self,
        task: str,
        model: str,
        inputs: dict,
        parameters: dict,
        deadline: Deadline,
        image_part: dict | None,
    ) -> dict:
        params = parse_params(ChatParams, parameters)
        system, conversations = chat_conversations(task, inputs)
        head = [{"role": "system", "content": system}] if system is not None else []
        if image_part is not None:
            conversations = [
                [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": conv[0]["content"]}, image_part],
                    }
                ]
                for conv in conversations
            ]
        done = await run_all(
            [
                lambda c=conv: self._complete(model, head + c, params, deadline)
                for conv in conversations
            ]
        )
        return chat_data(self.name, done, params, model)

    async def _chat(self, model: str, inputs: dict, parameters: dict, deadline: Deadline) -> dict:
        return await self._answer("chat", model, inputs, parameters, deadline, None)

    async def _vision(self, model: str, inputs: dict, parameters: dict, deadline: Deadline) -> dict:
        import base64

        data, mime = image_of(inputs)
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        return await self._answer(
            "vision",
            model,
            inputs,
            parameters,
            deadline,
            {"type": "image_url", "image_url": {"url": url}},
        )

    # ---- embeddings

    async def _text_embedding(
        self, model: str, inputs: dict, parameters: dict, deadline: Deadline
    ) -> dict:
        from rawinfer.contract import TextEmbeddingParams, TextInputs

        texts_in = parse_params(TextInputs, inputs, "inputs")
        params = parse_params(TextEmbeddingParams, parameters)
        texts = texts_in.as_list()
        client = self.client()

        async def batch(chunk: list[str]):
            return await self.call(
                lambda t: client.embeddings.create(
                    model=model, input=chunk, encoding_format="float", timeout=t
                ),
                deadline,
                "the embeddings",
            )

        answers = await run_all(
            [
                lambda c=texts[i : i + _MAX_EMBED_BATCH]: batch(c)
                for i in range(0, len(texts), _MAX_EMBED_BATCH)
            ]
        )
        vectors = [
            list(map(float, d.embedding))
            for a in answers
            for d in sorted(a.data, key=lambda d: d.index)
        ]
        if len(vectors) != len(texts):
            raise ProviderError(
                f"openai returned {len(vectors)} embeddings for {len(texts)} texts",
                {"provider": self.name},
            )
        if params.normalize:
            vectors = l2_normalize(vectors, np.float64).tolist()
        dims = len(vectors[0])
        data = (
            {"embedding": vectors[0], "dimensions": dims}
            if texts_in.text is not None
            else {"embeddings": vectors, "dimensions": dims}
        )
        prompt = sum(a.usage.prompt_tokens for a in answers if a.usage)
        return {
            "data": data,
            "model": answers[0].model or model,
            "tokens_used": {"prompt": prompt, "completion": 0, "total": prompt},
        }

    # ---- transcription

    async def _transcription(
        self, model: str, inputs: dict, parameters: dict, deadline: Deadline
    ) -> dict:
        data, mime, filename = media_of(inputs, "audio")
        params = parse_params(TranscriptionParams, parameters)
        kwargs: dict[str, Any] = {
            "file": (_upload_name(filename, mime, data), data, mime or "application/octet-stream"),
            "model": model,
            "response_format": "verbose_json",
        }
        client = self.client()
        if params.task == "translate":
            create = client.audio.translations.create
        else:
            create = client.audio.transcriptions.create
            if params.language:
                kwargs["language"] = params.language
            if params.word_timestamps:
                kwargs["timestamp_granularities"] = ["word", "segment"]
        resp = await self.call(lambda t: create(**kwargs, timeout=t), deadline, "the transcription")
        duration = round(float(getattr(resp, "duration", 0.0) or 0.0), 3)
        segments = []
        for seg in getattr(resp, "segments", None) or []:
            segments.append(
                {
                    "start": round(float(seg.start), 3),
                    "end": round(float(seg.end), 3),
                    "text": seg.text.strip(),
                }
            )
        words = getattr(resp, "words", None) or []
        if params.word_timestamps and params.task == "transcribe" and segments:
            for item in segments:
                item["words"] = []
            for w in words:  # each word goes to the last segment that starts at or before it
                home = next(
                    (s for s in reversed(segments) if s["start"] <= float(w.start)), segments[0]
                )
                home["words"].append(
                    {
                        "start": round(float(w.start), 3),
                        "end": round(float(w.end), 3),
                        "word": w.word.strip(),
                    }
                )
        language = str(getattr(resp, "language", "") or params.language or "")
        language = LANGUAGE_BY_NAME.get(language.lower(), language)
        return {
            "data": {
                "text": (resp.text or "").strip(),
                "language": language,
                "duration": duration,
                "segments": segments,
            },
            "model": model,
            "tokens_used": None,
        }


def _upload_name(filename: str | None, mime: str | None, data: bytes) -> str:
    """A file name whose extension tells OpenAI the audio format (it goes by the extension)."""
    if filename and "." in filename and filename.rsplit(".", 1)[1].lower() in _AUDIO_EXTS:
        return filename.rsplit("/", 1)[-1]
    found = sniff(data)
    ext = _AUDIO_MIME_EXT.get(mime or "") or (
        found[1] if found and found[1] in _AUDIO_EXTS else None
    )
    if ext is None:
        raise InvalidRequest(
            "the audio format is not recognised; OpenAI accepts flac, m4a, mp3, mp4, mpeg, "
            "mpga, ogg, wav and webm"
        )
    return f"audio.{ext}"
