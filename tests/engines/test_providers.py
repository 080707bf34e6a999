"""Cloud-provider adapters against local fakes of each provider's wire format
(tests/fake_providers): the seed rows (what was sent, what came back), the registry, and the
catalog as the one source of each cloud model's tasks."""

from __future__ import annotations

import base64
import math

import pytest
from fake_providers import (
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    MM_DIMS,
    OPENAI_KEY,
    Fakes,
    chat,
    fails,
    make,
    models_for,
    run,
)

from models.providers import ADAPTERS, GoogleSettings, ProviderSettings
from models.providers.base import catalog_models
from rawinfer.contract import Task, detect_task
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.catalog import load_catalog
from rawinfer.core.settings import REPO_ROOT

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
MP3 = b"ID3\x04\x00" + bytes(64)
MEDIA = {"image": PNG, "video": MP4, "audio": MP3}

# every example row of seed/raw-inference-endpoint.txt that names a cloud provider
SEED_ROWS = [
    {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputs": {"prompts": ["What is AI?"]},
        "parameters": {"temperature": 0.7, "max_tokens": 500},
    },
    {
        "provider": "openai",
        "model": "text-embedding-3-large",
        "inputs": {"text": "machine learning"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"text": "machine learning"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"image_url": "https://example.com/image.jpg"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"image_base64": "<base64-encoded-image>"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"video_url": "https://example.com/video.mp4"},
        "parameters": {},
    },
    {
        "provider": "google",
        "model": "multimodalembedding",
        "inputs": {"video_base64": "<base64-encoded-video>"},
        "parameters": {},
    },
    {
        "provider": "openai",
        "model": "whisper-1",
        "inputs": {"audio_url": "https://example.com/audio.mp3"},
        "parameters": {},
    },
    {
        "provider": "openai",
        "model": "gpt-4o",
        "inputs": {
            "prompts": ["Describe this image"],
            "image_url": "https://example.com/image.jpg",
        },
        "parameters": {"temperature": 0.5},
    },
]


