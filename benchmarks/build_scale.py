"""build-index over millions of real files: peak memory, peak staging and time, this code beside
the code before bounded builds (one staging of every vector, the plan in Python lists).

Files: 2x2-pixel BMPs (70 bytes, the smallest images Pillow reads in the usual way), 1,000 a
folder, written once under the work folder and reused (the first N are the size-N set). The
network is a stand-in, a fixed random map of the picture's 2x2 mean colours to 4096 ReLU
units, inside the real ``FeatureExtractor``: the same DataLoader, decode and transform, the
same staging, training, on-disk commit and SQLite as `build-index --on-disk` (only the
forward pass is cheap). Each (code, size) runs in a process of its own; a thread samples its
resident memory, the staging folder and the whole index folder every SAMPLE_S seconds.

    python benchmarks/build_scale.py --sizes 1000000 3000000 --baseline 200000
    python benchmarks/build_scale.py --sizes 20000 60000 --baseline 20000 --factory PCA64,IVF64,SQ8

The float16 section builds the same trained index from float32 and from float16 copies of
synthetic fc7-like vectors (benchmarks/index_scale.py's) and measures recall@10 of each
against exact float32 search.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OLD_REV = "c6626a1"  # main before bounded builds (issue 27)
PER_FOLDER = 1000
SAMPLE_S = 0.5
DIM = 4096
BMP_BYTES = 70  # 14-byte file header, 40-byte info header, 2 rows of 6 pixel bytes + 2 padding


def bmp(pixels: bytes) -> bytes:
    """A 2x2 24-bit BMP of 12 pixel bytes (rows bottom-up, each padded to 4 bytes)."""
    head = b"BM" + struct.pack("<IHHI", BMP_BYTES, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return head + info + pixels[6:12] + b"\0\0" + pixels[0:6] + b"\0\0"


def make_files(folder: Path, n: int) -> list[Path]:
    """Folders of PER_FOLDER files holding at least ``n`` files (made once); those needed."""
    rng = np.random.default_rng(0)
    folders = []
    for k in range((n + PER_FOLDER - 1) // PER_FOLDER):
        sub = folder / f"{k:05d}"
        pixels = rng.integers(0, 256, (PER_FOLDER, 12), dtype=np.uint8)  # drawn even if made
        folders.append(sub)
        if (sub / f"{PER_FOLDER - 1:03d}.bmp").exists():
            continue
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(PER_FOLDER):
            (sub / f"{i:03d}.bmp").write_bytes(bmp(pixels[i].tobytes()))
    return folders


class Sampler(threading.Thread):
    """Peaks of this process's RSS and anonymous RSS and of two folders' bytes on disk."""

    def __init__(self, staging: Path, index: Path) -> None:
        super().__init__(daemon=True)
        self.staging, self.index, self.running = staging, index, True
        self.peak = {"rss": 0, "anon": 0, "staging": 0, "folder": 0}
        self.start()

    @staticmethod
    def _bytes(folder: Path) -> int:
        total = 0
        for dirpath, _, names in os.walk(folder):
            for name in names:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass  # renamed or removed meanwhile
        return total

    def run(self) -> None:
        while self.running:
            with open("/proc/self/status") as f:
                for line in f:
                    key = {"VmRSS:": "rss", "RssAnon:": "anon"}.get(line.split(":")[0] + ":")
                    if key:
                        self.peak[key] = max(self.peak[key], int(line.split()[1]) * 1024)
            self.peak["staging"] = max(self.peak["staging"], self._bytes(self.staging))
            self.peak["folder"] = max(self.peak["folder"], self._bytes(self.index))
            time.sleep(SAMPLE_S)


def stand_in_extractor(batch_size: int, workers: int):
    """The real FeatureExtractor with a cheap network: 2x2 mean colours -> ReLU(4096)."""
    import torch

    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor
    from retrieval.transforms import Preprocess
    from retrieval.weights import Weights

    @dataclass
    class StandInConfig:
        dim: int = DIM

    class StandIn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.register_buffer("A", torch.randn(12, DIM, generator=g))
            self.feature_dim, self.config = DIM, StandInConfig()

        @torch.inference_mode()
        def fc7(self, x):  # (b, 3, S, S) -> (b, DIM)
            z = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
            return torch.relu(z @ self.A)

    weights = Weights(StandIn(), Preprocess(image_size=8), "stand-in", "0" * 64)
    return FeatureExtractor(weights, ExtractConfig(batch_size, workers, "cpu"))


def one(code: str, n: int, work: Path, factory: str, commit_every: int, batch_size: int,
        workers: int) -> dict:
    """One build-index --on-disk of the first ``n`` files, in this process."""
    from indexes.build.incremental import build_index
    from indexes.config import BuildConfig
    try:
        from retrieval.walk import find_images
    except ImportError:  # the code before issue 25 (the old code)
        from retrieval.images import find_images

    folders = make_files(work / "files", n)
    index = work / f"index-{code}-{n}"
    shutil.rmtree(index, ignore_errors=True)
    sampler = Sampler(index / "staging", index)
    config = BuildConfig(factory, on_disk=True)
    if code == "new":
        config.commit_every = commit_every
    start, cpu = time.perf_counter(), os.times()
    report = build_index(index, find_images(folders), stand_in_extractor(batch_size, workers),
                         config)
    seconds, after = time.perf_counter() - start, os.times()
    cpu = sum(after[:4]) - sum(cpu[:4])  # this process and its ended DataLoader workers
    time.sleep(SAMPLE_S * 2)
    sampler.running = False
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    final = Sampler._bytes(index)
    shutil.rmtree(index)
    return {"code": code, "n": n, "seconds": seconds, "cpu": cpu, "total": report.total,
            "hwm": hwm, **sampler.peak, "final": final}


def precision(n: int = 30_000, factory: str = "PCA256,IVF256,SQ8") -> list[tuple]:
    """recall@10 against exact float32 search of one trained index filled with float32 and
    with float16 vectors (and of Flat from float16)."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import faiss

    from index_scale import Vectors
    from indexes.store import faiss_ops
    from indexes.evaluation.metrics import recall_at_k_vs_exact

    source = Vectors()
    xb, xq = source.chunk(n, (1, 0)), source.chunk(200, (2, 0))
    half = xb.astype(np.float16).astype(np.float32)
    _, truth = faiss_ops.exact_index(xb).search(xq, 10)
    rows = []
    for name in (factory, "Flat"):
        trained = faiss_ops.make_index(name, DIM)
        faiss_ops.train(trained, xb[::max(1, n // 10_000)], name)
        found = {}
        for kind, x in (("float32", xb), ("float16", half)):
            index = faiss.clone_index(trained)
            faiss_ops.add(index, x, np.arange(n))
            found[kind] = faiss_ops.search(index, xq, 10)[1]
        rows.append((name, recall_at_k_vs_exact(found["float32"], truth, 10),
                     recall_at_k_vs_exact(found["float16"], truth, 10),
                     recall_at_k_vs_exact(found["float16"], found["float32"], 10)))
    return rows


def run(code: str, n: int, work: Path, args, tree: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--one", code, str(n), str(work), "--factory", args.factory,
           "--commit-every", str(args.commit_every), "--batch-size", str(args.batch_size),
           "--workers", str(args.workers)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{code} {n}: failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], args) -> None:
    gb = 1e9
    print(f"\n{'code':<5}{'files':>10}{'seconds':>9}{'peak RSS GB':>13}{'peak anon GB':>14}"
          f"{'peak staging GB':>17}{'peak folder GB':>16}{'index GB':>10}")
    for r in rows:
        print(f"{r['code']:<5}{r['n']:>10}{r['seconds']:>9.0f}{r['hwm'] / gb:>13.2f}"
              f"{r['anon'] / gb:>14.2f}{r['staging'] / gb:>17.2f}{r['folder'] / gb:>16.2f}"
              f"{r['final'] / gb:>10.2f}")
    new = {r["n"]: r for r in rows if r["code"] == "new"}
    old = {r["n"]: r for r in rows if r["code"] == "old"}
    if args.baseline in new and args.baseline in old:
        a, b = new[args.baseline], old[args.baseline]
        print(f"\nat {args.baseline:,} files, new / old: time {a['seconds'] / b['seconds']:.2f}x, "
              f"peak RSS {a['hwm'] / b['hwm']:.2f}x, peak staging "
              f"{a['staging'] / max(b['staging'], 1):.2f}x, peak folder {a['folder'] / b['folder']:.2f}x")
    sizes = sorted(new)
    if len(sizes) >= 2:
        a, b = new[sizes[-2]], new[sizes[-1]]
        per = (b["n"] - a["n"]) / 1e6
        slope = {k: (b[k] - a[k]) / per for k in ("seconds", "hwm", "staging", "folder", "final")}
        print(f"\nnew, {a['n']:,} -> {b['n']:,} files: peak RSS {b['hwm'] / a['hwm']:.2f}x, peak "
              f"staging {b['staging'] / max(a['staging'], 1):.2f}x; per million files: "
              f"{slope['seconds']:.0f} s, RSS {slope['hwm'] / gb:+.3f} GB, staging "
              f"{slope['staging'] / gb:+.3f} GB, folder {slope['folder'] / gb:+.3f} GB, index "
              f"{slope['final'] / gb:+.3f} GB")
        far = 100e6
        left = (far - b["n"]) / 1e6
        print(f"projected at 100M files (this box): {(b['seconds'] + slope['seconds'] * left) / 3600:.1f} h, "
              f"peak RSS {(b['hwm'] + max(slope['hwm'], 0) * left) / gb:.2f} GB, peak folder "
              f"{(b['folder'] + slope['folder'] * left) / gb:.0f} GB, index "
              f"{(b['final'] + slope['final'] * left) / gb:.0f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 3_000_000])
    ap.add_argument("--baseline", type=int, default=200_000,
                    help="size built by both codes (the old one stages every vector: 16 KB each)")
    ap.add_argument("--old-rev", default=OLD_REV)
    ap.add_argument("--factory", default="PCA256,IVF1024,SQ8")
    ap.add_argument("--commit-every", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, help="where the files and indexes go (default: a "
                    "temporary folder, removed after; a given one is kept, files reused)")
    ap.add_argument("--no-precision", action="store_true")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        code, n, work = args.one
        print(json.dumps(one(code, int(n), Path(work), args.factory, args.commit_every,
                             args.batch_size, args.workers)), flush=True)
        return

    if not args.no_precision:
        print("float16 staging: recall@10 against exact float32 search, 30,000 fc7-like vectors")
        print(f"{'index':<22}{'float32':>9}{'float16':>9}{'f16 vs f32':>12}")
        for name, r32, r16, same in precision():
            print(f"{name:<22}{r32:>9.3f}{r16:>9.3f}{same:>12.3f}", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="retrieve-build-scale-", dir="/var/tmp"))
    old = work / "old-code"
    if not old.exists():
        old.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old_rev],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    print(f"\n{args.factory} --on-disk, {DIM}-d stand-in network, batches of {args.batch_size}, "
          f"{args.workers} decoding workers; new: rounds of {args.commit_every:,}; old: {args.old_rev}")
    rows = []
    for code, n, tree in [("old", args.baseline, old), ("new", args.baseline, ROOT),
                          *[("new", n, ROOT) for n in args.sizes if n != args.baseline]]:
        r = run(code, n, work, args, tree)
        if r is not None:
            rows.append(r)
            print(json.dumps(r), flush=True)
    table(rows, args)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
