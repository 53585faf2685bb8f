"""The embedding cache: frozen features are computed once per (plugin, checkpoint, dataset, split, clip spec).

Every frozen protocol (kNN, linear probes, label sweeps, seeds) reads from here, so a whole frozen suite costs about
one encode pass. Files are safetensors written atomically; the key covers everything that changes their content.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from torch.utils.data import DataLoader

from echobench.api import ClipSpec, Embedding, Method
from echobench.atomic import atomic_path
from echobench.config import stable_hash
from echobench.console import progress_bar
from echobench.data.base import VideoDataset
from echobench.data.decode_cache import DecodeCache
from echobench.data.loader import EvalClipDataset, collate_eval
from echobench.errors import UserError
from echobench.locks import exclusive
from echobench.paths import embeddings_dir
from echobench.train import autocast, resolve_device


@dataclass
class EncodedSplit:
    """``features`` ``(n_clips, D)`` float32; ``clip_video`` maps clips to ``video_ids`` rows; ``tokens`` (optional)
    ``(n_clips, T', H', W', D)`` float16; ``frame_indices`` ``(n_clips, T)`` the source frames of every clip."""

    features: np.ndarray
    clip_video: np.ndarray
    video_ids: list[str]
    tokens: np.ndarray | None = None
    frame_indices: np.ndarray | None = None


def embedding_key(
    method: Method,
    checkpoint_hash: str,
    dataset: VideoDataset,
    split: str,
    spec: ClipSpec,
    norm: tuple[float, float],
    with_tokens: bool,
) -> str:
    return stable_hash(
        method.name,
        method.version,
        checkpoint_hash,
        dataset.name,
        dataset.content_hash(),
        split,
        dataset.split_hash(split),
        dataclasses.asdict(spec),
        [round(norm[0], 8), round(norm[1], 8)],
        with_tokens,
    )


def embedding_path(method_name: str, key: str) -> Path:
    return embeddings_dir() / method_name / f"{key}.safetensors"


def encode_split(
    method: Method,
    checkpoint_hash: str,
    dataset: VideoDataset,
    cache: DecodeCache,
    split: str,
    spec: ClipSpec,
    norm: tuple[float, float],
    *,
    with_tokens: bool = False,
    batch_size: int = 16,
    device: str = "auto",
    amp: str = "auto",
) -> EncodedSplit:
    """Embeddings of every clip of ``split``, from the cache when present.

    Pooled features are also served from a cached encoding that holds tokens (it holds the pooled features too).
    """
    key = embedding_key(method, checkpoint_hash, dataset, split, spec, norm, with_tokens)
    path = embedding_path(method.name, key)
    cached = _read(path)
    if cached is None and not with_tokens:
        cached = _read(
            embedding_path(method.name, embedding_key(method, checkpoint_hash, dataset, split, spec, norm, True))
        )
    if cached is not None:
        return cached
    with exclusive(path, f"encoding {split} with {method.name}"):
        # Another process may have written it while this one waited.
        cached = _read(path)
        if cached is not None:
            return cached
        encoded = _encode(method, dataset, cache, split, spec, norm, with_tokens, batch_size, device, amp)
        _write(path, encoded, key)
    return encoded


def _encode(
    method: Method,
    dataset: VideoDataset,
    cache: DecodeCache,
    split: str,
    spec: ClipSpec,
    norm: tuple[float, float],
    with_tokens: bool,
    batch_size: int,
    device: str,
    amp: str,
) -> EncodedSplit:
    table = dataset.split_table(split)
    clips = EvalClipDataset(cache, table, spec, norm[0], norm[1])
    loader = DataLoader(clips, batch_size=batch_size, shuffle=False, collate_fn=collate_eval)
    torch_device = resolve_device(device)
    method.to(torch_device).eval()
    pooled, owners, grids = [], [], []
    with progress_bar() as progress, torch.inference_mode():
        task = progress.add_task(f"encode {split}", total=len(clips), info=f"{method.name}")
        for batch, video_rows, _ in loader:
            with autocast(torch_device, amp):
                out = method.encode(batch.to(torch_device))
            _check_embedding(method, out, batch.shape[0])
            pooled.append(out.pooled.float().cpu().numpy())
            if with_tokens:
                grid = out.tokens.to(torch.float16)
                if not torch.isfinite(grid).all():
                    raise UserError(
                        f"method {method.name!r}: encode returned tokens beyond float16's range (|x| > 65504), "
                        "which the embedding cache stores; nothing was cached; normalise the plugin's tokens"
                    )
                grids.append(grid.cpu().numpy())
            owners.append(np.asarray(video_rows, dtype=np.int64))
            progress.update(task, advance=batch.shape[0])
    method.to("cpu")
    return EncodedSplit(
        features=np.concatenate(pooled).astype(np.float32),
        clip_video=np.concatenate(owners),
        video_ids=list(table["video_id"]),
        tokens=np.concatenate(grids) if with_tokens else None,
        frame_indices=clips.frame_indices,
    )


def _check_embedding(method: Method, out: Embedding, batch: int) -> None:
    if not isinstance(out, Embedding):
        raise UserError(f"method {method.name!r}: encode must return echobench.api.Embedding, got {type(out).__name__}")
    if out.pooled.ndim != 2 or out.pooled.shape[0] != batch:
        raise UserError(
            f"method {method.name!r}: encode returned pooled features of shape {tuple(out.pooled.shape)}, "
            f"expected ({batch}, D); fix the plugin's encode"
        )
    if out.tokens.ndim != 5 or out.tokens.shape[0] != batch or out.tokens.shape[-1] != out.pooled.shape[1]:
        raise UserError(
            f"method {method.name!r}: encode returned tokens of shape {tuple(out.tokens.shape)}, "
            f"expected ({batch}, T', H', W', {out.pooled.shape[1]}); fix the plugin's encode"
        )
    for part, values in (("pooled features", out.pooled), ("tokens", out.tokens)):
        if not torch.isfinite(values).all():
            raise UserError(
                f"method {method.name!r}: encode returned non-finite {part} (NaN or inf); nothing was cached; "
                "check the checkpoint and the plugin's encode"
            )


def _write(path: Path, encoded: EncodedSplit, key: str) -> None:
    arrays = {"features": encoded.features, "clip_video": encoded.clip_video}
    if encoded.tokens is not None:
        arrays["tokens"] = encoded.tokens
    if encoded.frame_indices is not None:
        arrays["frame_indices"] = np.ascontiguousarray(encoded.frame_indices)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"key": key, "video_ids": json.dumps(encoded.video_ids)})


