"""Search speed, recall@10 and bytes per vector: exact flat FAISS, compressed IVF indexes
(PQ codes, PCA + SQ8, PQ re-ranked by a Refine stage), numpy brute force.

Synthetic fc7-like data (4096-d, non-negative, clustered: ReLU of a Gaussian mixture), the
same vectors and queries for every method, measured in one run. Prints one table. Every
index is made, trained and filled by the tool's own code (indexes.store.faiss_ops), so a factory
string here behaves as `retrieve build-index --factory` would build it.

    python benchmarks/search.py --n 20000                   # a few minutes on 2 CPU cores
    python benchmarks/search.py                             # n=100k, ~1.6 GB of vectors, ~20 min
    python benchmarks/search.py --factory "PCA256,IVF1024,SQ8" --nprobe 4 8 16
    python benchmarks/search.py --index my-flat-index     # your own photos' fc7 vectors
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from indexes.evaluation.metrics import recall_at_k_vs_exact  # noqa: E402
from indexes.store import faiss_ops  # noqa: E402

DIM = 4096  # fc7 (Krizhevsky et al. 2012, section 6.1)
K = 10
CLUSTERS = 200  # "categories" in the synthetic collection
LATENT = 64  # intrinsic dimension of the synthetic vectors
QUERY_NOISE = 0.1  # queries: database vectors moved by this much noise per dimension
BLOCK = 4096  # database rows per numpy matmul block (bounds the temporary (nq, BLOCK) matrix)


def synthetic(n: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """xb (n, DIM) and xq (nq, DIM) float32, fc7-like: non-negative, clustered, and of low
    intrinsic dimension (ReLU of a LATENT-d Gaussian mixture seen through a random map), so
    that near neighbours are meaningfully nearer than the rest, as with real images."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, LATENT), dtype=np.float32) * 2
    A = rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT)
    xb = np.empty((n, DIM), np.float32)
    for start in range(0, n, BLOCK):  # chunked: no (n, DIM) temporaries
        stop = min(n, start + BLOCK)
        z = centres[rng.integers(0, CLUSTERS, stop - start)]
        z += rng.standard_normal(z.shape, dtype=np.float32)
        xb[start:stop] = np.maximum(z @ A, 0)
    picks = rng.choice(n, nq, replace=False)
    xq = np.maximum(xb[picks] + QUERY_NOISE * rng.standard_normal((nq, DIM), dtype=np.float32), 0)
    return xb, np.ascontiguousarray(xq)


