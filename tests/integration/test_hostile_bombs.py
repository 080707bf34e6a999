"""Hostile media over HTTP: decompression bombs and oversized media are refused cheaply."""

from __future__ import annotations

import struct
import subprocess
import time
import zlib

import pytest
from helpers import assert_error
from hostile_helpers import CHAT, CLIP, E5, TINY, VISION, http, post, raw_post, stays_healthy  # noqa: F401 (fixtures)
from test_hostile import MEDIA_CAP, b64


def png_bomb(width: int, height: int) -> bytes:
    """A complete, valid grayscale PNG of zeros: a few hundred KB that decodes to width*height
    bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bombs(media_server):
    url, folder, _ = media_server
    png = png_bomb(20_000, 20_000)  # 400 megapixels
    assert len(png) < MEDIA_CAP // 2
    (folder / "hostile-bomb.png").write_bytes(png)
    # five hours of silence at 1 kHz in 64k-sample FLAC frames: ~12 KB
    declared = folder / "hostile-5h.flac"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=1000:cl=mono",
            "-t",
            "18000",
            "-c:a",
            "flac",
            "-frame_size",
            "65535",
            "-sample_fmt",
            "s16",
            str(declared),
        ],
        check=True,
        timeout=120,
    )
    flac = bytearray(declared.read_bytes())
    assert len(flac) < 64 * 1024
    # the same stream with STREAMINFO's total-samples field zeroed (unknown length): only the
    # decoder's running cap can stop it
    info = 8 + 10  # "fLaC" + block header, then min/max block and frame sizes
    packed = int.from_bytes(flac[info : info + 8], "big") & ~((1 << 36) - 1)
    flac[info : info + 8] = packed.to_bytes(8, "big")
    (folder / "hostile-5h-undeclared.flac").write_bytes(bytes(flac))
    return url, png, declared.read_bytes(), bytes(flac)


def test_decompression_bomb_png(http, service, bombs):
    url, png, _, _ = bombs
    for inputs in ({"image_base64": b64(png)}, {"image_url": f"{url}/hostile-bomb.png"}):
        t0 = time.monotonic()
        err = assert_error(post(http, service, {**CLIP, "inputs": inputs}), 400)
        assert "too large" in err["error"]["message"] and time.monotonic() - t0 < 10


@pytest.mark.parametrize("which", ["declared", "undeclared"])
def test_tiny_file_that_decodes_to_hours_of_audio(http, service, bombs, which):
    url, _, declared, undeclared = bombs
    audio = declared if which == "declared" else undeclared
    t0 = time.monotonic()
    err = assert_error(post(http, service, {**TINY, "inputs": {"audio_base64": b64(audio)}}), 400)
    assert "longer than" in err["error"]["message"], err
    assert time.monotonic() - t0 < 30
    name = "hostile-5h.flac" if which == "declared" else "hostile-5h-undeclared.flac"
    assert_error(post(http, service, {**TINY, "inputs": {"audio_url": f"{url}/{name}"}}), 400)
    r = http.post(
        "/v1/audio/transcriptions",
        headers=service.headers(),
        data={"model": "whisper-1"},
        files={"file": ("long.flac", audio, "audio/flac")},
    )
    assert r.status_code == 400 and "longer than" in r.json()["error"]["message"], r.text[:300]
