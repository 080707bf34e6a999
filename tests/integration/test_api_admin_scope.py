"""Admin scope over HTTP: an organisation admin key made through the API by a superuser sees
only its own organisation, every call lands in the audit trail, a non-admin key is refused."""

from __future__ import annotations

import uuid

from helpers import assert_error


def test_an_org_admin_over_http(service):
    root = {"Authorization": f"Bearer {service.keys['admin']}"}
    mine, theirs = f"org-{uuid.uuid4().hex[:6]}", f"org-{uuid.uuid4().hex[:6]}"
    with service.client() as c:
        ids = {}
        for org in (mine, theirs):
            r = c.post("/v1/admin/orgs", json={"name": org}, headers=root)
            assert r.status_code == 201, r.text
            ids[org] = r.json()["id"]
        r = c.post(
            "/v1/admin/keys", json={"name": "a", "org": mine, "is_admin": True}, headers=root
        )
        assert r.status_code == 201, r.text
        admin = {"Authorization": f"Bearer {r.json()['secret']}"}
        r = c.post("/v1/admin/keys", json={"name": "b", "org": theirs}, headers=root)
        other_key = r.json()["key"]["id"]

        assert [o["name"] for o in c.get("/v1/admin/orgs", headers=admin).json()["data"]] == [mine]
        assert_error(c.get(f"/v1/admin/keys/{other_key}", headers=admin), 404, "NotFoundError")
        assert_error(
            c.post("/v1/admin/orgs", json={"name": "x-" + mine}, headers=admin),
            403,
            "PermissionDeniedError",
        )
        r = c.post("/v1/admin/namespaces", json={"name": f"ns-{mine}"}, headers=admin)
        assert r.status_code == 201 and r.json()["org_id"] == ids[mine], r.text

        trail = c.get("/v1/admin/audit", headers=admin).json()["data"]
        assert [(a["method"], a["status"]) for a in trail[:4]] == [
            ("POST", 201),
            ("POST", 403),
            ("GET", 404),
            ("GET", 200),
        ]
        assert {a["org_id"] for a in trail} == {ids[mine]}  # its own organisation's only
        everything = c.get("/v1/admin/audit", params={"limit": 1000}, headers=root).json()["data"]
        assert any(a["path"] == "orgs" and a["method"] == "POST" for a in everything)
        # a key that is not an admin key: refused before any admin work
        plain = {"Authorization": f"Bearer {service.keys['a']}"}
        assert_error(c.get("/v1/admin/audit", headers=plain), 403)
