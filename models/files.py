"""Small helpers the engines share: file checksums and media-length refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rawinfer.contract.errors import InvalidRequest

# The longest audio or video one request may carry, by default: what fits the 60 s request
# deadline. Measured here (2 cores, nothing else running): whisper base batched transcribes 120 s
# of speech in 6.9 s (17x real time), so 10 min takes ~35 s; sequential whisper is slower and the
# deadline check stops it. Longer media: raise `max_audio_s` / the CLIP model's `max_duration_s`
# together with `request_timeout_s` on a deployment meant for it (docs/security.md).
MAX_DURATION_S = 600.0
MAX_PIXELS = 50_000_000  # the largest image or video frame (width x height), by default


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def too_long(kind: str, max_duration_s: float) -> InvalidRequest:
    """The refusal of media (`kind`: audio, video) longer than the configured limit."""
    return InvalidRequest(
        f"The {kind} is longer than the {fmt_duration(max_duration_s)} limit; send a shorter clip.",
        {"max_duration_s": max_duration_s},
    )
