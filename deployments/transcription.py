"""Ray Serve deployment for transcription: one faster-whisper model per replica. Audio arrives as
bytes (the ingress fetched it through the safe media fetcher); decoding and transcription run in
worker threads so the replica's event loop keeps accepting requests. Long audio goes through
faster-whisper's BatchedInferencePipeline (engine option `batched_threshold_s`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ray import serve

from deployments.base import guarded
from models.audio import decode_audio
from models.transcription import WhisperEngine, parse_transcription_params, prepare_packaged_whisper
from rawinfer.core.catalog import resolve_model_path


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=4,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2},
    health_check_period_s=2,
)
class TranscriptionDeployment:
    def __init__(self, spec: dict[str, Any]):
        opts = spec.get("options", {})
        self.max_audio_s = float(opts.get("max_audio_s", 4 * 3600))
        path = resolve_model_path(spec["model_path"], spec["cache_dir"])
        if opts.get("prepare_packaged") and not (Path(path) / "model.bin").is_file():
            prepare_packaged_whisper(
                Path(spec["cache_dir"])
            )  # a node where `make setup` did not run
        self.engine = WhisperEngine(
            path,
            served_model=spec["served_model"],
            device=opts.get("device", "cpu"),
            compute_type=opts.get("compute_type", "int8"),
            cpu_threads=int(opts.get("cpu_threads", 0)),
            batch_size=int(opts.get("batch_size", 8)),
            batched_threshold_s=float(opts.get("batched_threshold_s", 60.0)),
            mode=opts.get("mode", "auto"),
        )
        self.engine.load()

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        params = parse_transcription_params(request["parameters"])
        self.engine.check_params(params)
        audio = await asyncio.to_thread(
            decode_audio, request["audio"], max_duration_s=self.max_audio_s
        )
        data = await asyncio.to_thread(self.engine.transcribe, audio, params)
        return {
            "data": data,
            "model": self.engine.served_model,
            "tokens_used": None,
            "usage": {"audio_seconds": data["duration"]},
        }
