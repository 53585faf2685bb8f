"""Checkpoints as safetensors + JSON metadata (never pickle), with optimiser state for exact resume.

A checkpoint folder holds ``model.safetensors`` + ``meta.json`` (method, versions, configs, step, ``complete``) and,
while training is unfinished, ``optimizer.safetensors`` + ``optimizer.json``. Every file is written atomically and
``meta.json`` is written last, so a folder whose ``meta.json`` is readable is consistent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from echobench.atomic import atomic_path, write_text_atomic
from echobench.errors import UserError

MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
OPTIM_FILE = "optimizer.safetensors"
OPTIM_META_FILE = "optimizer.json"


@dataclass
class CheckpointMeta:
    method: str
    method_version: str
    method_config: dict[str, Any]
    step: int
    total_steps: int
    complete: bool
    extra: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied weights); contiguous clones are always storable.
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_model(folder: Path, module: nn.Module, meta: CheckpointMeta) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / MODEL_FILE) as tmp:
        save_file(_state_tensors(module), str(tmp), metadata={"method": meta.method})
    write_text_atomic(folder / META_FILE, meta.to_json())


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
    if meta.method != method:
        raise UserError(
            f"checkpoint {folder} was saved by method {meta.method!r}, not {method!r}; pass a checkpoint of {method!r}"
        )
    try:
        tensors = load_file(str(folder / MODEL_FILE))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"cannot read {folder / MODEL_FILE} ({exc}); delete {folder} to retrain") from None
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
    return meta


def save_optimizer(folder: Path, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Flatten AdamW-style state (tensors per parameter index) to safetensors, the rest to JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    with atomic_path(folder / OPTIM_FILE) as tmp:
        save_file(tensors, str(tmp))
    payload = {"step": step, "param_groups": state["param_groups"], "scalars": scalars}
    write_text_atomic(folder / OPTIM_META_FILE, json.dumps(payload))


def load_optimizer(folder: Path, optimizer: torch.optim.Optimizer) -> int:
    """Restore optimiser state saved by :func:`save_optimizer`; returns the step it was saved at."""
    payload = json.loads((folder / OPTIM_META_FILE).read_text())
    tensors = load_file(str(folder / OPTIM_FILE))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in payload["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": payload["param_groups"]})
    return int(payload["step"])


def drop_optimizer(folder: Path) -> None:
    """A finished checkpoint keeps only what inference needs."""
    (folder / OPTIM_FILE).unlink(missing_ok=True)
    (folder / OPTIM_META_FILE).unlink(missing_ok=True)
