"""`retrieve query` latency for one image on a flat index of N fc7 vectors, stage by stage.

The index is made through the library's own build path (indexes.build.build_index) with an
extractor that returns synthetic fc7-like vectors instead of running the network N times, and
the imagenet identity (a random-weights torchvision AlexNet file in a temporary TORCH_HOME), so
that `retrieve query` accepts it. Then: the wall time of `python -m cli query` in a subprocess,
and each stage timed in-process with perf_counter (imports, index open, model load, decode,
forward, search, the FAISS file being memory-mapped).

    python benchmarks/query_latency.py --n 20000
    python benchmarks/query_latency.py --n 100000     # 1.6 GB of vectors, ~2x that on disk
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

STAGES = """
import time, sys
t0 = time.perf_counter()
from indexes import manifest
from indexes.store import neighbours, open_for_reading
from retrieval.config import ExtractConfig
from retrieval.features import FeatureExtractor
from retrieval.images import load_image
t1 = time.perf_counter()
store = open_for_reading(sys.argv[1]); t2 = time.perf_counter()
source, trusted = manifest.weights_ref(store.settings)
extractor = FeatureExtractor.load(source, trusted, ExtractConfig(1, 0, "cpu"))
weights = extractor.weights
t3 = time.perf_counter()
FeatureExtractor.load(source, None, ExtractConfig(1, 0, "cpu"))  # baseline: no stamp recorded
t3h = time.perf_counter()
x = weights.transform(load_image(sys.argv[2], draft_size=weights.preprocess.resize_size))[None]
t4 = time.perf_counter()
xq = extractor._fc7(x); t5 = time.perf_counter()
store.load_index(mmap=True); t6 = time.perf_counter()
neighbours(store, xq, 10, None); t7 = time.perf_counter()
print(t1-t0, t2-t1, t3-t2, t4-t3h, t5-t4, t6-t5, t7-t6, t3h-t3)
"""


class SyntheticExtractor:
    """The real extractor's identity, fc7-like synthetic vectors (benchmarks/search.py)."""

    def __init__(self, identity: dict, n: int) -> None:
        from search import synthetic
        self._identity, self.xb = identity, synthetic(n, 1)[0]

    def identity(self) -> dict:
        return self._identity

    def embed(self, paths):
        for start in range(0, len(paths), 4096):
            stop = min(start + 4096, len(paths))
            yield list(range(start, stop)), self.xb[start:stop], []


def main() -> None:
    from extract_throughput import fake_imagenet_weights, make_photos, scratch_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="vectors in the flat index")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    torch_home = scratch_dir("retrieve-bench-torch-")
    fake_imagenet_weights(torch_home)
    os.environ["TORCH_HOME"] = str(torch_home)
    from indexes.build import BuildConfig, build_index
    from retrieval.features import FeatureExtractor

    work = scratch_dir("retrieve-bench-query-")
    files = work / "files"
    files.mkdir()
    paths = [files / f"{i:06d}.jpg" for i in range(args.n)]
    for p in paths:
        p.touch()  # the build stats them; the synthetic extractor never opens them
    identity = FeatureExtractor.load("imagenet").identity()
    t = time.perf_counter()
    build_index(work / "index", paths, SyntheticExtractor(identity, args.n), BuildConfig(factory="Flat"))
    built = time.perf_counter() - t
    size = sum(f.stat().st_size for f in (work / "index").rglob("*") if f.is_file())
    image = str(make_photos(60)[0])  # a photo from extract_throughput's set

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    walls, stages, startup = [], [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import cli.main"], cwd=ROOT, env=env, check=True)
        startup.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cli", "query", image, "-k", "10", "--index",
                        str(work / "index")], cwd=ROOT, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
        out = subprocess.run([sys.executable, "-c", STAGES, str(work / "index"), image], cwd=ROOT,
                             env=env, check=True, capture_output=True, text=True).stdout
        stages.append([float(v) for v in out.split()])
    best = [min(s[i] for s in stages) for i in range(8)]
    hashed = best.pop()  # not a stage of the query: the baseline of the recorded stamp
    names = ["imports (store, features, torch, faiss)", "index open (SQLite, settings)",
             "model load (stamp as recorded: no sha256)", "decode + transform (draft mode)",
             "forward (fc7, 1 image)", "FAISS index open (memory-mapped)", "search k=10 + paths"]
    print(f"flat index of {args.n} x 4096 vectors ({size / 2**30:.2f} GiB on disk, built in "
          f"{built:.0f} s); best of {args.repeat}, CPU, {os.cpu_count()} cores")
    print(f"{'stage':<44}{'ms':>9}")
    print(f"{'python start-up + import cli.main':<44}{min(startup) * 1e3:>9.0f}")
    for name, s in zip(names, best):
        print(f"{name:<44}{s * 1e3:>9.0f}")
    print(f"{'sum of stages + start-up':<44}{(sum(best) + min(startup)) * 1e3:>9.0f}")
    print(f"{'`python -m cli query` wall time':<44}{min(walls) * 1e3:>9.0f}")
    print(f"\nbaseline: model load hashing the weights file again    {hashed * 1e3:.0f} ms "
          f"({hashed / best[2]:.1f}x the load above)")


if __name__ == "__main__":
    main()
