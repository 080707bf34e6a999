"""Reference answers from vLLM's offline `LLM.chat`, run in a subprocess (vLLM's engine wants
its own process; `if __name__ == "__main__"` is required because it spawns workers).

stdin: {"model_dir", "max_model_len", "max_tokens", "prompts": [...]}; stdout (the line starting
"RESULT "): JSON
{prompt: {"text", "prompt_tokens", "completion_tokens"}} for greedy decoding."""

from __future__ import annotations

import json
import os
import sys

if __name__ == "__main__":
    args = json.loads(sys.stdin.read())
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    from models.chat import ChatEngine

    dtype = ChatEngine(args["model_dir"], served_model="ref")._resolve_dtype(current_platform)
    # on CPU, "gpu_memory_utilization" is the share of RAM that must be free at start: keep it small
    llm = LLM(
        model=args["model_dir"],
        max_model_len=args["max_model_len"],
        enforce_eager=True,
        disable_log_stats=True,
        dtype=dtype,
        gpu_memory_utilization=0.2,
    )
    out = {}
    for prompt in args["prompts"]:
        (ref,) = llm.chat(
            [{"role": "user", "content": prompt}],
            SamplingParams(temperature=0, max_tokens=args["max_tokens"]),
            use_tqdm=False,
        )
        out[prompt] = {
            "text": ref.outputs[0].text,
            "prompt_tokens": len(ref.prompt_token_ids),
            "completion_tokens": len(ref.outputs[0].token_ids),
        }
    print("RESULT " + json.dumps(out), flush=True)
    llm.llm_engine.engine_core.shutdown()
