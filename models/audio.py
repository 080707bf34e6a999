"""Audio decoding for transcription: any container ffmpeg reads (PyAV), to 16 kHz mono float32
as faster-whisper decodes it; not audio, or longer than the cap, is an InvalidRequest
(docs/notes/engines.md#transcription)."""

from __future__ import annotations

import gc
import io
import itertools

import av
import numpy as np

from models.files import MAX_DURATION_S, too_long
from rawinfer.contract.errors import DeadlineExceeded, InvalidRequest
from rawinfer.core.deadline import NEVER, Deadline

_UNDECODABLE = (
    "The audio could not be decoded; send a common audio file (wav, mp3, flac, ogg/opus, m4a, "
    "or a video with an audio track)."
)


def _declared_duration(container, stream) -> float | None:
    """Seconds the container or stream says it lasts, when it says (may be wrong or absent)."""
    candidates = []
    if stream.duration is not None and stream.time_base is not None:
        candidates.append(float(stream.duration * stream.time_base))
    if container.duration is not None:
        candidates.append(container.duration / av.time_base)
    candidates = [c for c in candidates if c > 0]
    return max(candidates) if candidates else None


def decode_audio(
    data: bytes,
    *,
    sampling_rate: int = 16000,
    max_duration_s: float = MAX_DURATION_S,
    deadline: Deadline = NEVER,
) -> np.ndarray:
    """Decode an audio file's bytes to a mono float32 array at `sampling_rate`.

    Raises InvalidRequest for bytes that are not audio (garbage, text, a container without an
    audio stream), for audio with no samples, and for audio longer than `max_duration_s`."""
    if not data:
        raise InvalidRequest("The audio is empty; send an audio file.")
    max_samples = int(max_duration_s * sampling_rate)
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError, IndexError):
        raise InvalidRequest(_UNDECODABLE) from None
    chunks: list[np.ndarray] = []
    total = 0
    try:
        if not container.streams.audio:
            raise InvalidRequest(
                "The file has no audio stream; send an audio file or a video with an audio track."
            )
        stream = container.streams.audio[0]
        declared = _declared_duration(container, stream)
        if declared is not None and declared > max_duration_s:
            raise too_long("audio", max_duration_s)
        resampler = av.audio.resampler.AudioResampler(
            format="s16", layout="mono", rate=sampling_rate
        )
        try:
            for frame in itertools.chain(_frames(container, stream), [None]):
                deadline.check("decoding the audio")  # a block of ~30 s of audio
                for out in resampler.resample(frame):
                    array = out.to_ndarray().reshape(-1)
                    total += array.shape[0]
                    if total > max_samples:
                        raise too_long("audio", max_duration_s)
                    chunks.append(array)
        finally:
            # faster-whisper notes resampler objects are only freed by the garbage collector
            # (SYSTRAN/faster-whisper#390).
            del resampler
            gc.collect()
    except (InvalidRequest, DeadlineExceeded):
        raise
    except (av.FFmpegError, ValueError, OSError, RuntimeError, IndexError, MemoryError):
        raise InvalidRequest(_UNDECODABLE) from None
    finally:
        container.close()
    if total == 0:
        raise InvalidRequest(
            "The audio holds no samples (zero length); send a file with sound in it."
        )
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    return audio


def _frames(container, stream):
    """The stream's decoded frames, skipping invalid ones as faster-whisper does, grouped into
    ~500k-sample blocks through a FIFO (which also drops the frames' timestamps)."""
    fifo = av.audio.fifo.AudioFifo()
    decoded = container.decode(stream)
    while True:
        try:
            frame = next(decoded)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            continue
        frame.pts = None
        fifo.write(frame)
        if fifo.samples >= 500000:
            yield fifo.read()
    if fifo.samples > 0:
        yield fifo.read()
