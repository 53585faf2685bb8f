"""Segmentation: overlap metrics by hand, traced clip indices, the protocol on a synthetic problem, and the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from cli_run import invoke

from echobench.api import ClipSpec
from echobench.data.sampling import clip_indices, traced_start, traced_token_index
from echobench.data.synthecho import synthesize
from echobench.data.tasks import get_task
from echobench.errors import UserError
from echobench.metrics import bootstrap_ci, image_overlaps, segmentation_metrics
from echobench.protocols.segmentation import (
    Images,
    SegmentationConfig,
    _fraction_of_training,
    channel_stats,
    run_segmentation,
)
from echobench.runner import resolve

# -- metrics ----------------------------------------------------------------------------------------------------------


def _map(rows: list[str]) -> np.ndarray:
    return np.array([[int(c) for c in row] for row in rows], dtype=np.uint8)


def test_overlaps_match_hand_counts() -> None:
    truth = _map(["0110", "0110", "0000"])
    pred = _map(["0111", "0000", "0000"])
    # tp = 2, fp = 1, fn = 2
    dice, iou, ppv, recall = image_overlaps(truth[None], pred[None], 2)[0, :, 0]
    assert dice == pytest.approx(4 / 7)
    assert iou == pytest.approx(2 / 5)
    assert ppv == pytest.approx(2 / 3)
    assert recall == pytest.approx(2 / 4)


def test_overlaps_of_empty_masks() -> None:
    empty, some = _map(["00", "00"]), _map(["01", "00"])
    both_empty, claimed_absent, missed_present = image_overlaps(
        np.stack([empty, empty, some]), np.stack([empty, some, empty]), 2
    )[:, :, 0]
    assert both_empty.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert claimed_absent.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert missed_present.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_overlaps_per_class() -> None:
    truth = _map(["1122", "1122", "0033"])
    pred = _map(["1112", "1022", "0000"])
    overlaps = image_overlaps(truth[None], pred[None], 4)[0]
    # class 1: tp 3, fp 1, fn 1; class 2: tp 3, fp 0, fn 1; class 3: tp 0, fp 0, fn 2
    np.testing.assert_allclose(overlaps[0], [6 / 8, 6 / 7, 0.0])
    np.testing.assert_allclose(overlaps[1], [3 / 5, 3 / 4, 0.0])
    np.testing.assert_allclose(overlaps[2], [3 / 4, 1.0, 0.0])
    np.testing.assert_allclose(overlaps[3], [3 / 4, 3 / 4, 0.0])


def test_summary_means_sd_phases_and_classes() -> None:
    overlaps = np.zeros((2, 2, 4, 2))
    overlaps[:, :, 0, 0] = [[1.0, 0.5], [0.8, 0.2]]  # Dice of class a: video x (ED, ES)
    overlaps[:, :, 0, 1] = [[0.6, 0.5], [0.4, 0.0]]
    overlaps[:, :, 1:] = 0.5
    out = segmentation_metrics(overlaps, ("a", "b"))
    per_image = [0.8, 0.5, 0.6, 0.1]  # image means over the two classes
    assert out["dice"] == pytest.approx(np.mean(per_image))
    assert out["dice_sd"] == pytest.approx(np.std(per_image, ddof=1))
    assert out["dice_ed"] == pytest.approx((0.8 + 0.6) / 2)
    assert out["dice_es"] == pytest.approx((0.5 + 0.1) / 2)
    assert out["dice_a"] == pytest.approx(0.625) and out["dice_b"] == pytest.approx(0.375)
    assert out["iou"] == 0.5 and out["iou_sd"] == 0.0 and out["recall_b"] == 0.5
    assert "dice_lv" not in segmentation_metrics(overlaps[..., :1])


def test_bootstrap_keeps_a_videos_images_together() -> None:
    overlaps = np.zeros((2, 2, 4, 1))
    overlaps[0] = 1.0  # video 0: both frames perfect; video 1: both frames wrong
    ci = bootstrap_ci(segmentation_metrics, (overlaps,), 200, seed=0)
    # Resampling videos (not images) makes ED and ES Dice equal in every resample.
    assert ci["dice_ed"] == ci["dice_es"] == ci["dice"]
    assert ci["dice"] == (0.0, 1.0)


# -- traced clips -----------------------------------------------------------------------------------------------------


def test_traced_clip_centres_the_frame_on_its_lattice() -> None:
    spec = ClipSpec(frames=16, stride=2, start="traced")
    clips = clip_indices(100, spec, ed_es=(50, 3))
    assert clips[0].tolist() == list(range(36, 67, 2))  # frame 50 at position 7 (the centre)
    assert clips[1].tolist() == list(range(1, 32, 2))  # frame 3 can only be at position 1
    assert traced_token_index(clips, np.array([50, 3]), tubelet=2).tolist() == [3, 0]
    assert traced_start(100, 98, spec) == 68  # near the end: position 15, clip ends on frame 98


def test_traced_clip_short_or_misaligned_video_clamps_the_tail() -> None:
    spec = ClipSpec(frames=16, stride=2, start="traced")
    # 31 frames = the span, but frame 1's lattice (1, 3, ..., 31) overruns by one: keep frame 1, repeat frame 30.
    clip = clip_indices(31, spec, ed_es=(1, 1))[0]
    assert clip[0] == 1 and clip[-1] == 30 and clip[-2] == 29
    short = clip_indices(10, spec, ed_es=(5, 9))
    assert short[0, :4].tolist() == [1, 3, 5, 7] and traced_token_index(short, np.array([5, 9]), 2).tolist() == [1, 2]
    assert clip_indices(10, spec, ed_es=(-1, 4)).shape == (0, 16)


def test_traced_clip_brute_force() -> None:
    for n, frames, stride in itertools.product((5, 12, 31, 40), (1, 4, 8), (1, 2, 3)):
        spec = ClipSpec(frames=frames, stride=stride, start="traced")
        centre = (frames - 1) // 2
        for frame in range(n):
            start = traced_start(n, frame, spec)
            q, rest = divmod(frame - start, stride)
            assert rest == 0 and 0 <= q < frames and start >= 0
            fitting = [p for p in range(frames) if frame - p * stride >= 0 and frame - p * stride + spec.span <= n]
            if fitting:
                assert abs(q - centre) == min(abs(p - centre) for p in fitting) and q in fitting
            else:
                assert q == min(frames - 1, frame // stride)
            clip = clip_indices(n, spec, ed_es=(frame, frame))[0]
            assert clip[q] == frame and traced_token_index(clip[None], np.array([frame]), 2)[0] == q // 2


# -- task and protocol checks ---------------------------------------------------------------------------------------


def test_lv_seg_targets_need_both_traced_frames() -> None:
    table = pd.DataFrame({"ed_frame": [3, -1, 5], "es_frame": [9, 4, -1]})
    targets, valid = get_task("lv_seg").targets(table, "d")
    assert valid.tolist() == [True, False, False] and targets.tolist() == [0, 0, 0]
    with pytest.raises(UserError, match="no video with traced ED and ES frames"):
        get_task("lv_seg").targets(table.iloc[1:], "d")


def test_protocols_and_tasks_must_match() -> None:
    with pytest.raises(UserError, match="^task lv_seg is a segmentation task; use --protocol segmentation$"):
        resolve("random_init", "knn", task="lv_seg")
    with pytest.raises(UserError, match="protocol segmentation segments images, but task ef is a regression"):
        resolve("random_init", "segmentation", task="ef")
    with pytest.raises(UserError, match="task lv_seg is a segmentation task"):
        resolve("random_init", "label-sweep", task="lv_seg")
    swept = resolve("random_init", "label-sweep", task="lv_seg", sets=["protocol.inner=segmentation"])
    assert swept.task.name == "lv_seg"


def test_label_fraction_keeps_patients_whole() -> None:
    table = pd.DataFrame({"video_id": [f"v{i}" for i in range(12)], "patient_id": [f"p{i // 2}" for i in range(12)]})
    ctx = SimpleNamespace(labelled=lambda split, record=True: (table, np.zeros(len(table), dtype=np.int64)))
    half = _fraction_of_training(ctx, 0.5, seed=3)  # type: ignore[arg-type]
    assert len(half) == 6 and half.groupby("patient_id").size().eq(2).all()
    assert half.equals(_fraction_of_training(ctx, 0.5, seed=3))  # type: ignore[arg-type]


def test_channel_stats_over_chunks() -> None:
    tokens = np.zeros((5, 2, 1, 2), dtype=np.float16)
    tokens[..., 0] = np.arange(10, dtype=np.float16).reshape(5, 2, 1)
    tokens[..., 1] = 3.0
    mean, std = channel_stats(tokens, chunk=2)
    np.testing.assert_allclose(mean, [4.5, 3.0])
    np.testing.assert_allclose(std, [np.std(np.arange(10)), 1.0])  # a constant channel is divided by 1


# -- protocol on a synthetic problem -----------------------------------------------------------------------------------

SIZE, PATCH = 32, 4
SIDE = SIZE // PATCH


def _disk_images(n_videos: int, rng: np.random.Generator) -> Images:
    """Disks whose token map encodes the mask: channel 0 is each patch's LV fraction, the rest noise."""
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    centres = rng.uniform(11, 21, size=(2 * n_videos, 2))
    radii = rng.uniform(6, 10, size=2 * n_videos)
    masks = ((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2 < radii[:, None, None] ** 2).astype(
        np.uint8
    )
    fraction = masks.reshape(-1, SIDE, PATCH, SIDE, PATCH).mean(axis=(2, 4))
    tokens = rng.normal(0, 0.3, size=(2 * n_videos, SIDE, SIDE, 6))
    tokens[..., 0] = 4 * fraction - 2
    return Images(
        video_ids=[f"v{i}" for i in range(n_videos)],
        tokens=tokens.astype(np.float16),
        masks=masks,
        frames=np.tile([2, 9], n_videos),
    )


CONFIG = SegmentationConfig(lrs=(1e-3, 1e-1), epochs=15, batch_size=16, patience=5, ci_resamples=100, seed=1)


@pytest.fixture(scope="module")
def disks() -> tuple[Images, Images, Images]:
    rng = np.random.default_rng(0)
    return _disk_images(16, rng), _disk_images(6, rng), _disk_images(6, rng)


def test_protocol_learns_masks_encoded_in_tokens(disks: tuple[Images, Images, Images]) -> None:
    train, val, test = disks
    result = run_segmentation(train, val, test, CONFIG, ("lv",))
    assert result.metrics["dice"] > 0.9 and result.val_metrics["dice"] > 0.9
    assert result.chosen["lr"] in CONFIG.lrs and 1 <= result.chosen["epoch"] <= CONFIG.epochs
    low, high = result.ci["dice"]
    assert low <= result.metrics["dice"] <= high
    assert list(result.predictions.columns) == ["video_id", "frame", "phase", "dice", "iou", "ppv", "recall"]
    assert result.predictions["phase"].tolist()[:2] == ["ED", "ES"] and len(result.predictions) == 12
    assert result.predictions["dice"].mean() == pytest.approx(result.metrics["dice"])
    again = run_segmentation(train, val, test, CONFIG, ("lv",))
    assert again.metrics == result.metrics  # deterministic on CPU


def test_poisoned_test_masks_change_nothing_but_test(disks: tuple[Images, Images, Images]) -> None:
    train, val, test = disks
    config = dataclasses.replace(CONFIG, head="transposed_conv", loss="ce_dice", lrs=(1e-2, 5e-2), epochs=5)
    clean = run_segmentation(train, val, test, config, ("lv",))
    poisoned = run_segmentation(train, val, dataclasses.replace(test, masks=1 - test.masks), config, ("lv",))
    assert poisoned.chosen == clean.chosen and poisoned.val_metrics == clean.val_metrics
    assert poisoned.metrics["dice"] < clean.metrics["dice"]


# -- end to end -------------------------------------------------------------------------------------------------------

TINY = [
    *("--set", "method.model=vit_tiny", "--set", "method.frames=4", "--set", "method.stride=2"),
    *("--set", "method.size=32", "--set", "method.patch=8", "--set", "method.tubelet=2"),
    *("--set", "protocol.epochs=5", "--set", "protocol.lrs=[0.01]", "--set", "protocol.loss=ce_dice"),
    *("--set", "protocol.ci_resamples=50"),
]


def test_cli_random_init_segmentation(monkeypatch, capsys, tmp_path) -> None:
    root = synthesize(tmp_path / "se", videos=16, seed=0, frames=24, progress=False)
    argv = ["run", "--method", "random_init", "--protocol", "segmentation", "--data-root", str(root), "--json"]
    summary = json.loads(invoke(monkeypatch, capsys, [*argv, "--dataset", "synthecho", *TINY]))
    assert summary["task"] == "lv_seg" and summary["protocol"] == "segmentation"
    record = json.loads(open(summary["result_path"]).read())
    assert summary["result_path"].endswith(f"synthecho/segmentation-lv_seg-{record['run_hash']}.json")
    assert 0 < record["metrics"]["dice"] < 1 and set(record["ci95"]) == set(record["metrics"])
    assert record["eval_clips"] == {"start": "traced"} and record["chosen"]["lr"] == 0.01
    predictions = pd.read_csv(record["predictions_csv"])
    assert len(predictions) == 2 * record["num_test_videos"]
    assert predictions["dice"].mean() == pytest.approx(record["metrics"]["dice"])
