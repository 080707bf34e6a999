"""Finding plugins: Python entry points (group `rawinfer.plugins`, value `module:Class`) and plugin
folders under `Settings.plugins_dirs`, and turning them into catalog entries. Design notes:
docs/notes/plugins.md#discovery."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from pydantic import ValidationError

from rawinfer.contract import Task
from rawinfer.core.catalog import BackendSpec, Catalog, TargetSpec
from rawinfer.plugins.api import Manifest, Plugin

GROUP = "rawinfer.plugins"
ENGINE = "plugin"
_lock = threading.Lock()


class PluginLoadError(Exception):
    """A plugin reference that does not give a valid Plugin class (message says why)."""


@dataclass
class Discovered:
    source: str  # the folder or entry point it came from (for people)
    ref: str  # how to import it again: `file:<path>#<Class>` or `module:<module>#<Class>`
    cls: type[Plugin] | None = None
    error: str | None = None
    folder: Path | None = None

    @property
    def manifest(self) -> Manifest | None:
        return self.cls.manifest if self.cls is not None and self.error is None else None

    @property
    def label(self) -> str:
        m = self.manifest
        return m.ref if m else self.source

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        out: dict[str, Any] = {
            "source": self.source,
            "status": "ok" if self.error is None else "error",
        }
        if m is not None:
            out.update(
                name=m.name,
                version=m.version,
                inference_name=m.inference_name,
                feature_uris=m.feature_uris,
                description=m.description,
            )
        if self.error:
            out["error"] = self.error
        return out


def _describe(e: BaseException) -> str:
    if isinstance(e, ValidationError):
        parts = [
            f"{'.'.join(map(str, err['loc'])) or 'manifest'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in e.errors(include_url=False, include_input=False)
        ]
        return "invalid manifest: " + "; ".join(parts)[:600]
    return f"{type(e).__name__}: {e}"[:600]


def _module_file(folder: Path) -> Path | None:
    for name in ("plugin.py", "__init__.py"):
        if (folder / name).is_file():
            return folder / name
    return None


def import_file(path: Path) -> ModuleType:
    """Imports a plugin file under a module name unique to its path (versions stay apart)."""
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"rawinfer_plugin_{path.parent.name.replace('.', '_').replace('-', '_')}_{digest}"
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        package = path.name == "__init__.py"
        spec = importlib.util.spec_from_file_location(
            name, path, submodule_search_locations=[str(path.parent)] if package else None
        )
        if spec is None or spec.loader is None:
            raise PluginLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module


def _classes(module: ModuleType) -> list[type[Plugin]]:
    return [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, Plugin)
        and v is not Plugin
        and v.__module__ == module.__name__
    ]


def check_class(cls: Any) -> type[Plugin]:
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginLoadError(f"{cls!r} is not a subclass of rawinfer.plugins.api.Plugin")
    manifest = getattr(cls, "manifest", None)
    if not isinstance(manifest, Manifest):
        raise PluginLoadError(f"{cls.__name__} has no class-level `manifest = Manifest(...)`")
    if cls.infer is Plugin.infer:
        raise PluginLoadError(f"{cls.__name__} does not implement infer()")
    return cls


def load_reference(ref: str) -> type[Plugin]:
    """The Plugin class a `Discovered.ref` names (used by the ingress and the replicas)."""
    where, _, attr = ref.partition("#")
    kind, _, target = where.partition(":")
    if kind == "file":
        module = import_file(Path(target))
    elif kind == "module":
        module = importlib.import_module(target)
    else:
        raise PluginLoadError(f"unknown plugin reference {ref!r}")
    cls = getattr(module, attr, None)
    if cls is None:
        raise PluginLoadError(f"{target} has no {attr}")
    return check_class(cls)


def from_folder(folder: Path) -> list[Discovered]:
    """The plugins one plugin folder defines (a failure is one entry with its error)."""
    folder = folder.resolve()
    path = _module_file(folder)
    if path is None:
        return [
            Discovered(
                str(folder), f"file:{folder}", error="no plugin.py or __init__.py", folder=folder
            )
        ]
    try:
        found = _classes(import_file(path))
        if not found:
            raise PluginLoadError(f"{path.name} defines no Plugin subclass")
    except BaseException as e:  # a plugin's import may raise anything, SystemExit included
        if isinstance(e, KeyboardInterrupt):
            raise
        return [Discovered(str(folder), f"file:{path}", error=_describe(e), folder=folder)]
    out = []
    for cls in found:
        d = Discovered(str(folder), f"file:{path}#{cls.__name__}", folder=folder)
        try:
            d.cls = check_class(cls)
        except PluginLoadError as e:
            d.error = str(e)
        out.append(d)
    return out


def scan_dir(root: Path, depth: int = 2) -> list[Discovered]:
    """Plugin folders under a plugins dir: direct children, or their children (one level of
    grouping, e.g. a folder per version)."""
    out: list[Discovered] = []
    if not root.is_dir():
        return out
    for child in sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    ):
        if _module_file(child) is not None:
            out.extend(from_folder(child))
        elif depth > 1:
            out.extend(scan_dir(child, depth - 1))
    return out


def from_entry_points() -> list[Discovered]:
    out = []
    for ep in importlib.metadata.entry_points(group=GROUP):
        module, _, attr = ep.value.partition(":")
        d = Discovered(f"entry point {ep.name} ({ep.value})", f"module:{module}#{attr}")
        try:
            d.cls = load_reference(d.ref)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            d.error = _describe(e)
        out.append(d)
    return out


def discover(dirs: Iterable[Path], entry_points: bool = True) -> list[Discovered]:
    """Every plugin from entry points and folders; the second plugin with a name@version already
    seen is an error (its inference name would be ambiguous)."""
    found = (from_entry_points() if entry_points else []) + [
        d for root in dirs for d in scan_dir(Path(root))
    ]
    seen: dict[str, str] = {}
    for d in found:
        m = d.manifest
        if m is None:
            continue
        if m.inference_name in seen:
            d.error = f"{m.ref} is defined twice: here and in {seen[m.inference_name]}"
        else:
            seen[m.inference_name] = d.source
    return found


def with_plugins(
    catalog: Catalog, plugins_dirs: Iterable[Path], root: Path | None = None
) -> Catalog:
    """The catalog plus every plugin found (entry points and plugins_dirs, relative ones taken from
    `root`, default the repo): what the app builder serves."""
    from rawinfer.core.settings import REPO_ROOT

    root = root or REPO_ROOT
    return merge_into_catalog(
        catalog, discover([Path(d) if Path(d).is_absolute() else root / d for d in plugins_dirs])
    )


def backend_options(m: Manifest) -> dict[str, Any]:
    """What the deployment and the build step need from the manifest, as plain data."""
    return {
        "resources": m.resources.model_dump(exclude_none=True),
        "batch": m.batch.model_dump(),
        "description": m.description,
        "plugin_tasks": list(m.tasks),
        "outputs": list(m.outputs),
    }


def deployment_options(spec: BackendSpec) -> dict[str, Any]:
    """`Deployment.options(...)` for a plugin backend: the manifest's resources and batching."""
    opts = spec.options
    return {
        "ray_actor_options": dict(opts.get("resources", {})),
        "user_config": dict(opts.get("batch", {})),
    }


