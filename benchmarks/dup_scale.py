"""The scale test of benchmarks/duplicates.py (``--scale N``): synthetic fc7-like vectors
(benchmarks/search.py's) with planted near-duplicate pairs, stored through the library's build
path in a compressed index; time and peak memory of `retrieve duplicates` finding the groups
(no pixels to verify), beside imagededup's CNN find_duplicates on the same vectors as
encodings, at the sizes it gets through."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

DIM = 4096
PLANT_EVERY = 100  # row j is a near-copy of row j - 1 when j % PLANT_EVERY == 1
BLOCK = 82 * PLANT_EVERY  # rows generated at a time, each block from its own seed (a pair in one)
PLANT_NOISE = 0.02  # of the vectors' scale: the copies' distance


class PlantedExtractor:
    """fc7-like vectors (ReLU of a Gaussian mixture, as search.py's), each file's row by its
    name (its row number), generated block by block from the block's number, whatever files a
    call asks for (the build embeds a round's files at a time), with near-duplicate pairs
    planted; the imagenet identity."""

    def __init__(self, identity: dict, n: int) -> None:
        self._identity, self.n = identity, n
        self.centres = np.random.default_rng(0).standard_normal((64, DIM)).astype(np.float32)

    def identity(self) -> dict:
        return self._identity

    def _block(self, b: int) -> np.ndarray:
        rng = np.random.default_rng(b + 1)
        x = self.centres[rng.integers(0, 64, BLOCK)] + rng.standard_normal(
            (BLOCK, DIM), dtype=np.float32)
        for j in range(1, BLOCK, PLANT_EVERY):  # rows b * BLOCK + j, j % PLANT_EVERY == 1
            x[j] = x[j - 1] + PLANT_NOISE * rng.standard_normal(DIM)
        return np.maximum(x, 0)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.at(np.arange(start, stop))

    def at(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), DIM), np.float32)
        for b in np.unique(rows // BLOCK):
            mine = rows // BLOCK == b
            out[mine] = self._block(int(b))[rows[mine] - b * BLOCK]
        return out

    def embed(self, paths):
        for start in range(0, len(paths), BLOCK):
            stop = min(start + BLOCK, len(paths))
            rows = np.array([int(Path(p).name) for p in paths[start:stop]])
            yield list(range(start, stop)), self.at(rows), []


def peak_rss_mib(command: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, stdout) of a command run to its end."""
    t = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - t, int(done.stderr.strip().splitlines()[-1]) / 1024, done.stdout


def imagededup_cnn(x: np.ndarray) -> tuple[float, float]:
    """imagededup's CNN find_duplicates on ``x`` as encodings, in a subprocess capped at 8 GB
    of address space: (seconds, peak RSS MiB), or NaNs when it does not get through."""
    code = ("import logging, sys, numpy as np\n"
            "from imagededup.methods.cnn import CNN\n"
            "x = np.load(sys.argv[1], mmap_mode='r')\n"
            "cnn = CNN.__new__(CNN); cnn.verbose = False; cnn.logger = logging.getLogger()\n"
            "cnn.find_duplicates(encoding_map={str(i): v for i, v in enumerate(x)},\n"
            "                    min_similarity_threshold=0.99, num_sim_workers=0)\n")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"retrieve-bench-enc-{len(x)}.npy"
    np.save(path, x)
    try:
        return peak_rss_mib(["bash", "-c", f"ulimit -v {8 << 20}; exec {sys.executable} -c "
                             f"\"$0\" {path}", code], dict(os.environ))[:2]
    except subprocess.CalledProcessError:
        return float("nan"), float("nan")
    finally:
        path.unlink(missing_ok=True)


def scale(sizes: list[int], factory: str) -> None:
    import json

    from extract_throughput import fake_imagenet_weights, scratch_dir

    from indexes.build.incremental import build_index
    from indexes.config import BuildConfig
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    work = scratch_dir("retrieve-bench-dupscale-")
    fake_imagenet_weights(work / "torch")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": str(work / "torch")}
    os.environ["TORCH_HOME"] = str(work / "torch")
    identity = FeatureExtractor.load("imagenet", config=ExtractConfig(1, 0, "cpu")).identity()
    print(f"\n{'vectors':>9}  {'method':<42}{'seconds':>9}{'peak MiB':>10}  result", flush=True)
    for n in sizes:
        files = work / f"files-{n}"
        files.mkdir()
        paths = [files / f"{i:07d}" for i in range(n)]
        for i, p in enumerate(paths):
            p.write_bytes(b"%d" % i)  # distinct bytes: no exact copies (hashed, never decoded)
        source = PlantedExtractor(identity, n)
        t = time.perf_counter()
        build_index(work / f"index-{n}", paths, source, BuildConfig(factory=factory))
        built = time.perf_counter() - t
        planted = {(j - 1, j) for j in range(1, n) if j % PLANT_EVERY == 1}
        threshold = 2.5 * PLANT_NOISE * np.sqrt(DIM)  # the copies lie at about 1.3
        seconds, peak, out = peak_rss_mib(
            [sys.executable, "-m", "cli", "duplicates", "--index", str(work / f"index-{n}"),
             "--threshold", f"{threshold:.3f}", "--no-verify", "--json", "-q"], env)
        groups = json.loads(out)["groups"]
        found = {tuple(sorted(int(Path(m["path"]).name) for m in g["members"])) for g in groups}
        hit = len(found & planted)
        print(f"{n:>9}  {'retrieve duplicates (' + factory + ')':<42}{seconds:>9.0f}{peak:>10.0f}  "
              f"{hit}/{len(planted)} planted pairs, {len(found - planted)} other groups; "
              f"index built in {built:.0f} s", flush=True)
        for m in (1000, 10_000, 20_000, 40_000):
            if m > n:
                break
            s, peak = imagededup_cnn(source.rows(0, m))
            result = "ran out of 8 GB" if s != s else "the full similarity matrix"
            name = "imagededup CNN find_duplicates (encodings)"
            print(f"{m:>9}  {name:<42}{s:>9.0f}{peak:>10.0f}  {result}", flush=True)
        shutil.rmtree(files)
