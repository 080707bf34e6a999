"""The usage ledger keeps every record when an ingress replica stops.

A second Serve application is deployed beside the session's (same Ray, same database) with a
ledger that would not flush on its own for an hour; its requests' rows are therefore only in the
replica's memory until Serve stops the replica. Removing the application from the config (as
`serve deploy` of a config without it does) shuts the replica down gracefully, and every row
must then be in the database: that is the flush on shutdown, over real HTTP and real Serve.
"""

from __future__ import annotations

import copy
import time

import httpx
import yaml
from conftest import REPO

APP, PREFIX = "ledger-check", "/ledger-check"


def _second_app(service, catalog_path) -> dict:
    """The session's app with a one-backend catalog (the OpenAI proxy, answered by the fake
    provider), no plugins, no rate limiter, and a ledger that never flushes by itself during the
    test: two small replicas (Ray sees 2 CPUs and the session's app holds nearly all of them)."""
    app = copy.deepcopy(service.serve_config["applications"][0])
    app.update(name=APP, route_prefix=PREFIX)
    app["args"]["catalog"] = str(catalog_path)
    app["args"]["settings"] = {
        **app["args"]["settings"],
        "limits": {"enabled": False},
        "plugins_dirs": [],
        "usage": {"flush_interval_s": 3600, "batch_size": 10_000},
    }
    keep = {
        "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.02}},
        "openai": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.01}},
    }
    deployments = []
    for d in app["deployments"]:
        if d["name"] in keep:
            d = {k: v for k, v in d.items() if k != "autoscaling_config"} | keep[d["name"]]
            deployments.append(d)
    app["deployments"] = deployments
    return app


def _rows(database_url: str, request_ids: list[str]) -> dict[str, dict]:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as c:
        rows = (
            c.execute(
                sa.text(
                    "SELECT request_id, status, prompt_tokens, completion_tokens, target FROM "
                    "usage_records "
                    "WHERE request_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": request_ids},
            )
            .mappings()
            .all()
        )
    engine.dispose()
    return {r["request_id"]: dict(r) for r in rows}


def test_rows_in_a_stopping_replicas_memory_reach_the_database(service, tmp_path):
    from rawinfer.cli.launch import deploy

    catalog = yaml.safe_load((REPO / "catalog.yaml").read_text())
    catalog["backends"] = {"openai": catalog["backends"]["openai"]}
    catalog["targets"] = [t for t in catalog["targets"] if t["backend"] == "openai"]
    path = tmp_path / "catalog.openai-only.yaml"
    path.write_text(yaml.safe_dump(catalog))

    both = copy.deepcopy(service.serve_config)
    both["applications"].append(_second_app(service, path))
    deploy(both, timeout_s=240)
    sent: dict[str, dict] = {}
    try:
        with httpx.Client(base_url=service.url + PREFIX, timeout=60) as c:
            for i in range(6):
                rid = f"ledger-shutdown-{i}-{time.time_ns()}"
                r = c.post(
                    "/v1/inference",
                    headers={**service.headers("a", "team-a"), "X-Request-Id": rid},
                    json={
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "inputs": {"prompts": [f"q{i}"]},
                    },
                )
                assert r.status_code == 200, r.text
                assert r.json()["request_id"] == rid
                sent[rid] = r.json()
            bad = c.post(
                "/v1/inference",
                headers={**service.headers("a", "team-a"), "X-Request-Id": "ledger-shutdown-bad"},
                json={
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "inputs": {"prompts": "not a list"},
                },
            )
            assert bad.status_code == 400
        time.sleep(1.5)
        assert _rows(service.database_url, [*sent, "ledger-shutdown-bad"]) == {}, (
            "the ledger flushed early: the test proves nothing"
        )
    finally:
        deploy(
            copy.deepcopy(service.serve_config), timeout_s=240
        )  # the second app goes: its replica stops
    deadline = time.monotonic() + 30
    while (
        len(rows := _rows(service.database_url, [*sent, "ledger-shutdown-bad"])) < 7
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert set(rows) == {*sent, "ledger-shutdown-bad"}
    for rid, body in sent.items():
        assert rows[rid]["status"] == 200 and rows[rid]["target"] == "openai/gpt-4o-mini"
        assert rows[rid]["prompt_tokens"] == body["tokens_used"]["prompt"]
        assert rows[rid]["completion_tokens"] == body["tokens_used"]["completion"]
    assert rows["ledger-shutdown-bad"]["status"] == 400
    with service.client() as c:  # the session's app was left as it was
        assert c.get("/healthz").status_code == 200
