"""Batch statistics over ranks: Sinkhorn-Knopp and the DINO centre computed by two gloo processes on halves of a
batch equal the single-process computation on the whole batch."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tune_workers import free_port

from echobench.models.distill import update_center
from echobench.models.sinkhorn import sinkhorn_knopp


def scores() -> torch.Tensor:
    # Unnormalised scores with a wide range: the log-space path matters at eps = 0.05.
    return torch.randn(12, 5, generator=torch.Generator().manual_seed(0)) * 4


def rank_main(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    rows = scores()[rank * 6 : (rank + 1) * 6]
    plan = sinkhorn_knopp(rows, eps=0.05, iters=5, all_reduce=True)
    local = sinkhorn_knopp(rows, eps=0.05, iters=5)
    centre = update_center(torch.zeros(5), rows, momentum=0.5, all_reduce=True)
    torch.save({"plan": plan, "local": local, "centre": centre}, Path(out) / f"{rank}.pt")
    dist.destroy_process_group()


def test_sinkhorn_and_centre_over_two_ranks_equal_one_process(tmp_path):
    mp.spawn(rank_main, args=(free_port(), str(tmp_path)), nprocs=2)
    parts = [torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in range(2)]
    whole = scores()
    expected = sinkhorn_knopp(whole, eps=0.05, iters=5)
    assert torch.cat([p["plan"] for p in parts]).allclose(expected, atol=1e-5)
    # Without the reduction each half is equipartitioned alone, which differs.
    assert not torch.cat([p["local"] for p in parts]).allclose(expected, atol=1e-3)
    for part in parts:
        assert part["centre"].allclose(0.5 * whole.mean(0), atol=1e-6)
