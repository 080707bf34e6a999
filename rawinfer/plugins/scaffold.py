"""`rawinfer plugins new NAME`: a working plugin folder from a template (a text embedder over the
packaged all-MiniLM-L6-v2), to edit into your own model."""

from __future__ import annotations

from pathlib import Path

from rawinfer.plugins.api import NAME

TEMPLATE = '''"""{title}: a rawinfer plugin (docs/plugins.md).

Served as `{name}_1_0_0` and `mixpeek://{name}@1.0.0/embedding` once this folder is in a
plugins dir (Settings.plugins_dirs, default the repo's examples/plugins/). Check it with
`rawinfer plugins check {folder}`. Bump `version` for a change that alters results: the new
version is a new inference name, and the old one can keep running beside it (a folder per version).
"""
from __future__ import annotations

from pydantic import BaseModel, Field

from rawinfer.plugins.api import Batching, Manifest, Plugin, PluginContext, Resources


class {cls}(Plugin):
    class Inputs(BaseModel):  # what `inputs` must be (unknown keys are a 400)
        text: str = Field(min_length=1, max_length=20_000)

    class Parameters(BaseModel):  # what `parameters` may hold, with defaults
        dimensions: int | None = Field(None, ge=1,
            description="keep the first N dimensions (renormalised)")

    class Outputs(BaseModel):  # what `data` is; every response is validated against it
        embedding: list[float]
        dimensions: int

    manifest = Manifest(
        name="{name}", version="1.0.0",
            description="Embeds a text with the service's text-embedding model",
        tasks=["text_embedding"], Inputs=Inputs, Parameters=Parameters, Outputs=Outputs,
            outputs=["embedding"],
        resources=Resources(num_cpus=0.05), batch=Batching(max_batch_size=16,
            batch_wait_timeout_s=0.01),
        example={{"text": "hello world"}},
    )

    def load(self, context: PluginContext) -> None:
        """Once per replica: load your own weights here (heavy imports too, not at module level).
        This template needs none: context.embed() asks the service's text-embedding deployment."""
        self.embed = context.embed

    def infer(self, inputs: list[Inputs], parameters: list[Parameters]) -> list[Outputs]:
        """A batch of requests (each with its own parameters) -> one Outputs per request."""
        rows = self.embed([x.text for x in inputs])  # one call for the batch; unit rows
        out = []
        for row, p in zip(rows, parameters):
            if p.dimensions is not None:
                row = row[:p.dimensions]
                row = row / max(float((row ** 2).sum()) ** 0.5, 1e-12)
            out.append(self.Outputs(embedding=row.tolist(), dimensions=len(row)))
        return out
'''


def scaffold(name: str, parent: Path) -> Path:
    """Writes `<parent>/<name>/plugin.py`; refuses a bad name or an existing folder."""
    if not NAME.match(name):
        raise ValueError(
            f"plugin name {name!r} must be snake_case: lower-case letters, digits, single "
            f"underscores"
        )
    folder = parent / name
    if folder.exists():
        raise FileExistsError(f"{folder} already exists")
    folder.mkdir(parents=True)
    cls = "".join(part.capitalize() for part in name.split("_"))
    (folder / "plugin.py").write_text(
        TEMPLATE.format(
            name=name, cls=cls, title=name.replace("_", " ").capitalize(), folder=folder
        )
    )
    return folder
