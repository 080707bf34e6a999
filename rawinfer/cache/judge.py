"""Judges: is a freshly generated answer the same as the cached one? Their verdict is vCache's
observation label (correct = the cached answer would have been right). Design notes:
docs/notes/cache.md#judges."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

from rawinfer.core.vectors import l2_normalize

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
Ask = Callable[[str], Awaitable[str]]


class Judge(Protocol):
    async def __call__(self, fresh: dict[str, Any], cached: dict[str, Any]) -> bool: ...


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"[\s.!?。]+$", "", text)


def _responses(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list((data or {}).get("responses") or [])


def _pairs(fresh: dict[str, Any], cached: dict[str, Any]) -> list[tuple[dict, dict]] | None:
    a, b = _responses(fresh), _responses(cached)
    if len(a) != len(b) or not a:
        return None
    return list(zip(a, b))


class ExactMatchJudge:
    async def __call__(self, fresh: dict[str, Any], cached: dict[str, Any]) -> bool:
        pairs = _pairs(fresh, cached)
        if pairs is None:
            return False
        for x, y in pairs:
            if ("parsed" in x or "parsed" in y) and x.get("parsed") != y.get("parsed"):
                return False
            if normalise(x.get("text", "")) != normalise(y.get("text", "")):
                return False
        return True


class EmbeddingJudge:
    def __init__(self, embed: Embed, threshold: float = 0.95):
        self.embed, self.threshold = embed, threshold

    async def __call__(self, fresh: dict[str, Any], cached: dict[str, Any]) -> bool:
        pairs = _pairs(fresh, cached)
        if pairs is None:
            return False
        texts = [normalise(r.get("text", "")) or "-" for pair in pairs for r in pair]
        v = l2_normalize(await self.embed(texts), np.float64)
        return bool(
            all(float(v[2 * i] @ v[2 * i + 1]) >= self.threshold for i in range(len(pairs)))
        )


JUDGE_PROMPT = (
    "Do the two answers below give the same information, so that either one answers the question "
    "equally well? Reply with exactly one word: yes or no.\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
)


class LLMJudge:
    def __init__(self, ask: Ask, prompt: str = JUDGE_PROMPT):
        self.ask, self.prompt = ask, prompt

    async def __call__(self, fresh: dict[str, Any], cached: dict[str, Any]) -> bool:
        pairs = _pairs(fresh, cached)
        if pairs is None:
            return False
        for x, y in pairs:
            if normalise(x.get("text", "")) == normalise(y.get("text", "")):
                continue  # identical answers need no model
            reply = await self.ask(self.prompt.format(a=x.get("text", ""), b=y.get("text", "")))
            if not normalise(reply).startswith("yes"):
                return False
        return True


def make_judge(
    kind: str, *, embed: Embed | None = None, ask: Ask | None = None, similarity: float = 0.95
) -> Judge:
    if kind == "exact":
        return ExactMatchJudge()
    if kind == "embedding":
        if embed is None:
            raise ValueError("the embedding judge needs an embedding backend")
        return EmbeddingJudge(embed, similarity)
    if kind == "llm":
        if ask is None:
            raise ValueError("the LLM judge needs a chat backend")
        return LLMJudge(ask)
    raise ValueError(f"unknown judge {kind!r}: exact, embedding or llm")
