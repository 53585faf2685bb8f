"""Crash consistency of checkpoints: a process killed between any two file-system writes of a save resumes to the
weights an uninterrupted run reaches (meta.json is the only source of the step)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_checkpoint import Toy, batches_from, make_loop

from echobench import checkpoint as ckpt


class Killed(BaseException):
    """Stands in for a signal: unwinds like a kill, caught by nothing in the harness."""


def _final_weights(folder: Path) -> dict[str, torch.Tensor]:
    meta = ckpt.read_meta(folder)
    assert meta is not None and meta.complete and meta.step == 10
    return load_file(str(folder / meta.files["model"]["name"]))


def _train(folder: Path, **kw) -> int:
    torch.manual_seed(0)
    return make_loop(folder, Toy(), **kw).run(batches_from)


def _kill_after(monkeypatch: pytest.MonkeyPatch, folder: Path, writes: int) -> list[str]:
    """Make the ``writes``-th rename or delete inside ``folder`` the last thing the process does."""
    done: list[str] = []
    real_replace, real_unlink = os.replace, os.unlink

    def counted(real):
        def mutate(src, dst=None, *args, **kwargs):
            result = real(src, dst, *args, **kwargs) if dst is not None else real(src, *args, **kwargs)
            target = Path(dst if dst is not None else src)
            if target.parent == folder and not target.name.endswith(".tmp"):
                done.append(f"{real.__name__} {target.name}")
                if len(done) == writes:
                    raise Killed
            return result

        return mutate

    monkeypatch.setattr(os, "replace", counted(real_replace))
    monkeypatch.setattr(os, "unlink", counted(real_unlink))
    return done


def test_kill_between_any_two_writes_resumes_to_uninterrupted_weights(tmp_path, monkeypatch):
    assert _train(tmp_path / "straight") == 10
    expected = _final_weights(tmp_path / "straight")

    writes = 1
    while True:
        folder = tmp_path / f"killed-{writes}"
        with monkeypatch.context() as patch:
            done = _kill_after(patch, folder, writes)
            try:
                _train(folder)
            except Killed:
                pass
            else:
                break
        assert _train(folder) == 10, done
        weights = _final_weights(folder)
        for name, tensor in expected.items():
            torch.testing.assert_close(weights[name], tensor, rtol=0, atol=0, msg=f"killed after {done}")
        writes += 1
    # Saves at steps 3, 6, 9 and the final one: each renames files and meta.json and removes stale files.
    assert writes > 12


def test_mismatched_newest_files_fall_back_to_previous_checkpoint(tmp_path):
    assert _train(tmp_path / "straight") == 10
    folder = tmp_path / "run"
    assert _train(folder, stop_after=7) == 7
    newest = ckpt.read_meta(folder)
    assert (newest.step, ckpt.resumable(folder).step) == (7, 7)
    (folder / newest.files["optimizer"]["name"]).write_bytes(b"torn")
    assert ckpt.resumable(folder).step == 6
    assert _train(folder) == 10
    for name, tensor in _final_weights(tmp_path / "straight").items():
        torch.testing.assert_close(_final_weights(folder)[name], tensor, rtol=0, atol=0)


def test_os_exit_during_save_in_a_real_process(tmp_path):
    """A real process death (no unwinding, no finally blocks) right after step 6's weights are renamed into place,
    before its meta.json: the folder still says step 3, and resuming from there reaches the uninterrupted weights."""
    folder = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        from test_train_checkpoint import Toy, batches_from, make_loop
        folder, real_replace = Path({str(folder)!r}), os.replace
        def dying(src, dst):
            real_replace(src, dst)
            meta = folder / "meta.json"
            if Path(dst).name.startswith("optimizer.") and meta.is_file() and '"step": 3' in meta.read_text():
                os._exit(9)
        os.replace = dying
        torch.manual_seed(0)
        make_loop(folder, Toy()).run(batches_from)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert ckpt.read_meta(folder).step == 3
    assert len(list(folder.glob("optimizer.*.safetensors"))) == 2
    assert _train(folder) == 10
    assert _train(tmp_path / "straight") == 10
    for name, tensor in _final_weights(tmp_path / "straight").items():
        torch.testing.assert_close(_final_weights(folder)[name], tensor, rtol=0, atol=0)