#: Encodings read in this process, most recent last: protocols that re-read a split (sweeps, folds, seeds)
#: get the same arrays without touching the disk again.
_MEMO: OrderedDict[tuple[str, float], EncodedSplit] = OrderedDict()
_MEMO_ENTRIES = 6


def _read(path: Path) -> EncodedSplit | None:
    if not path.is_file():
        return None
    memo_key = (str(path), path.stat().st_mtime)
    if memo_key in _MEMO:
        _MEMO.move_to_end(memo_key)
        return _MEMO[memo_key]
    encoded = _read_file(path)
    if encoded is not None:
        _MEMO[memo_key] = encoded
        while len(_MEMO) > _MEMO_ENTRIES:
            _MEMO.popitem(last=False)
    return encoded


def _read_file(path: Path) -> EncodedSplit | None:
    try:
        with safe_open(str(path), framework="numpy") as handle:
            video_ids = json.loads(handle.metadata()["video_ids"])
        arrays = load_file(str(path))
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError):
        # Atomic writes make this rare (a disk error); recomputing is always correct.
        path.unlink(missing_ok=True)
        return None
    return EncodedSplit(
        features=arrays["features"],
        clip_video=arrays["clip_video"],
        video_ids=video_ids,
        tokens=arrays.get("tokens"),
        frame_indices=arrays.get("frame_indices"),
    )
