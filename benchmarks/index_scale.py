"""Indexes larger than memory: an IVF index with its inverted lists on disk (build-index
--on-disk) against the same index in memory, at 1M and 10M synthetic fc7-like vectors.

Each (size, kind) is built in its own process, so that its peak RSS is its own. The vectors
are generated chunk by chunk (never all in memory) and streamed into the code build-index
commits with (indexes.store.faiss_ops: the same training sample size, the same adds; for --on-disk
``fill_on_disk``, parts of ON_DISK_PART_BYTES merged into one .ivfdata file), skipping
build-index's staging of raw vectors (16 KB per image: 160 GB at 10M, more than this disk).
The queries are held-out vectors of the same distribution; recall@10 is against exact search
over every vector, computed while the first build streams them (and not counted in its time).
Peak RSS counts the mapped files the page cache holds (the on-disk merge streams through
them); peak anon is the heap alone, what the machine must really have.

    python benchmarks/index_scale.py                       # 1M and 10M: about 45 min on 2 cores
    python benchmarks/index_scale.py --sizes 200000 --factory PCA128,IVF1024,SQ8
    python benchmarks/index_scale.py --sizes 1000000 --kinds "in memory" build-index
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from extract_throughput import scratch_dir  # noqa: E402

from indexes.config import DEFAULT_NPROBE  # noqa: E402
from indexes.evaluation.metrics import recall_at_k_vs_exact  # noqa: E402
from indexes.store import faiss_ops, files  # noqa: E402

DIM, K, NQ = 4096, 10, 200
CHUNK = 16_384  # vectors generated (and added) at a time: 256 MiB
CLUSTERS, LATENT = 200, 64  # as benchmarks/search.py: clustered, of low intrinsic dimension


class Vectors:
    """fc7-like vectors (ReLU of a LATENT-d Gaussian mixture through a random map, as
    search.py's), row chunks reproducible from their number alone."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.centres = rng.standard_normal((CLUSTERS, LATENT), dtype=np.float32) * 2
        self.A = rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT)

    def chunk(self, n: int, key) -> np.ndarray:
        rng = np.random.default_rng(key)
        z = self.centres[rng.integers(0, CLUSTERS, n)]
        z += rng.standard_normal(z.shape, dtype=np.float32)
        return np.maximum(z @ self.A, 0)

    def stream(self, n: int, timer: dict):
        """(vectors, ids) chunks of rows 0..n; the generating time goes to timer['generate']."""
        for start in range(0, n, CHUNK):
            t = time.perf_counter()
            x = self.chunk(min(CHUNK, n - start), (1, start))
            timer["generate"] += time.perf_counter() - t
            yield x, np.arange(start, start + len(x), dtype=np.int64)


