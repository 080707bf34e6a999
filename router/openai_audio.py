"""OpenAI's `POST /v1/audio/transcriptions` and `/v1/audio/translations` (multipart; whisper's
translate task: any language into English) over the gateway's transcription task."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.responses import PlainTextResponse, Response

from rawinfer.contract.errors import InvalidRequest, PayloadTooLarge
from router.gateway import Gateway
from router.http import read_body
from router.openai_compat import run

# --------------------------------------------------------------------------------- transcriptions


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitles(segments: list[dict[str, Any]], fmt: str) -> str:
    sep = "," if fmt == "srt" else "."
    cues = []
    for i, s in enumerate(segments, 1):
        head = f"{i}\n" if fmt == "srt" else ""
        cues.append(
            f"{head}{_stamp(s['start'], sep)} --> {_stamp(s['end'], sep)}\n{s['text'].strip()}\n"
        )
    return ("WEBVTT\n\n" if fmt == "vtt" else "") + "\n".join(cues)


TRANSCRIPTION_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MAX_FORM_FIELDS = 8  # model, language, prompt, response_format, temperature, granularities...
MAX_FIELD_BYTES = 64 * 1024  # any field but the file
FORM_OVERHEAD_BYTES = MAX_FORM_FIELDS * MAX_FIELD_BYTES + 64 * 1024  # fields and part headers


async def translations(gateway: Gateway, request: Request) -> Response:
    """OpenAI's translations: like transcriptions without `language` or timestamp granularities,
    answered in English."""
    return await transcriptions(gateway, request, task="translate")


async def transcriptions(gateway: Gateway, request: Request, task: str = "transcribe") -> Response:
    # the key first, as everywhere: without one it is a 401 whatever its body (lookups are cached)
    await gateway.auth(
        request.headers.get("authorization"), request.headers.get("x-namespace"), key_default=True
    )
    cap = gateway.settings.media.max_bytes
    # the raw body is capped before it is parsed (the file plus a little room for the fields);
    # then one file part and a few small fields: nothing else is spooled or held
    request._body = await read_body(request, cap + FORM_OVERHEAD_BYTES)  # what form() reads
    try:
        form = await request.form(
            max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
    except (
        MultiPartException,
        StarletteHTTPException,
    ) as e:  # Starlette: 400 inside an app, else its own
        reason = str(getattr(e, "detail", None) or getattr(e, "message", None) or "malformed")
        if "maximum size" in reason:
            raise PayloadTooLarge(
                f"a multipart field other than `file` is over {MAX_FIELD_BYTES} bytes"
            ) from None
        if "Too many" in reason:
            raise InvalidRequest(
                f"send one `file` and at most {MAX_FORM_FIELDS} other fields ({reason[:80]})"
            ) from None
        raise InvalidRequest(
            f"the multipart body could not be read ({reason[:120]}); send multipart/form-data "
            "with the audio in the field `file`"
        ) from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidRequest("send the audio as the multipart field `file`")
    audio = await upload.read(cap + 1)
    if len(audio) > cap:
        raise PayloadTooLarge(f"the audio file is over the limit of {cap} bytes")
    model = form.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("send the multipart field `model` (e.g. whisper-1)")
    fmt = form.get("response_format") or "json"
    if fmt not in TRANSCRIPTION_FORMATS:
        raise InvalidRequest(f"response_format must be one of {', '.join(TRANSCRIPTION_FORMATS)}")
    granularities = set(
        form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    )
    if granularities - {"word", "segment"}:
        raise InvalidRequest("timestamp_granularities may hold only 'word' and 'segment'")
    params: dict[str, Any] = {"word_timestamps": "word" in granularities}
    if task == "translate":
        if form.get("language") or granularities:
            raise InvalidRequest(
                "translations take no `language` or `timestamp_granularities`: the audio's "
                "language is detected and the text is English"
            )
        params["task"] = "translate"
    elif form.get("language"):
        params["language"] = form.get("language")
    _, out = await run(
        gateway, request, model, {"audio_base64": base64.b64encode(audio).decode()}, params
    )
    data = out["data"]
    if fmt == "text":
        return PlainTextResponse(data["text"] + "\n")
    if fmt in ("srt", "vtt"):
        return PlainTextResponse(
            subtitles(data["segments"], fmt),
            media_type="text/vtt" if fmt == "vtt" else "text/plain",
        )
    if fmt == "json":
        return Response(orjson.dumps({"text": data["text"]}), media_type="application/json")
    verbose = {
        "task": task,
        "language": data["language"],
        "duration": data["duration"],
        "text": data["text"],
        "segments": [
            {"id": i, "start": s["start"], "end": s["end"], "text": s["text"]}
            for i, s in enumerate(data["segments"])
        ],
    }
    if "word" in granularities:
        verbose["words"] = [w for s in data["segments"] for w in s.get("words", [])]
    return Response(orjson.dumps(verbose), media_type="application/json")


# --------------------------------------------------------------------------------- models
