"""The names, volumes and container pieces the KubeRay manifests share (scripts/gen_k8s.py
puts them together)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SERVE_CONFIG = REPO / "serve_config.gpu.yaml"


K8S = REPO / "k8s"
RAYSERVICE_PATH = K8S / "rayservice.yaml"
RAYJOB_PATH = K8S / "rayjob-batch.yaml"
DEFAULT_IMAGE = "rawinfer:latest"
RAY_VERSION = "2.60.0"
NAME = "rawinfer"
SERVE_SERVICE = f"{NAME}-serve-svc"  # KubeRay's own default name for a RayService named `rawinfer`
SERVE_PORT = 8000
MODELS_PVC = "rawinfer-models"
BATCH_DATA_PVC = "rawinfer-batch-data"
DATABASE_SECRET = "rawinfer-database"
PROVIDER_SECRET = "rawinfer-provider-keys"
BATCH_KEY_SECRET = "rawinfer-batch-key"


# provider -> key in the rawinfer-provider-keys Secret. The variable names follow the settings'
# nesting (RAWINFER_ prefix, `__` between levels): providers.<name>.api_key.
PROVIDER_KEYS = {
    "openai": "openai-api-key",
    "google": "google-api-key",
    "anthropic": "anthropic-api-key",
}
DEFAULT_GPU_NODE_SELECTOR = "nvidia.com/gpu.present=true"


def _env() -> list[dict[str, Any]]:
    """Environment of every Ray container of the service: the app builder (which reads Settings)
    runs on whichever node Serve picks, and the replicas everywhere."""
    env: list[dict[str, Any]] = [
        {
            "name": "RAWINFER_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": DATABASE_SECRET, "key": "url"}},
        }
    ]
    for provider, key in PROVIDER_KEYS.items():
        env.append(
            {
                "name": f"RAWINFER_PROVIDERS__{provider.upper()}__API_KEY",
                "valueFrom": {
                    "secretKeyRef": {"name": PROVIDER_SECRET, "key": key, "optional": True}
                },
            }
        )
    env += [
        {"name": "HF_HUB_OFFLINE", "value": "1"},  # weights come from /models, never from a hub
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        # Serve's HTTP proxy cleans X-Request-Id before echoing it (router/proxy.py); read when Ray
        # starts
        {"name": "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "value": "router.proxy:middlewares"},
        # replicas at niceness 0, not Ray's default 15 (read when Ray starts)
        {"name": "RAY_worker_niceness", "value": "0"},
    ]
    return env


def _resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def _container(
    name: str,
    image: str,
    resources: dict[str, Any],
    ports: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    env: list[dict[str, Any]],
    worker: bool,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": ports,
        "resources": resources,
        "volumeMounts": mounts,
    }
    if worker:
        c["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}}
    return c


def _head_ports() -> list[dict[str, Any]]:
    return [
        {"name": "gcs-server", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "client", "containerPort": 10001},
        {"name": "serve", "containerPort": SERVE_PORT},
        {"name": "metrics", "containerPort": 8080},
    ]


def _worker_ports() -> list[dict[str, Any]]:
    return [
        {"name": "serve", "containerPort": SERVE_PORT},
        {"name": "metrics", "containerPort": 8080},
    ]


LOGS_VOLUME = {"name": "ray-logs", "emptyDir": {}}
LOGS_MOUNT = {"name": "ray-logs", "mountPath": "/tmp/ray"}
MODELS_VOLUME = {
    "name": "models",
    "persistentVolumeClaim": {"claimName": MODELS_PVC, "readOnly": True},
}
MODELS_MOUNT = {"name": "models", "mountPath": "/models", "readOnly": True}


# vLLM and torch DataLoader-style workers use shared memory; the container default is 64 MiB
SHM_VOLUME = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
SHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}


def _labels(part_of: str = NAME) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": part_of}
