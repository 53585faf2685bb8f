"""Time the kNN protocol's FAISS search against scikit-learn's brute-force cosine neighbours.

All searches return the top-k cosine neighbours of every query; the script checks that they agree
(recall@k against the protocol's search) and prints speed ratios measured in this run, in wall-clock time
and in process CPU time (CPU time is the steadier figure when other processes share the cores). Rows:
the protocol's ``cosine_topk`` (the path ``run_knn`` uses), plain FAISS with its default BLAS block (to
check the block-size tuning), and scikit-learn ``NearestNeighbors(algorithm='brute')`` with the cosine
metric and with the Euclidean metric on unit vectors (same neighbours). Features are clustered Gaussians so
that neighbourhoods are not near-ties.

    python benchmarks/knn_faiss_vs_sklearn.py [--bank 100000] [--dim 384] [--queries 2000] [--k 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import faiss
import numpy as np
from sklearn.neighbors import NearestNeighbors

from echobench.protocols.knn import cosine_topk, faiss_gpu_available

Search = Callable[[], np.ndarray]


def clustered_features(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    labels = rng.integers(0, len(centres), n)
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def faiss_default_block(bank: np.ndarray, queries: np.ndarray, k: int) -> Search:
    def search() -> np.ndarray:
        b, q = unit(bank), unit(queries)
        index = faiss.IndexFlatIP(b.shape[1])
        index.add(b)
        return index.search(q, k)[1]

    return search


def sklearn_search(metric: str, bank: np.ndarray, queries: np.ndarray, k: int) -> Search:
    def search() -> np.ndarray:
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(bank)
        return nn.kneighbors(queries, return_distance=False)

    return search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = 2.0 * rng.normal(size=(50, args.dim))
    bank = clustered_features(args.bank, args.dim, rng, centres)
    queries = clustered_features(args.queries, args.dim, rng, centres)
    k = args.k

    protocol = "FAISS cosine_topk (protocol path)"
    searches: dict[str, Search] = {
        protocol: lambda: cosine_topk(bank, queries, k)[1],
        "FAISS IndexFlatIP, default BLAS block": faiss_default_block(bank, queries, k),
        "scikit-learn brute, metric=cosine": sklearn_search("cosine", bank, queries, k),
        "scikit-learn brute, euclidean on unit vectors": sklearn_search("euclidean", unit(bank), unit(queries), k),
    }
    # Rounds alternate the searches so that load from other processes hits all alike; best of the rounds.
    wall: dict[str, list[float]] = {name: [] for name in searches}
    cpu: dict[str, list[float]] = {name: [] for name in searches}
    neighbours: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, search in searches.items():
            w0, c0 = time.perf_counter(), time.process_time()
            neighbours[name] = search()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)

    device = "GPU" if faiss_gpu_available() else "CPU"
    print(
        f"bank {args.bank} x {args.dim}, {args.queries} queries, k = {k}, protocol FAISS on {device}, "
        f"best of {args.repeats} alternating rounds; ratio = time / protocol time"
    )
    ref_wall, ref_cpu = min(wall[protocol]), min(cpu[protocol])
    print(f"{'search':48s} {'wall s':>8s} {'ratio':>7s} {'cpu s':>8s} {'ratio':>7s} {'recall@k':>9s}")
    for name in searches:
        recall = np.mean(
            [np.intersect1d(a, b).size / k for a, b in zip(neighbours[protocol], neighbours[name], strict=True)]
        )
        w, c = min(wall[name]), min(cpu[name])
        print(f"{name:48s} {w:8.3f} {w / ref_wall:6.2f}x {c:8.3f} {c / ref_cpu:6.2f}x {recall:9.5f}")


if __name__ == "__main__":
    main()
