"""`retrieve duplicates` against imagededup, in one run on the same files.

Quality, on two sets of pictures, each with five copies of every picture written as a
collection gathers them (resized to 40% and saved as JPEG, recompressed at JPEG quality 50,
cropped by 3% and 5% off two sides, brightened by 25%, a PNG of a JPEG); every pair within
a picture's six files is a true pair, every other pair a false one:

- photos: one file of each different picture among Debian's wallpapers (see --photos);
- similar scenes: frames of ViSP's video sequences (a camera before a scene, things moving),
  each at least 10 grey levels apart on average from the other frames kept of its sequence:
  different pictures that look alike, as burst shots do (see --scenes).

Precision and recall of the pairs our groups imply (every two files of one group), with the
pixel check's parts left out, beside imagededup's PHash, DHash and WHash at their defaults.

Scale: synthetic fc7-like vectors (benchmarks/search.py's) with planted near-duplicate pairs,
stored through the library's build path in a compressed index; time and peak memory of
finding the groups (no pixels to verify), beside imagededup's CNN find_duplicates on the
same vectors as encodings, at the sizes it gets through.

    apt-get install plasma-workspace-wallpapers mate-backgrounds ukui-wallpapers \
        lomiri-wallpapers visp-images-data                         # the pictures
    pip install --no-deps imagededup PyWavelets                    # the baseline, benchmark only
    python benchmarks/duplicates.py --weights imagenet
    python benchmarks/duplicates.py --scale 100000 1000000
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PHOTOS = ("/usr/share/wallpapers/*/contents/images", "/usr/share/backgrounds/mate/nature",
          "/usr/share/backgrounds")
SCENES = "/usr/share/visp-images-data/ViSP-images"
SEQUENCES = ("mbt/cube", "cube", "mbt-depth/castel/castel", "mbt-depth/Castle-simu/Images",
             "mire-2")
CHANGED = 10.0  # grey levels on average: two frames this different are different pictures


def originals(patterns) -> list[Path]:
    """The largest file of each wallpaper folder (the others are its resized copies), and
    each other picture once (one package ships another's under a second name)."""
    out, seen = [], set()
    for pattern in patterns:
        for folder in sorted(glob.glob(pattern)):
            files = [Path(p) for p in glob.glob(folder + "/*") if p.lower().endswith(
                (".jpg", ".jpeg", ".png"))]
            if "wallpapers" in folder:
                files = [max(files, key=lambda p: Image.open(p).size[0])] if files else []
            for path in sorted(files):
                with Image.open(path) as img:
                    pixels = hashlib.sha256(img.convert("RGB").tobytes()).hexdigest()
                if pixels not in seen:
                    seen.add(pixels)
                    out.append(path)
    return out


def write_copies(sources: list[Path], out: Path) -> dict[str, set[str]]:
    """Each original and five copies as files in ``out``: {group name: its file names}."""
    out.mkdir(parents=True, exist_ok=True)
    groups = {}
    for n, src in enumerate(sources):
        img = Image.open(src).convert("RGB")
        img.thumbnail((2048, 2048))  # the originals as a camera might give them
        w, h = img.size
        name = f"{n:03d}"
        made = {f"{name}-original.jpg": (img, "JPEG", {"quality": 95})}
        made[f"{name}-resized.jpg"] = (img.resize((int(w * 0.4), int(h * 0.4))), "JPEG",
                                       {"quality": 85})
        made[f"{name}-recompressed.jpg"] = (img, "JPEG", {"quality": 50})
        made[f"{name}-cropped.jpg"] = (img.crop((int(w * .03), int(h * .05), w, h)), "JPEG",
                                       {"quality": 90})
        made[f"{name}-brightened.jpg"] = (ImageEnhance.Brightness(img).enhance(1.25), "JPEG",
                                          {"quality": 90})
        made[f"{name}-png.png"] = (img, "PNG", {})
        for file, (im, fmt, opts) in made.items():
            if not (out / file).exists():
                im.save(out / file, fmt, **opts)
        groups[name] = set(made)
    return groups


def true_pairs(groups: dict[str, set[str]]) -> set[frozenset]:
    return {frozenset(p) for files in groups.values() for p in itertools.combinations(files, 2)}


def pairs_of(groups: list[list[str]]) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}


def score(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), hit / len(truth)


