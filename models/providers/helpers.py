"""Helpers the adapters share that are not about calling a provider: the media the ingress
fetched, parameter validation, running a request's calls concurrently, and turning provider
answers into the contract's chat/vision data. Plain Python: no Ray, no SDK imports.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar

from pydantic import BaseModel, ValidationError

from models.chat import MAX_PROMPTS  # prompts per chat/vision request: each is one provider call
from rawinfer.contract.errors import InvalidRequest, ProviderError
from rawinfer.core.schemas import schema_error

T = TypeVar("T")
MAX_CONCURRENT_CALLS = 8  # provider calls in flight for one request (prompts answered concurrently)

# --------------------------------------------------------------------------- media

_MAGIC: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (0, b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (0, b"GIF87a", "image/gif", "gif"),
    (0, b"GIF89a", "image/gif", "gif"),
    (0, b"ID3", "audio/mpeg", "mp3"),
    (0, b"\xff\xfb", "audio/mpeg", "mp3"),
    (0, b"\xff\xf3", "audio/mpeg", "mp3"),
    (0, b"fLaC", "audio/flac", "flac"),
    (0, b"OggS", "audio/ogg", "ogg"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm", "webm"),
    (4, b"ftyp", "video/mp4", "mp4"),
)


def sniff(data: bytes) -> tuple[str, str] | None:
    """(mime, extension) of common image/audio/video containers, from their first bytes."""
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        return ("image/webp", "webp") if data[8:12] == b"WEBP" else ("audio/wav", "wav")
    for offset, magic, mime, ext in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime, ext
    return None


def media_of(inputs: Mapping[str, Any], kind: str) -> tuple[bytes, str | None, str | None]:
    """(bytes, mime, filename) of the media the ingress fetched; the sniffed type beats a hint."""
    data = inputs.get("media")
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise InvalidRequest(f"the {kind} is missing or empty")
    if inputs.get("media_kind") not in (None, kind):
        raise InvalidRequest(f"expected {kind} media, got {inputs.get('media_kind')}")
    found = sniff(bytes(data))
    return bytes(data), (found[0] if found else inputs.get("mime")), inputs.get("filename")


IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def image_of(
    inputs: Mapping[str, Any], accepted: tuple[str, ...] = IMAGE_TYPES
) -> tuple[bytes, str]:
    """(bytes, mime) of the request's image, refused (400) unless its type is `accepted`."""
    data, mime, _ = media_of(inputs, "image")
    if mime not in accepted:
        raise InvalidRequest(
            f"the image must be {', '.join(t.split('/')[1].upper() for t in accepted)}; "
            f"got {mime or 'an unrecognised format'}"
        )
    return data, mime


def parse_params(
    model: type[BaseModel], raw: Mapping[str, Any] | None, where: str = "parameters"
) -> Any:
    """`parameters` (or `inputs`) validated by a pydantic model; errors become a 400 naming the
    field."""
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequest(
            f"{where}{'.' + field if field else ''}: {first.get('msg')}",
            {"errors": [{"loc": list(x.get("loc", ())), "msg": x.get("msg")} for x in e.errors()]},
        ) from None


async def run_all(
    factories: list[Callable[[], Awaitable[T]]], limit: int = MAX_CONCURRENT_CALLS
) -> list[T]:
    """Run the calls concurrently (at most `limit` at once), in order; the first failure cancels
    the rest and is raised as is."""
    if not factories:
        return []
    sem = asyncio.Semaphore(limit)

    async def one(f: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await f()

    tasks = [asyncio.ensure_future(one(f)) for f in factories]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------- chat helpers


@dataclass
class Completion:
    """One provider answer, before it becomes a contract response item."""

    text: str
    finish: str  # "stop" | "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    parsed: Any = None  # set by providers whose structured output is not text (Anthropic's tool)
    has_parsed: bool = False


def chat_conversations(
    task: str, inputs: Mapping[str, Any]
) -> tuple[str | None, list[list[dict[str, str]]]]:
    """(system, conversations): one user turn per prompt, or the one `messages` conversation
    (which may hold system turns). Re-checks the contract's input shape."""
    from rawinfer.contract import ChatInputs

    allowed = {"prompts", "system", "messages"} if task == "chat" else {"prompts", "system"}
    text_inputs = {k: v for k, v in inputs.items() if k in allowed}
    try:
        parsed = ChatInputs.model_validate(text_inputs)
    except ValidationError as e:
        raise InvalidRequest(f"inputs: {e.errors()[0].get('msg')}") from None
    if parsed.messages is not None:
        return None, [[m.model_dump() for m in parsed.messages]]
    if len(parsed.prompts or []) > MAX_PROMPTS:
        raise InvalidRequest(
            f"at most {MAX_PROMPTS} prompts per request, got {len(parsed.prompts or [])}"
        )
    return parsed.system, [[{"role": "user", "content": p}] for p in parsed.prompts or []]


def split_system(
    messages: list[dict[str, str]], system: str | None
) -> tuple[str | None, list[dict[str, str]]]:
    """System turns joined into one system text (for APIs that take it apart), the rest."""
    parts = [system] if system else []
    parts += [m["content"] for m in messages if m["role"] == "system"]
    return ("\n\n".join(parts) if parts else None), [m for m in messages if m["role"] != "system"]


def set_params(params: Any, *names: str) -> dict[str, Any]:
    """The sampling parameters the client gave explicitly (the provider's defaults otherwise)."""
    return {
        n: getattr(params, n)
        for n in names
        if n in params.model_fields_set and getattr(params, n) is not None
    }


def chat_data(
    provider: str, completions: list[Completion], params: Any, model: str
) -> dict[str, Any]:
    """The contract's chat/vision result from provider answers; with a schema, each answer must
    parse and validate (a provider answer that does not -> ProviderError)."""
    items = []
    for c in completions:
        item: dict[str, Any] = {"text": c.text, "finish_reason": c.finish}
        if params.json_schema is not None:
            try:
                parsed = c.parsed if c.has_parsed else json.loads(c.text)
                wrong = schema_error(parsed, params.json_schema)
            except ValueError as e:
                wrong = str(e)
            if wrong is not None:
                hint = (
                    f"; the output was cut at max_tokens={params.max_tokens}, raise it"
                    if c.finish == "length"
                    else ""
                )
                raise ProviderError(
                    f"{provider}'s output does not match parameters.schema "
                    f"({wrong.splitlines()[0][:200]}){hint}",
                    {"provider": provider},
                )
            item["parsed"] = parsed
        items.append(item)
    prompt = sum(c.prompt_tokens for c in completions)
    completion = sum(c.completion_tokens for c in completions)
    return {
        "data": {"responses": items},
        "model": next((c.model for c in completions if c.model), model),
        "tokens_used": {"prompt": prompt, "completion": completion, "total": prompt + completion},
    }
