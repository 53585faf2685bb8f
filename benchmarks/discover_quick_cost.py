"""Seconds per pretraining step at the quick profile: VideoMAE, DISCOVER with the harness profile alone, and
DISCOVER's quick profile (harness profile + ``Discover.profile_overrides["quick"]``), measured in one run.

Every configuration is resolved by :func:`echobench.runner.resolve_pretraining` with profile ``quick``, the path
``echobench run`` takes; "harness profile only" adds ``--set method.FIELD=<paper default>`` for each field the
plugin's quick overrides touch, which undoes them through the same ``--set`` path. ``--candidate`` adds further
DISCOVER configurations (space-separated ``--set`` items) for sizing the overrides.

A step is what the harness's training loop does (:class:`echobench.train.TrainLoop`): seed, ``pretrain_step``,
backward, gradient clipping, ``on_before_optimizer_step``, AdamW step over the harness's parameter groups,
``after_step``; fp32 on CPU, on random clips shaped as the loader delivers them (batch from the profile). The
configurations take turns step by step, so that other processes sharing the machine slow them alike; each
figure is the median over ``--steps`` steps after one warm-up step, and ratios are taken between medians. Wall
time and the process's CPU time (all threads) are both reported: on a shared machine the CPU time is the steadier
measure of a step's work, the wall time what a user waits.

Usage: ``python benchmarks/discover_quick_cost.py [--steps 5] [--candidate "method.image_views=2 ..."]``
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from echobench import registry
from echobench.api import Method, TrainState
from echobench.pretrain import build_method
from echobench.runner import resolve_pretraining
from echobench.train import apply_schedule, complete_groups, param_groups, step_seed
from echobench.validate import tiny_batch


@dataclass
class Setup:
    label: str
    method: str
    sets: list[str]


def undo_plugin_overrides(method: str, profile: str = "quick") -> list[str]:
    """``--set`` items that restore each field the plugin's own profile overrides change to its Config default."""
    method_cls = registry.load_method(method)
    defaults = method_cls.Config()
    own = method_cls.profile_overrides.get(profile, {})
    items = []
    for section, fields in own.items():
        base = defaults if section == "method" else None
        for name in fields:
            if base is None:
                raise SystemExit(f"undoing {section}.{name} is not supported: only method overrides are undone")
            value = getattr(base, name)
            items.append(f"{section}.{name}={'null' if value is None else value}")
    return items


def step_runner(setup: Setup) -> tuple[Callable[[int], None], str]:
    """One training-loop step of ``setup`` as a function of the step index, and a description of its config."""
    method_cls, method_config, pretrain, _, _ = resolve_pretraining(setup.method, setup.sets, "quick")
    method: Method = build_method(method_cls, method_config, pretrain.seed)
    custom = method.param_groups()
    groups = param_groups(method, set()) if custom is None else complete_groups(method, custom, setup.method)
    optimizer = torch.optim.AdamW(groups, lr=pretrain.effective_lr, weight_decay=pretrain.weight_decay)
    batch = tiny_batch(method.clip_spec(), pretrain.batch_size, method_config.in_chans)
    method.train()

    def step(index: int) -> None:
        state = TrainState.at(index, 30, pretrain.steps)
        torch.manual_seed(step_seed(pretrain.seed, index))
        out = method.pretrain_step(batch, state)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if pretrain.grad_clip > 0:
            nn.utils.clip_grad_norm_(method.parameters(), pretrain.grad_clip)
        method.on_before_optimizer_step(state, optimizer)
        apply_schedule(optimizer, pretrain, index)
        optimizer.step()
        method.after_step(state)

    changed = {
        f.name: getattr(method_config, f.name)
        for f in dataclasses.fields(method_config)
        if getattr(method_config, f.name) != getattr(method_cls.Config(), f.name)
    }
    return step, f"batch {pretrain.batch_size}, method {changed}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (after one warm-up)")
    parser.add_argument("--candidate", action="append", default=[], help="extra DISCOVER --set items to time")
    parser.add_argument("--skip-harness-only", action="store_true", help="leave out the slow un-overridden DISCOVER")
    args = parser.parse_args()

    setups = [
        Setup("videomae quick", "videomae", []),
        Setup("discover, harness quick profile only", "discover", undo_plugin_overrides("discover")),
        Setup("discover quick (plugin overrides)", "discover", []),
    ]
    if args.skip_harness_only:
        del setups[1]
    setups += [Setup(f"candidate {i}", "discover", c.split()) for i, c in enumerate(args.candidate, 1)]
    runners = []
    for setup in setups:
        runner, description = step_runner(setup)
        print(f"{setup.label}: {description}", flush=True)
        runners.append(runner)
    wall: list[list[float]] = [[] for _ in setups]
    cpu: list[list[float]] = [[] for _ in setups]
    for index in range(args.steps + 1):
        for runner, walls, cpus in zip(runners, wall, cpu, strict=True):
            start, start_cpu = time.perf_counter(), time.process_time()
            runner(index)
            if index > 0:
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - start_cpu)
    wall_medians = [statistics.median(seconds) for seconds in wall]
    cpu_medians = [statistics.median(seconds) for seconds in cpu]
    threads = torch.get_num_threads()
    print(f"\ntorch threads {threads}, {args.steps} timed steps each, medians; ratios to {setups[0].label}")
    print(f"{'':40s} {'wall s/step':>11s} {'(min)':>7s} {'ratio':>6s} {'cpu s/step':>11s} {'ratio':>6s}")
    for i, setup in enumerate(setups):
        print(
            f"{setup.label:40s} {wall_medians[i]:11.3f} {min(wall[i]):7.3f} {wall_medians[i] / wall_medians[0]:6.2f}"
            f" {cpu_medians[i]:11.3f} {cpu_medians[i] / cpu_medians[0]:6.2f}"
        )


if __name__ == "__main__":
    main()
