"""The `rawinfer` command line against a temporary SQLite database, as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from tenancy_db import REPO

from rawinfer.tenancy.store import Store

CLI = str(REPO / ".venv" / "bin" / "rawinfer")


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def run(*args: str, ok: bool = True) -> str:
        r = subprocess.run(
            [CLI, "--database-url", url, *args], capture_output=True, text=True, timeout=60
        )
        assert (r.returncode == 0) == ok, (args, r.stdout, r.stderr)
        return r.stdout if ok else r.stderr

    run.url = url
    return run


def test_orgs_namespaces_keys_and_limits(cli):
    assert "created organisation acme" in cli("orgs", "create", "acme")
    assert "exists" in cli("orgs", "create", "acme", ok=False)
    out = cli("namespaces", "create", "team", "--org", "acme", "--rpm", "100", "--tpm", "unlimited")
    ns_id = out.split("id=")[1].strip()
    assert ns_id.startswith("ns_")

    out = cli(
        "keys",
        "create",
        "--name",
        "ci",
        "--org",
        "acme",
        "--namespace",
        "team",
        "--target",
        "local/all-minilm-l6-v2",
        "--target",
        "openai/*",
        "--rpm",
        "10",
        "--tpm",
        "5000",
        "--expires-days",
        "2",
    )
    secret = out.split("secret (shown once, store it now): ")[1].strip()
    key_id = out.split()[2]
    assert "targets: local/all-minilm-l6-v2, openai/*" in out and "rpm=10 tpm=5000" in out

    store = Store(cli.url)
    k = store.authenticate(secret)
    assert (
        k.id == key_id
        and k.targets == ("local/all-minilm-l6-v2", "openai/*")
        and (k.rpm, k.tpm) == (10, 5000)
    )
    assert k.namespaces == (ns_id,) and timedelta(days=1.9) < k.expires_at - datetime.now(
        timezone.utc
    ) < timedelta(days=2)

    listed = json.loads(cli("keys", "list", "--json", "--org", "acme"))
    assert [x["id"] for x in listed] == [key_id] and secret not in json.dumps(listed)

    assert "rpm=default tpm=5000" in cli("limits", "set", "--key", key_id, "--rpm", "default")
    assert "rpm=unlimited tpm=250" in cli(
        "limits", "set", "--namespace", "team", "--tpm", "250", "--rpm", "unlimited"
    )
    assert store.find_namespace(ns_id).tpm == 250 and store.get_key(key_id).rpm is None
    assert "no key" in cli("limits", "set", "--key", "key_nope", "--rpm", "1", ok=False)

    assert "targets=* " in cli("keys", "update", key_id, "--all-targets", "--never-expires")
    made = json.loads(cli("keys", "create", "--json", "--admin"))
    assert (
        made["secret"].startswith("sk_")
        and made["key"]["is_admin"]
        and made["key"]["targets"] is None
    )
    assert "revoked" in cli("keys", "revoke", key_id)
    assert not store.authenticate(secret).active()
    assert "still has" in cli("orgs", "delete", "acme", ok=False)
    store.engine.dispose()


def test_usage_table_and_json(cli):
    cli("namespaces", "create", "team")
    store = Store(cli.url)
    ns = store.find_namespace("team")
    t0 = datetime(2026, 11, 1, 9, tzinfo=timezone.utc)
    store.record_usage(
        [
            {
                "id": uuid.uuid4().hex,
                "created_at": t0 + timedelta(days=d),
                "namespace_id": ns.id,
                "key_id": key,
                "task": "chat",
                "target": "local/smollm2",
                "status": status,
                "prompt_tokens": 10,
                "completion_tokens": 20,
            }
            for d, key, status in ((0, "key_a", 200), (0, "key_b", 200), (1, "key_a", 500))
        ]
    )
    store.engine.dispose()

    out = cli(
        "usage",
        "--namespace",
        "team",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
        "--group-by",
        "day",
    )
    lines = out.splitlines()
    assert lines[1].split()[:7] == [
        "day",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "audio_seconds",
    ]
    assert lines[2].split()[:6] == ["2026-11-01", "2", "20", "40", "60", "0"]  # no cache hits
    assert lines[3].split()[:2] == ["2026-11-02", "1"] and len(lines) == 4

    data = json.loads(
        cli("usage", "--namespace", ns.id, "--from", "2026-11-01", "--group-by", "key", "--json")
    )
    assert data["namespace"] == ns.id and data["group_by"] == "key"
    assert {r["key"]: (r["requests"], r["errors"]) for r in data["data"]} == {
        "key_a": (2, 1),
        "key_b": (1, 0),
    }
    total = json.loads(cli("usage", "--namespace", "team", "--from", "1761955200", "--json"))[
        "data"
    ]
    assert total[0]["requests"] == 3 and total[0]["total_tokens"] == 90
    assert "from must be" in cli("usage", "--namespace", "team", "--from", "last week", ok=False)
    assert "does not exist" in cli("usage", "--namespace", "nope", ok=False)
