"""torch's CPU thread count, set in the thread that runs the model: `torch.set_num_threads` is
per OS thread and Ray sets OMP_NUM_THREADS=1 in a fractional-CPU replica, so engines with a
`torch_threads` option call this at the start of every encode (it costs microseconds)."""

from __future__ import annotations


def use_torch_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)
