"""Starting weights from a local file (``pretrain.init_from``): published checkpoints, MAE-style weights.

Only tensors are ever read: safetensors files directly, anything else through ``torch.load(weights_only=True)``,
which refuses pickled code. Nested dictionaries (``{"encoder": {...}}``) are flattened to dotted names, so a
method's :meth:`~echobench.api.Method.map_init_weights` sees one flat name → tensor mapping whatever the layout.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from echobench.errors import UserError


def file_hash(path: str | Path) -> str:
    """Content hash of a weight file (its path does not matter, its bytes do)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise UserError(f"pretrain.init_from {path} cannot be read ({exc.strerror}); pass a readable file") from None
    return digest.hexdigest()[:16]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            flat[name] = value
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
    return flat


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file or a torch state dict, by dotted name."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"pretrain.init_from {path} does not exist; pass the path of a local weight file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"pretrain.init_from {path} is not a readable safetensors file ({exc})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"pretrain.init_from {path} is not a plain tensor file (weights_only loading refused it: {first}); "
            "convert it to safetensors or a state dict of tensors"
        ) from None
    tensors = _flatten(loaded) if isinstance(loaded, Mapping) else {}
    if not tensors:
        raise UserError(f"pretrain.init_from {path} holds no tensors; pass a state dict or a safetensors file")
    return tensors


def load_init_weights(module: nn.Module, path: str | Path, owner: str, rename: Any = None) -> dict[str, Any]:
    """Load the file's tensors (after ``rename``, a method's key map) into ``module``; every renamed tensor must be
    one of the module's, with its shape. Returns what was loaded, for the checkpoint metadata."""
    tensors = read_weights(path)
    if rename is not None:
        tensors = rename(tensors)
    own = module.state_dict()
    unexpected = [k for k in tensors if k not in own]
    wrong = [k for k in tensors if k in own and tuple(tensors[k].shape) != tuple(own[k].shape)]
    if unexpected or wrong or not tensors:
        if wrong:
            key = wrong[0]
            detail = f"{key} has shape {tuple(tensors[key].shape)}, {owner} expects {tuple(own[key].shape)}"
        elif unexpected:
            detail = f"{len(unexpected)} tensors such as {unexpected[0]!r} have no counterpart in {owner}"
        else:
            detail = "no tensor remained after the key map"
        raise UserError(
            f"pretrain.init_from {path} does not fit {owner} ({detail}); use weights of the same architecture and "
            "config, or map the file's names in the plugin's map_init_weights"
        )
    module.load_state_dict(tensors, strict=False)
    return {"path": str(path), "hash": file_hash(path), "loaded": len(tensors), "kept_init": len(own) - len(tensors)}
