"""Applying a duplicates plan to the trash, and undoing it, beside a bare send2trash loop over
as many files: what the journal (an fsync per step), the check of every file (size, mtime,
sha256) and finding each file in the trash again cost.

    python benchmarks/dup_actions.py --groups 500 --size-kb 256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def files(folder: Path, groups: int, size: int) -> list[tuple[Path, Path]]:
    """(kept, copy) pairs of files of ``size`` random bytes each."""
    out = []
    for g in range(groups):
        sub = folder / f"{g // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        kept, copy = sub / f"{g}.jpg", sub / f"{g}-copy.jpg"
        kept.write_bytes(os.urandom(size))
        copy.write_bytes(os.urandom(size // 2))
        out.append((kept, copy))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=500, help="groups of two files")
    parser.add_argument("--size-kb", type=int, default=256, help="size of each kept file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dup-actions-"))
    os.environ["HOME"] = str(work)  # the trash in here, read by send2trash when imported
    os.environ["XDG_DATA_HOME"] = str(work / "share")
    from send2trash.plat_other import send2trash

    from indexes.duplicates import actions, plans
    from indexes.duplicates.find import Group, Member, Report

    pairs = files(work / "photos", args.groups, args.size_kb * 1024)
    groups = [Group("near", [Member(2 * g, str(k), 0.0, 1.0, 0.0, 100, 100, k.stat().st_size),
                             Member(2 * g + 1, str(c), 0.1, 0.99, 0.05, 50, 50,
                                    c.stat().st_size)])
              for g, (k, c) in enumerate(pairs)]
    (work / "idx").mkdir()
    report = Report(str(work / "idx"), 2 * len(pairs), 1.0, "given", groups, 0, 0)
    rows = []
    start = time.perf_counter()
    rules = plans.Rules("trash", act_on_faint=True)  # random bytes: no picture to show
    plan = plans.make_plan(report, rules, str(work / "photos"))
    (work / "plan.json").write_text(json.dumps(plan))
    rows.append(("plan (every file hashed)", time.perf_counter() - start))
    start = time.perf_counter()
    done = actions.apply(work / "plan.json")
    rows.append(("apply: to the trash, journalled", time.perf_counter() - start))
    assert done.files == {"trash": len(pairs)} and not done.problems
    start = time.perf_counter()
    undone = actions.undo(work / "plan.json")
    rows.append(("undo: back from the trash", time.perf_counter() - start))
    assert undone.files == {"trash": len(pairs)} and not undone.problems
    start = time.perf_counter()
    for _, copy in pairs:
        send2trash(str(copy))
    bare = time.perf_counter() - start
    rows.append(("bare send2trash loop (baseline)", bare))
    print(f"{len(pairs)} copies of {args.size_kb // 2} KB beside {args.size_kb} KB kept files, "
          f"{os.cpu_count()} cores")
    print(f"{'measure':<36}{'s':>9}{'files/s':>10}{'/ bare':>8}")
    for name, s in rows:
        print(f"{name:<36}{s:>9.2f}{len(pairs) / s:>10.0f}{s / bare:>8.2f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