@pytest.fixture(scope="module")
def fakes():
    env = pytest.MonkeyPatch()  # tests talk to loopback only: no proxy in the way
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.delenv(var, raising=False)
    f = Fakes()
    # the SDKs' first call pays for lazy imports and model building (~0.5 s): pay it here, not
    # inside the short deadlines of the timing tests
    for name, model in (
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5"),
        ("google", "gemini-2.5-flash"),
    ):
        run(make(name, f), chat(model))
    run(
        make("google", f),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    yield f
    for x in f.all:
        x.stop()
    env.undo()


@pytest.fixture(autouse=True)
def _clean(fakes):
    for x in fakes.all:
        x.reset()


def ingress(row: dict, adapter) -> dict:
    """What the ingress hands an adapter: the task detected, media fetched as bytes."""
    inputs = dict(row["inputs"])
    task = detect_task(inputs, {Task(t) for t in adapter.tasks_for(row["model"])})
    for key in [k for k in inputs if k.endswith(("_url", "_base64"))]:
        kind = key.split("_")[0]
        del inputs[key]
        inputs.update(media=MEDIA[kind], media_kind=kind, mime=None, filename=None)
    return {
        "task": task.value,
        "model": row["model"],
        "inputs": inputs,
        "parameters": row["parameters"],
    }


def unit(v) -> bool:
    return abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-6


# ------------------------------------------------------------------------------ seed rows


@pytest.mark.parametrize(
    "row", SEED_ROWS, ids=lambda r: f"{r['provider']}-{r['model']}-{next(iter(r['inputs']))}"
)
def test_seed_rows(fakes, row):
    adapter = make(row["provider"], fakes)
    req = ingress(row, adapter)
    out = run(adapter, req)
    data, task = out["data"], req["task"]
    if row["provider"] == "openai":
        sent = fakes.openai.requests[-1]
        assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    else:
        sent = fakes.vertex.requests[-1]
        assert sent.headers["x-goog-api-key"] == GOOGLE_KEY
        assert sent.path == (
            "/v1/projects/proj-1/locations/europe-west4/publishers/google/models/"
            "multimodalembedding@001:predict"
        )
        assert out["model"] == "multimodalembedding@001" and out["tokens_used"] is None
    if task in ("chat", "vision"):
        assert sent.path == "/v1/chat/completions" and sent.json["model"] == row["model"]
        assert sent.json["temperature"] == row["parameters"]["temperature"]
        assert sent.json["max_completion_tokens"] == row["parameters"].get("max_tokens", 256)
        assert "top_p" not in sent.json and "seed" not in sent.json and "stop" not in sent.json
        content = sent.json["messages"][-1]["content"]
        if task == "vision":
            assert content[0] == {"type": "text", "text": "Describe this image"}
            assert (
                content[1]["image_url"]["url"]
                == "data:image/png;base64," + base64.b64encode(PNG).decode()
            )
        else:
            assert sent.json["messages"] == [{"role": "user", "content": "What is AI?"}]
        prompt = row["inputs"]["prompts"][0]
        assert data == {"responses": [{"text": f"echo: {prompt}", "finish_reason": "stop"}]}
        assert out["model"] == row["model"] + "-2024-07-18"
        n = len(prompt.split())
        assert out["tokens_used"] == {"prompt": n, "completion": n + 1, "total": 2 * n + 1}
    elif task == "text_embedding":
        assert sent.json == {
            "model": "text-embedding-3-large",
            "input": ["machine learning"],
            "encoding_format": "float",
        }
        assert data["dimensions"] == len(data["embedding"]) == 16 and unit(data["embedding"])
        assert out["tokens_used"] == {"prompt": 2, "completion": 0, "total": 2}
    elif task == "transcription":
        assert sent.path == "/v1/audio/transcriptions"
        assert sent.form["model"] == ["whisper-1"] and sent.form["response_format"] == [
            "verbose_json"
        ]
        assert sent.files["file"] == ("audio.mp3", "audio/mpeg", MP3)
        assert data == {
            "text": "Hello world. Good morning.",
            "language": "en",
            "duration": 3.52,
            "segments": [
                {"start": 0.0, "end": 1.5, "text": "Hello world."},
                {"start": 1.5, "end": 3.52, "text": "Good morning."},
            ],
        }
        assert out["tokens_used"] is None and out["model"] == "whisper-1"
    elif "text" in row["inputs"]:
        assert sent.json == {"instances": [{"text": "machine learning"}]}
        assert data["dimensions"] == MM_DIMS == len(data["embedding"]) and unit(data["embedding"])
    elif "image_url" in row["inputs"] or "image_base64" in row["inputs"]:
        assert sent.json == {
            "instances": [{"image": {"bytesBase64Encoded": base64.b64encode(PNG).decode()}}]
        }
        assert data["dimensions"] == MM_DIMS and unit(data["embedding"]) and "segments" not in data
    else:
        assert sent.json == {
            "instances": [{"video": {"bytesBase64Encoded": base64.b64encode(MP4).decode()}}]
        }
        assert [(s["start"], s["end"]) for s in data["segments"]] == [(0, 16), (16, 32), (32, 40)]
        assert all(
            len(s["embedding"]) == MM_DIMS and unit(s["embedding"]) for s in data["segments"]
        )
        mean = [sum(s["embedding"][i] for s in data["segments"]) / 3 for i in range(MM_DIMS)]
        norm = math.sqrt(sum(x * x for x in mean))
        assert unit(data["embedding"]) and all(
            abs(a - b / norm) < 1e-9 for a, b in zip(data["embedding"], mean)
        )


def test_registry_and_settings():
    assert set(ADAPTERS) == {"openai", "google", "anthropic"}
    s = ProviderSettings(api_key=OPENAI_KEY)
    assert OPENAI_KEY not in repr(s) and OPENAI_KEY not in str(s.model_dump())
    # a plain ProviderSettings is widened
    g = ADAPTERS["google"](ProviderSettings(api_key=GOOGLE_KEY), models=models_for("google"))
    assert isinstance(g.settings, GoogleSettings) and g.settings.key() == GOOGLE_KEY
    assert g.tasks_for("gemini-2.5-flash") == {"chat", "vision"}
    assert g.tasks_for("multimodalembedding") == {"multimodal_embedding"}
    o = ADAPTERS["openai"](models=models_for("openai"))
    a = ADAPTERS["anthropic"](models=models_for("anthropic"))
    assert o.tasks_for("text-embedding-3-small") == {"text_embedding"}
    assert o.tasks_for("whisper-1") == {"transcription"}
    assert o.tasks_for("gpt-4o") == {"chat", "vision"} and o.tasks_for("gpt-3.5-turbo") == set()
    assert a.tasks_for("claude-sonnet-4-5") == {"chat", "vision"} and a.tasks_for("gpt-4o") == set()


@pytest.mark.parametrize("path", ["catalog.yaml", "catalog.gpu.yaml"])
def test_the_catalog_declares_each_cloud_models_tasks(path):
    """The catalog is the one source of a cloud model's tasks; an adapter knows only the tasks
    its wire format serves, and every provider backend claims no more than those."""
    catalog = load_catalog(REPO_ROOT / path)
    for name, spec in catalog.backends.items():
        if spec.engine != "provider":
            continue
        wire = ADAPTERS[spec.provider].tasks
        assert {t.value for t in spec.tasks} <= wire, name
        table = catalog_models(catalog, name)
        assert table and all(set(ts) <= wire for ts in table.values())
        adapter = ADAPTERS[spec.provider](models=table)
        for model, tasks in table.items():
            assert adapter.tasks_for(model) == set(tasks)
    assert ADAPTERS["openai"].tasks == {"chat", "vision", "text_embedding", "transcription"}
    assert ADAPTERS["google"].tasks == {"chat", "vision", "multimodal_embedding"}
    assert ADAPTERS["anthropic"].tasks == {"chat", "vision"}


def test_without_a_table_only_the_wire_format_limits_tasks(fakes):
    """A deployment given no table (the ingress has resolved the name through the catalog):
    any model, but still only the tasks the provider's API serves (400 otherwise)."""
    a = ADAPTERS["anthropic"]({"api_key": ANTHROPIC_KEY, "base_url": fakes.anthropic.url})
    assert a.tasks_for("any-model") == {"chat", "vision"}
    embed = {"task": "text_embedding", "model": "claude-x", "inputs": {"text": "x"}}
    err, _ = fails(a, {**embed, "parameters": {}})
    assert isinstance(err, InvalidRequest) and err.details["supported_tasks"] == ["chat", "vision"]
    assert not fakes.anthropic.requests
    out = run(a, chat("claude-anything"))
    assert out["data"]["responses"][0]["text"] == "echo: What is AI?"


# ------------------------------------------------------------------------------ chat details
