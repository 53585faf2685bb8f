"""VideoViT forward throughput versus the machine's dense matmul rate, fp32 and bf16, in one run.

For each model the script measures, on CUDA when available (synchronised) else CPU:

1. the dense matmul rate of ``(M, D) × (D, 4D)`` (the MLP's first layer: the encoder's dominant GEMM shape)
   with ``M = N·B`` tokens of the measured batch, in the measured dtype, issued as ``F.linear`` with a bias —
   the exact kernel path of the encoder's ``nn.Linear`` (on CPU, a bare bf16 ``a @ b`` takes a different path
   that is several times slower, which would flatter the ratio);
2. eval, inference-mode forward throughput of the encoder (clips/s) and its achieved GFLOP/s, fp32 and under
   ``torch.autocast(device, dtype=torch.bfloat16)``;
3. achieved / matmul rate (goal >= 50 %).

Every time is the *minimum* over repeated calls after a warm-up call, for the matmul and the model alike, and
the matmul is measured both just before and just after the model (best of the two), so that other processes
sharing the machine bias neither side of the ratio.

FLOPs are counted analytically, multiply-add = 2 FLOPs, per clip: patch embedding ``2·N·(C·tubelet·patch²)·D``
plus, per block, ``24·N·D²`` (qkv 6, projection 2, MLP 16 with mlp_ratio 4) ``+ 4·N²·D`` (QKᵀ and AV);
norms, softmax, GELU and residual adds are left out (they are O(N·D)).

Time budget: when one forward call is estimated (FLOPs / a quick single-clip matmul rate) to exceed a quarter
of the measurement's budget (``--fp32-seconds``, ``--bf16-seconds``), the batch shrinks to 1 and then the depth
to the blocks that fit (at least one): every block costs the same, so the achieved rate is still the model's,
and clips/s is extrapolated to the full depth from it. This keeps bf16 short on CPUs without native bf16
(AVX2), where it is emulated and an order of magnitude slower than fp32.

Usage: ``python benchmarks/encoder_throughput.py [--models vit_tiny vit_small] [--batch 8]``
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from echobench.models.vit import PRESETS, VideoViT


@dataclass(frozen=True)
class Geometry:
    frames: int
    size: int
    patch: int
    tubelet: int
    in_chans: int = 1

    @property
    def tokens(self) -> int:
        return (self.frames // self.tubelet) * (self.size // self.patch) ** 2


def flops_per_clip(geo: Geometry, dim: int, depth: int) -> float:
    """Analytic forward FLOPs of one clip (see the module docstring)."""
    n = geo.tokens
    patch_embed = 2 * n * geo.in_chans * geo.tubelet * geo.patch**2 * dim
    return patch_embed + depth * (24 * n * dim**2 + 4 * n**2 * dim)


def seconds_per_call(
    fn: Callable[[], object], min_seconds: float, sync: Callable[[], None], min_calls: int = 3
) -> float:
    """Fastest timed call of ``fn`` after one warm-up call: at least ``min_calls`` calls and ``min_seconds``."""
    fn()
    sync()
    best = float("inf")
    calls = 0
    start = time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        tic = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - tic)
        calls += 1
    return best


def matmul_gflops(
    rows: int, dim: int, dtype: torch.dtype, device: torch.device, min_seconds: float, sync: Callable[[], None]
) -> float:
    """Rate of ``(rows, dim) × (dim, 4·dim)`` as ``nn.Linear`` issues it (weight stored ``(4·dim, dim)``)."""
    x = torch.randn(rows, dim, device=device, dtype=dtype)
    weight = torch.randn(4 * dim, dim, device=device, dtype=dtype)
    bias = torch.zeros(4 * dim, device=device, dtype=dtype)
    with torch.inference_mode():
        seconds = seconds_per_call(lambda: F.linear(x, weight, bias), min_seconds, sync, min_calls=5)
    return 2 * rows * dim * 4 * dim / seconds / 1e9


@dataclass(frozen=True)
class Row:
    model: str
    dtype: str
    batch: int
    depth: int
    clips_per_s: float
    gflop_per_clip: float
    achieved: float
    matmul: float


def measure(
    name: str,
    dtype: torch.dtype,
    geo: Geometry,
    batch: int,
    budget: float,
    device: torch.device,
    sync: Callable[[], None],
) -> Row:
    dim, full_depth, _ = PRESETS[name]
    per_block = flops_per_clip(geo, dim, 1) - flops_per_clip(geo, dim, 0)
    affordable = budget / 4 * matmul_gflops(geo.tokens, dim, dtype, device, 0.0, sync) * 1e9
    depth = full_depth
    if flops_per_clip(geo, dim, depth) * batch > affordable:
        batch = 1
        depth = max(1, min(full_depth, int((affordable - flops_per_clip(geo, dim, 0)) // per_block)))
    model = (
        VideoViT.from_preset(
            name,
            depth=depth,
            img_size=geo.size,
            frames=geo.frames,
            patch=geo.patch,
            tubelet=geo.tubelet,
            in_chans=geo.in_chans,
        )
        .to(device)
        .eval()
    )
    clips = torch.randn(batch, geo.in_chans, geo.frames, geo.size, geo.size, device=device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext()
    )

    def forward() -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return model(clips)

    matmul_seconds = min(budget / 8, 1.0)
    before = matmul_gflops(geo.tokens * batch, dim, dtype, device, matmul_seconds, sync)
    seconds = seconds_per_call(forward, min(budget / 4, 5.0), sync)
    matmul = max(before, matmul_gflops(geo.tokens * batch, dim, dtype, device, matmul_seconds, sync))
    achieved = flops_per_clip(geo, dim, depth) * batch / seconds / 1e9
    full_gflop = flops_per_clip(geo, dim, full_depth) / 1e9
    return Row(
        name, str(dtype).removeprefix("torch."), batch, depth, achieved / full_gflop, full_gflop, achieved, matmul
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_tiny", "vit_small"], choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--tubelet", type=int, default=2)
    parser.add_argument("--fp32-seconds", type=float, default=60.0, help="budget of one fp32 model measurement")
    parser.add_argument("--bf16-seconds", type=float, default=4.0, help="budget of one bf16 model measurement")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    geo = Geometry(args.frames, args.size, args.patch, args.tubelet)
    torch.manual_seed(0)
    where = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else (f"CPU {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")
    )
    print(
        f"device: {where}; clips {geo.frames}x{geo.size}² patch {geo.patch} tubelet {geo.tubelet}, "
        f"N = {geo.tokens} tokens, eval, inference_mode"
    )
    rows = [
        measure(name, dtype, geo, args.batch, budget, device, sync)
        for name in args.models
        for dtype, budget in ((torch.float32, args.fp32_seconds), (torch.bfloat16, args.bf16_seconds))
    ]
    header = (
        f"{'model':<10} {'dtype':<9} {'batch':>5} {'blocks':>6} {'clips/s':>9} {'GFLOP/clip':>10} "
        f"{'achieved GFLOP/s':>16} {'matmul GFLOP/s':>14} {'fraction':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.model:<10} {r.dtype:<9} {r.batch:>5} {r.depth:>6} {r.clips_per_s:>9.2f} {r.gflop_per_clip:>10.2f} "
            f"{r.achieved:>16.1f} {r.matmul:>14.1f} {r.achieved / r.matmul:>8.0%}"
        )
    if any(r.depth != PRESETS[r.model][1] for r in rows):
        print(
            "rows with fewer blocks ran reduced to fit their time budget; their clips/s is extrapolated from the "
            "achieved rate and the full model's FLOPs. Matmul M = N·batch of the row."
        )


if __name__ == "__main__":
    main()