def ours(folder: Path, index: Path, weights: str, env: dict) -> tuple[list[list[str]], float, str]:
    """build-index, then ``ours_again`` with the defaults."""
    subprocess.run([sys.executable, "-m", "cli", "build-index", str(folder), "--index",
                    str(index), "--weights", weights, "--quiet"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    return ours_again(index, env, [])


def imagededup_groups(method: str, folder: Path) -> tuple[list[list[str]], float]:
    from imagededup import methods

    hasher = getattr(methods, method)(verbose=False)
    t = time.perf_counter()
    found = hasher.find_duplicates(image_dir=str(folder))
    seconds = time.perf_counter() - t
    return [[a, *dups] for a, dups in found.items() if dups], seconds


def scene_frames(root: str, sequences=SEQUENCES, per_sequence: int = 8, step: int = 4,
                 changed: float = CHANGED) -> list[Path]:
    """Frames of ViSP's video sequences (a camera, a scene, things moving), up to
    ``per_sequence`` of each, every ``step``-th frame considered: a frame is kept when its
    pixels differ from those of every frame kept of its sequence by ``changed`` grey levels
    on average: different pictures of one scene."""
    out = []
    for sequence in sequences:
        files = sorted(p for p in Path(root, sequence).glob("*")
                       if p.suffix.lower() in (".pgm", ".ppm", ".png", ".jpg"))
        kept: list[np.ndarray] = []
        for path in files[::step]:
            frame = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
            if all(np.abs(frame - k).mean() >= changed for k in kept):
                kept.append(frame)
                out.append(path)
            if len(kept) == per_sequence:
                break
    return out


def quality(args) -> None:
    from extract_throughput import fake_imagenet_weights, scratch_dir

    sets = [("photos", originals(args.photos)),
            ("similar scenes", scene_frames(args.scenes) if args.scenes else [])]
    if not sets[0][1]:
        sys.exit("no photos: apt-get install plasma-workspace-wallpapers mate-backgrounds, or "
                 "--photos 'DIR/*'")
    work = scratch_dir("retrieve-bench-dups-")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.weights == "imagenet" and not os.environ.get("TORCH_HOME"):
        fake_imagenet_weights(work / "torch")  # no network: random weights, ImageNet's shape
        env["TORCH_HOME"] = str(work / "torch")
    for name, sources in sets:
        if not sources:
            print(f"\n{name}: none (apt-get install visp-images-data)")
            continue
        folder = work / name.replace(" ", "-")
        truth = true_pairs(write_copies(sources, folder))
        print(f"\n{name}: {len(sources)} pictures and {5 * len(sources)} copies, "
              f"{len(truth)} true pairs among {len(list(folder.iterdir()))} files; weights "
              f"{args.weights}", flush=True)
        index = work / f"index-{folder.name}"
        rows = []
        groups, seconds, threshold = ours(folder, index, args.weights, env)
        rows.append(("retrieve duplicates", *score(pairs_of(groups), truth), seconds,
                     f"threshold {threshold}, pixels verified"))
        for label, extra, note in (
                ("  without the difference", ["--max-difference", "inf"],
                 "correlation alone (the saved checks reused)"),
                ("  without --verify", ["--no-verify"], "fc7 alone")):
            groups, seconds, _ = ours_again(index, env, extra)
            rows.append((label, *score(pairs_of(groups), truth), seconds, note))
        try:
            for method in ("PHash", "DHash", "WHash"):
                groups, seconds = imagededup_groups(method, folder)
                rows.append((f"imagededup {method}", *score(pairs_of(groups), truth), seconds,
                             "default max_distance_threshold 10"))
        except ImportError:
            rows.append(("imagededup", float("nan"), float("nan"), 0.0,
                         "not installed: pip install --no-deps imagededup PyWavelets"))
        print(f"{'method':<30}{'precision':>10}{'recall':>8}{'seconds':>9}  setting")
        for method, p, r, s, note in rows:
            print(f"{method:<30}{p:>10.3f}{r:>8.3f}{s:>9.1f}  {note}", flush=True)


def ours_again(index: Path, env: dict, extra: list[str]) -> tuple[list[list[str]], float, str]:
    """duplicates --json on ``index`` through the CLI with ``extra`` options: (groups of file
    names, seconds, "T (where T came from)")."""
    import json

    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli", "duplicates", "--index", str(index),
                           "--json", "--quiet", *extra], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t
    doc = json.loads(done.stdout)
    groups = [[os.path.basename(m["path"]) for m in g["members"]] for g in doc["groups"]]
    return groups, seconds, f"{doc['threshold']:.3g} ({doc['threshold_source']})"


# -- scale ----------------------------------------------------------------------------------
DIM = 4096
CHUNK = 8192  # vectors generated (and staged) at a time
PLANT_EVERY = 100  # row j is a near-copy of row j - 1 when j % PLANT_EVERY == 1
PLANT_NOISE = 0.02  # of the vectors' scale: the copies' distance


class PlantedExtractor:
    """fc7-like vectors (ReLU of a Gaussian mixture, as search.py's), generated chunk by chunk
    from the row number, with near-duplicate pairs planted; the imagenet identity."""

    def __init__(self, identity: dict, n: int) -> None:
        self._identity, self.n = identity, n
        self.centres = np.random.default_rng(0).standard_normal((64, DIM)).astype(np.float32)

    def identity(self) -> dict:
        return self._identity

    def rows(self, start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng(start + 1)
        x = self.centres[rng.integers(0, 64, stop - start)] + rng.standard_normal(
            (stop - start, DIM), dtype=np.float32)
        for j in range(start, stop):
            if j % PLANT_EVERY == 1 and j > start:
                x[j - start] = x[j - start - 1] + PLANT_NOISE * rng.standard_normal(DIM)
        return np.maximum(x, 0)

    def embed(self, paths):
        for start in range(0, len(paths), CHUNK):
            stop = min(start + CHUNK, len(paths))
            yield list(range(start, stop)), self.rows(start, stop), []


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

    from indexes.build import build_index
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="imagenet", help="weights to index the photos with")
    ap.add_argument("--photos", nargs="+", default=list(PHOTOS),
                    help="glob patterns of folders of photos (one picture per file)")
    ap.add_argument("--scenes", default=SCENES,
                    help="ViSP's images (similar scenes: video frames); '' to leave them out")
    ap.add_argument("--scale", nargs="*", type=int, default=[],
                    help="the scale test at these numbers of vectors (instead of the photos)")
    ap.add_argument("--factory", default="PCA256,IVF4096,SQ8", help="for the scale test")
    args = ap.parse_args()
    if args.scale:
        scale(args.scale, args.factory)
    else:
        quality(args)


if __name__ == "__main__":
    main()
