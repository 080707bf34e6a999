"""Video frame sampling for multimodal embeddings: bytes in, one RGB frame per interval out,
decoded from memory by PyAV with at most two sampled frames held (segment rules:
docs/notes/engines.md#clip)."""

from __future__ import annotations

import io
import math
import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

import av

from models.files import MAX_DURATION_S, MAX_PIXELS, too_long
from rawinfer.contract.errors import DeadlineExceeded, InvalidRequest
from rawinfer.core.deadline import NEVER, Deadline

MAX_DECODED_FPS = 120  # decoded frames are capped at this rate over the longest duration

T = TypeVar("T")
_DONE = object()


def read_ahead(
    items: Iterable[T], depth: int, transform: Callable[[T], object] = lambda x: x
) -> Iterator:
    """`transform(item)` for each item, produced by a worker thread that runs up to `depth` items
    ahead of the consumer. PyAV decoding and PIL preprocessing release the GIL, so a video's
    frames are decoded while the model encodes the previous batch; the bounded queue keeps
    memory bounded. The producer's exception is raised in the consumer at its position; when
    the consumer stops early (an error, or it closes the generator), the producer stops too."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                out = transform(item)
                while not stop.is_set():
                    try:
                        q.put((True, out), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, _DONE))
        except BaseException as e:  # handed to the consumer, raised there
            q.put((False, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None and stop.is_set():
                close()

    worker = threading.Thread(target=produce, name="video-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            ok, value = q.get()
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)


# Frame times are fractions made floats, boundaries multiples of a float interval: a frame at
# 0.3 s must land in segment 3 of 0.1 s even though 0.3 / 0.1 < 3 in floating point.
_EPS = 1e-6
_UNDECODABLE = (
    "The video could not be decoded; send a common video file (mp4, webm, mov, mkv, avi)."
)


def _declared_duration(container, stream) -> float | None:
    """Seconds the video stream (else the container) says it lasts, when it says."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _frame_period(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(1 / rate)
    return None


def _to_rgb(frame):
    """The frame as an RGB PIL image, upright (display matrix rotation applied)."""
    from PIL import Image

    image = frame.to_image()  # rgb24
    try:
        angle = int(round(frame.rotation or 0)) % 360  # counterclockwise, as PIL rotates
    except (AttributeError, ValueError, TypeError):
        angle = 0
    if angle in (90, 180, 270):
        image = image.transpose(
            {
                90: Image.Transpose.ROTATE_90,
                180: Image.Transpose.ROTATE_180,
                270: Image.Transpose.ROTATE_270,
            }[angle]
        )
    return image


