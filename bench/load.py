"""Load and soak: an open-loop, fixed-rate generator (async httpx) on loopback.

Requests are sent on a fixed schedule (request i at t0 + i/rate), whether or not earlier ones
have answered, so a slow service shows up as latency and errors, not as a politely lower rate.
The mixed workload picks each request's kind by weight:

  embed       POST /v1/inference, text embedding (one short text)
  chat        local SmolLM2, 16 tokens, a different prompt each time
  cache       chat with enable_semantic_cache and a few repeated prompts (hits once the cache knows
  them)
  transcribe  whisper-tiny.en on a 7 s recorded clip sent as base64

and, with --image-rate R, a second fixed-rate stream of 224x224 PNG images (base64) to the CLIP
backend (the test CLIP model that tests/conftest.py configures: tiny, random weights).

It reports throughput, p50/p99 latency and errors per kind, and the resident memory of the
service's processes (psutil over Ray's processes) sampled over time. --soak runs 30 minutes (or
--duration) and reports the RSS growth between the first and the last tenth (after warm-up).

Run: `.venv/bin/python bench/load.py [--rate 6 --duration 60] [--image-rate 20] [--soak] [--url URL
--key K --namespace NS]`
Without --url it starts the service itself (bench/common.py start_service, the test catalog).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import machine, pct, start_service, stop_service  # noqa: E402

from rawinfer.cli.launch import SERVING_ENV  # noqa: E402

CLIP_AUDIO = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
)
WORDS = (
    "ray serve inference embedding vector model token cache latency batch replica cluster query"
).split()
CACHE_PROMPTS = ["What is the capital of France?", "Name three primary colours.", "What is 2 + 2?"]


def service_processes(root_pid: int | None) -> list[psutil.Process]:
    """The service's processes: the descendants of the process that started Ray (this one, or
    --pid), else every Ray process on the machine (raylet, gcs, workers named ray::...)."""
    if root_pid is not None:
        try:
            root = psutil.Process(root_pid)
            return [p for p in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if p.pid != psutil.Process().pid and (
            "ray::" in cmd
            or "raylet" in cmd
            or "gcs_server" in cmd
            or (p.info.get("name") or "").startswith("ray::")
        ):
            found.append(p)
    return found


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def png_b64(seed: int) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Load:
    def __init__(self, args, url: str, headers: dict[str, str]):
        self.args, self.url, self.headers = args, url, headers
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.sent: dict[str, list[float]] = defaultdict(
            list
        )  # when each request was sent (perf_counter)
        self.cache_hits = 0
        self.audio = (
            base64.b64encode(CLIP_AUDIO.read_bytes()).decode() if CLIP_AUDIO.exists() else None
        )
        self.images = [png_b64(i) for i in range(8)] if args.image_rate else []
        self.inflight = 0
        self.limit = asyncio.Semaphore(args.max_inflight)

    def body(self, kind: str, i: int) -> dict:
        if kind == "embed":
            return {
                "inference_name": "multilingual_e5_large_instruct_v1",
                "inputs": {"text": " ".join(random.choices(WORDS, k=12)) + f" {i}"},
            }
        if kind == "chat":
            return {
                "provider": "local",
                "model": "smollm2-135m-instruct",
                "inputs": {
                    "prompts": [f"Write one sentence about {random.choice(WORDS)} number {i}."]
                },
                "parameters": {"max_tokens": 16, "temperature": 0},
            }
        if kind == "cache":
            return {
                "provider": "local",
                "model": "smollm2-135m-instruct",
                "enable_semantic_cache": True,
                "inputs": {"prompts": [random.choice(CACHE_PROMPTS)]},
                "parameters": {"max_tokens": 16, "temperature": 0},
            }
        if kind == "transcribe":
            return {
                "provider": "local",
                "model": "whisper-tiny.en",
                "inputs": {"audio_base64": self.audio},
            }
        if kind == "image":
            return {
                "inference_name": "laion_clip_vit_l_14_v1",
                "inputs": {"image_base64": self.images[i % len(self.images)]},
            }
        raise ValueError(kind)

    async def one(self, client: httpx.AsyncClient, kind: str, i: int) -> None:
        async with self.limit:
            self.inflight += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(
                    "/v1/inference", json=self.body(kind, i), headers=self.headers
                )
                code = str(r.status_code)
                if r.status_code == 200 and r.json().get("cache_hit"):
                    self.cache_hits += 1
            except httpx.HTTPError as e:
                code = type(e).__name__
            finally:
                self.inflight -= 1
            self.lat[kind].append((time.perf_counter() - t0) * 1000)
            self.sent[kind].append(t0)
            self.status[kind][code] += 1

    async def stream(
        self,
        client,
        rate: float,
        kinds: list[str],
        weights: list[float],
        duration: float,
        tasks: list,
    ) -> None:
        t0 = time.perf_counter()
        i = 0
        while True:
            due = t0 + i / rate
            if due - t0 >= duration:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = random.choices(kinds, weights)[0]
            tasks.append(asyncio.create_task(self.one(client, kind, i)))
            i += 1

    async def run(self, procs_root: int | None) -> dict:
        a = self.args
        mix = dict(part.split("=") for part in a.mix.split(","))
        kinds = [k for k in mix if float(mix[k]) > 0 and (k != "transcribe" or self.audio)]
        weights = [float(mix[k]) for k in kinds]
        samples: list[tuple[float, float]] = []
        procs = service_processes(procs_root)
        limits = httpx.Limits(
            max_connections=a.max_inflight, max_keepalive_connections=a.max_inflight
        )
        async with httpx.AsyncClient(base_url=self.url, timeout=a.timeout, limits=limits) as client:
            t0 = time.perf_counter()
            tasks: list[asyncio.Task] = []

            async def sample():
                nonlocal procs
                while True:
                    procs = service_processes(procs_root) or procs  # replicas may restart
                    samples.append((time.perf_counter() - t0, rss_mb(procs)))
                    await asyncio.sleep(a.sample_s)

            sampler = asyncio.create_task(sample())
            streams = [self.stream(client, a.rate, kinds, weights, a.duration, tasks)]
            if a.image_rate:
                streams.append(
                    self.stream(client, a.image_rate, ["image"], [1.0], a.duration, tasks)
                )
            await asyncio.gather(*streams)
            sent_s = time.perf_counter() - t0
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - t0
            sampler.cancel()
            samples.append((elapsed, rss_mb(service_processes(procs_root) or procs)))
        return self.report(sent_s, elapsed, samples)

    def report(self, sent_s: float, elapsed: float, samples: list[tuple[float, float]]) -> dict:
        a = self.args
        total = sum(len(v) for v in self.lat.values())
        ok = sum(c["200"] for c in self.status.values())
        print(
            f"\n{machine()}\nload: {a.rate:g} req/s mixed ({a.mix})"
            + (f" + {a.image_rate:g} images/s" if a.image_rate else "")
            + f" for {a.duration:g} s (open loop), {total} requests, "
            f"all answered after {elapsed:.1f} s"
        )
        print(f"{'kind':<11}{'n':>6}{'ok':>6}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}  statuses")
        out: dict = {
            "rate": a.rate,
            "image_rate": a.image_rate,
            "duration_s": a.duration,
            "requests": total,
            "ok": ok,
            "errors": total - ok,
            "throughput_rps": round(ok / elapsed, 2),
            "kinds": {},
        }
        for kind in sorted(self.lat):
            v, st = self.lat[kind], self.status[kind]
            errors = sum(n for c, n in st.items() if c != "200")
            out["kinds"][kind] = {
                "n": len(v),
                "errors": errors,
                "p50_ms": round(statistics.median(v), 1),
                "p99_ms": round(pct(v, 99), 1),
                "statuses": dict(st),
            }
            print(
                f"{kind:<11}{len(v):>6}{st['200']:>6}{errors:>8}"
                f"{statistics.median(v):>10.1f}{pct(v, 99):>10.1f}  {dict(st)}"
            )
        # latency over the run: p50 of the requests sent in each fifth (a collapse shows as growth)
        start = min((min(v) for v in self.sent.values() if v), default=0.0)
        for kind in sorted(self.lat):
            fifths: list[list[float]] = [[] for _ in range(5)]
            for sent, ms in zip(self.sent[kind], self.lat[kind]):
                fifths[min(int((sent - start) / max(a.duration, 1e-9) * 5), 4)].append(ms)
            trend = [round(statistics.median(f), 1) if f else None for f in fifths]
            out["kinds"][kind]["p50_by_fifth_ms"] = trend
            print(f"  {kind}: p50 by fifth of the run (ms): {trend}")
        all_lat = [x for v in self.lat.values() for x in v]
        out.update(
            p50_ms=round(statistics.median(all_lat), 1),
            p99_ms=round(pct(all_lat, 99), 1),
            cache_hits=self.cache_hits,
        )
        print(
            f"{'all':<11}{total:>6}{ok:>6}{total - ok:>8}"
            f"{out['p50_ms']:>10.1f}{out['p99_ms']:>10.1f}"
            f"  throughput {out['throughput_rps']} ok/s; semantic cache hits {self.cache_hits}"
        )
        mem = [m for _, m in samples]
        print(
            "RSS of the service's processes (MB) over time: "
            + ", ".join(f"{t:.0f}s={m:.0f}" for t, m in samples[:: max(1, len(samples) // 12)])
        )
        # growth: the mean of the last tenth against the first tenth after warm-up
        warm = [m for t, m in samples if t >= a.warmup_s] or mem
        k = max(1, len(warm) // 10)
        first, last = statistics.mean(warm[:k]), statistics.mean(warm[-k:])
        out.update(
            rss_first_mb=round(first),
            rss_last_mb=round(last),
            rss_max_mb=round(max(mem)),
            rss_growth_pct=round((last - first) / first * 100, 2) if first else None,
        )
        print(
            f"RSS after {a.warmup_s:g} s warm-up: {first:.0f} MB -> {last:.0f} MB at the end "
            f"({out['rss_growth_pct']:+.2f} %), max {max(mem):.0f} MB"
        )
        print("RESULT " + json.dumps(out))
        return out


def bench_catalog() -> str:
    """The test catalog (CLIP configured with the tiny test model), as tests/conftest.py builds
    it."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import test_catalog

    return str(test_catalog(Path(tempfile.mkdtemp(prefix="rawinfer-load-"))))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=float, default=6.0, help="mixed requests per second")
    p.add_argument("--mix", default="embed=7,chat=1,cache=1,transcribe=1", help="kind=weight,...")
    p.add_argument(
        "--image-rate", type=float, default=0.0, help="base64 CLIP images per second besides"
    )
    p.add_argument(
        "--duration", type=float, default=None, help="seconds (default 60; 1800 with --soak)"
    )
    p.add_argument("--soak", action="store_true", help="a 30-minute run reporting RSS growth")
    p.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="left out of the RSS growth (default 10%% of the run)",
    )
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--max-inflight", type=int, default=512)
    p.add_argument("--url"), p.add_argument("--key"), p.add_argument("--namespace")
    p.add_argument(
        "--pid",
        type=int,
        default=None,
        help="with --url: the process whose descendants are the service",
    )
    p.add_argument(
        "--settings-json",
        default="{}",
        help="service settings overrides when this script starts it",
    )
    a = p.parse_args()
    a.duration = a.duration or (1800.0 if a.soak else 60.0)
    a.warmup_s = a.warmup_s if a.warmup_s is not None else a.duration / 10
    started = a.url is None
    if started:
        url, headers = start_service(
            settings=json.loads(a.settings_json), catalog=bench_catalog(), env=SERVING_ENV
        )
        root = psutil.Process().pid
    else:
        url, headers, root = (
            a.url,
            {"Authorization": f"Bearer {a.key}", "X-Namespace": a.namespace},
            a.pid,
        )
    try:
        out = asyncio.run(Load(a, url, headers).run(root))
    finally:
        if started:
            stop_service()
    if a.soak and out["rss_growth_pct"] is not None and out["rss_growth_pct"] >= 5:
        print(f"soak: RSS grew {out['rss_growth_pct']} % (target < 5 %)")
    if out["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
