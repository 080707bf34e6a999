"""The semantic cache's settings (`Settings.semantic_cache`, env `RAWINFER_SEMANTIC_CACHE__*`)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class SemanticCacheSettings(BaseModel):
    enabled: bool = Field(True, description="deploy the shared cache; requests opt in with enable_semantic_cache")
    default_max_error_rate: float = Field(0.02, ge=0, le=1, description="δ when a request leaves it null")
    allow_temperature_above_zero: bool = Field(
        False, description="cache sampled (temperature > 0) requests too; off: only greedy requests use the cache")
    max_entries: int = Field(10_000, ge=1, description="entries over all partitions; the least recently used go first")
    snapshot_path: Path | None = Field(None, description="default: semantic-cache.npz in Settings.cache_dir")
    snapshot_interval_s: float = Field(60.0, gt=0, description="how often a changed cache is written to its snapshot")
    judge: Literal["exact", "embedding", "llm"] = Field(
        "exact", description="how a fresh answer is compared with the cached one: normalised exact match, "
        "embedding similarity (judge_similarity), or an LLM asked through the judge_backend chat deployment")
    judge_similarity: float = Field(0.95, ge=0, le=1, description="the embedding judge's cosine threshold")
    judge_backend: str = Field("chat", description="chat backend the LLM judge asks")
    embedding_backend: str = Field("text_embedding", description="text-embedding backend that embeds prompts")
    min_observations: int = Field(
        4, ge=0, description="observations an entry needs (besides vCache's two priors) before it may be served; "
        "the reference implementation's 6 includes the priors")
    seed: int | None = Field(None, description="seed of the explore/exploit draws (tests); None: random")
    dedupe_similarity: float = Field(
        0.9999, gt=0, le=1, description="a new entry this close to an existing one in its partition is not added "
        "(concurrent misses of one prompt); the pair is judged and recorded as an observation instead")
    hnsw_m: int = Field(16, ge=2)
    hnsw_ef: int = Field(64, ge=1, description="search breadth (hnswlib ef)")
    hnsw_ef_construction: int = Field(100, ge=1)
    call_timeout_s: float = Field(5.0, gt=0, description="cap on the embedding and lookup before a request goes "
                                  "to the model uncached")
