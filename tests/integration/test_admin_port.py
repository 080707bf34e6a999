"""The admin API on a port of its own (`admin_port`): a second ingress application, deployed
beside the test service on the same Ray cluster and database, serves `/v1/admin` on its admin
port only; its public route answers 404 for it; the admin port serves nothing else and binds
only the configured address."""

from __future__ import annotations

import socket

import httpx
import pytest
from conftest import free_port
from helpers import assert_error


@pytest.fixture(scope="module")
def split(service):
    from ray import serve

    from router.app import Ingress

    port = free_port()
    settings = {
        **service.serve_config["applications"][0]["args"]["settings"],
        "admin_port": port,
        "admin_host": "127.0.0.1",
    }
    empty = {"backends": {}, "targets": []}
    app = Ingress.options(
        autoscaling_config=None, num_replicas=2, ray_actor_options={"num_cpus": 0}
    ).bind(settings, empty, {})
    serve.run(app, name="admin-split", route_prefix="/admin-split")
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        serve.delete("admin-split")


def test_admin_is_served_on_its_own_port_only(service, split):
    admin_url, port = split
    root = {"Authorization": f"Bearer {service.keys['admin']}"}
    with httpx.Client(base_url=admin_url, timeout=30) as admin:
        r = admin.get("/v1/admin/orgs", headers=root)
        assert r.status_code == 200 and r.json()["data"], r.text
        trail = admin.get("/v1/admin/audit", headers=root).json()["data"]
        assert trail[0]["method"] == "GET" and trail[0]["path"] == "orgs"  # still audited
        r = admin.get("/v1/admin/orgs", headers={**root, "X-Request-Id": "ops-42"})
        assert r.headers["x-request-id"] == "ops-42" == r.json()["request_id"]
        assert_error(admin.get("/v1/admin/orgs"), 401)  # still a key, checked first
        plain = {"Authorization": f"Bearer {service.keys['a']}"}
        assert_error(admin.get("/v1/admin/orgs", headers=plain), 403)
        # nothing but admin there: inference and listings are not routed
        assert_error(admin.post("/v1/inference", json={}, headers=root), 404, "NotFoundError")
        assert_error(admin.get("/v1/models", headers=root), 404)
        assert admin.get("/healthz").status_code == 200
        for _ in range(8):  # both replicas answer on the one port (SO_REUSEPORT)
            assert admin.get("/v1/admin/orgs", headers=root).status_code == 200
    # the public route of that application no longer has an admin API, even for a superuser
    with httpx.Client(base_url=service.url, timeout=30) as public:
        r = public.get("/admin-split/v1/admin/orgs", headers=root)
        assert_error(r, 404, "NotFoundError")
        assert public.get("/admin-split/healthz").status_code == 200
        # the test service (no admin_port) keeps admin on its public port
        assert public.get("/v1/admin/orgs", headers=root).status_code == 200
    # bound to 127.0.0.1 only: another loopback address has nothing listening there
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.2", port)) != 0
