"""Placement by node kind (rawinfer.cli.launch.place_by_node_kind) on the shipped serve_config."""

from __future__ import annotations

from rawinfer.cli.launch import MODEL_NODE, SERVICE_NODE, load_config, place_by_node_kind


def test_every_deployment_asks_for_its_node_kind():
    config = place_by_node_kind(load_config())
    entries = {d["name"]: d for d in config["applications"][0]["deployments"]}
    kinds = {n: e["ray_actor_options"]["resources"] for n, e in entries.items()}
    for name in ("ingress", "rate_limiter", "semantic_cache", "openai", "google", "anthropic"):
        assert kinds[name] == {SERVICE_NODE: 0.01}, name
    for name in ("text_embedding", "chat", "whisper_base", "whisper_tiny_en"):
        assert kinds[name] == {MODEL_NODE: 0.01}, name
    # the example plugins, which the file does not list, get entries of their own
    plugins = [n for n in entries if n.startswith(("keyword_extractor", "zero_shot"))]
    assert plugins and all(kinds[n] == {MODEL_NODE: 0.01} for n in plugins)
    # the rest of each entry is kept: the shipped CPU fractions still apply
    assert entries["text_embedding"]["ray_actor_options"]["num_cpus"] == 0.3


def test_the_shipped_config_is_left_alone():
    assert "resources" not in load_config()["applications"][0]["deployments"][0].get(
        "ray_actor_options", {}
    )
