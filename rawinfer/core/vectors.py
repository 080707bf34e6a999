"""Vector helpers every layer shares: the one L2 normalisation (numpy; see
docs/notes/engines.md#l2-normalisation)."""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-12  # a norm below this is treated as this: rows of zeros stay zero


def l2_normalize(rows: Any, dtype: Any = np.float32) -> np.ndarray:
    """`rows` (one vector or a matrix of row vectors, any array-like) scaled to unit length
    along the last axis, as `dtype`; a zero vector stays zero."""
    a = np.asarray(rows, dtype=dtype)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), EPS).astype(dtype)
