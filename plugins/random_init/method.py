"""An encoder left at its initialisation (seeded by ``pretrain.seed``).

Any pretrained method that does not beat this floor has learnt nothing the architecture did not already give.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from echobench.api import Embedding, FrozenMethod, MethodConfig
from echobench.models.vit import VideoViT


@dataclass
class RandomInitConfig(MethodConfig):
    pos: str = "sincos"


class RandomInit(FrozenMethod):
    name = "random_init"
    version = "0.1.0"
    Config = RandomInitConfig

    def __init__(self, config: RandomInitConfig) -> None:
        super().__init__(config)
        self.encoder = VideoViT.from_config(config, pos=config.pos)

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
