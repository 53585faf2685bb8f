"""The bad-input table: each command is a user mistake that must end with exit code 2 and one line ``error: ...``
starting with the expected words, no traceback, and nothing written to the cache."""

from __future__ import annotations

import sys

import pytest

from echobench.cli import main

RUN = ["run", "--method", "videomae"]


def _set(*items: str) -> list[str]:
    return [part for item in items for part in ("--set", item)]


#: (command after ``echobench``, the first words of the error message).
BAD_INPUT: list[tuple[list[str], str]] = [
    # names
    (["run", "--method", "videomea"], "unknown method 'videomea' (did you mean 'videomae'?)"),
    ([*RUN, "--protocol", "nn"], "unknown protocol 'nn'"),
    ([*RUN, "--task", "ef_anomly"], "unknown task 'ef_anomly' (did you mean 'ef_anomaly'?)"),
    ([*RUN, "--dataset", "echonet-dynamc"], "unknown dataset 'echonet-dynamc' (did you mean 'echonet-dynamic'?)"),
    ([*RUN, "--profile", "fast"], "unknown profile 'fast'"),
    (["list", "plugins"], "cannot list 'plugins'"),
    (["validate-plugin", "videomea"], "unknown method 'videomea' (did you mean 'videomae'?)"),
    # --set syntax
    ([*RUN, *_set("steps=5")], "malformed --set 'steps=5'"),
    ([*RUN, *_set("pretrian.steps=5")], "unknown --set section 'pretrian'"),
    ([*RUN, *_set("method.x=[1, 2")], "malformed value in --set"),
    ([*RUN, *_set("method.mask_rato=0.5")], "method videomae has no field 'mask_rato' (did you mean 'mask_ratio'?)"),
    ([*RUN, *_set("pretrain.steps=lots")], "pretrain.steps must be an integer, got 'lots'"),
    ([*RUN, *_set("pretrain.lr=abc")], "pretrain.lr must be a number, got 'abc'"),
    ([*RUN, *_set("pretrain.amp=fp8")], "pretrain.amp must be one of"),
    ([*RUN, *_set("pretrain.betas=[0.9]")], "pretrain.betas needs 2 values"),
    # declared ranges of the harness's pretraining config
    ([*RUN, *_set("pretrain.steps=-1")], "pretrain.steps must be >= 1, got -1"),
    ([*RUN, *_set("pretrain.steps=0")], "pretrain.steps must be >= 1, got 0"),
    ([*RUN, *_set("pretrain.batch_size=0")], "pretrain.batch_size must be >= 1, got 0"),
    ([*RUN, *_set("pretrain.checkpoint_every=0")], "pretrain.checkpoint_every must be >= 1, got 0"),
    ([*RUN, *_set("pretrain.log_every=0")], "pretrain.log_every must be >= 1, got 0"),
    ([*RUN, *_set("pretrain.lr=-1")], "pretrain.lr must be > 0, got -1.0"),
    ([*RUN, *_set("pretrain.lr=0")], "pretrain.lr must be > 0, got 0.0"),
    ([*RUN, *_set("pretrain.warmup_fraction=1")], "pretrain.warmup_fraction must be in [0, 1), got 1.0"),
    ([*RUN, *_set("pretrain.min_lr_ratio=2")], "pretrain.min_lr_ratio must be in [0, 1], got 2.0"),
    ([*RUN, *_set("pretrain.betas=[0.9, 1.5]")], "pretrain.betas must be in [0, 1), got (0.9, 1.5)"),
    ([*RUN, *_set("pretrain.weight_decay=-0.1")], "pretrain.weight_decay must be >= 0, got -0.1"),
    ([*RUN, *_set("pretrain.grad_clip=-1")], "pretrain.grad_clip must be >= 0, got -1.0"),
    ([*RUN, *_set("pretrain.seed=-3")], "pretrain.seed must be >= 0, got -3"),
    ([*RUN, *_set("pretrain.num_workers=-1")], "pretrain.num_workers must be >= 0, got -1"),
    # shared method fields and a plugin's own ranges
    ([*RUN, *_set("method.frames=0")], "method videomae.frames must be >= 1, got 0"),
    ([*RUN, *_set("method.stride=0")], "method videomae.stride must be >= 1, got 0"),
    ([*RUN, *_set("method.size=4")], "method videomae.size must be >= 8, got 4"),
    ([*RUN, *_set("method.patch=0")], "method videomae.patch must be >= 1, got 0"),
    ([*RUN, *_set("method.tubelet=-2")], "method videomae.tubelet must be >= 1, got -2"),
    ([*RUN, *_set("method.mask_ratio=1.5")], "method videomae.mask_ratio must be in (0, 1), got 1.5"),
    ([*RUN, *_set("method.mask_ratio=0")], "method videomae.mask_ratio must be in (0, 1), got 0.0"),
    ([*RUN, *_set("method.decoder_depth=0")], "method videomae.decoder_depth must be >= 1, got 0"),
    ([*RUN, *_set("method.drop_path=1")], "method videomae.drop_path must be in [0, 1), got 1.0"),
    # data and protocol settings
    ([*RUN, *_set("data.pretrain_splits=[trian]")], "data.pretrain_splits has unknown split 'trian' (did you mean"),
    ([*RUN, *_set("data.pretrain_splits=[]")], "data.pretrain_splits is empty"),
    ([*RUN, *_set("protocol.eval_clips.count=3")], "protocol.eval_clips has no field 'count'"),
    ([*RUN, *_set("protocol.clips=0")], "protocol.clips must be a positive integer or 'all', got 0"),
    ([*RUN, "--seeds", "0"], "seeds must be a positive integer, got 0"),
    ([*RUN, "--dataset", "echonet-dynamic"], "dataset 'echonet-dynamic' has no built-in copy"),
    ([*RUN, "--dataset", "echonet-dynamic", "--data-root", "/nonexistent/echonet"], "--data-root /nonexistent/echonet"),
    (["pretrain", "--method", "videomae", *_set("protocol.k=3")], "echobench pretrain takes no protocol.* overrides"),
    (["pretrain", "--method", "videomae", *_set("pretrain.steps=0")], "pretrain.steps must be >= 1, got 0"),
    (["data", "synth", "--videos", "0"], "--videos must be a whole number >= 1, got 0"),
    (["data", "synth", "--frames", "1"], "--frames must be a whole number >= 2, got 1"),
    (["data", "synth", "--videos", "2"], "--videos 2 gives no TRAIN video (SynthEcho splits by patient"),
    ([*RUN, *_set("protocol.shuffle_frames=maybe")], "protocol.shuffle_frames must be true or false, got 'maybe'"),
    (
        [*RUN, *_set("protocol.pool=cls")],
        "protocol.pool must be one of 'encoder', 'mean', 'motion', 'mean_std', got 'cls'",
    ),
    (["data", "prepare", "--dataset", "echonet-dynamic", "--data-root", "/x", "--size", "0"], "--size (0)"),
    (["data", "verify", "--dataset", "echonet-dynamc", "--data-root", "/x"], "unknown dataset 'echonet-dynamc'"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUT, ids=[" ".join(argv) for argv, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, isolated_home, argv, expected):
    monkeypatch.setattr(sys, "argv", ["echobench", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured.err
    assert captured.err.startswith(f"error: {expected}"), captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert captured.out == ""
    assert not (isolated_home / "checkpoints").exists() and not (isolated_home / "decoded").exists()


def test_the_table_is_large_enough():
    assert len(BAD_INPUT) >= 40
