"""build-index peak memory against the number of images: it should not grow beyond the index.

Runs build-index (indexes.build.incremental.build_index + FeatureExtractor, --weights imagenet) in a fresh
subprocess per size on small JPEGs (640x480) and prints the peak RSS of that process and of its
DataLoader workers (getrusage of the reaped children), with the index's size on disk.

    python benchmarks/extract_memory.py --sizes 50 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
from indexes.build.incremental import build_index
from retrieval.config import ExtractConfig
from retrieval.features import FeatureExtractor
paths = sys.argv[2:]
report = build_index(sys.argv[1], paths, FeatureExtractor.load("imagenet", config=ExtractConfig(64, 2, "cpu")))
assert report.extracted == len(paths)
"""


def small_photos(n: int) -> list[str]:
    folder = Path(tempfile.gettempdir()) / "retrieve-bench-small"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{i:05d}.jpg"
        if not p.exists():
            Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(str(p))
    return paths


def peak_rss_mib(n: int, env: dict) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as index_dir:
        proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT)), index_dir,
                                 *small_photos(n)], env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"build-index of {n} images failed")
        size = sum(f.stat().st_size for f in Path(index_dir).rglob("*") if f.is_file())
    return usage.ru_maxrss / 1024, size  # ru_maxrss: KiB on Linux; the largest single process


def main() -> None:
    from extract_throughput import fake_imagenet_weights, scratch_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    args = ap.parse_args()
    torch_home = scratch_dir("retrieve-bench-torch-")
    fake_imagenet_weights(torch_home)
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    print(f"{'images':>8}{'peak RSS MiB':>14}{'index MiB':>11}")
    for n in args.sizes:
        rss, size = peak_rss_mib(n, env)
        print(f"{n:>8}{rss:>14.0f}{size / 2**20:>11.1f}")


if __name__ == "__main__":
    main()
