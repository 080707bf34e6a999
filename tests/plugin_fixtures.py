"""Test plugins the `service` fixture serves beside the repo's plugins/ (tests/test_api_plugins.py):
one that fails to import, one with an invalid manifest, one whose load() raises, one that raises
during inference on request, one that returns garbage outputs, and a scaffolded one
(`rawinfer plugins new my_text_embedder`). All ask for a sliver of CPU (Ray sees 2 here)."""

from __future__ import annotations

from pathlib import Path

HEADER = """from __future__ import annotations
from typing import Literal
from pydantic import BaseModel
from rawinfer.plugins.api import Batching, Manifest, Plugin, Resources
"""

PLUGINS = {
    "broken_import": HEADER + "import rawinfer_no_such_module  # noqa\n",
    "bad_manifest": HEADER
    + """
class BadManifest(Plugin):
    class Inputs(BaseModel):
        text: str
    class Outputs(BaseModel):
        text: str
    manifest = Manifest(name="bad_manifest", version="1.0", Inputs=Inputs, Outputs=Outputs,
        outputs=["text"],
                        example={"text": "x"})
    def infer(self, inputs, parameters):
        return [{"text": x.text} for x in inputs]
""",
    "load_fails": HEADER
    + """
class LoadFails(Plugin):
    class Inputs(BaseModel):
        text: str
    class Outputs(BaseModel):
        text: str
    manifest = Manifest(name="load_fails", version="1.0.0", Inputs=Inputs, Outputs=Outputs,
        outputs=["text"],
                        resources=Resources(num_cpus=0.01), example={"text": "x"})
    def load(self, context):
        raise RuntimeError("weights file missing: demo")
    def infer(self, inputs, parameters):
        return [{"text": x.text} for x in inputs]
""",
    "echo_raiser": HEADER
    + '''
class EchoRaiser(Plugin):
    """Echoes text; raises on the text "boom" (a batch holding it must not fail the others)."""
    class Inputs(BaseModel):
        text: str
    class Parameters(BaseModel):
        upper: bool = False
    class Outputs(BaseModel):
        text: str
    manifest = Manifest(name="echo_raiser", version="1.0.0", Inputs=Inputs, Parameters=Parameters,
                        Outputs=Outputs, outputs=["text"], resources=Resources(num_cpus=0.01),
                        batch=Batching(max_batch_size=8, batch_wait_timeout_s=0.2),
                            example={"text": "x"})
    def infer(self, inputs, parameters):
        if any(x.text == "boom" for x in inputs):
            raise ValueError("boom: a secret-looking internal message that must not reach clients")
        return [self.Outputs(text=x.text.upper() if p.upper else x.text) for x, p in zip(inputs,
            parameters)]
''',
    "garbage_outputs": HEADER
    + """
class GarbageOutputs(Plugin):
    class Inputs(BaseModel):
        mode: Literal["ok", "wrong_type", "missing_field", "not_a_dict", "wrong_count"]
    class Outputs(BaseModel):
        score: float
    manifest = Manifest(name="garbage_outputs", version="1.0.0", Inputs=Inputs, Outputs=Outputs,
                        outputs=["score"], resources=Resources(num_cpus=0.01),
                            batch=Batching(max_batch_size=1),
                        example={"mode": "ok"})
    def infer(self, inputs, parameters):
        mode = inputs[0].mode
        if mode == "wrong_count":
            return []
        return [{"ok": {"score": 0.5}, "wrong_type": {"score": "high"}, "missing_field": {},
                 "not_a_dict": "0.5"}[mode]]
""",
}


def write_test_plugins(folder: Path) -> Path:
    from rawinfer.plugins.scaffold import scaffold

    folder.mkdir(parents=True, exist_ok=True)
    for name, source in PLUGINS.items():
        (folder / name).mkdir()
        (folder / name / "plugin.py").write_text(source)
    made = scaffold("my_text_embedder", folder) / "plugin.py"
    made.write_text(
        made.read_text().replace("Resources(num_cpus=0.05)", "Resources(num_cpus=0.01)")
    )
    return folder
