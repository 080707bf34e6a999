"""The open_clip engine alone (no Ray), on a tiny CLIP built with random weights in the test
(no weights exist offline), loaded back through ClipEngine like production weights. Also image
decoding (models/images.py) and video frame sampling (models/video.py)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageFile

from models.clip import ClipEngine, build_test_model
from models.images import decode_image
from rawinfer.contract.errors import InvalidRequest

REPO = Path(__file__).resolve().parents[2]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    name, weights = build_test_model(folder)
    return folder, name, weights


@pytest.fixture(scope="module")
def engine(built):
    folder, name, weights = built
    e = ClipEngine(
        name,
        str(weights),
        served_model="test-clip",
        batch_size=4,
        model_config_path=folder / f"{name}.json",
    )
    e.load()
    return e


def cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def gradient(w: int = 200, h: int = 150) -> Image.Image:
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_video(
    colors=(RED, GREEN, BLUE),
    each_s: float = 2.0,
    fps: int = 10,
    fmt: str = "mp4",
    codec: str = "mpeg4",
    size=(64, 48),
    rotation: float | None = None,
    frame=None,
) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        if rotation is not None:
            s.set_display_rotation(rotation)
        i = 0
        for color in colors:
            for _ in range(int(each_s * fps)):
                arr = (
                    frame if frame is not None else np.full((size[1], size[0], 3), color, np.uint8)
                )
                f = av.VideoFrame.from_ndarray(arr, format="rgb24")
                f.pts = i
                i += 1
                for p in s.encode(f):
                    c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


# ------------------------------------------------------------------ the engine and the test model


def test_test_model_loads_like_production_weights(engine, built):
    _, name, weights = built
    assert engine.dimensions == 32 and engine.model_name == name and weights.is_file()
    texts = engine.embed_texts(["a red square", "a photo of a cat", ""])
    images = engine.embed_images([gradient()])
    assert texts.dtype == np.float32 and texts.shape == (3, 32) and images.shape == (1, 32)
    # the weights really came from the file: a second load gives the same vectors (to float
    # rounding: CPU kernels may sum in another order; fresh random weights would differ by O(1))
    again = ClipEngine(name, str(weights), served_model="x")
    again.load()
    assert np.allclose(again.embed_texts(["a red square"]), texts[:1], rtol=0, atol=1e-5)


def test_image_embedding_is_the_models_own_encode(engine):
    import torch

    imgs = [gradient(), Image.new("RGB", (50, 90), RED), gradient(80, 300).rotate(30)]
    rows = engine.embed_images(imgs)
    with torch.inference_mode():
        bare = engine.model.encode_image(engine.preprocess(imgs)).numpy()
        for i, img in enumerate(imgs):
            one = engine.model.encode_image(engine._preprocess(img).unsqueeze(0)).numpy()[0]
            assert cos(rows[i], one) >= 0.9999
    assert np.allclose(rows, bare, atol=1e-5)
    # batched (batch_size 4) and one at a time agree
    many = [gradient(100 + 10 * i, 120) for i in range(9)]
    batched = engine.embed_images(many)
    for i, img in enumerate(many):
        assert cos(batched[i], engine.embed_images([img])[0]) >= 0.9999


def test_normalize_helper(engine):
    rows = engine.normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(rows, [[0.6, 0.8], [0, 0]]) and rows.dtype == np.float32


def test_count_tokens(engine):
    assert engine.count_tokens(["hello world", ""]) == [4, 2]  # start + 2 words + end; start + end
    assert engine.count_tokens(["word " * 200]) == [77]  # truncated to the context length


def test_weights_must_be_a_local_file(built):
    folder, name, _ = built
    for bad in (
        "openai",
        str(folder / "missing.pt"),
    ):  # a tag would download: refused before open_clip
        with pytest.raises(FileNotFoundError, match="not found"):
            ClipEngine(name, bad, served_model="x").load()
    with pytest.raises(ValueError, match="hf-hub"):
        ClipEngine("hf-hub:laion/x", None, served_model="x").load()


def test_config_registers_in_another_process(engine, built):
    """A Ray replica is another process: the config path and the weights path are enough."""
    folder, name, weights = built
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from models.clip import ClipEngine;"
        "e = ClipEngine(sys.argv[2], sys.argv[3], served_model='x', "
        "model_config_path=sys.argv[4]); e.load();"
        "print(','.join(repr(float(v)) for v in e.embed_texts(['a red square'])[0]))"
    )
    out = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(REPO),
                name,
                str(weights),
                str(folder / f"{name}.json"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    theirs = np.array([float(v) for v in out.split(",")], np.float32)
    assert np.allclose(theirs, engine.embed_texts(["a red square"])[0], atol=1e-6)


# ------------------------------------------------------------------ image decoding


def test_png_and_jpeg_agree_and_identical_bytes_agree_exactly(engine):
    img = gradient()
    png, jpeg = encoded(img, "PNG"), encoded(img, "JPEG", quality=95)
    a, b = engine.embed_images([decode_image(png), decode_image(jpeg)])
    assert cos(a, b) >= 0.99
    assert np.array_equal(
        engine.embed_images([decode_image(png)])[0], engine.embed_images([decode_image(png)])[0]
    )


def test_modes_become_rgb():
    for mode in ("L", "P", "RGBA", "CMYK", "I;16", "1"):
        img = decode_image(encoded(gradient().convert(mode), "TIFF"))
        assert img.mode == "RGB" and img.size == (200, 150)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display rotated 90 degrees clockwise
    out = decode_image(encoded(img, "JPEG", quality=95, exif=exif))
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[2] > 200 and top[0] < 50 and bottom[0] > 200  # blue (the left) went to the top
    assert decode_image(encoded(img, "JPEG")).size == (40, 20)  # no tag, no change


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_give_the_first_frame(fmt):
    frames = [Image.new("RGB", (32, 32), c) for c in (RED, GREEN, BLUE)]
    data = encoded(
        frames[0],
        fmt,
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
        **({"lossless": True} if fmt == "WEBP" else {}),
    )
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode_image(data)
    assert out.mode == "RGB" and out.size == (32, 32)
    r, g, b = out.getpixel((16, 16))
    assert r > 200 and g < 50 and b < 50


def png_claiming(width: int, height: int) -> bytes:
    """A small valid-looking PNG whose header claims width x height (the data holds one row)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def test_decompression_bombs_are_refused_before_decoding(monkeypatch):
    def no_decoding(self, *a, **kw):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    small = png_claiming(100_000, 100_000)
    assert len(small) < 1000
    with pytest.raises(
        InvalidRequest, match="too large"
    ):  # Pillow's own guard (> 2x MAX_IMAGE_PIXELS)
        decode_image(small)
    with pytest.raises(
        InvalidRequest, match=r"too large: 10000x6000 pixels"
    ) as e:  # ours: over 50M pixels
        decode_image(png_claiming(10_000, 6_000))
    assert e.value.details["max_pixels"] == 50_000_000
    with pytest.raises(
        InvalidRequest, match="too large"
    ):  # Pillow's warning (> MAX_IMAGE_PIXELS) too
        decode_image(png_claiming(10_000, 10_000), max_pixels=10**9)
    with pytest.raises(InvalidRequest, match=r"too large: 200x150"):
        decode_image(encoded(gradient(), "PNG"), max_pixels=10_000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is text and not an image",
        bytes(range(256)) * 4,
        encoded(gradient(), "JPEG")[:400],
        encoded(gradient(), "PNG")[:300],
        encoded(gradient(), "PNG")[:60] + b"\0" * 500,
        # EPS would run Ghostscript
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    ],
    ids=["empty", "text", "garbage", "truncated-jpeg", "truncated-png", "corrupt-png", "eps"],
)
def test_undecodable_images(data):
    with pytest.raises(InvalidRequest) as e:
        decode_image(data)
    assert "image" in e.value.message


# ------------------------------------------------------------------ video
