"""Checkpoints as safetensors + JSON metadata (never pickle), with optimiser state for exact resume.

A checkpoint folder holds ``meta.json`` (method, versions, configs, step, ``complete`` and the files below) and the
files it names: ``model.<sha>.safetensors`` and, while training is unfinished, ``optimizer.<sha>.safetensors``
(tensors, with the optimiser's JSON state in the file's metadata), ``<sha>`` being a prefix of the file's SHA-256.

Crash consistency: a save writes the new content-named files first, then keeps the current ``meta.json`` as
``meta.previous.json`` and replaces ``meta.json`` (each write atomic), and only then deletes files neither names.
``meta.json`` is the only source of the step; a kill between any two writes leaves ``meta.json`` naming complete
files of one step. Files are checked against their recorded hash when read: if a file of ``meta.json`` is missing
or differs, resuming falls back to ``meta.previous.json`` (or to step 0), never to mismatched weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from echobench.atomic import publish, scratch_file, write_text_atomic
from echobench.errors import UserError
from echobench.locks import exclusive

META_FILE = "meta.json"
PREVIOUS_META_FILE = "meta.previous.json"
#: The weights file of checkpoints written before files were content-named (read only).
LEGACY_MODEL_FILE = "model.safetensors"
MODEL_ROLE, OPTIMIZER_ROLE = "model", "optimizer"
HASH_LENGTH = 16


@dataclass
class CheckpointMeta:
    method: str
    method_version: str
    method_config: dict[str, Any]
    step: int
    total_steps: int
    complete: bool
    extra: dict[str, Any]
    #: role (``model``, ``optimizer``) -> ``{"name": file name, "sha256": hex digest}``; set when saved.
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied weights); contiguous clones are always storable.
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_named(folder: Path, role: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, str]:
    """Write ``tensors`` atomically as ``<role>.<sha>.safetensors``; returns the entry ``meta.files[role]`` records."""
    with scratch_file(folder, f"{role}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        digest = _sha256(tmp)
        name = f"{role}.{digest[:HASH_LENGTH]}.safetensors"
        publish(tmp, folder / name)
    return {"name": name, "sha256": digest}


def _file_of(folder: Path, meta: CheckpointMeta, role: str) -> Path | None:
    """The file of ``role`` named by ``meta`` if it exists and matches its recorded hash, else None."""
    entry = meta.files.get(role)
    if entry is None:
        legacy = folder / LEGACY_MODEL_FILE
        return legacy if role == MODEL_ROLE and legacy.is_file() else None
    path = folder / entry["name"]
    try:
        return path if _sha256(path) == entry["sha256"] else None
    except OSError:
        return None


def model_file(folder: Path) -> Path:
    """The weight file of the checkpoint in ``folder``, after checking it against the hash its metadata records."""
    meta = read_meta(folder)
    path = None if meta is None else _file_of(folder, meta, MODEL_ROLE)
    if path is None:
        raise UserError(f"{folder} holds no readable model weights; delete the folder to retrain")
    return path


def save_checkpoint(
    folder: Path, module: nn.Module, meta: CheckpointMeta, optimizer: torch.optim.Optimizer | None = None
) -> CheckpointMeta:
    """Save weights (and optimiser state) as step ``meta.step``; ``meta.json`` is written last (see module doc).

    Saves into one folder are serialised across processes: one process's clean-up must not delete the files another
    has written but not yet named in ``meta.json`` (two runs of one fine-tuning protocol share a folder).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive(folder.with_name(f"{folder.name}.save"), "saving a checkpoint"):
        files = {MODEL_ROLE: _write_named(folder, MODEL_ROLE, _state_tensors(module), {"method": meta.method})}
        if optimizer is not None:
            tensors, payload = _optimizer_state(optimizer)
            files[OPTIMIZER_ROLE] = _write_named(folder, OPTIMIZER_ROLE, tensors, {"optimizer": json.dumps(payload)})
        saved = CheckpointMeta(**{**meta.__dict__, "files": files})
        current = folder / META_FILE
        if current.is_file() and not saved.complete:
            write_text_atomic(folder / PREVIOUS_META_FILE, current.read_text())
        write_text_atomic(current, saved.to_json())
        if saved.complete:
            (folder / PREVIOUS_META_FILE).unlink(missing_ok=True)
        _remove_unnamed(folder)
    return saved


