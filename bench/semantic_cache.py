"""Semantic cache: vCache at δ ∈ {0.01, 0.02, 0.05} through the running service vs static
similarity thresholds {0.80, 0.90, 0.95}, on paraphrase groups with near-miss negatives (same
template, another entity: "capital of France" / "capital of Germany"), answered by the local
chat model (greedy).

Ground truth: a cached answer is right when it was generated for the request's own group (same
question, same entity). vCache runs in the real service over HTTP (a fresh namespace per δ, the
default exact-match judge); a hit is right when its text is one of the model's answers to the
group's own paraphrases (computed first, one batched call). Static thresholds are replayed on the
same request sequence with the same embeddings (the service's text-embedding endpoint): serve the
nearest entry when its similarity ≥ the threshold, else call the model and add the prompt.
Hit path: end-to-end latency of cache hits (HTTP, embedding, lookup) vs requests that called the
model. Targets (issue 8): error ≤ δ at every δ; more hits than every static threshold whose error
is ≤ δ; hit p50 ≤ 10 ms.

Run: `.venv/bin/python bench/semantic_cache.py [--requests 400] [--judge exact]`
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid

import httpx
import numpy as np
from common import TUNED_SERVE_ENV, machine, start_service, stop_service

FAMILIES = {
    "capital": [
        "What is the capital of {x}?",
        "Which city is the capital of {x}?",
        "Tell me the capital city of {x}.",
        "Name the capital of {x}.",
    ],
    "language": [
        "What language is spoken in {x}?",
        "Which language do people in {x} speak?",
        "What is the main language of {x}?",
        "Name the official language of {x}.",
    ],
    "continent": [
        "On which continent is {x}?",
        "Which continent is {x} in?",
        "What continent does {x} belong to?",
        "Name the continent where {x} lies.",
    ],
}
ENTITIES = ["France", "Germany", "Italy", "Spain", "Japan", "Brazil"]
LOCAL = {"provider": "local", "model": "smollm2-135m-instruct"}
PARAMS = {"temperature": 0, "max_tokens": 24}


def groups() -> list[list[str]]:
    return [[t.format(x=e) for t in templates] for templates in FAMILIES.values() for e in ENTITIES]


def sequence(n: int, seed: int = 0) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    gs = groups()
    out = []
    for _ in range(n):
        g = rng.randrange(len(gs))
        out.append((g, rng.choice(gs[g])))
    return out


def norm(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!? ")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--judge", default="exact", choices=["exact", "embedding", "llm"])
    ap.add_argument(
        "--serve",
        choices=["default", "tuned"],
        default="default",
        help="tuned: RAY_SERVE_THROUGHPUT_OPTIMIZED=1 + RAY_SERVE_ENABLE_HA_PROXY=1 "
        "(bench/common.py)",
    )
    a = ap.parse_args()
    from rawinfer.tenancy.store import Store

    folder = tempfile.mkdtemp(prefix="rawinfer-bench-cache-")
    db = f"sqlite:///{folder}/db.sqlite"  # our own database: it holds an admin key too
    store = Store(db)
    store.create_schema()
    store.create_namespace("bench")
    _, secret = store.create_key("bench", namespaces=["bench"])
    _, admin_key = store.create_key("bench-admin", is_admin=True)
    url, _ = start_service(
        settings={
            "database_url": db,
            "semantic_cache": {"snapshot_path": f"{folder}/cache.npz", "seed": 1, "judge": a.judge},
        },
        num_cpus=2,
        env=TUNED_SERVE_ENV if a.serve == "tuned" else None,
    )
    print(f"{machine()}; Serve path: {a.serve}")
    headers = {"Authorization": f"Bearer {secret}", "X-Namespace": "bench"}
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            run(http, headers, admin_key, a.requests)
    finally:
        stop_service()


def run(http: httpx.Client, headers: dict[str, str], admin_key: str, n: int) -> None:
    gs = groups()
    prompts = [p for g in gs for p in g]
    answers = []
    for i in range(0, len(prompts), 32):  # at most 64 prompts a request
        r = http.post(
            "/v1/inference",
            headers=headers,
            json={**LOCAL, "inputs": {"prompts": prompts[i : i + 32]}, "parameters": PARAMS},
        )
        r.raise_for_status()
        answers += [norm(x["text"]) for x in r.json()["data"]["responses"]]
    right = [{answers[i * 4 + j] for j in range(4)} for i in range(len(gs))]
    r = http.post(
        "/v1/inference",
        headers=headers,
        json={
            "inference_name": "multilingual_e5_large_instruct_v1",
            "inputs": {"texts": prompts},
            "parameters": {"input_type": "query", "truncate": True},
        },
    )
    r.raise_for_status()
    vectors = dict(zip(prompts, np.asarray(r.json()["data"]["embeddings"], dtype=np.float32)))
    seq = sequence(n)
    rows = []
    for threshold in (0.80, 0.90, 0.95):
        rows.append((f"static {threshold:.2f}", *static(seq, vectors, threshold), None))
    hit_ms, model_ms = [], []
    for delta in (0.01, 0.02, 0.05):
        ns = f"bench-cache-{uuid.uuid4().hex[:6]}"
        http.post(
            "/v1/admin/namespaces",
            json={"name": ns},
            headers={"Authorization": f"Bearer {admin_key}"},
        ).raise_for_status()
        # the bench key may only use `bench`: a key for this namespace
        key = http.post(
            "/v1/admin/keys",
            json={"name": ns, "namespaces": [ns]},
            headers={"Authorization": f"Bearer {admin_key}"},
        ).json()["secret"]
        h = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
        hits = errors = 0
        for g, prompt in seq:
            t = time.perf_counter()
            r = http.post(
                "/v1/inference",
                headers=h,
                json={
                    **LOCAL,
                    "inputs": {"prompts": [prompt]},
                    "parameters": PARAMS,
                    "enable_semantic_cache": True,
                    "semantic_cache_max_error_rate": delta,
                },
            )
            ms = (time.perf_counter() - t) * 1000
            r.raise_for_status()
            body = r.json()
            if body["cache_hit"]:
                hits += 1
                hit_ms.append(ms)
                errors += norm(body["data"]["responses"][0]["text"]) not in right[g]
            else:
                model_ms.append(ms)
            time.sleep(0.02)  # lets the background judging of an explored request land first
        rows.append((f"vCache δ={delta:.2f}", hits / n, errors / n, delta))
    print(
        f"# semantic cache: {n} requests, {len(gs)} groups x 4 paraphrases, {len(ENTITIES)} "
        f"entities per "
        f"template (near misses); {machine()}"
    )
    print(f"{'policy':<16} {'hit rate':>9} {'error rate':>11}  target")
    for name, hit, err, delta in rows:
        target = (
            f"error <= {delta:.2f}: {'met' if err <= delta else 'MISSED'}"
            if delta is not None
            else ""
        )
        print(f"{name:<16} {hit:>9.3f} {err:>11.4f}  {target}")
    for name, hit, err, delta in rows:
        if delta is not None:
            better = [s for s in rows if s[3] is None and s[2] <= delta]
            beats = all(hit > s[1] for s in better)
            print(
                f"vCache δ={delta:.2f}: static thresholds with error <= δ: "
                f"{', '.join(s[0] for s in better) or 'none'}; more hits than all of them: "
                f"{'yes' if beats else 'NO'}"
            )
    if hit_ms:
        print(
            f"hit path p50 {statistics.median(hit_ms):.2f} ms (n={len(hit_ms)}); model call p50 "
            f"{statistics.median(model_ms):.2f} ms (n={len(model_ms)}); target hit p50 <= 10 ms: "
            f"{'met' if statistics.median(hit_ms) <= 10 else 'MISSED'}"
        )


def static(seq, vectors, threshold: float) -> tuple[float, float]:
    entries: list[tuple[np.ndarray, int]] = []
    hits = errors = 0
    for g, prompt in seq:
        v = vectors[prompt]
        if entries:
            sims = np.stack([e[0] for e in entries]) @ v
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                hits += 1
                errors += entries[best][1] != g
                continue
        entries.append((v, g))
    return hits / len(seq), errors / len(seq)


if __name__ == "__main__":
    main()
