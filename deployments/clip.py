"""Ray Serve deployment for multimodal embeddings with open_clip: text and images in one space.
Concurrent requests are batched with `@serve.batch` (texts with texts, images with images);
image and video decoding run in worker threads; a video is streamed through the model in
batches (memory bounded by the engine). Resources come from serve_config (`num_gpus` on GPUs)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from ray import serve

from deployments.base import guarded
from models.clip import ClipEngine
from models.images import decode_image
from rawinfer.core.catalog import resolve_model_path


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    health_check_period_s=2,
)
class ClipDeployment:
    def __init__(self, spec: dict[str, Any]):
        opts = spec.get("options", {})
        config = opts.get("model_config_path")
        self.engine = ClipEngine(
            opts.get("model_name", "ViT-L-14"),
            resolve_model_path(spec["model_path"], spec["cache_dir"]),
            served_model=spec["served_model"],
            device=opts.get("device", "cpu"),
            batch_size=int(opts.get("batch_size", 32)),
            torch_threads=opts.get("torch_threads"),
            model_config_path=resolve_model_path(config, spec["cache_dir"]) if config else None,
        )
        self.engine.load()
        self.max_pixels = int(opts.get("max_pixels", 50_000_000))
        self.interval_sec = float(opts.get("interval_sec", 1.0))
        self.max_frames = int(opts.get("max_frames", 120))
        self.max_texts = int(opts.get("max_texts", 256))

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        for method in (self._texts, self._images):
            method.set_max_batch_size(int(user_config.get("max_batch_size", 16)))
            method.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.005)))

    def _data(self, rows: np.ndarray, single: bool, normalize: bool) -> dict[str, Any]:
        if normalize:
            rows = self.engine.normalize(rows)
        key = "embedding" if single else "embeddings"
        return {key: rows[0] if single else rows, "dimensions": int(rows.shape[1])}

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        from rawinfer.contract.errors import InvalidRequest

        p, kind = request["parameters"], request["kind"]
        normalize = p.get("normalize", True)
        if kind == "text":
            texts = request["texts"]
            if len(texts) > self.max_texts:
                raise InvalidRequest(
                    f"too many texts: {len(texts)}; send at most {self.max_texts} per request"
                )
            rows = await self._texts(texts)
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
        interval = p.get("interval_sec") or self.interval_sec
        max_frames = min(p.get("max_frames") or self.max_frames, self.max_frames)
        data = await asyncio.to_thread(
            self.engine.embed_video,
            request["media"],
            interval_sec=interval,
            max_frames=max_frames,
            normalize=normalize,
        )
        return {"data": data, "model": self.engine.served_model, "tokens_used": None}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _texts(self, batch: list[list[str]]) -> list[np.ndarray]:
        rows = await asyncio.to_thread(
            self.engine.embed_texts, [t for texts in batch for t in texts]
        )
        out, start = [], 0
        for texts in batch:
            out.append(rows[start : start + len(texts)])
            start += len(texts)
        return out

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _images(self, batch: list) -> list[np.ndarray]:
        import torch

        rows = await asyncio.to_thread(self.engine.encode_batch, torch.cat(batch))
        return [rows[i : i + 1] for i in range(len(batch))]