def save_model(folder: Path, module: nn.Module, meta: CheckpointMeta) -> None:
    save_checkpoint(folder, module, meta)


def _remove_unnamed(folder: Path) -> None:
    """Delete weight and optimiser files that neither ``meta.json`` nor ``meta.previous.json`` names."""
    named = set()
    for meta_name in (META_FILE, PREVIOUS_META_FILE):
        meta = _read_meta_file(folder / meta_name)
        if meta is not None:
            named |= {entry["name"] for entry in meta.files.values()}
            named |= {LEGACY_MODEL_FILE} if not meta.files else set()
    for path in folder.glob("*.safetensors"):
        if path.name not in named:
            path.unlink(missing_ok=True)
    (folder / "optimizer.json").unlink(missing_ok=True)


def _read_meta_file(path: Path) -> CheckpointMeta | None:
    try:
        return CheckpointMeta(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError):
        return None


def read_meta(folder: Path) -> CheckpointMeta | None:
    path = folder / META_FILE
    if not path.is_file():
        return None
    try:
        return CheckpointMeta(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(
            f"checkpoint metadata {path} is corrupt ({exc}); delete the folder {folder} to retrain"
        ) from None


def load_model(folder: Path, module: nn.Module, *, method: str) -> CheckpointMeta:
    """Load weights into ``module`` after checking the checkpoint belongs to ``method`` and matches its shapes."""
    meta = read_meta(folder)
    if meta is None:
        raise UserError(f"{folder} is not an echobench checkpoint (no {META_FILE})")
    _load_weights(folder, meta, module, method=method)
    return meta


def _load_weights(folder: Path, meta: CheckpointMeta, module: nn.Module, *, method: str) -> None:
    if meta.method != method:
        raise UserError(
            f"checkpoint {folder} was saved by method {meta.method!r}, not {method!r}; pass a checkpoint of {method!r}"
        )
    path = _file_of(folder, meta, MODEL_ROLE)
    if path is None:
        raise UserError(
            f"the weights named by {folder / META_FILE} are missing or do not match their hash; delete {folder} "
            "to retrain"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"cannot read {path} ({exc}); delete {folder} to retrain") from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        if missing:
            detail = f"missing {missing[:3]}"
        elif unexpected:
            detail = f"unexpected {unexpected[:3]}"
        else:
            saved, wanted = tuple(tensors[wrong[0]].shape), tuple(expected[wrong[0]].shape)
            detail = f"shape of {wrong[0]} is {saved}, model expects {wanted}"
        raise UserError(
            f"checkpoint {folder} does not fit this {method!r} config: {detail}; use the config it was saved with"
        )
    module.load_state_dict(tensors)


def resumable(folder: Path) -> CheckpointMeta | None:
    """The newest unfinished checkpoint in ``folder`` whose model and optimiser files are intact, if any."""
    for name in (META_FILE, PREVIOUS_META_FILE):
        meta = _read_meta_file(folder / name)
        if meta is None or meta.complete:
            continue
        if _file_of(folder, meta, MODEL_ROLE) is not None and _file_of(folder, meta, OPTIMIZER_ROLE) is not None:
            return meta
    return None


def load_resumable(
    folder: Path, module: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device | str
) -> int:
    """Restore model and optimiser of :func:`resumable` (the model moved to ``device``); its step, or 0."""
    meta = resumable(folder)
    if meta is None:
        return 0
    _load_weights(folder, meta, module, method=meta.method)
    module.to(device)
    path = _file_of(folder, meta, OPTIMIZER_ROLE)
    assert path is not None
    _load_optimizer(path, optimizer)
    return meta.step


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten AdamW-style state: tensors per parameter index, and the rest (groups, scalars) as JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    with safe_open(str(path), framework="pt") as handle:
        payload = json.loads(handle.metadata()["optimizer"])
    tensors = load_file(str(path))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in payload["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": payload["param_groups"]})