def merge_into_catalog(catalog: Catalog, found: list[Discovered]) -> Catalog:
    """The catalog with one backend and one target per working plugin (the backend's name is the
    inference name), and the failures in `plugin_errors`. A plugin whose names clash with the
    catalog's own is a failure too."""
    data = catalog.model_dump()
    taken = (
        {t.inference_name for t in catalog.targets}
        | set(catalog.backends)
        | {u for t in catalog.targets for u in t.feature_uris}
    )
    errors = list(data.get("plugin_errors") or [])
    for d in found:
        m = d.manifest
        if m is not None and (m.inference_name in taken or set(m.feature_uris) & taken):
            d.error = f"{m.inference_name} is already a name in the catalog"
        if d.error is not None:
            errors.append(d.summary())
            continue
        taken.add(m.inference_name)
        data["backends"][m.inference_name] = BackendSpec(
            engine=ENGINE,
            provider="local",
            served_model=m.ref,
            model_path=d.ref,
            tasks=[Task.plugin],
            options=backend_options(m) | {"plugin_dir": str(d.folder) if d.folder else None},
        ).model_dump()
        data["targets"].append(
            TargetSpec(
                backend=m.inference_name,
                provider="local",
                model=m.ref,
                inference_name=m.inference_name,
                feature_uris=m.feature_uris,
                outputs=list(m.outputs),
            ).model_dump()
        )
    data["plugin_errors"] = errors
    return Catalog.model_validate(data)
