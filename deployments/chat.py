"""Ray Serve deployment for local chat: one vLLM async engine per replica (continuous batching
across every concurrent request), autoscaled on ongoing requests. Resources come from
serve_config.yaml (`num_gpus` on a GPU cluster, a CPU fraction here); engine options (context
length, KV cache size, eager mode, dtype) from the catalog backend's `options`."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from pydantic import Field
from ray import serve

from deployments.base import EngineOptions, engine_defaults, guarded
from models.chat import ChatEngine
from models.smollm2 import MARKER, prepare_packaged_smollm2
from rawinfer.contract import ChatParams
from rawinfer.contract.errors import RawInferError, to_wire
from rawinfer.core.catalog import resolve_model_path

_ENGINE = engine_defaults(ChatEngine)


class ChatOptions(EngineOptions):
    max_model_len: int = Field(_ENGINE["max_model_len"], ge=1)
    enforce_eager: bool = _ENGINE["enforce_eager"]
    kv_cache_space_gb: float | None = Field(_ENGINE["kv_cache_space_gb"], gt=0)
    dtype: str = _ENGINE["dtype"]
    gpu_memory_utilization: float | None = Field(_ENGINE["gpu_memory_utilization"], gt=0, le=1)
    tensor_parallel_size: int = Field(_ENGINE["tensor_parallel_size"], ge=1)
    engine_args: dict[str, Any] | None = Field(
        _ENGINE["extra_engine_args"], description="more vLLM engine arguments, passed as given"
    )
    max_prompts: int = Field(_ENGINE["max_prompts"], ge=1)
    in_process: bool = _ENGINE["in_process"]
    prepare_packaged: bool = Field(
        False, description="convert the packaged SmolLM2 GGUF at start when `make setup` did not"
    )


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 32},
    health_check_period_s=5,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=20,
)
class ChatDeployment:
    async def __init__(self, spec: dict[str, Any]):
        opts = ChatOptions.model_validate(spec.get("options") or {})
        path = resolve_model_path(spec["model_path"], spec["cache_dir"])
        if opts.prepare_packaged and not (Path(path) / MARKER).is_file():
            # a node where `make setup` did not run: convert the packaged GGUF once (about 80 s)
            path = str(await asyncio.to_thread(prepare_packaged_smollm2, Path(spec["cache_dir"])))
        self.engine = ChatEngine(
            path,
            served_model=spec["served_model"],
            extra_engine_args=opts.engine_args,
            **opts.model_dump(exclude={"engine_args", "prepare_packaged"}),
        )
        await self.engine.start()

    async def check_health(self) -> None:
        await self.engine.check_health()  # raises when the engine died: Serve restarts the replica

    def num_running(self) -> int:
        return self.engine.num_running()

    @staticmethod
    def _args(request: dict[str, Any]) -> dict[str, Any]:
        return {
            "prompts": request.get("prompts"),
            "system": request.get("system"),
            "messages": request.get("messages"),
            "params": ChatParams.model_validate(request["parameters"]),
            "request_id": request.get("request_id") or uuid.uuid4().hex,
            "timeout_s": request.get("timeout_s"),
        }

    @guarded
    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        result = await self.engine.generate(**self._args(request))
        return {
            "data": {"responses": result["responses"]},
            "model": result["model"],
            "tokens_used": result["tokens_used"],
        }

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """`{"delta": str}` events, then `{"final": {...}}`; an error is yielded as its wire form.
        Serve cancels this generator when the client goes away; the engine then aborts."""
        try:
            async for event in self.engine.stream(**self._args(request)):
                if "final" in event:
                    f = event["final"]
                    event = {
                        "final": {
                            "data": {"responses": f["responses"]},
                            "model": f["model"],
                            "tokens_used": f["tokens_used"],
                        }
                    }
                yield event
        except RawInferError as e:
            yield to_wire(e)


DEPLOYMENT = ChatDeployment
OPTIONS = ChatOptions
