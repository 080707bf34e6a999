"""What every contract model shares: strict models (unknown keys refused) and small checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
