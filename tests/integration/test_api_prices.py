"""Prices over HTTP: every usage record carries its cost at the catalog's price of its target
(the cloud providers are the local wire-format fakes), and `GET /v1/usage` sums it."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
import yaml

from rawinfer.core.catalog import TargetSpec, price_on


@pytest.fixture(scope="module")
def prices(service):
    catalog = yaml.safe_load((service.catalog_dir / "catalog.test.yaml").read_text())
    out, today = {}, datetime.now(timezone.utc).date()
    for t in catalog["targets"]:
        spec = TargetSpec.model_validate(t)
        if spec.provider and spec.prices:
            out[f"{spec.provider}/{spec.model}"] = price_on(spec.prices, today)
    return out


def usage(c, service, ns: str, requests: int) -> list[dict]:
    deadline = time.monotonic() + 20
    while True:
        r = c.get("/v1/usage", params={"group_by": "target"}, headers=service.headers("all", ns))
        assert r.status_code == 200, r.text
        rows = r.json()["data"]
        if sum(x["requests"] for x in rows) >= requests or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def test_each_record_costs_its_tokens_at_the_targets_price(service, prices):
    admin = {"Authorization": f"Bearer {service.keys['admin']}"}
    ns = f"priced-{uuid.uuid4().hex[:6]}"
    with service.client() as c:
        assert c.post("/v1/admin/namespaces", json={"name": ns}, headers=admin).status_code == 201
        bodies = {
            "openai/gpt-4o-mini": {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "inputs": {"prompts": ["Say hi", "Say bye"]},
                "parameters": {"max_tokens": 8},
            },
            "openai/text-embedding-3-small": {
                "provider": "openai",
                "model": "text-embedding-3-small",
                "inputs": {"texts": ["a", "few words to embed"]},
            },
            "local/all-minilm-l6-v2": {  # no price: costs nothing
                "provider": "local",
                "model": "all-minilm-l6-v2",
                "inputs": {"text": "local"},
            },
        }
        tokens = {}
        for name, body in bodies.items():
            r = c.post("/v1/inference", json=body, headers=service.headers("all", ns))
            assert r.status_code == 200, r.text
            tokens[name] = r.json()["tokens_used"] or {}
        rows = {x["target"]: x for x in usage(c, service, ns, len(bodies))}
    assert set(rows) == set(bodies)
    for name, row in rows.items():
        t = tokens[name]
        price = prices.get(name)
        want = (
            price.cost(t.get("prompt", 0), t.get("completion", 0), 0.0) if price is not None else 0
        )
        assert row["cost"] == pytest.approx(want, rel=1e-9, abs=1e-15), name
    assert rows["openai/gpt-4o-mini"]["cost"] > 0 and rows["local/all-minilm-l6-v2"]["cost"] == 0
