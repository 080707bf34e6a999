"""Chat: 16 concurrent requests x 64 new tokens through the service over HTTP, against vLLM's
offline engine in one process and Hugging Face `generate` one request at a time; same model
(the packaged SmolLM2-135M-Instruct, converted), same prompts, greedy. Tokens/s counts the
completion tokens each side really produced. Time to first token: a streaming HTTP request
(first SSE delta) and HF generating one token.
Targets (issue 3): HTTP >= 0.8x offline vLLM; >= 5x sequential generate.

Run: `.venv/bin/python bench/chat.py` (each engine runs alone: HF, then offline vLLM in a
subprocess, then the service).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import httpx
from common import REPO, machine, start_service, stop_service

PROMPTS = [
    f"Write a short paragraph about {topic}."
    for topic in (
        "the sea",
        "mountains",
        "coffee",
        "trains",
        "libraries",
        "rain",
        "bicycles",
        "autumn",
        "bread",
        "music",
        "the moon",
        "gardens",
        "rivers",
        "snow",
        "markets",
        "bridges",
    )
]
NEW_TOKENS = 64

OFFLINE = r"""
import json, os, sys, time
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform
    from models.chat import ChatEngine
    a = json.loads(sys.stdin.read())
    dtype = ChatEngine(a["model"], served_model="x")._resolve_dtype(current_platform)
    llm = LLM(model=a["model"], max_model_len=2048, enforce_eager=True, disable_log_stats=True,
        dtype=dtype,
              gpu_memory_utilization=0.2)
    conv = [[{"role": "user", "content": p}] for p in a["prompts"]]
    sp = SamplingParams(temperature=0, max_tokens=a["new_tokens"])
    llm.chat(conv[:2], sp, use_tqdm=False)
    t = time.perf_counter()
    outs = llm.chat(conv, sp, use_tqdm=False)
    dt = time.perf_counter() - t
    print("RESULT " + json.dumps({"seconds": dt,
        "tokens": sum(len(o.outputs[0].token_ids) for o in outs)}), flush=True)
    llm.llm_engine.engine_core.shutdown()
"""


def hf_sequential(model_dir: str) -> tuple[float, float]:
    """(tokens/s one request at a time, time to first token in s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def ids(p):
        return tok.apply_chat_template(
            [{"role": "user", "content": p}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )

    with torch.inference_mode():
        model.generate(**ids(PROMPTS[0]), max_new_tokens=4, do_sample=False)
        t = time.perf_counter()
        model.generate(**ids(PROMPTS[0]), max_new_tokens=1, do_sample=False)
        ttft = time.perf_counter() - t
        tokens, t = 0, time.perf_counter()
        for p in PROMPTS:
            x = ids(p)
            out = model.generate(**x, max_new_tokens=NEW_TOKENS, do_sample=False)
            tokens += out.shape[1] - x["input_ids"].shape[1]
        return tokens / (time.perf_counter() - t), ttft


def offline_vllm(model_dir: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE],
        input=json.dumps({"model": model_dir, "prompts": PROMPTS, "new_tokens": NEW_TOKENS}),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=900,
    )
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")] or [None]
    if line is None:
        raise RuntimeError(proc.stderr[-2000:])
    r = json.loads(line[7:])
    return r["tokens"] / r["seconds"]


async def http_concurrent(url: str, headers: dict) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:

        async def one(p):
            r = await c.post(
                "/v1/inference",
                headers=headers,
                json={
                    "provider": "local",
                    "model": "smollm2-135m-instruct",
                    "inputs": {"prompts": [p]},
                    "parameters": {"temperature": 0, "max_tokens": NEW_TOKENS},
                },
            )
            assert r.status_code == 200, r.text
            return r.json()["tokens_used"]["completion"]

        await asyncio.gather(*(one(p) for p in PROMPTS[:2]))
        t = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(p) for p in PROMPTS)))
        return tokens / (time.perf_counter() - t)


def http_ttft(url: str, headers: dict, reps: int = 5) -> float:
    times = []
    with httpx.Client(base_url=url, timeout=120) as c:
        for i in range(reps):
            body = {
                "provider": "local",
                "model": "smollm2-135m-instruct",
                "inputs": {"prompts": [PROMPTS[i]]},
                "parameters": {"temperature": 0, "max_tokens": 16, "stream": True},
            }
            t = time.perf_counter()
            with c.stream("POST", "/v1/inference", json=body, headers=headers) as r:
                for line in r.iter_lines():
                    if line.startswith("event: delta"):
                        times.append(time.perf_counter() - t)
                        break
    return statistics.median(times)


def main() -> None:
    from models.smollm2 import prepare_packaged_smollm2
    from rawinfer.core.settings import Settings

    print(f"# bench/chat.py on {machine()}")
    model_dir = str(prepare_packaged_smollm2(Settings().cache_dir))
    hf_rate, hf_ttft = hf_sequential(model_dir)
    vllm_rate = offline_vllm(model_dir)
    url, headers = start_service()
    try:
        http_rate = asyncio.run(http_concurrent(url, headers))
        ttft = http_ttft(url, headers)
    finally:
        stop_service()
    print(
        f"{len(PROMPTS)} prompts x {NEW_TOKENS} new tokens, greedy, SmolLM2-135M-Instruct "
        f"(float32, CPU)"
    )
    print(f"HF generate, one at a time:     {hf_rate:8.1f} tok/s   TTFT {hf_ttft * 1000:7.1f} ms")
    print(f"vLLM offline LLM.chat (batch):  {vllm_rate:8.1f} tok/s")
    print(
        f"HTTP, 16 concurrent requests:   {http_rate:8.1f} tok/s   TTFT (stream) "
        f"{ttft * 1000:7.1f} ms"
    )
    print(f"HTTP / offline vLLM = {http_rate / vllm_rate:.2f}  (target >= 0.8)")
    print(f"HTTP / sequential HF = {http_rate / hf_rate:.2f}  (target >= 5)")


if __name__ == "__main__":
    main()
