"""`retrieve duplicates` against imagededup, in one run on the same files.

Quality, on three sets of pictures (benchmarks/dup_pictures.py): photos (Debian's
wallpapers), similar scenes (frames of ViSP's video sequences: different pictures that look
alike, as burst shots do) and kinds (Debian's paper textures, flat backgrounds and wallpapers,
and drawn flat and near-flat colours, faint textures, gradients, dark blurred scenes, scanned
pages of text and screenshots: the pictures with little contrast, or all alike, that a copy
detector finds hard). Each picture is written with seven copies as a collection gathers them:
resized to 40% (JPEG 85), recompressed at JPEG quality 50, cropped by 3% and 5% off two sides,
25% brighter, a PNG, resized to 60% at JPEG quality 50, and 5% cropped off every side, 10%
brighter, as PNG (``--once``: only one of the last two, in turn, as issue 24 made them);
``--everyday`` adds eight copies made in ways the check was not tuned on
(gamma, contrast, a 1.5 degree turn, sharpened, blurred, a screenshot's rescale, a colour
profile read without it, WebP); ``--others`` makes eleven still other ones instead of the
seven (greyscale, letterboxed, a white border, a watermark, mirrored, turned 90 degrees,
stretched, a 256-pixel thumbnail, JPEG quality 20, more saturated, noisy); ``--fresh``
thirteen more instead (a square crop, a 16:9 crop, 12% and 8% off two sides, a warm filter,
sepia, a vignette, a meme's caption, a 160-pixel thumbnail, turned 180 degrees, JPEG quality
10, twice as large, mirrored and 15% brighter, WebP quality 30); ``--shared`` twelve as apps
and edits give them back instead (a filter, auto-enhanced, straightened by 3 degrees, 25%
darker, black and white, a 9:16 story, a phone's screenshot, a print's frame, a 4:5 portrait,
a digital zoom of 80%, a messenger's copy, blurred). Every pair within a
picture's files is a true pair, every other pair a false one.

Precision and recall of the pairs our groups imply (every two files of one group), with the
pixel check's parts left out, beside imagededup's PHash, DHash and WHash at their defaults;
then what a default plan (`--trash`) of ours does (the files it acts on, the share of them
true copies of the file their group keeps, the faint copies it keeps for review); for ours
and PHash, how each kind of picture and each kind of copy fares, and a last table of every
set side by side. ``--code DIR`` measures another checkout's `retrieve
duplicates` in the same run (the check before a change).

    apt-get install plasma-workspace-wallpapers mate-backgrounds ukui-wallpapers \\
        lomiri-wallpapers visp-images-data mypaint-data mypaint-data-extras \\
        gnome-backgrounds sway-backgrounds desktop-base            # the pictures
    pip install --no-deps imagededup PyWavelets                    # the baseline, benchmark only
    python benchmarks/duplicates.py --weights imagenet
    python benchmarks/duplicates.py --sets kinds --everyday
    python benchmarks/duplicates.py --sets photos --others --work /tmp/dups-others
    python benchmarks/duplicates.py --sets kinds --others --work /tmp/dups-kinds-others
    python benchmarks/duplicates.py --sets photos --fresh --work /tmp/dups-fresh
    python benchmarks/duplicates.py --sets photos --shared --work /tmp/dups-shared
    python benchmarks/duplicates.py --sets kinds --once --work /tmp/dups   # kept for a rerun
    python benchmarks/duplicates.py --scale 100000 1000000         # benchmarks/dup_scale.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import dup_pictures as pictures  # noqa: E402

SETS = ("photos", "similar scenes", "kinds")
HASHES = ("PHash", "DHash", "WHash")


def sources(name: str, args) -> list:
    """(kind, picture or path) of one set."""
    if name == "photos":
        return [("photo", p) for p in pictures.originals(args.photos)]
    if name == "similar scenes":
        return [("scene", p) for p in pictures.scene_frames(args.scenes)] if args.scenes else []
    return pictures.packaged() + pictures.drawn()


def true_pairs(groups: dict[str, set[str]]) -> set[frozenset]:
    return {frozenset(p) for files in groups.values() for p in itertools.combinations(files, 2)}


def pairs_of(groups: list[list[str]]) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}


def score(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), hit / len(truth)


def ours(folder: Path, index: Path, weights: str, env: dict) -> tuple[list[list[str]], float, str]:
    """build-index, then ``ours_again`` with the defaults, as a first run: what an earlier run
    in a kept work folder saved is removed (the calibration and every pair's check)."""
    from indexes.duplicates.find import STATE

    (index / STATE).unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "cli", "build-index", str(folder), "--index",
                    str(index), "--weights", weights, "--quiet"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    return ours_again(index, env, [])


def ours_again(index: Path, env: dict, extra: list[str]) -> tuple[list[list[str]], float, str]:
    """duplicates --json on ``index`` through the CLI with ``extra`` options, with the code
    env's PYTHONPATH names: (groups of file names, seconds, "T (where T came from)")."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli", "duplicates", "--index", str(index),
                           "--json", "--quiet", *extra], cwd=env["PYTHONPATH"], env=env,
                          check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    doc = json.loads(done.stdout)
    groups = [[os.path.basename(m["path"]) for m in g["members"]] for g in doc["groups"]]
    return groups, seconds, f"{doc['threshold']:.3g} ({doc['threshold_source']})"


def planned(index: Path, env: dict, truth: set, files: int, pictures: int) -> str:
    """What a default plan (`duplicates --trash --json`, from the run's saved work) does:
    the files it acts on, the share of them true copies of the file their group keeps, the
    faint copies it keeps for review, and the share of the files a perfect plan would take
    (every file but one of each picture) that it takes."""
    done = subprocess.run([sys.executable, "-m", "cli", "duplicates", "--index", str(index),
                           "--json", "--quiet", "--trash"], cwd=env["PYTHONPATH"], env=env,
                          check=True, capture_output=True, text=True)
    acted = right = review = 0
    for g in json.loads(done.stdout)["groups"]:
        kept = os.path.basename(g["files"][0]["path"])
        for f in g["files"][1:]:
            name = os.path.basename(f["path"])
            review += f["action"] == "keep" and bool(f.get("faint"))
            if f["action"] != "keep":
                acted += 1
                right += frozenset((kept, name)) in truth
    return (f"a default plan (--trash) acts on {acted} files, {right / max(acted, 1):.3f} of "
            f"them copies of the file kept, and keeps {review} faint copies for review: it "
            f"takes {right / (files - pictures):.3f} of what could go")


def imagededup_groups(method: str, folder: Path) -> tuple[list[list[str]], float]:
    import logging

    from imagededup import methods

    logging.getLogger("imagededup").setLevel(logging.WARNING)  # its progress, not ours

    hasher = getattr(methods, method)(verbose=False)
    t = time.perf_counter()
    found = hasher.find_duplicates(image_dir=str(folder))
    seconds = time.perf_counter() - t
    return [[a, *dups] for a, dups in found.items() if dups], seconds


def breakdown(name: str, found: set, truth: set) -> None:
    """Recall of each kind of picture and each kind of copy, and the false pairs of each
    kind of picture (a false pair counts for the kinds of both its files)."""
    hit, missed, false = defaultdict(int), defaultdict(int), defaultdict(int)
    for pair in truth:
        a, b = sorted(pair)
        copy = pictures.copy_of(b if a.endswith("-original.jpg") else a)
        for key in (("kind", pictures.kind_of(a)), ("copy", copy if "original" in a + b
                                                    else "between two copies")):
            (hit if pair in found else missed)[key] += 1
    for pair in found - truth:
        for kind in {pictures.kind_of(f) for f in pair}:
            false[("kind", kind)] += 1
    print(f"  {name}: recall (found/true) and false pairs")
    for key in sorted(set(hit) | set(missed)):
        n = hit[key] + missed[key]
        extra = f", {false[key]} false" if key[0] == "kind" else ""
        print(f"    {key[0]:<5} {key[1]:<28}{hit[key] / n:>7.3f} ({hit[key]}/{n}){extra}")


def run_set(name: str, args, work: Path, env: dict, codes: list[tuple[str, dict]]) -> dict:
    """One set's table (and breakdown); {method: (precision, recall)}."""
    made = sources(name, args)
    if not made:
        print(f"\n{name}: no pictures (apt-get install {pictures.PHOTO_PACKAGES} "
              f"visp-images-data {pictures.KIND_PACKAGES})")
        return {}
    folder = work / (name.replace(" ", "-") + ("-once" if args.once else ""))
    kinds = ({c: pictures.COPIES[c] for c in pictures.ONCE} if args.once
             else pictures.OTHERS if args.others else pictures.FRESH if args.fresh
             else pictures.SHARED if args.shared
             else {**pictures.COPIES, **(pictures.EVERYDAY if args.everyday else {})})
    truth = true_pairs(pictures.write_copies(made, folder, kinds, once=args.once))
    files = len(list(folder.iterdir()))
    print(f"\n{name}: {len(made)} pictures and {files - len(made)} copies, {len(truth)} "
          f"true pairs among {files} files; weights {args.weights}", flush=True)
    rows, found = [], {}
    index = work / f"index-{folder.name}"
    groups, seconds, threshold = ours(folder, index, args.weights, env)
    found[codes[0][0]] = pairs_of(groups)
    rows.append((codes[0][0], *score(found[codes[0][0]], truth), seconds,
                 f"threshold {threshold}, pixels verified"))
    for label, extra, note in () if args.ours_only else (
            ("  without the difference", ["--max-difference", "inf"], "similarity alone"),
            ("  without --verify", ["--no-verify"], "fc7 alone")):
        groups, seconds, _ = ours_again(index, env, extra)
        rows.append((label, *score(pairs_of(groups), truth), seconds, note))
    for label, code_env in codes[1:]:  # last: a run of another version forgets ours' work
        groups, seconds, threshold = ours_again(index, code_env, [])
        found[label] = pairs_of(groups)
        rows.append((label, *score(found[label], truth), seconds,
                     f"threshold {threshold}, pixels verified"))
    try:
        for method in () if args.ours_only else HASHES:
            groups, seconds = imagededup_groups(method, folder)
            found[f"imagededup {method}"] = pairs_of(groups)
            rows.append((f"imagededup {method}", *score(pairs_of(groups), truth), seconds,
                         "default max_distance_threshold 10"))
    except ImportError:
        rows.append(("imagededup", float("nan"), float("nan"), 0.0,
                     "not installed: pip install --no-deps imagededup PyWavelets"))
    print(f"{'method':<30}{'precision':>10}{'recall':>8}{'seconds':>9}  setting")
    for method, p, r, s, note in rows:
        print(f"{method:<30}{p:>10.3f}{r:>8.3f}{s:>9.1f}  {note}", flush=True)
    print(f"  {planned(index, env, truth, files, len(made))}", flush=True)
    for method in (codes[0][0], "imagededup PHash"):
        if method in found:
            breakdown(method, found[method], truth)
    return {method.strip(): (p, r) for method, p, r, _, _ in rows}


def quality(args) -> None:
    from extract_throughput import fake_imagenet_weights, scratch_dir

    work = Path(args.work) if args.work else scratch_dir("retrieve-bench-dups-")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.weights == "imagenet" and not os.environ.get("TORCH_HOME"):
        if not (work / "torch").exists():  # a kept work folder's indexes were made with these
            fake_imagenet_weights(work / "torch")  # no network: random weights, ImageNet's shape
        env["TORCH_HOME"] = str(work / "torch")
    codes = [("retrieve duplicates", env)] + [
        (f"retrieve duplicates ({Path(c).name})", {**env, "PYTHONPATH": str(Path(c).resolve())})
        for c in args.code]
    table = {name: run_set(name, args, work, env, codes) for name in args.sets}
    methods = [label for label, _ in codes] + [f"imagededup {m}" for m in HASHES]
    print(f"\n{'precision / recall':<32}" + "".join(f"{name:>18}" for name in table))
    for method in methods:
        cells = [table[name].get(method) for name in table]
        if not any(cells):  # --ours-only
            continue
        print(f"{method:<32}" + "".join(f"{c[0]:>9.3f}{c[1]:>9.3f}" if c else f"{'':>18}"
                                       for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="imagenet", help="weights to index the pictures with")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS), metavar="SET",
                    help=f"which sets: {', '.join(SETS)} (default: all)")
    ap.add_argument("--everyday", action="store_true",
                    help="add eight copies made in other everyday ways (gamma, a turn, ...)")
    ap.add_argument("--others", action="store_true",
                    help="instead of the seven copies, eleven still other everyday ones "
                         "(greyscale, letterboxed, watermarked, mirrored, turned 90 degrees, ...)")
    ap.add_argument("--fresh", action="store_true",
                    help="instead of the seven copies, thirteen fresh ones (a square crop, sepia, "
                         "a vignette, a caption, a 160-pixel thumbnail, JPEG quality 10, ...)")
    ap.add_argument("--shared", action="store_true",
                    help="instead of the seven copies, twelve as apps and edits give them back "
                         "(a filter, straightened, a 9:16 story, a phone's screenshot, a print's "
                         "frame, a 4:5 portrait, a digital zoom, ...)")
    ap.add_argument("--once", action="store_true",
                    help="the issue's protocol: one copy of each picture, 60%% at JPEG quality "
                         "50 or 5%% off every side and 10%% brighter as PNG, in turn")
    ap.add_argument("--work", metavar="DIR",
                    help="keep the pictures and indexes here (a later run reuses them) instead "
                         "of a temporary folder")
    ap.add_argument("--ours-only", action="store_true",
                    help="only `retrieve duplicates` at its defaults (and --code's), no baseline")
    ap.add_argument("--code", nargs="*", default=[], metavar="DIR",
                    help="other checkouts whose `retrieve duplicates` runs beside (before/after)")
    ap.add_argument("--photos", nargs="+", default=list(pictures.PHOTOS),
                    help="glob patterns of folders of photos (one picture per file)")
    ap.add_argument("--scenes", default=pictures.SCENES,
                    help="ViSP's images (similar scenes: video frames); '' to leave them out")
    ap.add_argument("--scale", nargs="*", type=int, default=[],
                    help="the scale test at these numbers of vectors (benchmarks/dup_scale.py)")
    ap.add_argument("--factory", default="PCA256,IVF4096,SQ8", help="for the scale test")
    args = ap.parse_args()
    if args.scale:
        from dup_scale import scale

        scale(args.scale, args.factory)
    else:
        quality(args)


if __name__ == "__main__":
    main()
