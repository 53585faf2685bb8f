"""Decode cache, clip sampling and the torch clip datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from echonet_fixture import write_echonet_fixture
from torch.utils.data import DataLoader

from echobench.api import ClipSpec
from echobench.data.decode_cache import CACHE_FORMAT, DecodeCache, stats_frames
from echobench.data.echonet import EchoNetDynamic
from echobench.data.loader import ClipDataset, EvalClipDataset, collate_clips, collate_eval, step_batches
from echobench.data.sampling import clip_indices
from echobench.data.video_io import read_video_gray, resize_frames
from echobench.errors import UserError

SIZE = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> EchoNetDynamic:
    return EchoNetDynamic(write_echonet_fixture(tmp_path_factory.mktemp("echonet"), videos=6, frames=20, size=64))


@pytest.fixture(scope="module")
def cache(dataset: EchoNetDynamic, tmp_path_factory: pytest.TempPathFactory) -> DecodeCache:
    return DecodeCache.build(dataset, SIZE, root=tmp_path_factory.mktemp("decoded"), progress=False)


# -- decode cache -----------------------------------------------------------------------------------------------------


def test_cache_frames_equal_decode_then_resize(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    assert cache.key == f"echonet-dynamic-{dataset.content_hash()}-{SIZE}"
    for video_id, path in zip(dataset.table["video_id"], dataset.table["path"], strict=True):
        expected = resize_frames(read_video_gray(path), SIZE)
        np.testing.assert_array_equal(cache.video(video_id), expected)
        assert cache.num_frames(video_id) == 20


def test_cache_is_built_once_and_reused(dataset: EchoNetDynamic, cache: DecodeCache, monkeypatch) -> None:
    def fail(self: EchoNetDynamic, path: str) -> np.ndarray:
        raise AssertionError(f"decoded {path} although the cache exists")

    monkeypatch.setattr(EchoNetDynamic, "read_frames", fail)
    again = DecodeCache.build(dataset, SIZE, root=cache.folder.parent, progress=False)
    assert again.folder == cache.folder
    np.testing.assert_array_equal(again.video("0X0003"), cache.video("0X0003"))


def test_cache_of_an_older_format_is_rebuilt(
    dataset: EchoNetDynamic, cache: DecodeCache, tmp_path: Path, monkeypatch
) -> None:
    # Format 5 changed enlarging to bilinear: a format-4 cache holds pixel-replicated frames and must not be reused.
    assert CACHE_FORMAT >= 5
    stale = tmp_path / cache.folder.name
    shutil.copytree(cache.folder, stale)
    index = json.loads((stale / "index.json").read_text())
    (stale / "index.json").write_text(json.dumps({**index, "format": 4}))
    decoded: list[str] = []
    read = EchoNetDynamic.read_frames

    def counting(self: EchoNetDynamic, path: str) -> np.ndarray:
        decoded.append(path)
        return read(self, path)

    monkeypatch.setattr(EchoNetDynamic, "read_frames", counting)
    rebuilt = DecodeCache.build(dataset, SIZE, root=tmp_path, progress=False)
    assert rebuilt.folder == stale and len(decoded) == len(dataset.table)
    assert json.loads((stale / "index.json").read_text())["format"] == CACHE_FORMAT


def test_crash_during_build_leaves_no_cache(dataset: EchoNetDynamic, tmp_path: Path, monkeypatch) -> None:
    calls = []

    def crash_on_third(self: EchoNetDynamic, path: str) -> np.ndarray:
        calls.append(path)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return read_video_gray(path)

    monkeypatch.setattr(EchoNetDynamic, "read_frames", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        DecodeCache.build(dataset, SIZE, root=tmp_path, progress=False)
    # Only the build's lock file remains (lock files are kept: deleting one while another process waits on it
    # would let two processes hold "the" lock).
    assert [p.name for p in tmp_path.iterdir()] == [f".{dataset.name}-{dataset.content_hash()}-{SIZE}.lock"]


def test_corrupt_video_is_user_error_and_leaves_no_cache(dataset: EchoNetDynamic, tmp_path: Path) -> None:
    root = Path(shutil.copytree(dataset.root, tmp_path / "echonet"))
    (root / "Videos" / "0X0004.avi").write_bytes(b"\0" * 5000)
    broken = EchoNetDynamic(root)
    with pytest.raises(UserError, match=r"0X0004\.avi"):
        DecodeCache.build(broken, SIZE, root=tmp_path / "decoded", progress=False)
    decoded = tmp_path / "decoded"
    assert not decoded.exists() or [p for p in decoded.iterdir() if p.suffix != ".lock"] == []


def test_decoded_frame_count_is_the_truth(dataset: EchoNetDynamic, tmp_path: Path) -> None:
    root = Path(shutil.copytree(dataset.root, tmp_path / "echonet"))
    files = pd.read_csv(root / "FileList.csv", dtype={"FileName": str})
    files.loc[1, "NumberOfFrames"] = 999
    files.to_csv(root / "FileList.csv", index=False)
    built = DecodeCache.build(EchoNetDynamic(root), SIZE, root=tmp_path / "decoded", progress=False)
    assert built.num_frames("0X0001") == 20 and built.video("0X0001").shape == (20, SIZE, SIZE)
    index = json.loads((built.folder / "index.json").read_text())
    assert index["listed_num_frames_differ"] == {"0X0001": 999}


def test_stats_equal_numpy_and_are_memoised(dataset: EchoNetDynamic, cache: DecodeCache, monkeypatch) -> None:
    np.testing.assert_array_equal(stats_frames(5), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(stats_frames(31, 16), np.arange(0, 31, 2))
    ids = list(dataset.split_table("train")["video_id"])
    pixels = np.concatenate([cache.video(v)[stats_frames(20)] for v in ids]).astype(np.float64) / 255.0
    mean, std = cache.stats(ids)
    assert mean == pytest.approx(pixels.mean(), rel=1e-9) and std == pytest.approx(pixels.std(), rel=1e-9)
    # With at least as many sampled frames as the videos have, every frame counts.
    every = np.concatenate([cache.video(v) for v in ids]).astype(np.float64) / 255.0
    assert cache.stats(ids, frames_per_video=32) == pytest.approx((every.mean(), every.std()), rel=1e-9)
    monkeypatch.setattr(DecodeCache, "video", lambda self, video_id: pytest.fail("stats were not memoised"))
    assert cache.stats(list(reversed(ids))) == (mean, std)


# -- clip sampling ----------------------------------------------------------------------------------------------------


def test_evenly_all_fixed_indices() -> None:
    spec = ClipSpec(frames=4, stride=2, size=8, start="evenly", num_clips=3)
    # span 7, last start 93; round(linspace(0, 93, 3)) = 0, 46 (46.5 rounds to even), 93.
    np.testing.assert_array_equal(clip_indices(100, spec), [[0, 2, 4, 6], [46, 48, 50, 52], [93, 95, 97, 99]])
    every = ClipSpec(frames=4, stride=2, size=8, start="all")
    np.testing.assert_array_equal(clip_indices(23, every), [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18, 20, 22]])
    np.testing.assert_array_equal(clip_indices(22, every), [[0, 2, 4, 6], [8, 10, 12, 14]])
    np.testing.assert_array_equal(clip_indices(5, every), [[0, 2, 4, 4]])
    fixed = ClipSpec(frames=4, stride=2, size=8, start="fixed", start_frame=5)
    np.testing.assert_array_equal(clip_indices(30, fixed), [[5, 7, 9, 11]])
    np.testing.assert_array_equal(clip_indices(10, fixed), [[3, 5, 7, 9]])
    assert clip_indices(30, fixed).dtype == np.int64


def test_ed_es_indices() -> None:
    spec = ClipSpec(frames=5, stride=2, size=8, start="ed_es")
    # linspace(10, 20, 5) = 10, 12.5, 15, 17.5, 20; halves round to even.
    np.testing.assert_array_equal(clip_indices(40, spec, ed_es=(10, 20)), [[10, 12, 15, 18, 20]])
    np.testing.assert_array_equal(clip_indices(40, spec, ed_es=(20, 10)), [[20, 18, 15, 12, 10]])
    np.testing.assert_array_equal(clip_indices(15, spec, ed_es=(10, 20)), [[10, 12, 14, 14, 14]])
    for unknown in (None, (-1, -1), (3, -1)):
        with pytest.raises(UserError, match="ED/ES"):
            clip_indices(40, spec, ed_es=unknown)


def test_random_starts_cover_the_valid_range() -> None:
    spec = ClipSpec(frames=4, stride=2, size=8)
    clips = clip_indices(10, spec, np.random.default_rng(0), count=400)
    assert clips.shape == (400, 4)
    np.testing.assert_array_equal(clips - clips[:, :1], np.tile([0, 2, 4, 6], (400, 1)))
    assert set(clips[:, 0]) == {0, 1, 2, 3}
    np.testing.assert_array_equal(clip_indices(3, spec, np.random.default_rng(1)), [[0, 2, 2, 2]])
    with pytest.raises(ValueError, match="Generator"):
        clip_indices(10, spec)


# -- torch datasets ---------------------------------------------------------------------------------------------------


def test_clip_dataset_normalises_and_is_deterministic(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    spec = ClipSpec(frames=4, stride=2, size=SIZE, clips_per_video=2)
    mean, std = 0.3, 0.2
    clips = ClipDataset(cache, dataset.table, spec, mean, std, seed=7)
    twin = ClipDataset(cache, dataset.table, spec, mean, std, seed=7)
    sample = clips[3]
    assert len(sample.views) == 2 and sample.views[0].shape == (1, 4, SIZE, SIZE)
    assert sample.views[0].dtype == torch.float32 and sample.video_id == "0X0003" and sample.ed_es is None
    assert sample.fps == 50.0 and sample.frame_indices.shape == (2, 4)
    for view, indices in zip(sample.views, sample.frame_indices, strict=True):
        expected = (cache.video("0X0003")[indices] / 255.0 - mean) / std
        np.testing.assert_allclose(view[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    starts = np.array([clips[i].frame_indices[:, 0] for i in range(6)])
    np.testing.assert_array_equal(starts, [twin[i].frame_indices[:, 0] for i in range(6)])
    twin.set_epoch(1)
    assert not np.array_equal(starts, [twin[i].frame_indices[:, 0] for i in range(6)])
    np.testing.assert_array_equal(starts, [clips[i].frame_indices[:, 0] for i in range(6)])


def test_clip_dataset_is_independent_of_workers(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    clips = ClipDataset(cache, dataset.table, ClipSpec(frames=4, stride=2, size=SIZE), 0.3, 0.2, seed=1)
    clips.set_epoch(2)
    single, double = (
        [b.clips for b in DataLoader(clips, batch_size=3, num_workers=w, collate_fn=collate_clips)] for w in (0, 2)
    )
    for a, b in zip(single, double, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_collate_shapes_and_ed_es(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    spec = ClipSpec(frames=4, stride=3, size=SIZE, clips_per_video=2, needs_ed_es=True)
    batch = collate_clips([ClipDataset(cache, dataset.table, spec, 0.3, 0.2, seed=0)[i] for i in (0, 4, 5)])
    assert len(batch.views) == 2 and all(v.shape == (3, 1, 4, SIZE, SIZE) for v in batch.views)
    assert batch.frame_indices.shape == (3, 2, 4) and batch.frame_indices.dtype == torch.int64
    assert batch.fps.shape == (3,) and batch.video_ids == ["0X0000", "0X0004", "0X0005"]
    expected = dataset.table.loc[[0, 4, 5], ["ed_frame", "es_frame"]].to_numpy()
    np.testing.assert_array_equal(batch.ed_es.numpy(), expected)
    oracle = ClipSpec(frames=5, stride=1, size=SIZE, start="ed_es", needs_ed_es=True)
    sample = ClipDataset(cache, dataset.table, oracle, 0.3, 0.2, seed=0)[2]
    ed, es = dataset.table.loc[2, ["ed_frame", "es_frame"]]
    np.testing.assert_array_equal(sample.frame_indices, [np.rint(np.linspace(ed, es, 5))])


def test_step_batches_resume_replays_the_same_batches(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    spec = ClipSpec(frames=4, stride=2, size=SIZE)
    clips = ClipDataset(cache, dataset.table, spec, 0.3, 0.2, seed=3)
    straight = step_batches(clips, batch_size=3, seed=3, start_step=0, num_workers=0)
    seen = [next(straight) for _ in range(6)]
    resumed = step_batches(clips, batch_size=3, seed=3, start_step=4, num_workers=0)
    for expected in seen[4:]:
        got = next(resumed)
        assert got.video_ids == expected.video_ids
        np.testing.assert_array_equal(got.frame_indices.numpy(), expected.frame_indices.numpy())
        torch.testing.assert_close(got.clips, expected.clips)
    per_epoch = len(dataset.table) // 3
    first_epoch = {v for batch in seen[:per_epoch] for v in batch.video_ids}
    assert len(first_epoch) == per_epoch * 3
    with pytest.raises(UserError, match="fewer than one batch"):
        next(step_batches(ClipDataset(cache, dataset.table.iloc[:2], spec, 0.3, 0.2, seed=3), 3, 3, 0, 0))


def test_eval_clips_expand_every_video(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    spec = ClipSpec(frames=4, stride=2, size=SIZE, start="all")
    table = dataset.split_table("val")
    clips = EvalClipDataset(cache, table, spec, 0.3, 0.2)
    # 20 frames, span 7, spacing 8: starts 0 and 8 per video.
    assert len(clips) == 4
    np.testing.assert_array_equal(clips.video_rows, [0, 0, 1, 1])
    batch, rows, numbers = collate_eval([clips[k] for k in range(4)])
    assert batch.shape == (4, 1, 4, SIZE, SIZE)
    np.testing.assert_array_equal(rows, [0, 0, 1, 1])
    np.testing.assert_array_equal(numbers, [0, 1, 0, 1])
    expected = (cache.video(table.loc[1, "video_id"])[[8, 10, 12, 14]] / 255.0 - 0.3) / 0.2
    np.testing.assert_allclose(batch[3, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_ed_es_clips_need_known_frames(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    table = dataset.table.copy()
    table.loc[4, ["ed_frame", "es_frame"]] = -1
    spec = ClipSpec(frames=4, stride=1, size=SIZE, start="ed_es", needs_ed_es=True)
    with pytest.raises(UserError, match="0X0004"):
        EvalClipDataset(cache, table, spec, 0.3, 0.2)
    with pytest.raises(UserError, match="0X0004"):
        ClipDataset(cache, table, spec, 0.3, 0.2, seed=0)


def test_shuffled_eval_clips_permute_each_clip_reproducibly(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    table = dataset.split_table("val")
    plain = EvalClipDataset(cache, table, ClipSpec(frames=8, stride=2, size=SIZE, start="all"), 0.3, 0.2)
    spec = ClipSpec(frames=8, stride=2, size=SIZE, start="all", frame_control="shuffle")
    shuffled, again = (EvalClipDataset(cache, table, spec, 0.3, 0.2) for _ in range(2))
    np.testing.assert_array_equal(shuffled.frame_indices, again.frame_indices)
    np.testing.assert_array_equal(np.sort(shuffled.frame_indices, axis=1), plain.frame_indices)
    assert (shuffled.frame_indices != plain.frame_indices).any(axis=1).all()
    # A video's permutation depends on its id, not on the table it sits in.
    alone = EvalClipDataset(cache, table.iloc[1:].reset_index(drop=True), spec, 0.3, 0.2)
    np.testing.assert_array_equal(alone.frame_indices, shuffled.frame_indices[shuffled.video_rows == 1])
    clip, _, _ = shuffled[0]
    frames = cache.video(table.loc[0, "video_id"])[shuffled.frame_indices[0]]
    np.testing.assert_allclose(clip[0].numpy(), (frames / 255.0 - 0.3) / 0.2, rtol=1e-5, atol=1e-5)


def test_frozen_eval_clips_repeat_their_first_frame(dataset: EchoNetDynamic, cache: DecodeCache) -> None:
    table = dataset.split_table("val")
    plain = EvalClipDataset(cache, table, ClipSpec(frames=4, stride=2, size=SIZE, start="all"), 0.3, 0.2)
    frozen = EvalClipDataset(
        cache, table, ClipSpec(frames=4, stride=2, size=SIZE, start="all", frame_control="freeze"), 0.3, 0.2
    )
    np.testing.assert_array_equal(frozen.frame_indices, np.repeat(plain.frame_indices[:, :1], 4, axis=1))
    clip, _, _ = frozen[1]
    np.testing.assert_array_equal(clip[0, 0].numpy(), clip[0, 3].numpy())
