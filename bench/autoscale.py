"""Autoscaling under a load step, on one Ray node: the text-embedding deployment and the ingress go
from 1 replica to more within their configured delays and back down after them; the OpenAI proxy,
a scale-to-zero deployment (pointed at a local server speaking OpenAI's wire format,
tests/fake_providers.py), wakes on the first request; and while replicas come and go the shared
limiter stays exact (a key of `--limit` requests a minute gets exactly that many 200s) and the
exact cache never answers one namespace with another's entry.

The autoscaling configs are serve_config.yaml's with short delays (`--up`, `--down`), so a run
takes about two minutes; Serve's metric push intervals are its defaults unless `--push-s` is set.

Prints one JSON object (tests/cluster/test_autoscale.py reads it): replica counts sampled every
0.5 s, the seconds from the step until each deployment had more than one replica running and from
the end of the load until it was back to one, the wake times, the limited key's statuses and the
cache's hits per namespace.

Run: `.venv/bin/python bench/autoscale.py [--clients 24] [--step-s 30] [--up 2] [--down 10]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from common import free_port, pct  # noqa: E402

from rawinfer.cli.launch import SERVING_ENV, deploy, load_config  # noqa: E402

EMBED = {"provider": "local", "model": "all-minilm-l6-v2"}
CHAT = {"provider": "openai", "model": "gpt-4o-mini"}
SCALED = ("ingress", "text_embedding", "openai")


def small_catalog(folder: Path) -> str:
    """catalog.yaml with the text-embedding and OpenAI backends and their targets only."""
    full = yaml.safe_load((REPO / "catalog.yaml").read_text())
    keep = {"text_embedding", "openai"}
    catalog = {
        "providers": ["local", "openai"],
        "backends": {k: v for k, v in full["backends"].items() if k in keep},
        "targets": [t for t in full["targets"] if t["backend"] in keep],
    }
    path = folder / "catalog.autoscale.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return str(path)


class Sampler(threading.Thread):
    """Running replicas of each scaled deployment every 0.5 s: (seconds since start, counts)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stop = threading.Event()

    def now(self) -> dict[str, int]:
        from ray import serve

        deps = serve.status().applications["rawinfer"].deployments
        out = {}
        for n in SCALED:
            states = deps[n].replica_states if n in deps else {}
            out[n] = states.get("RUNNING", 0)
            # replicas the autoscaler has asked for (starting ones too): its decision
            out[n + ":asked"] = sum(v for k, v in states.items() if k != "STOPPING")
        return out

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((round(time.perf_counter() - self.t0, 1), self.now()))
            self.stop.wait(0.5)

    def at(self) -> float:
        return time.perf_counter() - self.t0

    def first(self, name: str, after: float, test) -> float | None:
        """Seconds from `after` to the first sample where test(count) holds."""
        for t, counts in self.samples:
            if t >= after and test(counts.get(name, 0)):
                return round(t - after, 1)
        return None

    def back_to_one(self, name: str, after: float) -> float | None:
        """Seconds from `after` until the deployment held (and asked for) one replica for good:
        the sample after the last one above one; None if it never came back."""
        above = [t for t, c in self.samples if c.get(name, 0) > 1 or c.get(name + ":asked", 0) > 1]
        if not above:
            return 0.0
        later = [t for t, _ in self.samples if t > above[-1]]
        return round(max(later[0] - after, 0.0), 1) if later else None

    def wait(self, name: str, test, limit_s: float) -> float | None:
        t0 = self.at()
        while self.at() - t0 < limit_s:
            if test(self.now().get(name, 0)):
                return round(self.at() - t0, 1)
            time.sleep(0.25)
        return None


def chat(prompt: str, temperature: float) -> dict:
    return {
        **CHAT,
        "inputs": {"prompts": [prompt]},
        "parameters": {"temperature": temperature, "max_tokens": 16},
        "enable_semantic_cache": True,
    }


async def wake(c: httpx.AsyncClient, h: dict, s: Sampler, label: str) -> dict:
    """The first request to the scale-to-zero proxy once it has no replica: its status and time."""
    gone = await asyncio.to_thread(s.wait, "openai", lambda n: n == 0, 120)
    t = time.perf_counter()
    r = await c.post("/v1/inference", json=chat(f"wake {label}", 0.7), headers=h)
    assert r.status_code == 200, r.text
    took = time.perf_counter() - t
    t = time.perf_counter()
    warm = await c.post("/v1/inference", json=chat(f"warm {label}", 0.7), headers=h)
    return {
        "zero_after_s": gone,
        "status": r.status_code,
        "wake_s": round(took, 2),
        "warm_status": warm.status_code,
        "warm_ms": round((time.perf_counter() - t) * 1000, 1),
    }


