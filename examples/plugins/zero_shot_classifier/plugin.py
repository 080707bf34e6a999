"""Zero-shot text classification by embedding similarity: each label becomes a hypothesis
("This text is about {label}."), the text and the hypotheses are embedded by the service's
text-embedding deployment (`context.embed`), and the cosine similarities, divided by a temperature,
go through a softmax.
Labels are given per request (`parameters.labels`); no training.

Call it as `zero_shot_classifier_1_0_0`, `mixpeek://zero_shot_classifier@1.0.0/labels` or
`.../scores` (both name the same response: `labels` sorted best first, `scores` aligned with it).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field, field_validator

from rawinfer.plugins.api import Batching, Manifest, Plugin, PluginContext, Resources


class ZeroShotClassifier(Plugin):
    class Inputs(BaseModel):
        text: str = Field(min_length=1, max_length=100_000, pattern=r"\S")

    class Parameters(BaseModel):
        labels: list[str] = Field(min_length=2, max_length=100, description="the candidate labels")
        hypothesis_template: str = Field("This text is about {label}.", max_length=500)
        temperature: float = Field(
            0.05, gt=0, le=10, description="softmax temperature over cosine similarities"
        )

        @field_validator("labels")
        @classmethod
        def _labels(cls, v: list[str]) -> list[str]:
            v = [x.strip() for x in v]
            if any(not x for x in v):
                raise ValueError("labels must not be empty strings")
            if len(set(v)) != len(v):
                raise ValueError("labels must be distinct")
            return v

        @field_validator("hypothesis_template")
        @classmethod
        def _template(cls, v: str) -> str:
            if v.count("{label}") != 1:
                raise ValueError("hypothesis_template must contain {label} exactly once")
            return v

    class Outputs(BaseModel):
        labels: list[str] = Field(description="the labels, most likely first")
        scores: list[float] = Field(description="probabilities aligned with labels (they sum to 1)")

    manifest = Manifest(
        name="zero_shot_classifier",
        version="1.0.0",
        description="Classify a text into labels given per request, by embedding similarity "
        "(no training)",
        tasks=["text_classification"],
        Inputs=Inputs,
        Parameters=Parameters,
        Outputs=Outputs,
        outputs=["labels", "scores"],
        resources=Resources(num_cpus=0.05),
        batch=Batching(max_batch_size=16, batch_wait_timeout_s=0.01),
        example={
            "text": "The striker scored twice in the second half and the home side won the cup."
        },
        example_parameters={"labels": ["sports", "politics", "cooking"]},
    )

    def load(self, context: PluginContext) -> None:
        # the service's text-embedding deployment embeds (no model in this replica); see
        # docs/plugins.md
        self.embed = context.embed

    def infer(self, inputs: list[Inputs], parameters: list[Parameters]) -> list[Outputs]:
        hypotheses = [
            [p.hypothesis_template.replace("{label}", label) for label in p.labels]
            for p in parameters
        ]
        flat = [x.text for x in inputs] + [h for hs in hypotheses for h in hs]
        emb = self.embed(flat)  # unit rows: a dot product is the cosine
        out, start = [], len(inputs)
        for i, p in enumerate(parameters):
            sims = emb[start : start + len(p.labels)] @ emb[i]
            start += len(p.labels)
            z = sims / p.temperature
            probs = np.exp(z - z.max())
            probs /= probs.sum()
            order = probs.argsort()[::-1]
            out.append(
                self.Outputs(
                    labels=[p.labels[j] for j in order],
                    scores=[round(float(probs[j]), 6) for j in order],
                )
            )
        return out
