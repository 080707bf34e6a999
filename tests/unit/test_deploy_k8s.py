"""The KubeRay manifests (k8s/) against KubeRay's own CRDs, vendored in k8s/crds: jsonschema plus
a strict walk that refuses any key the schema does not declare; and the manifests against the
serve configs they are generated from."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from test_deploy_config import (
    _DNS1123,
    K8S,
    _deploy_schema,
    gen_k8s,
    load_docs,
    load_yaml,
    serve_config,
    unknown_serve_keys,
)

CRDS = Path(__file__).resolve().parents[2] / "k8s" / "crds"  # vendored (k8s/crds/README.md)


CRD_FILES = {
    "RayService": "ray.io_rayservices.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
}


@lru_cache(maxsize=None)
def crd_schema(kind: str) -> dict[str, Any]:
    crd = load_yaml(CRDS / CRD_FILES[kind])
    assert crd["spec"]["names"]["kind"] == kind
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def unknown_k8s_fields(doc: Any, schema: dict[str, Any]) -> list[str]:
    """Paths of keys that the structural schema does not declare (Kubernetes would prune them).
    A node with `x-kubernetes-preserve-unknown-fields: true` keeps anything below it; a map
    (`additionalProperties`) takes any key. The root `metadata` is the API server's ObjectMeta
    (the CRD only says `type: object`): checked by `check_object_meta` instead."""
    bad: list[str] = []

    def props_of(node: dict[str, Any]) -> dict[str, Any] | None:
        props = node.get("properties")
        for combo in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(combo, []):
                if "properties" in sub:
                    props = {**(props or {}), **sub["properties"]}
        return props

    def walk(node: Any, sch: dict[str, Any], path: str) -> None:
        if sch.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(node, dict):
            props, extra = props_of(sch), sch.get("additionalProperties")
            for key, value in node.items():
                where = f"{path}.{key}" if path else key
                if not path and key == "metadata":
                    continue
                if props is not None and key in props:
                    walk(value, props[key], where)
                elif isinstance(extra, dict):
                    walk(value, extra, where)
                elif extra is not True:
                    bad.append(where)
        elif isinstance(node, list) and isinstance(sch.get("items"), dict):
            for i, item in enumerate(node):
                walk(item, sch["items"], f"{path}[{i}]")

    walk(doc, schema, "")
    return bad


# KubeRay appends 6 characters to a RayService/RayJob name for its RayCluster, and "-serve-svc"
# to that: 63 - 10 - 6
_MAX_NAME = {"RayService": 47, "RayJob": 47, "RayCluster": 53}


def check_object_meta(doc: dict[str, Any]) -> None:
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    assert _DNS1123.match(name) and len(name) <= _MAX_NAME[doc["kind"]], (
        f"bad {doc['kind']} name {name!r}"
    )
    allowed = {"name", "namespace", "labels", "annotations"}
    assert set(meta) <= allowed, f"{name}: metadata keys {set(meta) - allowed}"
    for k, v in {**meta.get("labels", {}), **meta.get("annotations", {})}.items():
        assert isinstance(v, str), f"{name}: label/annotation {k} must be a string"


def kuberay_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_docs(path):
            if doc.get("kind") in CRD_FILES:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


def validate_kuberay(doc: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(jsonschema errors, unknown fields) of one manifest against its CRD."""
    schema = crd_schema(doc["kind"])
    assert doc["apiVersion"] == "ray.io/v1"
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]
    return errors, unknown_k8s_fields(doc, schema)


def test_k8s_has_the_kuberay_manifests():
    kinds = sorted({d["kind"] for _, d in kuberay_docs()})
    assert kinds == ["RayJob", "RayService"]


@pytest.mark.parametrize("label,doc", kuberay_docs(), ids=[label for label, _ in kuberay_docs()])
def test_kuberay_manifest_matches_crd(label, doc):
    check_object_meta(doc)
    errors, unknown = validate_kuberay(doc)
    assert errors == [], f"{label} fails the CRD schema: {errors[:10]}"
    assert unknown == [], (
        f"{label} has fields the CRD does not declare (Kubernetes would drop them): {unknown}"
    )


def _rayservice() -> dict[str, Any]:
    (doc,) = [d for _, d in kuberay_docs() if d["kind"] == "RayService"]
    return doc


def test_typo_in_kuberay_manifest_is_caught():
    """A typo'd field passes the schema (unknown keys are allowed there and pruned on apply): only
    the strict walk sees it. A wrong type is caught by the schema itself."""
    doc = copy.deepcopy(_rayservice())
    cluster = doc["spec"]["rayClusterConfig"]
    cluster["enableInTreeAutoscalling"] = cluster.pop("enableInTreeAutoscaling")
    gpu_pod = cluster["workerGroupSpecs"][1]["template"]["spec"]
    gpu_pod["toleration"] = gpu_pod.pop("tolerations")
    errors, unknown = validate_kuberay(doc)
    assert errors == []
    assert sorted(unknown) == [
        "spec.rayClusterConfig.enableInTreeAutoscalling",
        "spec.rayClusterConfig.workerGroupSpecs[1].template.spec.toleration",
    ]

    doc = copy.deepcopy(_rayservice())
    doc["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = (
        0  # must be a string
    )
    errors, _ = validate_kuberay(doc)
    assert any("rayStartParams.num-cpus" in e for e in errors), errors


