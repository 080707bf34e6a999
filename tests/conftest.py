"""Shared fixtures.

`service` starts a real local Ray and deploys serve_config.yaml (the embedded default) with test
overrides: a free port, a fresh SQLite database, the test catalog extensions. Tests talk to it
over real HTTP with httpx. It is session-scoped: Ray and the models start once per run.
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# Test modules import shared helpers from each other by bare name (test_clip_engine, test_hostile):
# every kind's folder is importable however the run is selected (pytest adds only the collected).
for _kind in ("unit", "engines", "integration"):
    sys.path.append(str(REPO / "tests" / _kind))


MEDIA_HOST = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    url: str
    database_url: str
    keys: dict[str, str] = field(default_factory=dict)  # label -> secret
    namespaces: dict[str, str] = field(default_factory=dict)  # name -> id
    key_ids: dict[str, str] = field(default_factory=dict)
    catalog_dir: Path | None = None
    metrics_url: str = ""
    serve_config: dict = field(
        default_factory=dict
    )  # what was deployed (tests that add apps redeploy it unchanged)

    def headers(self, key: str = "a", namespace: str = "team-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}", "X-Namespace": namespace}

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), **kw)


def seed_tenants(database_url: str) -> Service:
    from rawinfer.tenancy.store import Store

    store = Store(database_url)
    store.create_schema()
    svc = Service(url="", database_url=database_url)
    for name in ("team-a", "team-b"):
        svc.namespaces[name] = store.create_namespace(name).id
    other = store.create_namespace("other-org-ns", org="other-org")
    svc.namespaces["other-org-ns"] = other.id
    for label, ns in (("a", ["team-a"]), ("b", ["team-b"]), ("all", None)):
        info, secret = store.create_key(f"test-{label}", namespaces=ns)
        svc.keys[label], svc.key_ids[label] = secret, info.id
    info, secret = store.create_key("revoked", namespaces=["team-a"])
    store.revoke_key(info.id)
    svc.keys["revoked"] = secret
    svc.namespaces["limited"] = store.create_namespace("limited").id
    for label, kw in (
        ("limited", {"namespaces": ["limited"], "rpm": 6}),
        ("minilm-only", {"namespaces": ["team-a"], "targets": ["local/all-minilm-l6-v2"]}),
        ("admin", {"is_superuser": True}),
    ):
        info, secret = store.create_key(label, **kw)
        svc.keys[label], svc.key_ids[label] = secret, info.id
    return svc


def test_catalog(folder: Path) -> Path:
    """catalog.yaml with its CLIP backend configured with a tiny test model (random weights saved
    to a file and loaded back through the production loading code): no CLIP weights exist here."""
    import yaml

    from models.clip import build_test_model

    name, weights = build_test_model(folder / "clip")
    catalog = yaml.safe_load((REPO / "catalog.yaml").read_text())
    clip = catalog["backends"]["clip"]
    clip.pop("note", None)
    clip["served_model"] = "rawinfer-test-clip"
    clip["model_path"] = str(weights)
    clip["options"].update(
        model_name=name, model_config_path=str(folder / "clip" / f"{name}.json"), max_frames=50
    )
    path = folder / "catalog.test.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return path


@pytest.fixture(scope="session")
def fakes():
    """One fake server per cloud provider API (tests/fake_providers.py), for the whole run."""
    from fake_providers import Fakes

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(var, None)  # loopback only, no proxy in the way
    f = Fakes()
    yield f
    for x in f.all:
        x.stop()


def provider_env(fakes) -> dict[str, str]:
    """The provider settings the service reads from its environment (as in production)."""
    from fake_providers import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY

    env = {}
    for name, values in {
        "openai": {"api_key": OPENAI_KEY, "base_url": fakes.openai.url + "/v1"},
        "anthropic": {"api_key": ANTHROPIC_KEY, "base_url": fakes.anthropic.url},
        "google": {
            "api_key": GOOGLE_KEY,
            "base_url": fakes.gemini.url,
            "vertex_project": "proj-1",
            "vertex_location": "europe-west4",
            "vertex_base_url": fakes.vertex.url,
            "vertex_auth": "api_key",
        },
    }.items():
        for field_, value in {
            **values,
            "timeout_s": "10",
            "backoff_base_s": "0.01",
            "backoff_max_s": "0.05",
        }.items():
            env[f"RAWINFER_PROVIDERS__{name.upper()}__{field_.upper()}"] = value
    return env


@pytest.fixture(scope="session")
def service(tmp_path_factory, fakes) -> Service:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.update(provider_env(fakes))  # before ray.init: every worker inherits it
    from rawinfer.cli.launch import SERVING_ENV

    os.environ.update(SERVING_ENV)  # the proxy's request-id callback, workers at niceness 0
    import ray
    from plugin_fixtures import write_test_plugins
    from ray import serve

    from rawinfer.cli.launch import deploy, load_config

    tmp = tmp_path_factory.mktemp("service")
    db = f"sqlite:///{tmp / 'rawinfer.db'}"
    catalog = test_catalog(tmp)
    svc = seed_tenants(db)
    port, metrics_port = free_port(), free_port()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace="serve",
        _metrics_export_port=metrics_port,
        log_to_driver=os.environ.get("RAWINFER_TEST_RAY_LOGS") == "1",
    )
    try:
        two_ingresses = {"ingress": {"autoscaling_config": {"min_replicas": 2, "max_replicas": 2}}}
        svc.serve_config = config = load_config(
            port=port,
            catalog=str(catalog),
            deployments=two_ingresses,
            settings={
                "database_url": db,
                "auth_cache_ttl_s": 1.0,
                "max_body_bytes": 2 * 1024 * 1024,
                "limits": {"key_max_concurrent": 20},  # per ingress replica (test_api_tenancy)
                # test media servers listen on 127.0.0.2 only; the rest of loopback stays refused
                "media": {
                    "allow_cidrs": [MEDIA_HOST + "/32"],
                    "max_bytes": 1024 * 1024,
                    "fetch_timeout_s": 5,
                },
                # the repo's example plugins plus broken/raising/garbage/scaffolded ones
                # (tests/plugin_fixtures.py)
                "plugins_dirs": [
                    str(REPO / "examples" / "plugins"),
                    str(write_test_plugins(tmp / "plugins")),
                ],
                # the semantic cache's snapshot in this run's folder; seeded explore/exploit draws;
                # an ingress replica's exact answers expire in 1 s (a clear reaches all by then)
                "semantic_cache": {
                    "snapshot_path": str(tmp / "semantic-cache.npz"),
                    "seed": 7,
                    "exact_local_ttl_s": 1.0,
                },
            },
        )
        deploy(config)
        svc.url = f"http://127.0.0.1:{port}"
        svc.catalog_dir = tmp
        svc.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        yield svc
    finally:
        serve.shutdown()
        ray.shutdown()


class _Files(http.server.SimpleHTTPRequestHandler):
    redirects: dict[str, str] = {}

    def do_GET(self):
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def media_server(tmp_path_factory):
    """A static file server on 127.0.0.2 (the only address the test service may fetch from).
    Returns (base_url, folder, redirects: path -> Location)."""
    folder = tmp_path_factory.mktemp("media")
    handler = functools.partial(_Files, directory=str(folder))
    server = http.server.ThreadingHTTPServer((MEDIA_HOST, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{MEDIA_HOST}:{server.server_address[1]}", folder, _Files.redirects
    server.shutdown()


OFFLINE_PROMPTS = ["What is the capital of France?", "Name three primary colours."]


@pytest.fixture(scope="session")
def offline_vllm() -> dict[str, dict]:
    """Greedy answers (32 new tokens) of vLLM's offline LLM.chat for OFFLINE_PROMPTS on the
    packaged SmolLM2, computed once per run in a subprocess."""
    import json
    import subprocess

    from models.smollm2 import prepare_packaged_smollm2
    from rawinfer.core.settings import Settings

    args = {
        "model_dir": str(prepare_packaged_smollm2(Settings().cache_dir)),
        "max_model_len": 1024,
        "max_tokens": 32,
        "prompts": OFFLINE_PROMPTS,
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "offline_vllm.py")],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


def pytest_collection_modifyitems(config, items):
    """The folder says the kind: everything under tests/integration/ needs a running Serve."""
    for item in items:
        if item.path.parent.name == "integration":
            item.add_marker(pytest.mark.integration)
