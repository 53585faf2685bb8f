"""Data-parallel pretraining under torchrun on CPU (gloo): the same trajectory as one process with the same global
batch, a two-"node" rendezvous, a killed rank resumed by torchrun from the last checkpoint, and the batch check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tune_workers import free_port

from echobench import checkpoint as ckpt
from echobench.data.loader import StepBatches
from echobench.distributed import World, batch_rows, check_batch
from echobench.errors import UserError

STEPS = 10
#: Adam turns float-level differences of near-zero gradients (attention key biases, whose exact gradient is zero)
#: into steps of the order of the learning rate in either direction, so weights of runs that sum gradients in another
#: order agree only loosely; the loss trajectory is the tight check.
WEIGHT_ATOL = 1e-3
PRETRAIN = [
    *("--dataset", "synthecho", "--set", "method.model=vit_tiny"),
    *("--set", "method.frames=4", "--set", "method.stride=1", "--set", "method.size=32"),
    *("--set", "method.patch=8", "--set", "method.tubelet=2", "--set", "pretrain.seed=0"),
    *("--set", "pretrain.batch_size=4", "--set", f"pretrain.steps={STEPS}", "--set", "pretrain.checkpoint_every=2"),
    *("--set", "pretrain.device=cpu", "--set", 'pretrain.amp="off"', "--set", "pretrain.warmup_fraction=0.2"),
]


TOY_CLI = str(Path(__file__).parent / "ddp_toy_cli.py")


def pretrain_argv(root: Path, method: str = "videomae") -> list[str]:
    own = ["--set", "method.decoder_depth=1"] if method == "videomae" else []
    return ["pretrain", "--data-root", str(root), *PRETRAIN, "--method", method, *own]


def launch(
    launcher: list[str], root: Path, home: Path, entry: tuple[str, ...] = ("-m", "echobench"), method: str = "videomae"
) -> subprocess.Popen[str]:
    """``python -m torch.distributed.run LAUNCHER -m echobench pretrain …`` (torchrun) with its own home."""
    env = {**os.environ, "ECHOBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, *entry, *pretrain_argv(root, method)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish(process: subprocess.Popen[str]) -> str:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return err


def checkpoint_folders(home: Path, method: str) -> list[Path]:
    """Checkpoint folders, without the temporary ``.*`` folders an atomic write killed mid-way leaves behind."""
    found = home / "checkpoints" / method
    return [f for f in found.iterdir() if not f.name.startswith(".")] if found.is_dir() else []


def checkpoint_folder(home: Path, method: str) -> Path:
    (folder,) = checkpoint_folders(home, method)
    return folder


def weights(home: Path, method: str = "videomae") -> dict[str, torch.Tensor]:
    folder = checkpoint_folder(home, method)
    meta = ckpt.read_meta(folder)
    assert meta is not None and meta.complete and meta.step == STEPS
    return load_file(ckpt.model_file(folder))


def losses(home: Path) -> list[float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("echobench-pretrain").experiment_id])
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(1, STEPS + 1))
    return [m.value for m in history]


@pytest.fixture(scope="module")
def single(synth_root, tmp_path_factory):
    """The single-process run: its home (weights and MLflow loss history)."""
    home = tmp_path_factory.mktemp("single")
    finish(launch(["--nproc-per-node", "1", "--standalone"], synth_root, home))
    return home


@pytest.fixture(scope="module")
def two_processes(synth_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("two")
    err = finish(launch(["--nproc-per-node", "2", "--standalone"], synth_root, home))
    return home, err


def test_two_processes_follow_the_single_process_trajectory(single, two_processes):
    home, err = two_processes
    assert torch.tensor(losses(home)).allclose(torch.tensor(losses(single)), rtol=1e-4, atol=1e-6)
    reference, distributed = weights(single), weights(home)
    assert reference.keys() == distributed.keys()
    for name, value in reference.items():
        assert distributed[name].allclose(value, rtol=1e-3, atol=WEIGHT_ATOL), name
    # Rank 0 alone reports; the second rank neither prints the checkpoint nor opens an MLflow run.
    assert err.count("checkpoint ") == 1


def test_two_nodes_meeting_at_a_rendezvous_train_as_one_process(synth_root, tmp_path, single):
    port = free_port()
    nodes = [
        launch(
            ["--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1"]
            + ["--master-addr", "127.0.0.1", "--master-port", str(port)],
            synth_root,
            tmp_path / "shared-home",
        )
        for rank in range(2)
    ]
    for node in nodes:
        finish(node)
    for name, value in weights(single).items():
        assert weights(tmp_path / "shared-home")[name].allclose(value, rtol=1e-3, atol=WEIGHT_ATOL), name


def test_an_ema_teacher_and_dino_centre_follow_the_single_process_run(synth_root, tmp_path):
    runs = {}
    for processes in (1, 2):
        home = tmp_path / f"toy{processes}"
        launcher = ["--nproc-per-node", str(processes), "--standalone"]
        finish(launch(launcher, synth_root, home, entry=(TOY_CLI,), method="toy_ema_ddp"))
        runs[processes] = home
    assert torch.tensor(losses(runs[2])).allclose(torch.tensor(losses(runs[1])), rtol=1e-4, atol=1e-6)
    single, distributed = weights(runs[1], "toy_ema_ddp"), weights(runs[2], "toy_ema_ddp")
    # The centre is an EMA of the global batch's mean teacher output: it moved, and both runs moved it alike.
    assert single["center"].abs().sum() > 0
    # Weights agree loosely (measured gap 1.7e-4: Adam amplifies rounding noise); the loss trajectory is the tight
    # check, and tests/test_distributed_blocks.py checks the centre's all-reduce exactly.
    for name, value in single.items():
        gap = float((distributed[name] - value).abs().max())
        assert distributed[name].allclose(value, rtol=1e-3, atol=1e-3), f"{name}: max difference {gap:.3g}"


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def test_a_killed_rank_resumes_from_the_last_checkpoint_to_the_same_weights(synth_root, tmp_path, two_processes):
    home = tmp_path / "home"
    launcher = ["--nproc-per-node", "2", "--standalone"]
    agent = launch(launcher, synth_root, home)
    killed_at = None
    deadline = time.monotonic() + 300
    while killed_at is None and time.monotonic() < deadline and agent.poll() is None:
        folders = checkpoint_folders(home, "videomae")
        meta = ckpt.read_meta(folders[0]) if folders else None
        if meta is not None and not meta.complete and meta.step >= 2:
            killed_at = meta.step
            os.kill(children(agent.pid)[-1], signal.SIGKILL)
        time.sleep(0.02)
    assert killed_at is not None and killed_at < STEPS, "the run ended before a rank could be killed mid-way"
    agent.communicate(timeout=300)
    # torchrun stops the surviving rank and fails; the same command resumes from the last checkpoint.
    assert agent.returncode != 0
    meta = ckpt.read_meta(checkpoint_folder(home, "videomae"))
    assert meta is not None and not meta.complete and meta.step < STEPS
    err = finish(launch(launcher, synth_root, home))
    assert f"resuming videomae pretraining from step {meta.step}/{STEPS}" in err
    uninterrupted = weights(two_processes[0])
    resumed = weights(home)
    for name, value in uninterrupted.items():
        assert torch.equal(resumed[name], value), name


def test_each_rank_takes_its_slice_of_the_single_process_batch():
    whole = iter(StepBatches(40, 8, seed=3, start_step=5))
    parts = [iter(StepBatches(40, 8, seed=3, start_step=5, rank=r, world_size=2)) for r in range(2)]
    for _ in range(7):
        assert next(whole) == next(parts[0]) + next(parts[1])


def test_per_sample_draws_do_not_depend_on_the_world(monkeypatch):
    assert batch_rows(4) == (4, slice(0, 4))
    monkeypatch.setattr("echobench.distributed.current", lambda: World(rank=1, size=3))
    assert batch_rows(4) == (12, slice(4, 8))


def test_a_batch_that_does_not_split_over_the_world_is_refused():
    check_batch(8, World(size=4))
    with pytest.raises(UserError, match="pretrain.batch_size 6 does not split over 4 processes"):
        check_batch(6, World(size=4))


def test_pretrain_with_an_indivisible_world_exits_2_before_any_work(monkeypatch, capsys, synth_root, isolated_home):
    # torchrun announces the world through these variables; the check runs before joining the process group.
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(sys, "argv", ["echobench", *pretrain_argv(synth_root)])
    from echobench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "does not split over 3 processes" in err
    assert len(err.strip().splitlines()) == 1
    assert not isolated_home.exists() or not any(isolated_home.iterdir())


def test_run_refuses_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(sys, "argv", ["echobench", "run", "--method", "random_init"])
    from echobench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "pretrain under torchrun" in capsys.readouterr().err