def from_index(folder: str, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of a Flat index made by `retrieve build-index`: nq of them, drawn at random,
    become the queries and leave the database (so no query finds itself)."""
    from indexes.store.store import open_for_reading

    store = open_for_reading(folder)
    try:
        flat = faiss.downcast_index(store.load_index().index)  # IDMap2 around the vectors
        if not isinstance(flat, faiss.IndexFlat):
            sys.exit(f"{folder}: --index needs a Flat index (exact vectors), not {type(flat).__name__}")
        x = flat.reconstruct_n(0, flat.ntotal)
    finally:
        store.close()
    held_out = np.zeros(len(x), bool)
    held_out[np.random.default_rng(seed).choice(len(x), nq, replace=False)] = True
    return np.ascontiguousarray(x[~held_out]), np.ascontiguousarray(x[held_out])


def numpy_search(xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN by ||q||^2 + ||x||^2 - 2 q.x, block by block, top-k by argpartition."""
    q2 = (xq ** 2).sum(1)[:, None]  # (nq, 1)
    best_d = np.full((len(xq), k), np.inf, np.float32)
    best_i = np.full((len(xq), k), -1, np.int64)
    for start in range(0, len(xb), BLOCK):
        block = xb[start:start + BLOCK]
        d = q2 + (block ** 2).sum(1)[None, :] - 2 * xq @ block.T  # (nq, b)
        d = np.concatenate([best_d, d], 1)
        i = np.concatenate([best_i, np.arange(start, start + len(block))[None, :].repeat(len(xq), 0)], 1)
        top = np.argpartition(d, k - 1, axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(d, top, 1), np.take_along_axis(i, top, 1)
    order = np.argsort(best_d, axis=1)
    return np.take_along_axis(best_d, order, 1), np.take_along_axis(best_i, order, 1)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def bytes_per_vector(index: faiss.Index) -> float:
    """The whole serialized index (codes, ids, centroids, codebooks) over its vectors."""
    return len(faiss.serialize_index(index)) / index.ntotal


def code_bytes(index: faiss.Index) -> int:
    """Bytes stored per vector, asymptotically: its codes (both stages of a Refine) plus its
    8-byte id."""
    refine = faiss_ops.refine_stage(index)
    if refine is not None:
        return code_bytes(refine.base_index) + faiss.downcast_index(refine.refine_index).code_size
    ivf = faiss.try_extract_index_ivf(index)
    return (ivf.code_size if ivf is not None else faiss.downcast_index(index.index).code_size) + 8


def default_factories(nlist: int) -> list[str]:
    """IVF alone (exact vectors in the lists), then compressed codes: what each costs in recall."""
    return [f"IVF{nlist},Flat",
            f"IVF{nlist},PQ64",  # 64-byte PQ codes straight on 4096-d
            f"PCA256,IVF{nlist},SQ8",  # PCA to 256-d, 8-bit scalar codes: 256 bytes
            f"IVF{nlist},PQ64,Refine(SQ8)"]  # PQ64 short list re-ranked with 4096-byte codes


def ivf_rows(factory: str, xb: np.ndarray, xq: np.ndarray, I_exact: np.ndarray, nprobes) -> list:
    """Train, fill and search ``factory`` at each nprobe: one table row per nprobe."""
    index = faiss_ops.make_index(factory, DIM)
    train_n = min(len(xb), faiss_ops.MAX_TRAIN_VECTORS)
    spread = np.linspace(0, len(xb) - 1, train_n).astype(int)  # as build-index samples them
    t_train, _ = timed(faiss_ops.train, index, xb[spread], factory)
    faiss_ops.add(index, xb, np.arange(len(xb)))
    print(f"{factory}: trained on {train_n} vectors in {t_train:.1f} s", flush=True)
    rows = []
    for nprobe in nprobes:
        faiss_ops.set_nprobe(index, nprobe)
        t, (_, I) = timed(faiss_ops.search, index, xq, K)
        k_factor = faiss_ops.refine_k_factor(index)
        setting = f"{nprobe}" + (f", kf {k_factor:g}" if k_factor else "")
        rows.append((f"faiss {factory}", len(xq) / t, recall_at_k_vs_exact(I, I_exact, K),
                     code_bytes(index), bytes_per_vector(index), setting))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="database vectors")
    p.add_argument("--index", help="use the fc7 vectors of this Flat index (from build-index) "
                   "instead of synthetic ones; --nq of them are held out as queries")
    p.add_argument("--nq", type=int, default=200, help="queries")
    p.add_argument("--nlist", type=int, default=0,
                   help="IVF lists of the default factories (0: ~4 sqrt(n), a power of 2)")
    p.add_argument("--factory", nargs="+", help="FAISS factory strings to measure "
                   "(default: IVF,Flat; IVF,PQ64; PCA256,IVF,SQ8; IVF,PQ64,Refine(SQ8))")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32])
    p.add_argument("--threads", type=int, default=0, help="FAISS threads (0: all)")
    args = p.parse_args(argv)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    xb, xq = from_index(args.index, args.nq) if args.index else synthetic(args.n, args.nq)
    n = len(xb)
    nlist = args.nlist or 2 ** round(math.log2(4 * math.sqrt(n)))  # FAISS's guideline
    ids = np.arange(n)
    source = f"fc7 vectors of {args.index}" if args.index else "synthetic fc7-like vectors"
    print(f"n={n} d={DIM} nq={args.nq} k={K} threads={faiss.omp_get_max_threads()} ({source})",
          flush=True)

    t_np, (_, I_np) = timed(numpy_search, xb, xq, K)
    rows = [("numpy brute force", args.nq / t_np, 1.0, DIM * 4, DIM * 4.0, "-")]

    flat = faiss_ops.make_index("Flat", DIM)
    faiss_ops.add(flat, xb, ids)
    t_flat, (_, I_flat) = timed(faiss_ops.search, flat, xq, K)
    rows.append(("faiss Flat (exact)", args.nq / t_flat, recall_at_k_vs_exact(I_flat, I_np, K),
                 code_bytes(flat), bytes_per_vector(flat), "-"))
    del flat

    for factory in args.factory or default_factories(nlist):
        rows += ivf_rows(factory, xb, xq, I_np, args.nprobe)
    print_table(rows, numpy_qps=rows[0][1], flat_qps=rows[1][1])


def print_table(rows, numpy_qps: float, flat_qps: float) -> None:
    """One row per method and setting; recall@10 is against numpy's exact neighbours."""
    print(f"\n{'method':<36}{'nprobe':>10}{'queries/s':>11}{'x numpy':>9}{'x Flat':>8}"
          f"{'recall@10':>11}{'code+id B':>11}{'file B/vector':>15}")
    for name, qps, recall, code, bpv, setting in rows:
        print(f"{name:<36}{setting:>10}{qps:>11.1f}{qps / numpy_qps:>9.2f}{qps / flat_qps:>8.1f}"
              f"{recall:>11.3f}{code:>11}{bpv:>15.1f}")


if __name__ == "__main__":
    main()
