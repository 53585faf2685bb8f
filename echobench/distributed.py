"""Data-parallel pretraining under ``torchrun`` (torch.distributed): who this process is, and the collectives the
training loop needs.

Each of the ``W`` processes trains on its slice of every global batch (the single-process batch of the same step,
split in ``W`` equal parts) and, after backward, gradients are averaged with ``all_reduce`` — what
``DistributedDataParallel`` computes — so every rank takes the same optimiser step and the weights stay equal. The
method is not wrapped in DDP: the loop calls ``method.pretrain_step`` and the hooks directly. Only rank 0 logs,
tracks in MLflow and writes checkpoints; every rank reads a checkpoint to resume.

Methods that draw per-sample randomness (masks) draw it for the global batch and keep their rows
(:func:`batch_rows`), so a run on ``W`` processes sees the masks the single-process run sees. Batch statistics
(DINO centres, Sinkhorn normalisation) must be reduced over ranks where the papers' code does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from echobench.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> World:
    """The process's place as ``torchrun`` announces it in the environment (rank 0 of 1 when not launched)."""
    return World(
        rank=int(os.environ.get("RANK", 0)),
        size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def current() -> World:
    """The initialised process group's world (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), launched().local_rank)
    return World()


def check_batch(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise UserError(
            f"pretrain.batch_size {batch_size} does not split over {world.size} processes; set it to a multiple of "
            f"the world size (--nproc-per-node x --nnodes = {world.size})"
        )


def init(device: torch.device) -> World:
    """Join the process group ``torchrun`` set up (gloo on CPU, NCCL on GPU); a no-op for a single process."""
    world = launched()
    if world.size == 1 or (dist.is_available() and dist.is_initialized()):
        return current()
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current()


def shutdown() -> None:
    """Leave the process group (every rank, at the end of a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if device.type == "cuda" and device.index is None and current().size > 1:
        return torch.device("cuda", launched().local_rank)
    return device


def batch_rows(local_batch: int) -> tuple[int, slice]:
    """``(global batch size, this rank's rows)`` of a step: draw per-sample randomness for the global batch and
    keep ``[rows]`` so that the draws do not depend on the number of processes."""
    world = current()
    return local_batch * world.size, slice(world.rank * local_batch, (world.rank + 1) * local_batch)


def average_gradients(model: nn.Module) -> None:
    """Replace every gradient by its mean over ranks (one flat all-reduce), as DDP does after backward."""
    world = current()
    if world.size == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Logged terms (the loss of the global batch is the mean of the ranks' equal-sized batch losses)."""
    world = current()
    if world.size == 1 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return {k: float(v) / world.size for k, v in zip(keys, tensor.tolist(), strict=True)}


def barrier() -> None:
    if current().size > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (filling a shared cache); the others run it after, finding the work done."""
    world = current()
    if not world.is_main:
        barrier()
    yield
    if world.is_main:
        barrier()
