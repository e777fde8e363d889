"""`retrieve query` latency for one image, before (torch) and after (ONNX Runtime), in one run.

The index is made through the library's own build path (indexes.build.incremental.build_index) with an
extractor that returns synthetic fc7-like vectors instead of running the network N times, and
the imagenet identity (a random-weights torchvision AlexNet file in a temporary TORCH_HOME), so
that `retrieve query` accepts it; then the fc7 network is exported into it as build-index does
(retrieval.onnx_export). Each repeat runs `python -m cli query` in a subprocess twice: with the
export moved aside (the query loads torch and torchvision: the way before) and with it (the
way after), checks that both print the same neighbours, and times each stage of both ways
in-process with perf_counter (imports, index open, model load, decode, forward, search, the
FAISS file being memory-mapped). Medians of --repeat.

    python benchmarks/query_latency.py --n 20000
    python benchmarks/query_latency.py --n 100000     # 1.6 GB of vectors, ~2x that on disk
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Each prints the seconds of: imports, index open, model load, decode + transform, forward,
# FAISS open, search (and the torch way, last, the model load that hashes the file again).
TORCH_STAGES = """
import time, sys
t0 = time.perf_counter()
from indexes.store import manifest
from indexes.store.store import neighbours, open_for_reading
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
ONNX_STAGES = """
import time, sys
t0 = time.perf_counter()
from indexes.store import manifest
from indexes.store.store import neighbours, open_for_reading
from retrieval.config import ExtractConfig
from retrieval.images import load_image
from retrieval.onnx_fc7 import INPUT, OUTPUT, eval_array, open_export
import onnxruntime
t1 = time.perf_counter()
store = open_for_reading(sys.argv[1]); t2 = time.perf_counter()
source, trusted = manifest.weights_ref(store.settings)
extractor = open_export(sys.argv[1], source, trusted, ExtractConfig(1, 0, "cpu"))
transform = extractor.description["transform"]
t3 = time.perf_counter()
x = eval_array(load_image(sys.argv[2], draft_size=transform["resize"]), transform)[None]
t4 = time.perf_counter()
xq = extractor.session.run([OUTPUT], {INPUT: x})[0]; t5 = time.perf_counter()
store.load_index(mmap=True); t6 = time.perf_counter()
neighbours(store, xq, 10, None); t7 = time.perf_counter()
print(t1-t0, t2-t1, t3-t2, t4-t3, t5-t4, t6-t5, t7-t6)
"""
STAGE_NAMES = ["imports (store, model side, faiss)", "index open (SQLite, settings)",
               "model load (stamp as recorded)", "decode + transform (draft mode)",
               "forward (fc7, 1 image)", "FAISS index open (memory-mapped)",
               "search k=10 + paths"]


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


def _run(args: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def _answers(text: str) -> list[tuple[str, float]]:
    """(path, distance) of each neighbour `retrieve query` printed."""
    rows = [line.split() for line in text.splitlines() if line.startswith(" ")]
    return [(r[2], float(r[1])) for r in rows]


def _row(name: str, before: float, after: float) -> str:
    return f"{name:<40}{before * 1e3:>12.0f}{after * 1e3:>12.0f}{before / after:>9.1f}x"


def main() -> None:
    from extract_throughput import fake_imagenet_weights, make_photos, scratch_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="vectors in the flat index")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    torch_home = scratch_dir("retrieve-bench-torch-")
    fake_imagenet_weights(torch_home)
    os.environ["TORCH_HOME"] = str(torch_home)
    from indexes.build.incremental import BuildConfig, build_index
    from retrieval.features import FeatureExtractor
    from retrieval.onnx_export import write_export
    from retrieval.onnx_fc7 import EXPORTS

    work = scratch_dir("retrieve-bench-query-")
    files, index = work / "files", work / "index"
    files.mkdir()
    paths = [files / f"{i:06d}.jpg" for i in range(args.n)]
    for p in paths:
        p.touch()  # the build stats them; the synthetic extractor never opens them
    extractor = FeatureExtractor.load("imagenet")
    t = time.perf_counter()
    build_index(index, paths, SyntheticExtractor(extractor.identity(), args.n),
                BuildConfig(factory="Flat"))
    built = time.perf_counter() - t
    size = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
    t = time.perf_counter()
    export = write_export(index, extractor.weights)
    exported = time.perf_counter() - t
    export_size = sum(f.stat().st_size for f in export.iterdir())
    image = str(make_photos(60)[0])  # a photo from extract_throughput's set

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    query = ["-m", "cli", "query", image, "-k", "10", "--index", str(index)]
    aside = work / "export-aside"
    startup, walls, stages = [], {"torch": [], "onnx": []}, {"torch": [], "onnx": []}
    for _ in range(args.repeat):
        startup.append(_run(["-c", "import cli.main"], env)[0])
        answers = {}
        for way, script in (("torch", TORCH_STAGES), ("onnx", ONNX_STAGES)):
            if way == "torch":
                os.rename(index / EXPORTS, aside)  # the way before: no export, torch answers
            try:
                wall, out = _run(query, env)
                walls[way].append(wall)
                answers[way] = _answers(out)
                out = _run(["-c", script, str(index), image], env)[1]
                stages[way].append([float(v) for v in out.split()])
            finally:
                if way == "torch":
                    os.rename(aside, index / EXPORTS)
        same = ([p for p, _ in answers["torch"]] == [p for p, _ in answers["onnx"]] and all(
            abs(a - b) <= 1e-4 * max(1.0, abs(a))
            for (_, a), (_, b) in zip(answers["torch"], answers["onnx"])))
        if not same or len(answers["onnx"]) != 10:
            sys.exit(f"the two ways answered differently:\n{answers}")
    med = {way: [statistics.median(s[i] for s in stages[way]) for i in range(len(stages[way][0]))]
           for way in stages}
    hashed = med["torch"].pop()  # not a stage of the query: the baseline of the recorded stamp
    start = statistics.median(startup)
    print(f"flat index of {args.n} x 4096 vectors ({size / 2**30:.2f} GiB on disk, built in "
          f"{built:.0f} s); ONNX export {export_size / 2**20:.0f} MiB, written in {exported:.1f} "
          f"s; median of {args.repeat}, CPU, {os.cpu_count()} cores; same 10 neighbours both ways")
    print(f"{'stage':<40}{'torch (ms)':>12}{'ONNX (ms)':>12}{'ratio':>10}")
    print(_row("python start-up + import cli.main", start, start))
    for name, before, after in zip(STAGE_NAMES, med["torch"], med["onnx"]):
        print(_row(name, before, after))
    print(_row("sum of stages + start-up", sum(med["torch"]) + start, sum(med["onnx"]) + start))
    print(_row("`python -m cli query` wall time", statistics.median(walls["torch"]),
               statistics.median(walls["onnx"])))
    print(f"\nbaseline: torch model load hashing the weights file again {hashed * 1e3:.0f} ms "
          f"({hashed / med['torch'][2]:.1f}x the load above)")


if __name__ == "__main__":
    main()