class PeakAnon(threading.Thread):
    """The largest anonymous resident memory (RssAnon: the heap, not the mapped files the
    page cache may drop) this process reaches, sampled every 0.1 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib, self.running = 0, True
        self.start()

    def run(self) -> None:
        while self.running:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            time.sleep(0.1)

    def stop(self) -> float:
        self.running = False
        return self.peak_kib / 1024


class Exact:
    """The exact k nearest rows of ``xq`` among every chunk it is shown, kept as they stream."""

    def __init__(self, xq: np.ndarray) -> None:
        self.xq = xq
        self.D = np.full((len(xq), K), np.inf, np.float32)
        self.I = np.full((len(xq), K), -1, np.int64)

    def see(self, x: np.ndarray, ids: np.ndarray) -> None:
        d2 = (self.xq ** 2).sum(1)[:, None] + (x ** 2).sum(1)[None, :] - 2 * self.xq @ x.T
        D = np.concatenate([self.D, d2], axis=1)
        I = np.concatenate([self.I, np.broadcast_to(ids, d2.shape)], axis=1)
        top = np.argsort(D, axis=1, kind="stable")[:, :K]
        self.D, self.I = np.take_along_axis(D, top, 1), np.take_along_axis(I, top, 1)


def one(n: int, kind: str, factory: str, work: Path) -> dict:
    """Build one index of ``n`` vectors in this process; its figures."""
    anon = PeakAnon()
    source = Vectors()
    xq = source.chunk(NQ, (2, 0))  # held out: never in the index
    truth_path = work / f"truth-{n}.npy"
    if kind == "build-index":  # the whole command's path: files, staging, SQLite, commit
        return through_build_index(n, factory, work / f"build-index-{n}", source, xq, truth_path,
                                   anon)
    exact = None if truth_path.exists() else Exact(xq)
    timer = {"generate": 0.0, "truth": 0.0}
    start = time.perf_counter()
    index = faiss_ops.make_index(factory, DIM)
    sample = min(n, faiss_ops.MAX_TRAIN_VECTORS)  # what build-index trains on
    faiss_ops.train(index, source.chunk(sample, (3, 0)), factory)
    trained = time.perf_counter() - start

    def batches():
        for x, ids in source.stream(n, timer):
            if exact is not None:
                t = time.perf_counter()
                exact.see(x, ids)
                timer["truth"] += time.perf_counter() - t
            yield x, ids

    folder = work / f"{kind.replace(' ', '-')}-{n}"
    folder.mkdir()
    if kind == "on disk":
        index = faiss_ops.fill_on_disk(index, batches(), files.lists_file(folder, 1),
                                       folder / "parts")
    else:
        for x, ids in batches():
            faiss_ops.add(index, x, ids)
    faiss_ops.write(index, files.index_file(folder, 1))
    seconds = time.perf_counter() - start - timer["generate"] - timer["truth"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_anon = anon.stop()
    del index
    if exact is not None:
        np.save(truth_path, exact.I)
    on_disk = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())

    searched = faiss_ops.read(files.index_file(folder, 1), mmap=True)  # as query opens it
    faiss_ops.set_nprobe(searched, DEFAULT_NPROBE)
    faiss_ops.search(searched, xq[:10], K)  # touch the quantizer and transform once
    t = time.perf_counter()
    _, I = faiss_ops.search(searched, xq, K)
    qps = NQ / (time.perf_counter() - t)
    recall = recall_at_k_vs_exact(I, np.load(truth_path), K)
    return {"n": n, "kind": kind, "build_s": seconds, "train_s": trained, "peak_mib": peak,
            "anon_mib": peak_anon, "bytes": on_disk, "qps": qps, "recall": recall,
            "generate_s": timer["generate"], "truth_s": timer["truth"]}


class Extractor:
    """build-index's extractor over ``n`` numbered files: row i of Vectors.stream(n) for the
    file named i, whichever files a call asks for (the build embeds a training sample, then a
    round of files at a time), each CHUNK made as the stream makes it."""

    def __init__(self, source: Vectors, identity: dict, n: int) -> None:
        self.source, self._identity, self.n = source, identity, n

    def identity(self) -> dict:
        return self._identity

    def embed(self, paths):
        for start in range(0, len(paths), CHUNK):
            rows = np.array([int(Path(p).name) for p in paths[start:start + CHUNK]])
            x = np.empty((len(rows), DIM), np.float32)
            for b in np.unique(rows // CHUNK):
                mine = rows // CHUNK == b
                first = int(b) * CHUNK
                x[mine] = self.source.chunk(min(CHUNK, self.n - first), (1, first))[
                    rows[mine] - first]
            yield list(range(start, start + len(rows))), x, []


def through_build_index(n: int, factory: str, folder: Path, source: Vectors, xq: np.ndarray,
                        truth_path: Path, anon: PeakAnon) -> dict:
    """`build-index --on-disk` of ``n`` files (one per vector, never decoded), staged and
    committed as the command does; the time includes staging the raw vectors."""
    from indexes.build.incremental import build_index
    from indexes.config import BuildConfig
    from indexes.store.store import open_for_reading

    photos = folder.parent / f"files-{n}"
    photos.mkdir()
    folder.mkdir()
    paths = [photos / f"{i:08d}" for i in range(n)]
    for i, p in enumerate(paths):
        p.write_bytes(b"%d" % i)
    identity = {"weights": "synthetic", "sha256": "0" * 64, "layer": "fc7", "dim": DIM,
                "transform": {}, "model": {}}
    start = time.perf_counter()
    build_index(folder, paths, Extractor(source, identity, n),
                BuildConfig(factory, on_disk=True))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_anon = anon.stop()
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    store = open_for_reading(folder)
    store.search(xq[:10], K)
    t = time.perf_counter()
    _, I = store.search(xq, K)
    qps = NQ / (time.perf_counter() - t)
    items = store.items()  # ids are the build's: the sample's files first
    row = np.full(max(item.id for item in items.values()) + 1, -1, np.int64)
    for path, item in items.items():
        row[item.id] = int(Path(os.fsdecode(path)).name)
    recall = recall_at_k_vs_exact(np.where(I >= 0, row[np.maximum(I, 0)], -1),
                                  np.load(truth_path), K)
    store.close()
    return {"n": n, "kind": "build-index", "build_s": seconds, "train_s": float("nan"),
            "peak_mib": peak, "anon_mib": peak_anon, "bytes": on_disk, "qps": qps,
            "recall": recall, "generate_s": float("nan"), "truth_s": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 10_000_000])
    ap.add_argument("--factory", default="PCA256,IVF4096,SQ8")
    ap.add_argument("--kinds", nargs="+", default=["in memory", "on disk"],
                    help="also: build-index (the whole command, staging included: 16 KB of "
                         "disk per vector while it runs)")
    ap.add_argument("--one", nargs=3, metavar=("N", "KIND", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n, kind, work = args.one
        print(json.dumps(one(int(n), kind, args.factory, Path(work))), flush=True)
        return

    work = scratch_dir("retrieve-bench-scale-")
    print(f"factory {args.factory}, {DIM}-d, nprobe {DEFAULT_NPROBE}, {NQ} held-out queries, "
          f"k={K}; on-disk parts of {faiss_ops.ON_DISK_PART_BYTES >> 20} MiB\n")
    print(f"{'vectors':>10}  {'index':<12}{'build s':>9}{'train s':>9}{'peak RSS MiB':>14}"
          f"{'peak anon MiB':>15}{'bytes/vector':>14}{'queries/s':>11}{'recall@10':>11}",
          flush=True)
    rows = {}
    for n in args.sizes:
        for kind in args.kinds:
            done = subprocess.run([sys.executable, __file__, "--factory", args.factory,
                                   "--one", str(n), kind, str(work)],
                                  capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(f"{n:>10}  {kind:<12}failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows[n, kind] = r
            print(f"{n:>10}  {kind:<12}{r['build_s']:>9.0f}{r['train_s']:>9.0f}"
                  f"{r['peak_mib']:>14.0f}{r['anon_mib']:>15.0f}{r['bytes'] / n:>14.1f}"
                  f"{r['qps']:>11.0f}{r['recall']:>11.3f}", flush=True)
            for p in sorted(work.glob(f"*-{n}")):
                if p.is_dir():
                    subprocess.run(["rm", "-rf", str(p)])
    if len(args.sizes) > 1 and all((n, k) in rows for n in args.sizes[-2:] for k in args.kinds):
        a, b = args.sizes[-2:]
        for kind in args.kinds:
            ra, rb = rows[a, kind], rows[b, kind]
            print(f"\n{kind}: {b // a}x the vectors: build {rb['build_s'] / ra['build_s']:.1f}x, "
                  f"peak RSS {rb['peak_mib'] / ra['peak_mib']:.1f}x, "
                  f"peak anon {rb['anon_mib'] / ra['anon_mib']:.1f}x, "
                  f"{rb['build_s'] / b * 1e6:.0f} s per million vectors at {b:,}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
