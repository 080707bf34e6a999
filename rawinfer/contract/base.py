"""What every contract model shares: strict models (unknown keys refused) and small checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Caps on list lengths, so validating a request is bounded before any engine's own limit applies
# (docs/security.md); the engines' limits (options max_texts, max_prompts) are smaller.
MAX_TEXTS = 2048
MAX_PROMPTS = 256
MAX_MESSAGES = 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def exactly_one(model: BaseModel, fields: tuple[str, ...]) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of {', '.join(fields)}"
            + (f" (got {', '.join(given)})" if given else "")
        )


def check_text(value: str, where: str) -> str:
    if not value.strip():
        raise ValueError(f"{where} is empty")
    return value