def _pod_specs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = doc["spec"].get("rayClusterConfig") or doc["spec"]["rayClusterSpec"]
    pods = {"head": cluster["headGroupSpec"]["template"]}
    pods |= {g["groupName"]: g["template"] for g in cluster.get("workerGroupSpecs", [])}
    return pods


def test_rayservice_cluster_layout():
    doc = _rayservice()
    cluster = doc["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert 0 < g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    pods = _pod_specs(doc)
    gpu = pods["gpu"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"]) and gpu["nodeSelector"]
    for name, pod in pods.items():
        c = pod["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in c["resources"]["limits"] or name == "gpu"
        env = {e["name"]: e for e in c["env"]}
        assert (
            env["RAWINFER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "rawinfer-database"
        )
        for p in ("OPENAI", "GOOGLE", "ANTHROPIC"):
            assert (
                env[f"RAWINFER_PROVIDERS__{p}__API_KEY"]["valueFrom"]["secretKeyRef"]["name"]
                == "rawinfer-provider-keys"
            )
        if name != "head":
            assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]


def test_serve_config_v2_is_generated_from_the_gpu_config():
    gen = gen_k8s()
    text = _rayservice()["spec"]["serveConfigV2"]
    assert text == gen.serve_config_v2_text(serve_config("gpu"))
    parsed = yaml.safe_load(text)
    expected = copy.deepcopy(serve_config("gpu"))
    for key in ("host", "port"):  # KubeRay's serve Service and Serve's defaults: 0.0.0.0:8000
        expected["http_options"].pop(key)
    assert parsed == expected
    ServeDeploySchema = _deploy_schema()
    schema = ServeDeploySchema.model_validate(parsed)
    assert (schema.http_options.host, schema.http_options.port) == ("0.0.0.0", 8000)
    assert unknown_serve_keys(parsed, ServeDeploySchema) == []


def test_generated_manifests_are_up_to_date(capsys):
    gen = gen_k8s()
    assert gen.main(["--check"]) == 0, capsys.readouterr().out[-3000:]
    assert gen.rayjob()["spec"]["entrypoint"].startswith(
        "rawinfer batch /data/input.jsonl /data/output.jsonl --url http://rawinfer-serve-svc:8000"
    )


EXPECTED_KINDS = {
    "pvc.yaml": ("v1", "PersistentVolumeClaim"),
    "secret.example.yaml": ("v1", "Secret"),
    "service.yaml": ("v1", "Service"),
    "ingress.yaml": ("networking.k8s.io/v1", "Ingress"),
}


@pytest.mark.parametrize("filename", sorted(EXPECTED_KINDS))
def test_plain_manifest_kinds(filename):
    docs = load_docs(K8S / filename)
    assert docs
    for doc in docs:
        assert (doc["apiVersion"], doc["kind"]) == EXPECTED_KINDS[filename]
        assert _DNS1123.match(doc["metadata"]["name"])


def test_every_k8s_file_is_checked():
    known = set(EXPECTED_KINDS) | {"rayservice.yaml", "rayjob-batch.yaml"}
    assert {p.name for p in K8S.glob("*.y*ml")} == known


def test_manifests_agree_with_each_other():
    service = _rayservice()
    (job,) = [d for _, d in kuberay_docs() if d["kind"] == "RayJob"]
    secrets = {d["metadata"]["name"]: d for d in load_docs(K8S / "secret.example.yaml")}
    claims = {d["metadata"]["name"] for d in load_docs(K8S / "pvc.yaml")}
    serve_svc = service["spec"]["serveService"]
    assert serve_svc["spec"]["ports"][0]["name"] == "serve"

    for doc in (service, job):
        for pod in _pod_specs(doc).values():
            for c in pod["spec"]["containers"]:
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in secrets[ref["name"]]["stringData"], ref
            for v in pod["spec"].get("volumes", []):
                if "persistentVolumeClaim" in v:
                    assert v["persistentVolumeClaim"]["claimName"] in claims

    (ingress,) = load_docs(K8S / "ingress.yaml")
    backends = [
        p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]
    ]
    assert backends and all(
        b
        == {
            "name": serve_svc["metadata"]["name"],
            "port": {"number": serve_svc["spec"]["ports"][0]["port"]},
        }
        for b in backends
    )
    # the public ingress never routes the admin API (docs/tenancy.md)
    paths = [p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert not any("/v1/admin".startswith(p.rstrip("/") or "/") for p in paths), paths
    assert "/v1/inference" in paths and "/v1/chat/completions" in paths
    assert (
        f"http://{serve_svc['metadata']['name']}:{serve_svc['spec']['ports'][0]['port']}"
        in job["spec"]["entrypoint"]
    )

    (public,) = load_docs(K8S / "service.yaml")
    selector = public["spec"]["selector"]
    worker_labels = _pod_specs(service)["gpu"]["metadata"]["labels"]
    assert {
        k: v for k, v in selector.items() if not k.startswith("ray.io/")
    }.items() <= worker_labels.items()
    assert public["spec"]["ports"][0]["targetPort"] == 8000
