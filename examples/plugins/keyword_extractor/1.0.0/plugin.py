"""Keyword extraction, KeyBERT-style: candidate words and phrases (n-grams without stop words,
scikit-learn's CountVectorizer) scored by cosine similarity of their embedding to the document's,
with the service's text-embedding model (`context.embed`). The best `top_n` are returned.

Call it as `keyword_extractor_1_0_0` or `mixpeek://keyword_extractor@1.0.0/keywords`.
The document embedding sees the first 256 tokens of the text (the model's window).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from rawinfer.plugins.api import Batching, Manifest, Plugin, PluginContext, Resources


class Keyword(BaseModel):
    text: str
    score: float = Field(description="cosine similarity to the document, -1..1")


class KeywordExtractor(Plugin):
    class Inputs(BaseModel):
        text: str = Field(min_length=1, max_length=100_000, pattern=r"\S")

    class Parameters(BaseModel):
        top_n: int = Field(5, ge=1, le=50, description="how many keywords")
        max_ngram: int = Field(2, ge=1, le=4, description="longest candidate phrase, in words")
        stop_words: bool = Field(True, description="leave out English stop words")

    class Outputs(BaseModel):
        keywords: list[Keyword]

    manifest = Manifest(
        name="keyword_extractor",
        version="1.0.0",
        description="Keywords and key phrases of a text, ranked by embedding similarity to it "
        "(KeyBERT-style)",
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
    )

    MAX_CANDIDATES = 500  # the most frequent n-grams of a long text

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
        # one forward pass for the whole batch: every document, then every candidate
        flat = [x.text for x in inputs] + [c for cs in cands for c in cs]
        emb = self.embed(flat)  # unit rows: a dot product is the cosine
        out, start = [], len(inputs)
        for i, (cs, p) in enumerate(zip(cands, parameters)):
            scores = emb[start : start + len(cs)] @ emb[i]
            start += len(cs)
            best = scores.argsort()[::-1][: p.top_n]
            out.append(
                self.Outputs(
                    keywords=[Keyword(text=cs[j], score=round(float(scores[j]), 4)) for j in best]
                )
            )
        return out
