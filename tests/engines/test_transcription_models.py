"""The packaged whisper models: joined, loaded offline, languages as faster-whisper has them."""

from __future__ import annotations

from helpers import CLIP, LIBRIVOX, REFS, normalise, wer, word_errors  # noqa: F401
from test_transcription_engine import paths  # noqa: F401  (fixtures)

from models.transcription import prepare_packaged_whisper


def test_prepare_is_checksummed_and_idempotent(tmp_path, paths):
    first = prepare_packaged_whisper(tmp_path)
    model_bin = first["whisper-base"] / "model.bin"
    stamp = model_bin.stat().st_mtime_ns
    assert (
        prepare_packaged_whisper(tmp_path) == first and model_bin.stat().st_mtime_ns == stamp
    )  # skipped
    size = model_bin.stat().st_size
    with open(model_bin, "r+b") as fh:  # corrupt one byte: the checksum no longer matches
        fh.seek(size // 2)
        byte = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    prepare_packaged_whisper(tmp_path)
    assert model_bin.read_bytes() == (paths["whisper-base"] / "model.bin").read_bytes()
    names = {p.name for p in first["whisper-base"].iterdir()}
    assert names == {
        "model.bin",
        "model.bin.sha256",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    assert (first["whisper-tiny.en"] / "model.bin").is_file() and first["whisper-tiny.en"] == paths[
        "whisper-tiny.en"
    ]


def test_the_light_language_table_is_faster_whispers():
    """rawinfer/contract/transcription.py keeps Whisper's languages without importing
    faster-whisper (the
    ingress validates parameters with it); it must stay the library's own set."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from rawinfer.contract.transcription import LANGUAGE_CODES

    assert LANGUAGE_CODES == frozenset(_LANGUAGE_CODES)
