"""The catalog's price tables: the price in force on a day, a record's cost, and what the
catalog refuses."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from rawinfer.core.catalog import Price, TargetSpec, load_catalog, price_on
from router.state import RequestState

REPO_CATALOG = __import__("pathlib").Path(__file__).resolve().parents[2] / "catalog.yaml"


def test_the_price_in_force_is_the_latest_started():
    old = Price(since=date(2025, 1, 1), prompt_per_1k=1.0)
    new = Price(since=date(2025, 6, 1), prompt_per_1k=0.5, completion_per_1k=2.0)
    assert price_on([new, old], date(2024, 12, 31)) is None  # before any price: unpriced
    assert price_on([new, old], date(2025, 5, 31)) is old
    assert price_on([new, old], date(2025, 6, 1)) is new
    assert new.cost(2000, 500, 0) == pytest.approx(2 * 0.5 + 0.5 * 2.0)
    audio = Price(since=date(2025, 1, 1), audio_per_minute=0.006, per_request=0.01)
    assert audio.cost(0, 0, 90.0) == pytest.approx(0.009 + 0.01)


def test_a_request_costs_what_its_model_spent():
    state = RequestState(
        tokens={"prompt": 1000, "completion": 2000},
        prices=(Price(since=date(2025, 1, 1), prompt_per_1k=0.1, completion_per_1k=0.2),),
    )
    assert state.cost(date(2026, 1, 1)) == pytest.approx(0.5)
    state.cache_hit = True  # a cached answer spent no model tokens
    assert state.cost(date(2026, 1, 1)) == 0.0
    assert RequestState(tokens={"prompt": 5}).cost(date(2026, 1, 1)) == 0.0  # unpriced target


def test_the_catalog_refuses_bad_prices():
    base = {"provider": "openai", "model": "m", "backend": "openai"}
    with pytest.raises(ValidationError):
        TargetSpec.model_validate(
            {**base, "prices": [{"since": "2025-01-01", "prompt_per_1k": -1}]}
        )
    with pytest.raises(ValidationError):
        TargetSpec.model_validate({**base, "prices": [{"since": "2025-01-01", "per_token": 1}]})
    with pytest.raises(ValidationError):
        TargetSpec.model_validate({**base, "prices": [{"prompt_per_1k": 1}]})  # no date
    priced = [t for t in load_catalog(REPO_CATALOG).targets if t.prices]
    assert {t.model for t in priced} >= {"gpt-4o-mini", "claude-sonnet-4-20250514"}
