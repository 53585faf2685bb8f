import dataclasses

import numpy as np
import pytest
import torch
from echonet_fixture import write_echonet_fixture

from echobench import embed
from echobench.api import ClipSpec, Embedding
from echobench.data.decode_cache import DecodeCache
from echobench.data.echonet import EchoNetDynamic
from echobench.errors import UserError
from echobench_plugins.random_init import RandomInit, RandomInitConfig

TINY = RandomInitConfig(model="vit_tiny", frames=4, stride=2, size=32, patch=8, tubelet=2)
SPEC = ClipSpec(frames=4, stride=2, size=32, start="evenly", num_clips=2)


@pytest.fixture
def tiny(tmp_path):
    dataset = EchoNetDynamic(write_echonet_fixture(tmp_path / "echonet", videos=6, frames=12))
    cache = DecodeCache.build(dataset, 32, progress=False)
    torch.manual_seed(0)
    return RandomInit(TINY), dataset, cache


def test_encode_once_then_read_from_cache(tiny, monkeypatch):
    method, dataset, cache = tiny
    first = embed.encode_split(method, "ckpt", dataset, cache, "train", SPEC, (0.2, 0.1), with_tokens=True)
    n_videos = len(dataset.split_table("train"))
    assert first.features.shape == (2 * n_videos, 192)
    assert first.tokens.shape == (2 * n_videos, 2, 4, 4, 192)
    np.testing.assert_array_equal(first.clip_video, np.repeat(np.arange(n_videos), 2))

    def must_not_encode(clips):
        raise AssertionError("encode called although the embedding cache holds this split")

    monkeypatch.setattr(method, "encode", must_not_encode)
    again = embed.encode_split(method, "ckpt", dataset, cache, "train", SPEC, (0.2, 0.1), with_tokens=True)
    np.testing.assert_array_equal(first.features, again.features)
    assert again.video_ids == first.video_ids


def test_cache_key_changes_with_every_input(tiny, tmp_path):
    method, dataset, _ = tiny
    base = dict(
        method=method,
        checkpoint_hash="ckpt",
        dataset=dataset,
        split="train",
        spec=SPEC,
        norm=(0.2, 0.1),
        with_tokens=False,
    )
    reference = embed.embedding_key(**base)
    variants = [
        {"checkpoint_hash": "other"},
        {"split": "val"},
        {"spec": dataclasses.replace(SPEC, num_clips=3)},
        {"spec": dataclasses.replace(SPEC, stride=1)},
        {"norm": (0.2, 0.11)},
        {"with_tokens": True},
    ]
    keys = {embed.embedding_key(**{**base, **v}) for v in variants}
    assert reference not in keys and len(keys) == len(variants)

    class Bumped(RandomInit):
        version = "0.2.0"

    assert embed.embedding_key(**{**base, "method": Bumped(TINY)}) != reference
    other = EchoNetDynamic(write_echonet_fixture(tmp_path / "other", videos=6, frames=12, seed=1))
    assert embed.embedding_key(**{**base, "dataset": other}) != reference


def test_wrong_shaped_embedding_is_a_user_error_and_writes_nothing(tiny, monkeypatch, isolated_home):
    method, dataset, cache = tiny
    monkeypatch.setattr(method, "encode", lambda clips: Embedding(torch.zeros(clips.shape[0], 3, 5), torch.zeros(1)))
    with pytest.raises(UserError, match="pooled features of shape"):
        embed.encode_split(method, "ckpt", dataset, cache, "train", SPEC, (0.2, 0.1))
    assert not list((isolated_home / "embeddings").rglob("*.safetensors"))


@pytest.mark.parametrize("part", ["pooled", "tokens"])
def test_non_finite_embeddings_are_refused_before_caching(tiny, part, isolated_home):
    method, dataset, cache = tiny
    real_encode = method.encode

    def poisoned(clips):
        out = real_encode(clips)
        values = getattr(out, part).clone()
        values.view(-1)[3] = float("nan")
        return dataclasses.replace(out, **{part: values})

    method.encode = poisoned
    with pytest.raises(UserError) as info:
        embed.encode_split(method, "ckpt", dataset, cache, "train", SPEC, (0.2, 0.1), with_tokens=True)
    what = "pooled features" if part == "pooled" else "tokens"
    assert str(info.value).startswith(f"method 'random_init': encode returned non-finite {what} (NaN or inf)")
    assert not list((isolated_home / "embeddings").rglob("*.safetensors"))
