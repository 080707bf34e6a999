"""Every engine stops at the request's deadline inside its loops (per encode chunk, per decoded
frame, per whisper segment) instead of finishing work nobody waits for; and a video's decoded
frames are capped, not only its sampled ones. Real models: MiniLM, whisper tiny.en, test CLIP."""

from __future__ import annotations

import fractions
import io
import time

import av
import numpy as np
import pytest
from helpers import CLIP, LIBRIVOX
from test_clip_engine import built, engine, make_video  # noqa: F401  (fixtures)
from test_text_embedding_engine import PATH
from test_transcription_engine import paths  # noqa: F401  (fixture)

from models.audio import decode_audio
from models.text_embedding import TextEmbeddingEngine
from models.transcription import WhisperEngine
from models.video import iter_video_frames
from rawinfer.contract.errors import DeadlineExceeded, InvalidRequest
from rawinfer.contract.transcription import parse_transcription_params
from rawinfer.core.deadline import Deadline


def timed(fn, *a, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    try:
        out = fn(*a, **kw)
    except Exception as e:  # noqa: BLE001  (returned for the test to check)
        out = e
    return time.perf_counter() - t0, out


def test_text_embedding_stops_between_chunks():
    e = TextEmbeddingEngine(PATH, served_model="all-minilm-l6-v2", encode_batch_size=16)
    e.load()
    texts = [f"sentence number {i} about the weather in a city far away" for i in range(1024)]
    one_chunk, _ = timed(e.encode, texts[:64])  # 4 batches of 16: one chunk
    full, rows = timed(e.encode, texts[:256], Deadline(600))
    assert rows.shape == (256, 384)  # a deadline not reached changes nothing
    assert np.allclose(rows[:64], e.encode(texts[:64]), atol=1e-5)
    took, err = timed(e.encode, texts, Deadline(0.01))
    assert isinstance(err, DeadlineExceeded), err
    # it stopped after at most the chunk it was in, not after the 16 chunks of the request
    assert took < 2 * one_chunk + 0.3, (took, one_chunk, full)
    assert err.details == {"deadline_s": 0.01} and "stopped" in err.message


@pytest.fixture(scope="module")
def long_speech() -> np.ndarray:
    clip = decode_audio((LIBRIVOX / f"{CLIP}.wav").read_bytes())
    reps = int(np.ceil(150 * 16000 / clip.shape[0]))
    return np.tile(clip, reps)[: 150 * 16000]  # 150 s of real speech


@pytest.mark.parametrize("batched", [False, True])
def test_transcription_stops_between_segments(paths, long_speech, batched):  # noqa: F811
    """Sequential: whisper decodes one 30 s window per step; batched (batch_size 1 here, 8 by
    default): one batch of windows per step. Either stops within the step it was in."""
    tiny = WhisperEngine(
        str(paths["whisper-tiny.en"]), served_model="whisper-tiny.en", cpu_threads=2, batch_size=1
    )
    tiny.load()
    params = parse_transcription_params({})
    window, out = timed(tiny.transcribe, long_speech[: 30 * 16000], params, batched=batched)
    assert out["text"]  # 30 s of speech: one step of work
    took, err = timed(tiny.transcribe, long_speech, params, batched=batched, deadline=Deadline(0.5))
    assert isinstance(err, DeadlineExceeded), err
    # five steps of speech; it stopped within the one it was in
    assert took < 0.5 + 2 * window + 0.5, (took, window)


def test_audio_decoding_stops_at_the_deadline(long_speech):
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "long.wav"
        raw = (long_speech * 32767).astype("<i2").tobytes()
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-f", "s16le", "-ar", "16000", "-ac", "1"]
            + ["-i", "-", "-c:a", "flac", str(wav.with_suffix(".flac"))],
            input=raw,
            check=True,
            timeout=120,
        )
        data = wav.with_suffix(".flac").read_bytes()
    assert decode_audio(data, deadline=Deadline(600)).shape[0] == long_speech.shape[0]
    took, err = timed(decode_audio, data, deadline=Deadline(0.0))
    assert isinstance(err, DeadlineExceeded) and took < 0.5, (took, err)


def test_video_decoding_and_embedding_stop_at_the_deadline(engine):  # noqa: F811
    video = make_video(each_s=20.0, fps=10)  # 60 s, 600 frames
    frames = iter_video_frames(video, interval_sec=0.1, max_frames=1000, deadline=Deadline(0.0))
    with pytest.raises(DeadlineExceeded):
        next(frames)
    full, out = timed(engine.embed_video, video, interval_sec=0.1, max_frames=600)
    assert len(out["segments"]) == 600
    took, err = timed(
        engine.embed_video, video, interval_sec=0.1, max_frames=600, deadline=Deadline(0.05)
    )
    assert isinstance(err, DeadlineExceeded), err
    assert took < full / 2, (took, full)


def test_decoded_frames_are_capped_when_timestamps_compress_time():
    """400 frames in 0.4 s (1,000 fps): the duration is under the 1 s cap, but 120 decoded frames
    a second of it is the most decoded; sampling one frame in ten does not lift it."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("mpeg4", rate=1000)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        s.codec_context.time_base = fractions.Fraction(1, 1000)
        for i in range(400):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i % 250, np.uint8), "rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = buf.getvalue()
    with pytest.raises(InvalidRequest) as e:
        list(iter_video_frames(data, interval_sec=0.01, max_frames=1000, max_duration_s=1.0))
    assert e.value.details == {"max_decoded_frames": 120}
    # the same video under a cap it fits: every sampled frame
    assert len(list(iter_video_frames(data, interval_sec=0.01, max_frames=1000))) == 40


def test_default_media_duration_fits_the_deadline():
    """11 minutes of (silent) audio is more than one 60 s request can transcribe: refused by
    default, before it is decoded into 42 MB of samples; accepted when the cap is raised."""
    import subprocess

    flac = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"]
        + ["-t", "660", "-c:a", "flac", "-f", "flac", "-"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    took, err = timed(decode_audio, flac)
    assert isinstance(err, InvalidRequest) and err.details == {"max_duration_s": 600.0}, err
    assert took < 5, took  # refused from the header or the first packets, not after decoding
    assert decode_audio(flac, max_duration_s=700).shape[0] == 660 * 16000
