"""``echobench data prepare``: the parallel build equals the in-process one, an interrupted build resumes without
decoding finished videos again, unreadable videos fail the build unless skipped, and skipped videos are recorded in
the cache and dropped from the table for every later user."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from echonet_fixture import write_echonet_fixture

from echobench.cli import main
from echobench.data.decode_cache import DecodeCache
from echobench.data.echonet import EchoNetDynamic
from echobench.errors import UserError

SIZE = 32


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_echonet_fixture(tmp_path_factory.mktemp("echonet"), videos=6, frames=12, size=48, seed=0)


def _copy_with_garbage(clean: Path, tmp_path: Path) -> Path:
    root = Path(shutil.copytree(clean, tmp_path / "echonet"))
    (root / "Videos" / "0X0004.avi").write_bytes(b"RIFF not really an avi")
    return root


def _counting_reads(dataset: EchoNetDynamic) -> list[str]:
    seen: list[str] = []
    read = dataset.read_frames

    def counted(path: str) -> np.ndarray:
        seen.append(Path(path).stem)
        return read(path)

    dataset.read_frames = counted  # type: ignore[method-assign]
    return seen


def test_parallel_build_equals_in_process_build(clean: Path, tmp_path: Path) -> None:
    threads = DecodeCache.build(EchoNetDynamic(clean), SIZE, root=tmp_path / "a", progress=False)
    workers = DecodeCache.build(EchoNetDynamic(clean), SIZE, root=tmp_path / "b", progress=False, workers=2)
    assert threads.key == workers.key and workers.skipped == {}
    np.testing.assert_array_equal(np.asarray(threads.frames), np.asarray(workers.frames))
    index_a, index_b = (json.loads((c.folder / "index.json").read_text()) for c in (threads, workers))
    assert index_a["videos"] == index_b["videos"]
    assert not list((tmp_path / "b").glob(".*.chunks")), "chunks are removed once the cache is written"


def test_unreadable_video_fails_then_resume_skips_it_without_redecoding(clean: Path, tmp_path: Path) -> None:
    root = _copy_with_garbage(clean, tmp_path)
    dataset = EchoNetDynamic(root)
    with pytest.raises(UserError, match=r"1 videos of echonet-dynamic are unreadable: 0X0004 .*--skip-bad"):
        DecodeCache.build(dataset, SIZE, root=tmp_path / "cache", progress=False, workers=1)
    chunks = list((tmp_path / "cache").glob(".*.chunks/*.npz"))
    finished = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(chunks) == 5 and finished == [], "no cache folder exists until every video is done"

    resumed = EchoNetDynamic(root)
    reads = _counting_reads(resumed)
    cache = DecodeCache.build(resumed, SIZE, root=tmp_path / "cache", progress=False, workers=1, skip_bad=True)
    assert reads == ["0X0004"], "videos decoded before the interruption are not decoded again"
    assert list(cache.skipped) == ["0X0004"] and "0X0004.avi" in cache.skipped["0X0004"]
    assert "0X0004" not in cache and "0X0004" not in set(resumed.table["video_id"]) and len(resumed) == 5
    # A later plain open (as `echobench run` does) drops the skipped video from its table too.
    later = EchoNetDynamic(root)
    DecodeCache.build(later, SIZE, root=tmp_path / "cache", progress=False)
    assert list(later.table["video_id"]) == list(resumed.table["video_id"])


def test_in_process_build_points_at_skip_bad(clean: Path, tmp_path: Path) -> None:
    root = _copy_with_garbage(clean, tmp_path)
    with pytest.raises(UserError, match=r"0X0004\.avi.*echobench data prepare --dataset echonet-dynamic .*--skip-bad"):
        DecodeCache.build(EchoNetDynamic(root), SIZE, root=tmp_path / "cache", progress=False)
    left = [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"]
    assert not left, "a failed build leaves no cache folder behind (only its lock file)"


def test_cli_prepare_reports_skipped_videos(clean: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    root = _copy_with_garbage(clean, tmp_path)
    args = ["echobench", "data", "prepare", "--dataset", "echonet-dynamic", "--data-root", str(root), "--size", "32"]
    monkeypatch.setattr(sys, "argv", [*args, "--workers", "2"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "0X0004" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*args, "--workers", "2", "--skip-bad"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    err = capsys.readouterr().err
    assert "(5 of 6 videos, 32px)" in err and "skipped 0X0004" in err


def test_cli_prepare_takes_the_size_run_resolves(clean: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    root = Path(shutil.copytree(clean, tmp_path / "echonet"))
    base = ["echobench", "data", "prepare", "--dataset", "echonet-dynamic", "--data-root", str(root), "--workers", "1"]
    for extra, size in (([], 64), (["--profile", "quick", "--set", "method.size=40"], 40), (["--size", "24"], 24)):
        monkeypatch.setattr(sys, "argv", [*base, *extra])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 0
        assert f"(6 of 6 videos, {size}px)" in capsys.readouterr().err
        # What `run` then builds at that size is the prepared cache: nothing is decoded again.
        dataset = EchoNetDynamic(root)
        reads = _counting_reads(dataset)
        DecodeCache.build(dataset, size)
        assert reads == []
