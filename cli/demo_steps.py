"""`retrieve demo`: the whole tool end to end on a small data set, offline, in a few minutes.

The steps are the library calls the commands make, in the order a user would run them:
prepare labelled image files, `train`, `build-index`, `show-kernels`, `query` (a Figure 4
sheet), and the section 6.1 comparison of fc7 against raw pixels (`evaluate`). Running the
whole tool, this is the one module of retrieval/ that uses the index side (indexes/).
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexes.build.incremental import build_index
from indexes.config import BuildConfig, EvalConfig
from indexes.evaluation.evaluate import evaluate
from indexes.search.searcher import Searcher

from retrieval.atomic import write_atomic
from retrieval.config import DemoConfig, ExtractConfig, TrainConfig
from retrieval.datasets import export_fashion_mnist, make_shapes
from retrieval.errors import DataError, ExportError
from retrieval.features import FeatureExtractor
from retrieval.walk import find_images
from retrieval.kernels import save_kernels
from retrieval.onnx_export import write_export
from retrieval.pixels import pixel_vectors
from retrieval.sheet import draw_sheet
from retrieval.train import train

K = 10  # precision@10, as the summary reports
SHEET_QUERIES = 6  # rows of queries.png
DEMO_IMAGE_SIZE = 64  # small images: a 2-core CPU trains AlexNet on them in minutes
DEMO_BATCH_SIZE = 32
DEMO_LR = 0.005  # with Kaiming initialisation (see docs/train.md)
TRAIN_SHARE = 0.7  # of the time budget; the rest goes to data, indexing, queries and plots
# Why fc7's lead shows in mAP rather than at the top of the list, on Fashion-MNIST only.
CENTRED_GREY = ("Fashion-MNIST's items are centred, upright and grey on black: the nearest few "
                "in raw pixels are mostly of the same kind too; further down, fc7 keeps finding "
                "the class.")


@dataclass
class DemoSummary:
    data: str
    classes: list[str]
    train_images: int
    query_images: int
    image_size: int
    epochs: int
    val_top1_error: float
    precision_at_10_fc7: float
    precision_at_10_pixels: float
    chance: float
    mean_ap_fc7: float  # over the whole ranking of the index, as `retrieve evaluate` measures
    mean_ap_pixels: float
    seconds: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """precision@10 of fc7 over that of raw pixels (summary.json's "ratio")."""
        return self.precision_at_10_fc7 / max(self.precision_at_10_pixels, 1e-12)

    @property
    def map_ratio(self) -> float:
        return self.mean_ap_fc7 / max(self.mean_ap_pixels, 1e-12)


def prepare_data(config: DemoConfig) -> tuple[str, Path, Path]:
    """Write train/ and queries/ ImageFolder trees under OUT/data; returns (name, train, queries)."""
    root = config.out / "data"
    train_dir, queries = root / "train", root / "queries"
    if config.data in ("auto", "fashion-mnist"):
        try:
            export_fashion_mnist(train_dir, config.per_class, train=True)
            export_fashion_mnist(queries, config.queries_per_class, train=False)
            return "fashion-mnist", train_dir, queries
        except DataError:
            if config.data == "fashion-mnist":
                raise
    make_shapes(train_dir, config.per_class, size=DEMO_IMAGE_SIZE, seed=config.seed)
    make_shapes(queries, config.queries_per_class, size=DEMO_IMAGE_SIZE, seed=config.seed + 1,
                prefix="query-")
    return "shapes", train_dir, queries


def train_model(config: DemoConfig, data: Path, budget_minutes: float):
    return train(TrainConfig(
        data=str(data), out=config.out, epochs=1000, max_minutes=budget_minutes,
        batch_size=DEMO_BATCH_SIZE, lr=DEMO_LR, warmup_epochs=0, image_size=DEMO_IMAGE_SIZE,
        init_scheme="kaiming", width=config.width, device=config.device, seed=config.seed,
        workers=0, overwrite=True,  # a demo run again starts again
        progress=config.progress))


def compare_with_pixels(searcher: Searcher, queries: list[Path], k: int) -> dict[str, float]:
    """precision@k, and mAP over the whole ranking, of the fc7 index and of raw pixels for
    the same held-out queries (`retrieve evaluate --baseline pixels`: labels are parent
    folder names): {"precision_at_10_fc7": ..., "mean_ap_pixels": ...}."""
    report = evaluate(searcher.store, [str(q) for q in queries], searcher.embed,
                      EvalConfig(k=k), pixels=pixel_vectors)
    return {f"{name}_{method}": getattr(report.methods[method].metrics, field)
            for name, field in (("precision_at_10", "precision_at_k"), ("mean_ap", "mean_ap"))
            for method in ("fc7", "pixels")}


def draw_queries(searcher: Searcher, queries: list[Path], out: Path) -> None:
    """queries.png: the first held-out query of the first SHEET_QUERIES classes and their K
    nearest indexed images (the paper's Figure 4)."""
    first_of_class: dict[str, Path] = {}
    for q in queries:
        first_of_class.setdefault(q.parent.name, q)
    rows, _ = searcher.query(list(first_of_class.values())[:SHEET_QUERIES], K)
    draw_sheet(rows, out, K)


def run_demo(config: DemoConfig) -> DemoSummary:
    """Every step of the tool on a small data set; writes its files into ``config.out``."""
    start, seconds = time.perf_counter(), {}
    lap = lambda: time.perf_counter() - start - sum(seconds.values())  # noqa: E731
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "data", ignore_errors=True)  # ours: a re-run starts from fresh data
    name, train_dir, query_dir = prepare_data(config)
    seconds["data"] = lap()

    budget = max(config.minutes * TRAIN_SHARE - seconds["data"] / 60, 0.05)
    result = train_model(config, train_dir, budget)
    seconds["train"] = lap()

    extractor = FeatureExtractor.load(str(result.best_path), config=ExtractConfig(
        workers=0, device=config.device), progress=config.progress)
    index_dir = out / "index"
    report = build_index(index_dir, find_images([train_dir]), extractor, BuildConfig(),
                         rebuild=True)
    try:  # as build-index does: the suggested `retrieve query` then needs no torch
        write_export(index_dir, extractor.weights)
    except ExportError:
        pass  # queries load torch instead
    seconds["index"] = lap()

    save_kernels(extractor.weights, out / "kernels.png")
    queries = list(find_images([query_dir]))
    with Searcher.open(index_dir, lambda source, trusted: extractor) as searcher:
        draw_queries(searcher, queries, out / "queries.png")
        figures = compare_with_pixels(searcher, queries, K)
    seconds["queries"] = lap()
    seconds["total"] = time.perf_counter() - start

    classes = sorted({q.parent.name for q in queries})
    summary = DemoSummary(
        data=name, classes=classes, train_images=report.total, query_images=len(queries),
        image_size=DEMO_IMAGE_SIZE, epochs=result.epochs_run,
        val_top1_error=float(result.best_val_top1_error),
        chance=1 / len(classes), **figures,
        seconds={k: round(v, 1) for k, v in seconds.items()},
        files={"best": str(result.best_path), "checkpoint": str(result.last_path),
               "metrics": str(out / "metrics.jsonl"), "curves": str(out / "curves.png"),
               "index": str(index_dir), "kernels": str(out / "kernels.png"),
               "queries": str(out / "queries.png"), "summary": str(out / "summary.json")})
    text = json.dumps({**asdict(summary), "ratio": summary.ratio, "map_ratio": summary.map_ratio},
                      indent=2) + "\n"
    write_atomic(out / "summary.json", lambda f: f.write(text.encode()))
    return summary


