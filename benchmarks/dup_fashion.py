"""The first `retrieve duplicates` on 3,000 Fashion-MNIST test images (28 pixels) behind a briefly
trained network: seconds stage by stage, and whether any group joins two different garments.

Issue 24's figure: the first run (nothing saved, calibration included) within 60 s on a 2-core
machine, and no group of two different garments. The network is the paper's AlexNet trained as
`retrieve demo` trains it (64 pixels, Kaiming initialisation) on 600 training images for a
budget of minutes; the images are Debian's `dataset-fashion-mnist` (or torchvision's download).
Nothing is installed. A second run on the same work folder reuses the network and the index.

    python benchmarks/dup_fashion.py                       # trains, indexes, runs
    python benchmarks/dup_fashion.py --work /tmp/fm        # kept there for the next run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

TEST_PER_CLASS = 300  # 3,000 test images
TRAIN_PER_CLASS = 60  # the demo's 600 training images


def prepare(work: Path, minutes: float) -> tuple[Path, Path]:
    """The checkpoint and the index of the test images, made once in ``work``."""
    from cli.demo_steps import DEMO_BATCH_SIZE, DEMO_IMAGE_SIZE, DEMO_LR
    from retrieval.config import TrainConfig
    from retrieval.datasets import export_fashion_mnist
    from retrieval.train import train

    checkpoint, index = work / "net" / "checkpoint.pt", work / "index"
    if not checkpoint.exists():
        export_fashion_mnist(work / "train", TRAIN_PER_CLASS, train=True)
        train(TrainConfig(data=str(work / "train"), out=work / "net", epochs=1000,
                          max_minutes=minutes, batch_size=DEMO_BATCH_SIZE, lr=DEMO_LR,
                          warmup_epochs=0, image_size=DEMO_IMAGE_SIZE, init_scheme="kaiming",
                          workers=0, overwrite=True))
    if not (work / "test").exists():
        export_fashion_mnist(work / "test", TEST_PER_CLASS, train=False)
    if not index.exists():
        from click.testing import CliRunner

        from cli.main import cli

        r = CliRunner().invoke(cli, ["build-index", str(work / "test"), "--weights",
                                     str(checkpoint), "--index", str(index), "--quiet"])
        assert r.exit_code == 0, r.output
    return checkpoint, index


def first_run(index: Path, workers: int):
    """`retrieve duplicates`' work, as the CLI does it, from nothing saved: (report, seconds
    of each stage, seconds in all, CPU seconds in all)."""
    import functools

    from indexes.config import DuplicatesConfig
    from indexes.duplicates.find import STATE, find_duplicates
    from indexes.store.manifest import weights_ref
    from indexes.store.store import open_for_reading
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    (index / STATE).unlink(missing_ok=True)
    stages: dict[str, list[float]] = defaultdict(list)

    def progress(stage: str, done: int, total: int) -> None:
        stages[stage].append(time.perf_counter())

    start, cpu = time.perf_counter(), os.times()
    store = open_for_reading(index)
    extractor = functools.cache(lambda: FeatureExtractor.load(
        *weights_ref(store.settings), config=ExtractConfig(8, 0, "cpu")))
    try:
        report = find_duplicates(store, DuplicatesConfig(workers=workers),
                                 lambda paths: extractor().copy_vectors(paths), progress)
    finally:
        store.close()
    seconds, now = time.perf_counter() - start, os.times()
    cpu_seconds = sum(now[:4]) - sum(cpu[:4])  # this process and its workers, user and system
    return report, {s: t[-1] - t[0] for s, t in stages.items()}, seconds, cpu_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="folder kept for the next run")
    ap.add_argument("--minutes", type=float, default=2.0, help="the network's training budget")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="retrieve-bench-fashion-"))
    work.mkdir(parents=True, exist_ok=True)
    _, index = prepare(work, args.minutes)
    report, stages, seconds, cpu_seconds = first_run(index, args.workers)
    pixels = {}
    mixed = 0
    for g in report.groups:
        images = {pixels.setdefault(m.path, Image.open(m.path).tobytes()) for m in g.members}
        mixed += len(images) > 1  # the test set's own byte-for-byte repeats aside
    print(f"{report.images} images, load average {os.getloadavg()[0]:.1f}, {args.workers} workers")
    print(f"{'stage':<14}{'seconds':>9}")
    for stage, s in stages.items():
        print(f"{stage:<14}{s:>9.1f}")
    print(f"{'in all':<14}{seconds:>9.1f}  ({cpu_seconds:.1f} CPU s)")
    print(f"threshold {report.threshold:.4g} ({report.threshold_source}), {report.candidates} "
          f"candidate pairs, {report.verified} accepted, {len(report.groups)} groups, "
          f"{mixed} of them joining different garments")


if __name__ == "__main__":
    main()
