"""What a protocol receives: the pretrained method, the data, the task, its config and cached encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from echobench.api import ClipSpec
from echobench.data.base import VideoDataset
from echobench.data.decode_cache import DecodeCache
from echobench.data.tasks import Task
from echobench.embed import EncodedSplit, encode_split
from echobench.pretrain import Pretrained


@dataclass
class ProtocolContext:
    pretrained: Pretrained
    dataset: VideoDataset
    cache: DecodeCache
    task: Task
    config: Any
    eval_spec: ClipSpec
    norm: tuple[float, float]
    seed: int = 0

    def encode(self, split: str, *, with_tokens: bool = False) -> EncodedSplit:
        """Frozen embeddings of a split's evaluation clips (embedding cache first)."""
        return encode_split(
            self.pretrained.method,
            self.pretrained.checkpoint_hash,
            self.dataset,
            self.cache,
            split,
            self.eval_spec,
            self.norm,
            with_tokens=with_tokens,
        )
