"""Everything echobench writes under ``$ECHOBENCH_HOME`` gets the permissions the umask gives ordinary files."""

from __future__ import annotations

import os
import stat

import pytest
from torch import nn

from echobench import checkpoint as ckpt
from echobench.atomic import atomic_dir, atomic_path, write_text_atomic
from echobench.data.decode_cache import DecodeCache
from echobench.data.echonet import EchoNetDynamic


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_and_folders_honour_the_umask(tmp_path, umask):
    write_text_atomic(tmp_path / "a.json", "{}")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "folder") as folder:
        (folder / "inner").write_text("x")
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "b.bin") == 0o666 & ~umask
    assert _mode(tmp_path / "folder") == 0o777 & ~umask


def test_cache_and_checkpoint_files_share_one_mode(tmp_path, umask):
    from echonet_fixture import write_echonet_fixture

    dataset = EchoNetDynamic(write_echonet_fixture(tmp_path / "fx", videos=3, frames=8))
    cache = DecodeCache.build(dataset, 32, root=tmp_path / "decoded", progress=False)
    cache.stats(list(dataset.table["video_id"]))
    model = nn.Linear(2, 2)
    ckpt.save_model(tmp_path / "ckpt", model, ckpt.CheckpointMeta("toy", "1", {}, 0, 0, True, {}))
    files = [*cache.folder.iterdir(), *(tmp_path / "ckpt").iterdir()]
    assert {p.name for p in cache.folder.iterdir()} == {"frames.u8", "index.json", "stats.json"}
    assert {_mode(p) for p in files} == {0o666 & ~umask}
