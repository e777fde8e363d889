"""`retrieve duplicates` run again on a collection that changed, or with other settings, beside
the same run with every pair compared again (as before the pixel check's work was kept by the
files compared), in one script: what keeping it so saves, and that the groups are the same.

The photos set of benchmarks/duplicates.py (Debian's wallpapers, each with seven copies) is
indexed without its last picture, run once, and then: the last picture's files added
(build-index, a new generation), a looser threshold (1.25 times the calibrated one), and one
file saved again (a file changed). Each rerun is timed from the earlier runs' saved work, then
on a copy of the index without the pairs compared (its calibration and sketches kept). Last, a
plan (`--trash`) made twice: the first looks at whether each grouped file is faint, the
second reads what the first saved.

    apt-get install plasma-workspace-wallpapers mate-backgrounds ukui-wallpapers \\
        lomiri-wallpapers gnome-backgrounds sway-backgrounds       # the pictures
    python benchmarks/dup_rerun.py
    python benchmarks/dup_rerun.py --work /tmp/dups-rerun          # kept for a rerun
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import dup_pictures as pictures  # noqa: E402
from PIL import Image  # noqa: E402
from duplicates import ours_again  # noqa: E402
from extract_throughput import fake_imagenet_weights, scratch_dir  # noqa: E402

from indexes.duplicates.find import STATE  # noqa: E402


def build(folder: Path, index: Path, env: dict) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli", "build-index", str(folder), "--index",
                    str(index), "--weights", "imagenet", "--quiet"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - t


def again(index: Path, env: dict, extra: list[str]) -> tuple[list[list[str]], float, int]:
    """duplicates --json on ``index`` with ``extra`` options: (groups of file names, seconds,
    the pairs it compared)."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli", "duplicates", "--index", str(index),
                           "--json", "--quiet", *extra], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t
    doc = json.loads(done.stdout)
    return ([[os.path.basename(m["path"]) for m in g["members"]] for g in doc["groups"]],
            seconds, doc["compared"])


def compared_anew(index: Path, work: Path, env: dict, extra: list[str]):
    """``again`` on a copy of ``index`` whose saved pairs compared are forgotten, its
    calibration and sketches kept: what a run did before the pairs were kept by their files
    (every pair of a new generation, threshold, k or nprobe compared again)."""
    copy = work / "anew"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index, copy)
    with sqlite3.connect(copy / STATE) as db:
        db.execute("DELETE FROM checked")
    try:
        return again(copy, env, extra)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def planned(index: Path, env: dict, extra: list[str]) -> float:
    """Seconds of `duplicates --trash --json` (a plan, from the runs' saved work)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli", "duplicates", "--index", str(index), "--json",
                    "--quiet", "--trash", *extra], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", metavar="DIR", help="keep the pictures and index here")
    ap.add_argument("--photos", nargs="+", default=list(pictures.PHOTOS),
                    help="glob patterns of folders of photos (one picture per file)")
    args = ap.parse_args()
    work = Path(args.work) if args.work else scratch_dir("retrieve-bench-rerun-")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not os.environ.get("TORCH_HOME"):
        if not (work / "torch").exists():
            fake_imagenet_weights(work / "torch")  # no network: random weights, ImageNet's shape
        env["TORCH_HOME"] = str(work / "torch")
    made = [("photo", p) for p in pictures.originals(args.photos)]
    if not made:
        sys.exit(f"no photos: apt-get install {pictures.PHOTO_PACKAGES}")
    folder, held, index = work / "photos", work / "held", work / "index"
    shutil.rmtree(index, ignore_errors=True)
    if held.exists():  # a kept work folder: its files written again only where missing
        for path in held.iterdir():
            shutil.move(path, folder / path.name)
        held.rmdir()
    groups = pictures.write_copies(made, folder, pictures.COPIES)
    last = sorted(groups)[-1]
    held.mkdir()
    for name in groups[last]:
        shutil.move(folder / name, held / name)
    files = sum(len(g) for g in groups.values())
    print(f"photos: {len(made)} pictures, {files} files; the last picture's {len(groups[last])} "
          f"held back", flush=True)

    seconds = build(folder, index, env)
    found, first, threshold = ours_again(index, env, [])
    print(f"build-index of {files - len(groups[last])} files: {seconds:.1f} s; a first run: "
          f"{first:.1f} s, {len(found)} groups, threshold {threshold}", flush=True)
    calibrated = float(threshold.split()[0])

    def added():
        for name in groups[last]:
            shutil.move(held / name, folder / name)
        return f"build-index of {len(groups[last])} files more: {build(folder, index, env):.1f} s"

    edited = sorted(groups[sorted(groups)[0]])[0]  # written anew by the next run

    def changed():
        with Image.open(folder / edited) as img:
            img.convert("RGB").save(folder / edited, quality=90)
        took = build(folder, index, env)
        return f"{edited} saved again at JPEG quality 90, build-index: {took:.1f} s"

    looser = ["--threshold", f"{1.25 * calibrated:.6g}"]
    print(f"\n{'what changed':<40}{'again':>8}{'all anew':>10}{'ratio':>8}"
          f"{'pairs compared':>18}  groups")
    for label, change, extra in (("the last picture's files added", added, []),
                                 ("a looser threshold (x1.25)", None, looser),
                                 ("one file changed", changed, looser)):
        said = change() if change else ""
        rerun, t_again, n_again = again(index, env, extra)
        fresh, t_fresh, n_fresh = compared_anew(index, work, env, extra)
        same = "the same" if sorted(map(sorted, rerun)) == sorted(map(sorted, fresh)) else "DIFFER"
        print(f"{label:<40}{t_again:>8.1f}{t_fresh:>10.1f}{t_again / t_fresh:>8.2f}"
              f"{f'{n_again} / {n_fresh}':>18}  {same}"
              + (f"  ({said})" if said else ""), flush=True)
    plans = [planned(index, env, looser) for _ in range(2)]
    print(f"{'a plan (--trash), made again':<40}{plans[1]:>8.1f}{plans[0]:>10.1f}"
          f"{plans[1] / plans[0]:>8.2f}{'':>18}  (all anew: the first plan, which weighs "
          "every grouped file)", flush=True)
    (folder / edited).unlink()


if __name__ == "__main__":
    main()