def _decoded(container, stream) -> Iterator:
    """The stream's frames; packets the decoder rejects are skipped (a damaged stretch in a
    long video costs those frames, not the request)."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except (av.error.InvalidDataError, av.error.EOFError):
            continue
        yield from frames


def iter_video_frames(
    data: bytes,
    *,
    interval_sec: float,
    max_frames: int,
    max_duration_s: float = MAX_DURATION_S,
    max_pixels: int = MAX_PIXELS,
    deadline: Deadline = NEVER,
):
    """Yield `(start, end, image)` per sampled segment: seconds from the video's start and an
    RGB `PIL.Image.Image`, at most `max_frames` of them.

    Raises InvalidRequest (possibly after some frames were yielded) for empty or corrupt bytes, a
    file without a video stream, a video without frames, frames over `max_pixels`, and a video
    longer than `max_duration_s` (declared, or found while decoding), and one with more decoded
    frames than MAX_DECODED_FPS over `max_duration_s` (timestamps can lie); DeadlineExceeded
    once `deadline` passes (checked per decoded frame)."""
    if not (
        isinstance(interval_sec, (int, float)) and math.isfinite(interval_sec) and interval_sec > 0
    ):
        raise InvalidRequest("interval_sec must be a positive number of seconds.")
    if not isinstance(max_frames, int) or max_frames < 1:
        raise InvalidRequest("max_frames must be a positive integer.")
    if not data:
        raise InvalidRequest("The video is empty; send a video file.")
    return _iter(data, float(interval_sec), max_frames, max_duration_s, max_pixels, deadline)


def _iter(
    data: bytes,
    interval: float,
    max_frames: int,
    max_duration_s: float,
    max_pixels: int,
    deadline: Deadline,
) -> Iterator[tuple[float, float, object]]:
    max_decoded = int(max_duration_s * MAX_DECODED_FPS)
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError, IndexError):
        raise InvalidRequest(_UNDECODABLE) from None
    try:
        if not container.streams.video:
            raise InvalidRequest(
                "The file has no video stream; send a video file (an image goes in "
                "image_url/image_base64, audio in a transcription request)."
            )
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = _declared_duration(container, stream)
        if declared is not None and declared > max_duration_s:
            raise too_long("video", max_duration_s)
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        if width * height > max_pixels:
            raise InvalidRequest(
                f"The video's frames are too large: {width}x{height}; send a video of at most "
                f"{max_pixels:,} pixels per frame.",
                {"width": width, "height": height, "max_pixels": max_pixels},
            )
        period = _frame_period(stream)
        origin = (
            float(stream.start_time * stream.time_base)
            if stream.start_time is not None and stream.time_base is not None
            else None
        )

        pending: tuple[int, object] | None = None  # (segment index, image) not yet yielded
        next_boundary = 0.0
        yielded = 0
        last_rel: float | None = None
        last_t: float | None = None
        step: float | None = (
            None  # the spacing of the last frames seen (for the final frame's length)
        )
        closing = False  # the last allowed segment is pending: decode on only to find its end
        ended = True  # the stream ran out (False: stopped at the boundary after the last segment)
        for decoded, frame in enumerate(_decoded(container, stream), 1):
            deadline.check("decoding the video")
            if decoded > max_decoded:
                raise InvalidRequest(
                    f"The video has more than {max_decoded:,} frames ({MAX_DECODED_FPS} a second "
                    f"over the {max_duration_s:g} s limit); send a shorter or lower-rate clip.",
                    {"max_decoded_frames": max_decoded},
                )
            if frame.width * frame.height > max_pixels:
                raise InvalidRequest(
                    f"The video's frames are too large: {frame.width}x{frame.height}; "
                    f"send a video of at most {max_pixels:,} pixels per frame.",
                    {"max_pixels": max_pixels},
                )
            t = frame.time
            if t is None:  # no timestamp: one frame period after the previous frame
                t = last_t + (period or 0.0) if last_t is not None else 0.0
            t = float(t)
            if origin is None:
                origin = t
            last_t = t
            rel = max(0.0, t - origin)
            if last_rel is not None and rel > last_rel:
                step = rel - last_rel
            last_rel = rel if last_rel is None else max(last_rel, rel)
            if rel > max_duration_s:
                raise too_long("video", max_duration_s)
            if rel + _EPS < next_boundary:
                continue
            if closing:
                ended = False
                break
            k = int((rel + _EPS) // interval)
            next_boundary = (k + 1) * interval
            image = _to_rgb(frame)
            if pending is not None:
                pk, pimage = pending
                pending = None
                yield round(pk * interval, 6), round((pk + 1) * interval, 6), pimage
                yielded += 1
            pending = (k, image)
            del image
            if yielded + 1 >= max_frames:
                if declared is not None:  # its end is known: stop decoding now
                    ended = False
                    break
                closing = True
        if last_rel is None:
            raise InvalidRequest(
                "The video holds no frames (zero length or undecodable); "
                "send a video with at least one frame."
            )
        if pending is not None:
            k, image = pending
            pending = None
            start, end = k * interval, (k + 1) * interval
            if declared is not None and declared > start:
                end = min(end, declared)
            elif ended:
                observed = last_rel + (step or period or 0.0)
                if observed > start:
                    end = min(end, observed)
            yield round(start, 6), round(end, 6), image
    except (InvalidRequest, DeadlineExceeded):
        raise
    except (av.FFmpegError, ValueError, OSError, RuntimeError, IndexError, MemoryError):
        raise InvalidRequest(_UNDECODABLE) from None
    finally:
        container.close()
