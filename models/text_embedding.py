"""Text embedding engine over sentence-transformers. Plain Python: no Ray.

`prepare()` checks one request's texts and counts its tokens; `encode()` runs one forward pass
over texts from any number of requests (the deployment batches them); `finish()` turns a
request's rows into the contract's data."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.threads import use_torch_threads
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.deadline import NEVER, Deadline
from rawinfer.core.vectors import l2_normalize

CHUNK_BATCHES = 4  # encode batches between two deadline checks
E5_PREFIX = {"query": "query: ", "passage": "passage: "}


@dataclass
class Prepared:
    """One request's texts, ready to encode."""

    texts: list[str]
    tokens: int
    normalize: bool
    single: bool


class TextEmbeddingEngine:
    def __init__(
        self,
        model_path: str,
        *,
        served_model: str,
        device: str = "cpu",
        e5_prefixes: bool = False,
        max_texts: int = 256,
        encode_batch_size: int = 64,
        max_seq_length: int | None = None,
        torch_threads: int | None = None,
    ):
        self.model_path = model_path
        self.served_model = served_model
        self.device = device
        self.e5_prefixes = e5_prefixes
        self.max_texts = max_texts
        self.encode_batch_size = encode_batch_size
        self._max_seq_length = max_seq_length
        self.torch_threads = torch_threads
        self.model = None
        self._count_lock = threading.Lock()  # guards self.tokenizer (see load)

    def load(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        self.model = SentenceTransformer(self.model_path, device=self.device, local_files_only=True)
        if self._max_seq_length:
            self.model.max_seq_length = self._max_seq_length
        # counting tokens (prepare) runs in other threads while a batch encodes: a fast tokenizer
        # keeps its padding/truncation settings as shared state, so the counts use their own copy,
        # one call at a time (the model's tokenizer is used by encode only)
        self.tokenizer = copy.deepcopy(self.model.tokenizer)
        self.max_tokens = int(self.model.max_seq_length)
        self.dimensions = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )

    def prepare(
        self,
        texts: list[str],
        *,
        normalize: bool = True,
        input_type: str | None = None,
        truncate: bool = False,
        single: bool = False,
    ) -> Prepared:
        if not texts:
            raise InvalidRequest("no texts to embed")
        if len(texts) > self.max_texts:
            raise InvalidRequest(
                f"too many texts: {len(texts)}; send at most {self.max_texts} per request",
                {"max_texts": self.max_texts},
            )
        if self.e5_prefixes and input_type is not None:
            texts = [E5_PREFIX[input_type] + t for t in texts]
        with self._count_lock:
            ids = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        lengths = [len(x) for x in ids]
        if not truncate:
            over = [i for i, n in enumerate(lengths) if n > self.max_tokens]
            if over:
                raise InvalidRequest(
                    f"{len(over)} text(s) exceed the model's limit of {self.max_tokens} tokens "
                    f"(first: index {over[0]}, {lengths[over[0]]} tokens); shorten them or set "
                    "parameters.truncate=true",
                    {"max_tokens": self.max_tokens, "indices": over[:20]},
                )
        tokens = sum(min(n, self.max_tokens) for n in lengths)
        return Prepared(texts, tokens, normalize, single)

    def encode(self, texts: list[str], deadline: Deadline = NEVER) -> np.ndarray:
        """Raw (unnormalised) float32 embeddings, one row per text; `deadline` is checked
        between chunks of CHUNK_BATCHES encode batches (a 2,048-text request stops in time)."""
        use_torch_threads(self.torch_threads)  # this may be a worker thread (models/threads.py)
        step = self.encode_batch_size * CHUNK_BATCHES
        out = []
        for i in range(0, max(len(texts), 1), step):  # one call for no texts, as before
            deadline.check(f"{self.served_model}'s embedding")
            out.append(
                self.model.encode(
                    texts[i : i + step],
                    batch_size=self.encode_batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                ).astype(np.float32)
            )
        return out[0] if len(out) == 1 else np.concatenate(out)

    def finish(self, prepared: Prepared, rows: np.ndarray) -> dict[str, Any]:
        if prepared.normalize:
            rows = l2_normalize(rows)
        data: dict[str, Any] = {"dimensions": int(rows.shape[1])}
        if prepared.single:
            data["embedding"] = rows[0]
        else:
            data["embeddings"] = rows
        return {
            "data": data,
            "model": self.served_model,
            "tokens_used": {"prompt": prepared.tokens, "completion": 0, "total": prepared.tokens},
        }

    def embed(self, texts: list[str], **params: Any) -> dict[str, Any]:
        """One request, unbatched (tests, the batch job)."""
        prepared = self.prepare(texts, **params)
        return self.finish(prepared, self.encode(prepared.texts))
