"""Multimodal embeddings over HTTP with the test-built CLIP (tests/conftest.py: test_catalog)."""

from __future__ import annotations

import base64
import io

import av
import numpy as np
import pytest
from helpers import assert_error
from PIL import Image
from test_clip_engine import BLUE, GREEN, RED, cos, encoded, gradient, make_video, png_claiming

CLIP = {"inference_name": "laion_clip_vit_l_14_v1"}


@pytest.fixture(scope="module")
def http(service):
    with service.client() as c:
        yield c


@pytest.fixture(scope="module")
def engine(service):
    """The same model files the service loaded, in this process."""
    from models.clip import ClipEngine
    from rawinfer.core.catalog import load_catalog

    spec = load_catalog(service.catalog_dir / "catalog.test.yaml").backends["clip"]
    e = ClipEngine(
        spec.options["model_name"],
        spec.model_path,
        served_model=spec.served_model,
        model_config_path=spec.options["model_config_path"],
    )
    e.load()
    return e


@pytest.fixture(scope="module")
def files(media_server):
    url, folder, _ = media_server
    png = encoded(gradient(), "PNG")
    (folder / "image.png").write_bytes(png)
    video = make_video(colors=(RED, RED, GREEN, BLUE), each_s=1.0)
    (folder / "video.mp4").write_bytes(video)
    return url, png, video


def post(http, service, body):
    return http.post("/v1/inference", json=body, headers=service.headers())


def test_image_equals_the_engines_embedding_in_every_form(http, service, engine, files):
    url, png, _ = files
    want = engine.normalize(engine.embed_images([Image.open(io.BytesIO(png)).convert("RGB")]))[0]
    b64 = base64.b64encode(png).decode()
    vectors = []
    for inputs in (
        {"image_url": f"{url}/image.png"},
        {"image_base64": b64},
        {"image_base64": "data:image/png;base64," + b64},
    ):
        r = post(http, service, {**CLIP, "inputs": inputs})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "rawinfer-test-clip" and body["tokens_used"] is None
        assert body["data"]["dimensions"] == engine.dimensions == len(body["data"]["embedding"])
        assert cos(body["data"]["embedding"], want) >= 0.9999
        vectors.append(body["data"]["embedding"])
    assert np.allclose(vectors[0], vectors[1]) and np.allclose(vectors[1], vectors[2])


def test_text_lands_in_the_same_space(http, service, engine):
    r = post(
        http,
        service,
        {
            "feature_uri": "mixpeek://clip_vit_l_14@v1/text_embedding",
            "inputs": {"texts": ["a red square", "a cat"]},
        },
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    want = engine.normalize(engine.embed_texts(["a red square", "a cat"]))
    assert data["dimensions"] == engine.dimensions and all(
        cos(g, w) >= 0.9999 for g, w in zip(data["embeddings"], want)
    )
    assert r.json()["tokens_used"]["prompt"] == sum(engine.count_tokens(["a red square", "a cat"]))


def test_video_segments_and_pooled_vector(http, service, files):
    url, _, video = files
    r = post(
        http,
        service,
        {
            "feature_uri": "mixpeek://clip_vit_l_14@v1/video_embedding",
            "inputs": {"video_url": f"{url}/video.mp4"},
            "parameters": {"interval_sec": 1.0},
        },
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    segs = data["segments"]
    assert [(s["start"], s["end"]) for s in segs] == [
        (0.0, 1.0),
        (1.0, 2.0),
        (2.0, 3.0),
        (3.0, 4.0),
    ]
    e = [np.asarray(s["embedding"]) for s in segs]
    assert cos(e[0], e[1]) >= 0.9999  # both red
    assert cos(e[1], e[2]) < 0.999 and cos(e[2], e[3]) < 0.999  # red, green, blue differ
    mean = np.mean(e, axis=0)
    assert np.allclose(data["embedding"], mean / np.linalg.norm(mean), atol=1e-5)
    b64 = post(
        http,
        service,
        {
            **CLIP,
            "inputs": {"video_base64": base64.b64encode(video).decode()},
            "parameters": {"interval_sec": 2.0, "max_frames": 1},
        },
    )
    assert [(s["start"], s["end"]) for s in b64.json()["data"]["segments"]] == [(0.0, 2.0)]


def audio_only_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        for p in list(s.encode(frame)) + list(s.encode()):
            c.mux(p)
    return buf.getvalue()


@pytest.mark.parametrize(
    "label,inputs",
    [
        (
            "corrupt image",
            {"image_base64": base64.b64encode(b"\x89PNG\r\n\x1a\nnot really").decode()},
        ),
        ("bomb png", {"image_base64": base64.b64encode(png_claiming(100_000, 100_000)).decode()}),
        ("text as image", {"image_base64": base64.b64encode(b"hello, I am text").decode()}),
        ("empty image", {"image_base64": ""}),
        ("audio-only video", {"video_base64": base64.b64encode(audio_only_mp4()).decode()}),
        (
            "corrupt video",
            {
                "video_base64": base64.b64encode(
                    b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500
                ).decode()
            },
        ),
        ("two inputs", {"image_url": "http://127.0.0.2/x.png", "text": "x"}),
        ("loopback url", {"image_url": "http://127.0.0.1/x.png"}),
    ],
)
def test_bad_media_is_400(http, service, label, inputs):
    assert_error(post(http, service, {**CLIP, "inputs": inputs}), 400)


@pytest.mark.parametrize(
    "parameters", [{"interval_sec": 0}, {"max_frames": 0}, {"fps": 2}, {"normalize": "yes"}]
)
def test_bad_parameters(http, service, parameters, files):
    assert_error(
        post(
            http,
            service,
            {
                **CLIP,
                "inputs": {"video_base64": base64.b64encode(files[2]).decode()},
                "parameters": parameters,
            },
        ),
        400,
    )


def test_clip_is_listed_as_available_with_the_test_model(http, service):
    listing = http.get("/v1/inference/models", headers=service.headers()).json()["data"]
    (entry,) = [e for e in listing if e["inference_name"] == "laion_clip_vit_l_14_v1"]
    assert entry["status"] == "available" and entry["tasks"] == ["multimodal_embedding"]
