"""Entry-point discovery of methods and datasets, and lookup of protocol specs.

Entry points are listed without importing them; a plugin is imported only when it is used or listed in detail, and
a plugin that fails to import is reported by name instead of breaking the CLI.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from echobench.config import did_you_mean, load_yaml
from echobench.errors import UserError

METHODS_GROUP = "echobench.methods"
DATASETS_GROUP = "echobench.datasets"
PROTOCOLS_GROUP = "echobench.protocols"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    value: str
    package: str
    version: str
    error: str | None = None


def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def _distribution(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.name, dist.version) if dist is not None else ("?", "?")


def load(group: str, name: str) -> Any:
    """Import and return the object registered as ``name`` in ``group``."""
    eps = _entry_points(group)
    kind = group.rsplit(".", 1)[-1][:-1]
    if name not in eps:
        available = ", ".join(sorted(eps)) or "none installed"
        raise UserError(f"unknown {kind} {name!r}{did_you_mean(name, eps)}; available: {available}")
    ep = eps[name]
    try:
        return ep.load()
    except Exception as exc:  # a broken third-party plugin must be reported, whatever it raised
        package, version = _distribution(ep)
        raise UserError(
            f"{kind} plugin {name!r} ({package} {version}, {ep.value}) failed to import: "
            f"{type(exc).__name__}: {exc}; fix or uninstall that package"
        ) from None


def describe(group: str) -> list[PluginInfo]:
    """Every registered plugin with its package and version; import failures become a warning each."""
    infos = []
    for name, ep in sorted(_entry_points(group).items()):
        package, version = _distribution(ep)
        error = None
        try:
            obj = ep.load()
            version = getattr(obj, "version", version)
        except Exception as exc:  # reported per plugin, never fatal for the listing
            error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"plugin {name!r} from {package} failed to import: {error}", stacklevel=2)
        infos.append(PluginInfo(name=name, value=ep.value, package=package, version=str(version), error=error))
    return infos


def load_method(name: str) -> Any:
    from echobench.api import Method

    cls = load(METHODS_GROUP, name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UserError(f"method plugin {name!r} does not point at a subclass of echobench.api.Method")
    return cls


def load_dataset(name: str) -> Any:
    return load(DATASETS_GROUP, name)


@dataclass(frozen=True)
class ProtocolSpec:
    """A declarative protocol (``protocols/<name>.yaml``): ``family`` selects the implementing module."""

    name: str
    family: str
    version: int
    task: str
    settings: dict[str, Any]
    path: str


def _builtin_protocol_dir() -> Path:
    return Path(str(resources.files("echobench.protocol_specs")))


def protocol_dirs() -> list[Path]:
    """Search order: ``./protocols`` (the user's own), then the built-in specs."""
    return [Path.cwd() / "protocols", _builtin_protocol_dir()]


def available_protocols() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in reversed(protocol_dirs()):
        if folder.is_dir():
            found.update({p.stem: p for p in folder.glob("*.yaml")})
    return found


def load_protocol(name_or_path: str) -> ProtocolSpec:
    """Resolve ``knn`` or ``path/to/spec.yaml`` to a validated :class:`ProtocolSpec`."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_file():
            raise UserError(f"protocol file {candidate} does not exist")
        path = candidate
    else:
        known = available_protocols()
        if name_or_path not in known:
            listing = ", ".join(sorted(known)) or "none"
            raise UserError(
                f"unknown protocol {name_or_path!r}{did_you_mean(name_or_path, known)}; available: {listing}"
            )
        path = known[name_or_path]
    raw = load_yaml(path)
    missing = [key for key in ("name", "family", "version", "task") if key not in raw]
    if missing:
        raise UserError(f"protocol spec {path} lacks required key(s) {', '.join(missing)}")
    settings = {k: v for k, v in raw.items() if k not in {"name", "family", "version", "task", "description"}}
    return ProtocolSpec(
        name=str(raw["name"]),
        family=str(raw["family"]),
        version=int(raw["version"]),
        task=str(raw["task"]),
        settings=settings,
        path=str(path),
    )