async def step(url: str, a, keys: dict, s: Sampler) -> dict:
    """The load step with the limited key's requests and the cache probes beside it."""
    out: dict = {"embed": [], "limited": [], "cache": {"a_hits": 0, "a_asked": 0, "b_hits": 0}}
    async with httpx.AsyncClient(base_url=url, timeout=90) as c:
        stop_at = 0.0

        async def client(i: int, until: float) -> None:
            h = keys["load"][i % len(keys["load"])]
            n = 0
            while time.perf_counter() < until:
                texts = [f"step client {i} request {n} text {j}" for j in range(8)]
                t = time.perf_counter()
                try:
                    st = (
                        await c.post(
                            "/v1/inference", json={**EMBED, "inputs": {"texts": texts}}, headers=h
                        )
                    ).status_code
                except httpx.HTTPError:
                    st = 0
                out["embed"].append((round(s.at(), 1), st, time.perf_counter() - t))
                n += 1

        async def limited(until: float) -> None:
            """Open loop, one every 0.4 s: the limiter's answers do not wait on the load."""
            body = {**EMBED, "inputs": {"text": "limited"}}

            async def one() -> None:
                r = await c.post("/v1/inference", json=body, headers=keys["limited"])
                out["limited"].append(r.status_code)

            sent = []
            while time.perf_counter() < until:
                sent.append(asyncio.create_task(one()))
                await asyncio.sleep(0.4)
            await asyncio.gather(*sent)

        async def cache(until: float) -> None:
            i = 0
            while time.perf_counter() < until:
                prompt = f"Cache probe {i}: name a colour."
                first = await c.post("/v1/inference", json=chat(prompt, 0), headers=keys["a"])
                await asyncio.sleep(0.5)  # the exact entry is written off the request path
                again = await c.post("/v1/inference", json=chat(prompt, 0), headers=keys["a"])
                other = await c.post("/v1/inference", json=chat(prompt, 0), headers=keys["b"])
                for r in (first, again, other):
                    assert r.status_code == 200, r.text
                out["cache"]["a_asked"] += 1
                out["cache"]["a_hits"] += bool(again.json()["cache_hit"])
                out["cache"]["b_hits"] += bool(other.json()["cache_hit"])
                out["cache"]["first_hits"] = out["cache"].get("first_hits", 0) + bool(
                    first.json()["cache_hit"]
                )
                i += 1

        base = time.perf_counter() + a.base_s
        await asyncio.gather(*(client(i, base) for i in range(2)))
        out["step_at"] = round(s.at(), 1)
        stop_at = time.perf_counter() + a.step_s
        await asyncio.gather(
            *(client(i, stop_at) for i in range(a.clients)), limited(stop_at), cache(stop_at)
        )
        out["load_end_at"] = round(s.at(), 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=24, help="closed-loop clients in the step")
    p.add_argument("--base-s", type=float, default=5.0, help="2 clients before the step")
    p.add_argument("--step-s", type=float, default=30.0)
    p.add_argument("--up", type=float, default=2.0, help="upscale_delay_s of both")
    p.add_argument("--down", type=float, default=10.0, help="downscale_delay_s of both")
    p.add_argument("--limit", type=int, default=25, help="the limited key's requests a minute")
    p.add_argument("--push-s", type=float, default=None, help="Serve's metric push intervals")
    a = p.parse_args()
    env = {**SERVING_ENV, "RAY_AUTH_MODE": "disabled"}
    if a.push_s:
        env["RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] = str(a.push_s)
        env["RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] = str(a.push_s)
    os.environ.update(env)
    os.environ.pop("RAY_ADDRESS", None)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(var, None)
    import ray
    from fake_providers import OPENAI_KEY, Fakes

    from rawinfer.tenancy.limits import window_of
    from rawinfer.tenancy.store import Store

    fakes = Fakes()
    # the provider's settings from the environment, as in production (set before Ray starts)
    os.environ["RAWINFER_PROVIDERS__OPENAI__API_KEY"] = OPENAI_KEY
    os.environ["RAWINFER_PROVIDERS__OPENAI__BASE_URL"] = fakes.openai.url + "/v1"
    folder = Path(tempfile.mkdtemp(prefix="rawinfer-autoscale-"))
    db = f"sqlite:///{folder}/db.sqlite"
    store = Store(db)
    store.create_schema()
    ns = [store.create_namespace(n).name for n in ("bench", "tenant-a", "tenant-b")]

    def headers(name: str, space: str, **kw) -> dict:
        info, secret = store.create_key(name, namespaces=[space], **kw)
        return info, {"Authorization": f"Bearer {secret}", "X-Namespace": space}

    # several load keys: the per-key in-flight cap (limits.key_max_concurrent) guards one key
    keys = {"load": [headers(f"load-{i}", ns[0])[1] for i in range(4)]}
    keys["a"], keys["b"] = headers("a", ns[1])[1], headers("b", ns[2])[1]

    ray.init(address="local", num_cpus=2, namespace="serve", log_to_driver=False)
    port = free_port()
    scaled = {"upscale_delay_s": a.up, "downscale_delay_s": a.down, "look_back_period_s": 2}
    config = load_config(
        port=port,
        catalog=small_catalog(folder),
        settings={
            "database_url": db,
            "cache_dir": str(folder / "cache"),
            "plugins_dirs": [],
        },
        deployments={
            "ingress": {
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": 2,
                    "target_ongoing_requests": 4,
                    **scaled,
                }
            },
            "text_embedding": {
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": 3,
                    "target_ongoing_requests": 4,
                    **scaled,
                }
            },
            "openai": {
                "autoscaling_config": {
                    "min_replicas": 0,
                    "max_replicas": 1,
                    "target_ongoing_requests": 128,
                    "downscale_delay_s": 5,
                }
            },
        },
    )
    app = config["applications"][0]
    keep = {"ingress", "rate_limiter", "semantic_cache", "text_embedding", "openai"}
    app["deployments"] = [d for d in app["deployments"] if d["name"] in keep]
    report: dict = {"clients": a.clients, "up_s": a.up, "down_s": a.down, "push_s": a.push_s}
    s = Sampler()
    try:
        t0 = time.perf_counter()
        deploy(config)
        report["deploy_s"] = round(time.perf_counter() - t0, 1)
        s.start()
        url = f"http://127.0.0.1:{port}"

        async def wakes() -> list:
            async with httpx.AsyncClient(base_url=url, timeout=90) as c:
                return [await wake(c, keys["a"], s, str(i)) for i in range(2)]

        report["wake"] = asyncio.run(wakes())
        # the limited key: one whose window (a per-subject phase) has the whole step ahead of it
        while True:
            info, h = headers("limited", ns[0], rpm=a.limit)
            if window_of(f"key:{info.id}:rpm", time.time())[1] > a.base_s + a.step_s + 15:
                break
        keys["limited"] = h
        load = asyncio.run(step(url, a, keys, s))
        end = load["load_end_at"]
        for name in ("text_embedding", "ingress"):
            s.wait(name + ":asked", lambda n: n <= 1, a.down + 60)
        time.sleep(1)
        s.stop.set()
        s.join()
        at = load["step_at"]
        ok = [d * 1000 for t, st, d in load["embed"] if st == 200]
        report.update(
            step_at=at,
            load_end_at=end,
            replicas=s.samples,
            peak={n: max(c.get(n, 0) for _, c in s.samples) for n in SCALED},
            peak_asked={n: max(c.get(f"{n}:asked", 0) for _, c in s.samples) for n in SCALED},
            scaled_up_s={n: s.first(n, at, lambda k: k > 1) for n in ("text_embedding", "ingress")},
            asked_up_s={
                n: s.first(f"{n}:asked", at, lambda k: k > 1) for n in ("text_embedding", "ingress")
            },
            scaled_down_s={n: s.back_to_one(n, end) for n in ("text_embedding", "ingress")},
            embed={
                "requests": len(load["embed"]),
                "statuses": sorted({st for _, st, _ in load["embed"]}),
                "p50_ms": round(pct(ok, 50), 1) if ok else None,
                "p99_ms": round(pct(ok, 99), 1) if ok else None,
            },
            limited={
                "limit": a.limit,
                "sent": len(load["limited"]),
                "ok": load["limited"].count(200),
                "refused": load["limited"].count(429),
                "other": sorted({x for x in load["limited"] if x not in (200, 429)}),
            },
            cache=load["cache"],
        )
    finally:
        s.stop.set()
        ray.shutdown()
        for f in fakes.all:
            f.stop()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
