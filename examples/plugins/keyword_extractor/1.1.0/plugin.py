"""keyword_extractor 1.1.0: as 1.0.0 (its folder beside this one), plus Maximal Marginal
Relevance: `diversity` (default 0.5; 1.0.0 has none, i.e. 0) trades similarity to the document
against similarity to the keywords already chosen, so near-duplicates ("model", "models") give
way to other topics. Served beside 1.0.0 as `keyword_extractor_1_1_0`,
`mixpeek://keyword_extractor@1.1.0/keywords`. A folder per version keeps versions independent.
"""

from __future__ import annotations

import re

import numpy as np
from pydantic import BaseModel, Field

from rawinfer.plugins.api import Batching, Manifest, Plugin, PluginContext, Resources


class Keyword(BaseModel):
    text: str
    score: float = Field(description="cosine similarity to the document, -1..1")


def mmr(doc_sim: np.ndarray, cand_sim: np.ndarray, top_n: int, diversity: float) -> list[int]:
    """Indices chosen by Maximal Marginal Relevance (diversity 0: plain ranking by doc_sim)."""
    chosen = [int(doc_sim.argmax())]
    rest = [i for i in range(len(doc_sim)) if i != chosen[0]]
    while rest and len(chosen) < top_n:
        redundancy = cand_sim[np.ix_(rest, chosen)].max(axis=1)
        score = (1 - diversity) * doc_sim[rest] - diversity * redundancy
        chosen.append(rest.pop(int(score.argmax())))
    return chosen


class KeywordExtractor(Plugin):
    class Inputs(BaseModel):
        text: str = Field(min_length=1, max_length=100_000, pattern=r"\S")

    class Parameters(BaseModel):
        top_n: int = Field(5, ge=1, le=50, description="how many keywords")
        max_ngram: int = Field(2, ge=1, le=4, description="longest candidate phrase, in words")
        stop_words: bool = Field(True, description="leave out English stop words")
        diversity: float = Field(
            0.5, ge=0, le=1, description="0: most similar first; 1: most varied"
        )

    class Outputs(BaseModel):
        keywords: list[Keyword]

    manifest = Manifest(
        name="keyword_extractor",
        version="1.1.0",
        description="Keywords and key phrases of a text, diversified with Maximal Marginal "
        "Relevance",
        tasks=["keyword_extraction"],
        Inputs=Inputs,
        Parameters=Parameters,
        Outputs=Outputs,
        outputs=["keywords"],
        resources=Resources(num_cpus=0.05),
        batch=Batching(max_batch_size=16, batch_wait_timeout_s=0.01),
        example={
            "text": "Ray Serve scales machine learning models across a cluster; "
            "its batching gathers concurrent requests into one forward pass."
        },
        example_parameters={"diversity": 0.7},
    )

    MAX_CANDIDATES = 500

    def load(self, context: PluginContext) -> None:
        # the service's text-embedding deployment embeds (no model in this replica); see
        # docs/plugins.md
        self.embed = context.embed

    def candidates(self, text: str, p: "KeywordExtractor.Parameters") -> list[str]:
        """n-grams that never span a stop word or punctuation ("models across a cluster" gives
        "models" and "cluster", not "models cluster"), the most frequent first."""
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

        stop = ENGLISH_STOP_WORDS if p.stop_words else frozenset()

        def analyze(doc: str) -> list[str]:
            grams = []
            for run in re.split(r"[^\w\s'-]+", doc.lower()):
                words = [w.strip("'-") for w in run.split()]
                chunk: list[str] = []
                for w in words + [""]:  # "" ends the last chunk
                    if w and w not in stop and not w.isdigit():
                        chunk.append(w)
                        continue
                    grams += [
                        " ".join(chunk[i : i + n])
                        for n in range(1, p.max_ngram + 1)
                        for i in range(len(chunk) - n + 1)
                    ]
                    chunk = []
            return grams

        try:
            return list(
                CountVectorizer(analyzer=analyze, max_features=self.MAX_CANDIDATES)
                .fit([text])
                .get_feature_names_out()
            )
        except ValueError:  # nothing left (only stop words or punctuation)
            return []

    def infer(self, inputs: list[Inputs], parameters: list[Parameters]) -> list[Outputs]:
        cands = [self.candidates(x.text, p) for x, p in zip(inputs, parameters)]
        flat = [x.text for x in inputs] + [c for cs in cands for c in cs]
        emb = self.embed(flat)  # unit rows: a dot product is the cosine
        out, start = [], len(inputs)
        for i, (cs, p) in enumerate(zip(cands, parameters)):
            rows = emb[start : start + len(cs)]
            start += len(cs)
            if not cs:
                out.append(self.Outputs(keywords=[]))
                continue
            doc_sim = rows @ emb[i]
            chosen = mmr(doc_sim, rows @ rows.T, p.top_n, p.diversity)
            out.append(
                self.Outputs(
                    keywords=[
                        Keyword(text=cs[j], score=round(float(doc_sim[j]), 4)) for j in chosen
                    ]
                )
            )
        return out
