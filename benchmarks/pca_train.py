#!/usr/bin/env python3
"""Training the PCA in front of a `--factory PCA256,...` index: FAISS's PCAMatrix::train (its
eigenvectors by LAPACK's dsyev) beside `faiss_ops.train_transform` (numpy's eigh,
divide-and-conquer) on the same fc7-like vectors, in one run: seconds, the ratio, and how far
apart the two projections put the same vectors (distances between projected vectors, relative).

    python benchmarks/pca_train.py                     # 8,192 vectors of 4096-d to 256
    python benchmarks/pca_train.py --n 32768 --out 512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402

from indexes.store import faiss_ops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192, help="training vectors")
    ap.add_argument("--dim", type=int, default=4096, help="their dimension (fc7: 4096)")
    ap.add_argument("--out", type=int, default=256, help="the PCA's output dimension")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    # fc7-like: ReLU'd, with a decaying spectrum (a few directions carry most of the variance)
    mix = rng.standard_normal((args.dim, args.dim)).astype(np.float32)
    mix *= np.geomspace(1, 0.01, args.dim, dtype=np.float32)[:, None]
    x = np.maximum(rng.standard_normal((args.n, args.dim)).astype(np.float32) @ mix, 0)
    times, projected = {}, {}
    for name in ("FAISS PCAMatrix.train (dsyev)", "train_transform (numpy eigh)"):
        pca = faiss.PCAMatrix(args.dim, args.out)
        start = time.perf_counter()
        pca.train(x) if name.startswith("FAISS") else faiss_ops.train_transform(pca, x)
        times[name] = time.perf_counter() - start
        projected[name] = pca.apply(x[:256])
    print(f"{args.n} vectors of {args.dim}-d to {args.out}; faiss threads "
          f"{faiss.omp_get_max_threads()}")
    print(f"{'method':<34}{'seconds':>10}")
    for name, s in times.items():
        print(f"{name:<34}{s:>10.1f}")
    a, b = projected.values()
    gaps = [((y[:, None] - y[None]) ** 2).sum(-1) for y in (a, b)]
    theirs, ours = times.values()
    print(f"{'ratio (FAISS / ours)':<34}{theirs / ours:>10.1f}")
    print(f"{'distances apart (max, relative)':<34}"
          f"{np.abs(gaps[0] - gaps[1]).max() / gaps[0].max():>10.1e}")


if __name__ == "__main__":
    main()
