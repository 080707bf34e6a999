"""The gateway's refusals before any backend is called (no Ray: it is plain Python)."""

from __future__ import annotations

import asyncio

import pytest

from rawinfer.contract import InferenceRequest
from rawinfer.contract.errors import InvalidRequest, Unavailable
from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT, Settings
from rawinfer.tenancy.store import Store
from router.gateway import Gateway


@pytest.fixture
def gateway(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    store.create_schema()
    gw = Gateway(
        Settings(database_url=url),
        load_catalog(REPO_ROOT / "catalog.yaml"),
        {},
        store,
        {"openai": False, "google": True, "anthropic": False},
    )
    ns = store.create_namespace("team")
    key, _ = store.create_key("k", namespaces=["team"])
    return gw, (key, ns)


def prepare(gw, who, **body):
    key, ns = who
    return asyncio.run(gw.prepare(InferenceRequest(**body), key, ns))


def test_a_provider_without_credentials_is_a_400_and_listed_unavailable(gateway):
    gw, ns = gateway
    with pytest.raises(InvalidRequest, match="openai provider has no credentials"):
        prepare(gw, ns, provider="openai", model="gpt-4o-mini", inputs={"prompts": ["x"]})
    status = {f"{e['provider']}/{e['model']}": e["status"] for e in gw.listing() if e["provider"]}
    assert status["openai/gpt-4o-mini"] == "unavailable: no credentials"
    assert (
        status["google/gemini-2.0-flash"] == "unavailable"
    )  # credentials, but no deployment running here


def test_a_backend_without_weights_is_a_400_that_says_how_to_configure_it(gateway):
    gw, ns = gateway
    with pytest.raises(InvalidRequest, match="not configured on this server: no CLIP weights"):
        prepare(gw, ns, inference_name="laion_clip_vit_l_14_v1", inputs={"text": "x"})
    (clip,) = [e for e in gw.listing() if e["inference_name"] == "laion_clip_vit_l_14_v1"]
    assert clip["status"] == "not_configured" and "model_path" in clip["note"]


def test_a_configured_backend_that_is_not_running_is_a_503(gateway):
    gw, ns = gateway
    prepared = prepare(
        gw, ns, provider="google", model="gemini-2.0-flash", inputs={"prompts": ["x"]}
    )
    assert prepared.payload["model"] == "gemini-2.0-flash" and prepared.payload["task"] == "chat"
    with pytest.raises(Unavailable):
        asyncio.run(gw.execute(prepared))
