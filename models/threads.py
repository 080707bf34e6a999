"""torch's CPU thread count, set in the thread that runs the model.

Ray sets OMP_NUM_THREADS=1 in a replica that asks for less than one CPU, and OpenMP/MKL read
their thread count per OS thread: `torch.set_num_threads(n)` called where the engine loads does
not reach the worker threads (`asyncio.to_thread`) that later encode, which then run on one
thread (measured here: a 1500x1500 matmul 1.5x slower in a worker thread). Engines with a
`torch_threads` option call this at the start of every encode; it costs microseconds.
"""

from __future__ import annotations


def use_torch_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)