def format_summary(s: DemoSummary, out: Path) -> str:
    example = next(Path(s.files["index"]).parent.glob("data/queries/*/*"), None)
    return "\n".join([
        f"Trained the paper's AlexNet on {s.train_images} {s.data} images ({len(s.classes)} "
        f"classes, {s.image_size}x{s.image_size}, a tenth held out for validation) for "
        f"{s.epochs} epochs in {s.seconds['train']:.0f} s: validation top-1 error "
        f"{s.val_top1_error:.3f}.",
        f"Held-out queries: {s.query_images} (chance {s.chance:.3f}). mAP over the whole ranking: "
        f"{s.mean_ap_fc7:.3f} with fc7, {s.mean_ap_pixels:.3f} with raw pixels "
        f"({s.map_ratio:.2f}x).",
        f"precision@{K}, the top of the list: {s.precision_at_10_fc7:.3f} with fc7, "
        f"{s.precision_at_10_pixels:.3f} with raw pixels ({s.ratio:.2f}x).",
        *([CENTRED_GREY] if s.data == "fashion-mnist" and s.map_ratio > max(s.ratio, 1) else []),
        f"Files in {out}/ (all in {s.seconds['total']:.0f} s):",
        "  best.pt, checkpoint.pt    trained weights: use them with --weights",
        "  metrics.jsonl, curves.png loss and error per epoch",
        "  index/                    the FAISS index of the training images",
        "  kernels.png               the conv1 kernels (the paper's Figure 3)",
        f"  queries.png               {SHEET_QUERIES} held-out queries and their {K} nearest "
        "images (Figure 4)",
        "  summary.json              these figures",
        "Try: retrieve query " + shlex.quote(str(example or "IMAGE")) + " --index "
        + shlex.quote(str(out / "index")) + f" -k {K}",
    ])
