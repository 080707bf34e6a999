"""Transcription: real-time factor over HTTP against bare faster-whisper, same audio, one run;
and batched (BatchedInferencePipeline) against unbatched on the same long audio.

The audio: the five LibriVox clips of Debian's pocketsphinx-testdata concatenated (repeated to
reach --seconds, 80 s by default). RTF = processing time / audio duration (lower is faster).
Targets (issue 4): HTTP <= 1.1x bare; batched >= 2.5x faster than unbatched.

Run: `.venv/bin/python bench/transcribe.py [--model whisper-base] [--seconds 80]`.
"""

from __future__ import annotations

import argparse
import base64
import io
import time
import wave
from pathlib import Path

import httpx
import numpy as np
from common import machine, start_service, stop_service

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def long_audio(seconds: float) -> tuple[np.ndarray, bytes]:
    """16 kHz mono float32 samples and the same as a WAV file."""
    from models.audio import decode_audio

    clips = [decode_audio(p.read_bytes()) for p in sorted(LIBRIVOX.glob("*.wav"))]
    gap = np.zeros(8000, dtype=np.float32)
    parts, total = [], 0
    while total < seconds * 16000:
        for c in clips:
            parts += [c, gap]
            total += len(c) + len(gap)
    audio = np.concatenate(parts)[: int(seconds * 16000)]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return audio, buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="whisper-base", choices=["whisper-base", "whisper-tiny.en"])
    ap.add_argument("--seconds", type=float, default=80)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    from models.transcription import WhisperEngine, prepare_packaged_whisper
    from rawinfer.contract.transcription import TranscriptionParams
    from rawinfer.core.settings import Settings

    print(f"# bench/transcribe.py on {machine()}")
    audio, wav = long_audio(args.seconds)
    duration = len(audio) / 16000
    path = prepare_packaged_whisper(Settings().cache_dir)[args.model]
    engine = WhisperEngine(
        str(path), served_model=args.model, cpu_threads=2, batched_threshold_s=60
    )
    engine.load()
    params = TranscriptionParams(language="en")

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(args.reps):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    t_batched = timed(lambda: engine.transcribe(audio, params, batched=True))
    t_seq = timed(lambda: engine.transcribe(audio, params, batched=False))
    engine = None  # free the model before the service starts

    url, headers = start_service()
    try:
        body = {
            "provider": "local",
            "model": args.model,
            "parameters": {"language": "en"},
            "inputs": {"audio_base64": base64.b64encode(wav).decode()},
        }
        with httpx.Client(base_url=url, timeout=600) as c:

            def call():
                r = c.post("/v1/inference", json=body, headers=headers)
                assert r.status_code == 200, r.text

            call()  # warm up
            t_http = timed(call)
    finally:
        stop_service()

    print(
        f"audio: {duration:.1f} s ({args.model}, int8, CPU); the service uses the batched path "
        f"above 60 s"
    )
    print(
        f"bare faster-whisper, batched pipeline: RTF {t_batched / duration:.3f}  ({t_batched:.1f} "
        f"s)"
    )
    print(f"bare faster-whisper, unbatched:        RTF {t_seq / duration:.3f}  ({t_seq:.1f} s)")
    print(f"HTTP POST /v1/inference (base64 wav):  RTF {t_http / duration:.3f}  ({t_http:.1f} s)")
    print(f"HTTP / bare (same batched path): {t_http / t_batched:.2f}x  (target <= 1.1x)")
    print(f"batched speed-up over unbatched: {t_seq / t_batched:.2f}x  (target >= 2.5x)")


if __name__ == "__main__":
    main()
