"""CLIP on video: frame sampling, batched encoding, caps, broken and rotated videos."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from test_clip_engine import (
    BLUE,
    GREEN,
    RED,
    built,  # noqa: F401  (fixture: engine needs it)
    cos,
    encoded,
    engine,  # noqa: F401  (fixture)
    gradient,
    make_video,
)

from models.video import iter_video_frames
from rawinfer.contract.errors import InvalidRequest


@pytest.fixture(scope="module")
def rgb_video() -> bytes:
    return make_video()  # 2 s red, 2 s green, 2 s blue at 10 fps, mpeg4 in mp4


def test_frames_are_sampled_per_interval(rgb_video):
    out = list(iter_video_frames(rgb_video, interval_sec=1.0, max_frames=100))
    assert [(s, e) for s, e, _ in out] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    colors = [np.argmax(img.getpixel((32, 24))) for _, _, img in out]
    assert colors == [0, 0, 1, 1, 2, 2] and all(img.mode == "RGB" for _, _, img in out)
    assert [(s, e) for s, e, _ in iter_video_frames(rgb_video, interval_sec=4, max_frames=9)] == [
        (0, 4),
        (4, 6),
    ]
    assert [(s, e) for s, e, _ in iter_video_frames(rgb_video, interval_sec=60, max_frames=9)] == [
        (0, 6)
    ]
    # an interval shorter than the frame period: each frame once, empty segments left out
    fine = list(iter_video_frames(rgb_video, interval_sec=0.04, max_frames=1000))
    assert len(fine) == 60 and fine[1][:2] == pytest.approx((0.08, 0.12))
    # an interval equal to the frame period: every frame, despite 0.3 / 0.1 < 3 in floating point
    every = [(s, e) for s, e, _ in iter_video_frames(rgb_video, interval_sec=0.1, max_frames=1000)]
    assert every == [(round(k * 0.1, 6), round((k + 1) * 0.1, 6)) for k in range(60)]


def test_video_embedding(engine, rgb_video):
    data = engine.embed_video(rgb_video, interval_sec=1.0, max_frames=100)
    assert set(data) == {"embedding", "dimensions", "segments"} and data["dimensions"] == 32
    segs = data["segments"]
    assert [(s["start"], s["end"]) for s in segs] == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
        (5, 6),
    ]
    rows = np.array([s["embedding"] for s in segs])
    assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    for a, b in ((0, 1), (2, 3), (4, 5)):  # the same colour: the same vector
        assert cos(rows[a], rows[b]) >= 0.9999
    for a, b in ((0, 2), (0, 4), (2, 4)):  # different colours differ
        assert cos(rows[a], rows[b]) < 0.95
    mean = rows.mean(axis=0)
    assert np.allclose(data["embedding"], mean / np.linalg.norm(mean), atol=1e-6)
    # a segment is the image embedding of its frame
    frame = next(iter_video_frames(rgb_video, interval_sec=1.0, max_frames=1))[2]
    assert cos(rows[0], engine.embed_images([frame])[0]) >= 0.9999
    raw = engine.embed_video(rgb_video, interval_sec=1.0, max_frames=100, normalize=False)
    raw_rows = np.array([s["embedding"] for s in raw["segments"]])
    assert np.allclose(engine.normalize(raw_rows), rows, atol=1e-5)
    assert np.allclose(raw["embedding"], raw_rows.mean(axis=0), atol=1e-5)


def test_video_frames_are_encoded_in_batches_as_they_stream(engine, rgb_video, monkeypatch):
    events = []
    real = engine.encode_batch
    monkeypatch.setattr(
        engine,
        "encode_batch",
        lambda pixels: events.append(("encode", len(pixels))) or real(pixels),
    )
    import models.video

    real_to_rgb = models.video._to_rgb
    monkeypatch.setattr(
        models.video, "_to_rgb", lambda frame: events.append(("frame", 1)) or real_to_rgb(frame)
    )
    data = engine.embed_video(
        rgb_video, interval_sec=0.25, max_frames=100
    )  # 24 frames, batch_size 4
    assert len(data["segments"]) == 24
    assert [e for e in events if e[0] == "encode"] == [("encode", 4)] * 6
    # the first batch ran before the rest was decoded: the decoder runs at most one batch ahead
    # (4 consumed + 4 queued + 1 waiting to be queued + 1 held back by the sampler)
    assert events.index(("encode", 4)) <= 10


def test_max_frames_caps_the_segments(engine, rgb_video):
    data = engine.embed_video(rgb_video, interval_sec=0.5, max_frames=3)
    assert [(s["start"], s["end"]) for s in data["segments"]] == [(0, 0.5), (0.5, 1), (1, 1.5)]
    assert len(list(iter_video_frames(rgb_video, interval_sec=0.5, max_frames=1))) == 1


def test_a_stream_without_declared_duration_ends_at_its_last_frame():
    raw = make_video(fmt="m4v")  # a raw MPEG-4 elementary stream: no duration anywhere
    out = [(s, e) for s, e, _ in iter_video_frames(raw, interval_sec=4, max_frames=9)]
    assert out[0] == (0, 4) and out[1][0] == 4 and out[1][1] == pytest.approx(6.0, abs=0.05)
    with pytest.raises(InvalidRequest, match="longer than the 3s limit"):  # found while decoding
        list(iter_video_frames(raw, interval_sec=1, max_frames=9, max_duration_s=3))


def test_h264_and_display_rotation():
    arr = np.zeros((48, 64, 3), np.uint8)
    arr[:, :32] = RED
    arr[:24, 32:] = BLUE
    arr[24:, 32:] = GREEN
    plain = list(
        iter_video_frames(
            make_video((RED,), 0.5, codec="libx264", frame=arr), interval_sec=1, max_frames=1
        )
    )
    assert plain[0][2].size == (64, 48)
    for degrees, k in ((90, 1), (-90, -1), (180, 2)):  # counterclockwise, as ffmpeg autorotates
        data = make_video((RED,), 0.5, codec="libx264", frame=arr, rotation=degrees)
        ((_, _, img),) = iter_video_frames(data, interval_sec=1, max_frames=1)
        assert np.abs(np.asarray(img, int) - np.rot90(arr, k).astype(int)).mean() < 3


def test_bad_videos(engine, rgb_video):
    audio = io.BytesIO()
    with av.open(audio, "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=16000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.int16), format="s16", layout="mono")
        f.sample_rate = 16000
        for p in list(s.encode(f)) + list(s.encode()):
            c.mux(p)
    with pytest.raises(InvalidRequest, match="no video stream"):
        engine.embed_video(audio.getvalue(), interval_sec=1, max_frames=4)
    empty = io.BytesIO()
    with av.open(empty, "w", format="avi") as c:  # a header and no frames
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    with pytest.raises(InvalidRequest, match="no frames"):
        engine.embed_video(empty.getvalue(), interval_sec=1, max_frames=4)
    for data in (
        b"",
        b"not a video at all",
        bytes(range(256)) * 8,
        rgb_video[: len(rgb_video) // 2],
        encoded(gradient(), "PNG")[:100],
    ):
        with pytest.raises(InvalidRequest, match="video"):
            engine.embed_video(data, interval_sec=1, max_frames=4)
    with pytest.raises(InvalidRequest, match="longer than the 5s limit"):
        list(iter_video_frames(rgb_video, interval_sec=1, max_frames=4, max_duration_s=5))
    with pytest.raises(InvalidRequest, match="too large: 64x48"):
        list(iter_video_frames(rgb_video, interval_sec=1, max_frames=4, max_pixels=1000))
    for kw in (
        {"interval_sec": 0, "max_frames": 4},
        {"interval_sec": float("nan"), "max_frames": 4},
        {"interval_sec": 1, "max_frames": 0},
    ):
        with pytest.raises(InvalidRequest, match="interval_sec|max_frames"):
            iter_video_frames(rgb_video, **kw)


def test_read_ahead_keeps_order_raises_in_place_and_stops_with_the_consumer():
    import threading
    import time

    from models.video import read_ahead

    assert list(read_ahead(iter(range(50)), 3, lambda x: x * 2)) == [x * 2 for x in range(50)]

    def failing():
        yield 1
        yield 2
        raise InvalidRequest("bad frame")

    got = []
    with pytest.raises(InvalidRequest, match="bad frame"):
        for x in read_ahead(failing(), 2):
            got.append(x)
    assert got == [1, 2]

    closed, produced = threading.Event(), []

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    it = read_ahead(endless(), 2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert closed.wait(5), "the producer's generator was not closed"
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n <= 3 + 2 + 1  # bounded read-ahead, and nothing after the close
