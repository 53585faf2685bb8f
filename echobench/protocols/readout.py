"""Frozen readouts: the vector a frozen protocol reads from one encoded clip (``protocol.pool``).

Identical for every method, so a method is never favoured by how its features are pooled:

- ``encoder``: the plugin's own pooled vector (its CLS token, or the token mean, as the plugin defines it);
- ``mean``: the mean of the token grid ``(T', H', W', D)`` over space and time;
- ``motion``: the motion map alone (below), scaled to unit L2 norm: what moves, without what the image looks like;
- ``mean_std``: that mean, concatenated with the motion map: at every token location, the standard deviation of
  its token over ``T'`` averaged over channels (``H' × W'`` numbers). A mean over time discards motion; the map
  keeps how much, and where, the image changes over the clip (the cavity over the cardiac cycle). Each half is
  scaled to unit L2 norm so that neither dominates a cosine similarity.

``mean_std`` is the default of the frozen protocols, chosen on validation across methods: on SynthEcho ``ef``
(quick profile) the linear probe's validation R² was 0.005–0.08 with ``encoder``/``mean`` and 0.37–0.59 with
``mean_std`` for random init, VideoMAE and DISCOVER alike (``benchmarks/synthecho_signal.py --readouts``). A
channel-wise temporal SD (``D`` numbers, no map) was tried first and reached only 0.15–0.38 on the earlier
400-video SynthEcho: where the image changes matters, not only how much.
On that task the motion map alone scores higher on kNN validation for random init and DISCOVER and the same for
VideoMAE, but ``mean_std`` stays the default: a readout without the image's appearance would fail tasks that need it
(views, structure), and a default serves every task. ``motion`` is there to measure with.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from echobench.errors import UserError

Pool = Literal["encoder", "mean", "motion", "mean_std"]
POOLS: tuple[str, ...] = ("encoder", "mean", "motion", "mean_std")


def check_pool(protocol: str, pool: object) -> None:
    if pool not in POOLS:
        raise UserError(
            f"{protocol}: pool must be one of {', '.join(POOLS)}, got {pool!r}; e.g. --set protocol.pool=mean_std"
        )


def needs_tokens(pool: str) -> bool:
    return pool != "encoder"


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def grid_mean(tokens: np.ndarray) -> np.ndarray:
    """``(n, D)``: the mean of every clip's token grid ``(n, T', H', W', D)`` over time and space."""
    return np.asarray(tokens, dtype=np.float64).mean(axis=(1, 2, 3))


def motion_map(tokens: np.ndarray) -> np.ndarray:
    """``(n, H' · W')``: at every location, the population standard deviation over ``T'`` of each channel, averaged
    over the ``D`` channels; rows follow the grid in C order. Zero for a single time step."""
    spread = np.asarray(tokens, dtype=np.float64).std(axis=1).mean(axis=-1)
    return spread.reshape(len(spread), -1)


def readout(pool: str, pooled: np.ndarray, tokens: np.ndarray | None) -> np.ndarray:
    """The ``(n, D')`` float32 features of ``pool`` from the plugin's ``pooled`` ``(n, D)`` and its token grid."""
    if pool == "encoder":
        return np.asarray(pooled, dtype=np.float32)
    if tokens is None:
        raise ValueError(f"readout {pool!r} needs the token grid")
    # One float64 copy of the (float16) grid serves both halves.
    grid = np.asarray(tokens, dtype=np.float64)
    if pool == "mean":
        return grid_mean(grid).astype(np.float32)
    if pool == "motion":
        return _unit(motion_map(grid)).astype(np.float32)
    if pool == "mean_std":
        return np.concatenate([_unit(grid_mean(grid)), _unit(motion_map(grid))], axis=1).astype(np.float32)
    raise ValueError(f"unknown readout {pool!r}; use one of {', '.join(POOLS)}")
