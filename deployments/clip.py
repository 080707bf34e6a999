"""Ray Serve deployment for multimodal embeddings with open_clip: text and images in one space.
Concurrent requests are batched with `@serve.batch` (texts with texts, images with images);
image and video decoding run in worker threads. Resources come from serve_config."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from deployments.base import BatchSettings, EngineOptions, engine_defaults, guarded
from models.clip import ClipEngine
from models.files import MAX_DURATION_S, MAX_PIXELS
from models.images import decode_image
from rawinfer.contract import MultimodalParams
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.catalog import resolve_model_path
from rawinfer.core.deadline import Deadline
from rawinfer.core.vectors import l2_normalize

_ENGINE = engine_defaults(ClipEngine)
BATCH = BatchSettings(max_batch_size=16, batch_wait_timeout_s=0.005)


class ClipOptions(EngineOptions):
    model_name: str = Field("ViT-L-14", description="the open_clip architecture of the weights")
    model_config_path: str | None = Field(
        None, description="an open_clip config JSON for a custom architecture (registered first)"
    )
    device: str = _ENGINE["device"]
    batch_size: int = Field(_ENGINE["batch_size"], ge=1, description="images/texts per forward")
    torch_threads: int | None = Field(_ENGINE["torch_threads"], ge=1)
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="largest decoded image")
    interval_sec: float = Field(1.0, gt=0, description="video: seconds between sampled frames")
    max_frames: int = Field(120, ge=1, description="video: most frames sampled")
    max_video_s: float = Field(
        MAX_DURATION_S, gt=0, description="video: longest accepted (raise with the deadline)"
    )
    max_texts: int = Field(256, ge=1, description="texts per request")


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    health_check_period_s=2,
)
class ClipDeployment:
    def __init__(self, spec: dict[str, Any]):
        opts = ClipOptions.model_validate(spec.get("options") or {})
        config = opts.model_config_path
        self.engine = ClipEngine(
            opts.model_name,
            resolve_model_path(spec["model_path"], spec["cache_dir"]),
            served_model=spec["served_model"],
            device=opts.device,
            batch_size=opts.batch_size,
            torch_threads=opts.torch_threads,
            model_config_path=resolve_model_path(config, spec["cache_dir"]) if config else None,
        )
        self.engine.load()
        self.max_pixels = opts.max_pixels
        self.interval_sec = opts.interval_sec
        self.max_frames = opts.max_frames
        self.max_video_s = opts.max_video_s
        self.max_texts = opts.max_texts

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        BATCH.over(user_config).apply(self._texts, self._images)

    def _data(self, rows: np.ndarray, single: bool, normalize: bool) -> dict[str, Any]:
        if normalize:
            rows = l2_normalize(rows)
        key = "embedding" if single else "embeddings"
        return {key: rows[0] if single else rows, "dimensions": int(rows.shape[1])}

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        p, kind = MultimodalParams.model_validate(request["parameters"]), request["kind"]
        normalize = p.normalize
        if kind == "text":
            texts = request["texts"]
            if len(texts) > self.max_texts:
                raise InvalidRequest(
                    f"too many texts: {len(texts)}; send at most {self.max_texts} per request"
                )
            rows = await self._texts((texts, Deadline.of(request)))
            tokens = sum(self.engine.count_tokens(texts))
            return {
                "data": self._data(rows, request["single"], normalize),
                "model": self.engine.served_model,
                "tokens_used": {"prompt": tokens, "completion": 0, "total": tokens},
            }
        if kind == "image":
            image = await asyncio.to_thread(
                decode_image, request["media"], max_pixels=self.max_pixels
            )
            pixels = await asyncio.to_thread(self.engine.preprocess, [image])
            rows = await self._images(pixels)
            return {
                "data": self._data(rows, True, normalize),
                "model": self.engine.served_model,
                "tokens_used": None,
            }
        interval = p.interval_sec or self.interval_sec
        max_frames = min(p.max_frames or self.max_frames, self.max_frames)
        data = await asyncio.to_thread(
            self.engine.embed_video,
            request["media"],
            interval_sec=interval,
            max_frames=max_frames,
            max_duration_s=self.max_video_s,
            normalize=normalize,
            deadline=Deadline.of(request),  # decoding and encoding stop once it passes
        )
        return {"data": data, "model": self.engine.served_model, "tokens_used": None}

    @serve.batch(**BATCH.model_dump())
    async def _texts(self, batch: list[tuple[list[str], Deadline]]) -> list[np.ndarray]:
        """One pass over the batch's texts; it stops when none of its requests waits any more."""
        rows = await asyncio.to_thread(
            self.engine.embed_texts,
            [t for texts, _ in batch for t in texts],
            Deadline.latest([d for _, d in batch]),
        )
        out, start = [], 0
        for texts, _ in batch:
            out.append(rows[start : start + len(texts)])
            start += len(texts)
        return out

    @serve.batch(**BATCH.model_dump())
    async def _images(self, batch: list) -> list[np.ndarray]:
        import torch

        rows = await asyncio.to_thread(self.engine.encode_batch, torch.cat(batch))
        return [rows[i : i + 1] for i in range(len(batch))]


DEPLOYMENT = ClipDeployment
OPTIONS = ClipOptions
