"""What `retrieve evaluate` shows: the figures of an ``evaluate.Report`` as a table, JSON or plot."""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path

from indexes.evaluation.evaluate import Report
from indexes.evaluation.metrics import RankingMetrics

BASELINE = "pixels"
PLOT_SIZE = (5.0, 4.0)  # inches; at PLOT_DPI a ~40 KB PNG
PLOT_DPI = 100


def rows(report: Report) -> list[tuple[str, str]]:
    """(shown name, RankingMetrics field) of the figures the mode reports."""
    k = report.config.k
    if report.mode == "ground-truth":
        return [("recall@1", "recall_at_1"), (f"recall@{k}", "recall_at_k")]
    at = report.config.map_at
    return [("mAP" if at is None else f"mAP@{at}", "mean_ap"),
            (f"precision@{k}", "precision_at_k"), (f"recall@{k}", "recall_at_k"),
            ("top-1", "top1")]


def _num(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.3f}"


def _ratio(a: float, b: float) -> str:
    return "-" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}"


def _table(names: list[str], figures: dict[str, RankingMetrics], report: Report) -> list[str]:
    header = ["metric", *names] + (["ratio"] if BASELINE in names else [])
    lines = [header]
    for shown, attr in rows(report):
        values = [getattr(figures[n], attr) for n in names]
        line = [shown, *map(_num, values)]
        if BASELINE in names:
            line.append(_ratio(values[0], values[names.index(BASELINE)]))
        lines.append(line)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines]


def text(report: Report) -> list[str]:
    """The summary lines: what was evaluated, the figures side by side, the index's recall."""
    what = (f"{report.classes} classes" if report.mode == "labels" else "ground truth pairs")
    out = [f"Evaluated {report.queries} queries against {report.indexed} indexed images "
           f"({what}), k={report.config.k}"]
    names = list(report.methods)
    out += _table(names, {n: s.metrics for n, s in report.methods.items()}, report)
    fc7 = report.methods["fc7"].metrics
    if fc7.scored < fc7.queries:
        out.append(f"{fc7.queries - fc7.scored} queries have no relevant indexed image and are "
                   "left out of the means")
    if not report.exact:
        r = report.recall_vs_exact
        out.append(f"Index {report.factory} is approximate: recall@{report.config.k} against "
                   f"exact search " + (_num(r) if r is not None else
                                       "unavailable (an indexed image can no longer be read)"))
    return out


def class_lines(report: Report) -> list[str]:
    """One table per class (``--per-class``): class, then each method's figures."""
    names = list(report.methods)
    fields = rows(report)
    header = ["class", "queries"] + [f"{shown} {n}" for shown, _ in fields for n in names]
    lines = [header]
    for label, cm in report.methods["fc7"].classes.items():
        line = [str(label), str(cm.queries)]
        for _, attr in fields:
            line += [_num(getattr(report.methods[n].classes[label], attr)) for n in names]
        lines.append(line)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines]


def _clean(x):
    """NaN -> None for JSON (which has no NaN)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return x


def to_json(report: Report, index_dir: str | os.PathLike) -> dict:
    """The same figures as ``text`` (and per class when asked), as one JSON-ready dict."""
    doc = {
        "index": str(index_dir), "mode": report.mode, "queries": report.queries,
        "indexed": report.indexed, "classes": report.classes, "k": report.config.k,
        "map_at": report.config.map_at, "factory": report.factory, "exact": report.exact,
        "recall_vs_exact": report.recall_vs_exact, "methods": {}, "ratio": {},
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        "absent_labels": report.absent_labels,
    }
    for name, s in report.methods.items():
        doc["methods"][name] = _clean({
            **asdict(s.metrics),
            "pr_curve": {"recall": s.recall_levels.tolist(), "precision": s.precision.tolist()},
            **({"per_class": {str(c): asdict(m) for c, m in s.classes.items()}}
               if report.config.per_class else {})})
    if BASELINE in report.methods:
        a, b = report.methods["fc7"].metrics, report.methods[BASELINE].metrics
        for _, attr in rows(report):
            r = _ratio(getattr(a, attr), getattr(b, attr))
            doc["ratio"][attr] = None if r == "-" else getattr(a, attr) / getattr(b, attr)
    return doc


def plot_curves(report: Report, out: str | os.PathLike) -> Path:
    """Interpolated precision-recall curves of every method in one PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=PLOT_SIZE)
    try:
        for name, s in report.methods.items():
            ax.plot(s.recall_levels, s.precision, marker="o", markersize=3,
                    label=f"{name} (mAP {_num(s.metrics.mean_ap)})")
        ax.set(xlabel="recall", ylabel="interpolated precision", xlim=(0, 1), ylim=(0, 1.02),
               title=f"{report.queries} queries, {report.indexed} indexed images")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        fig.tight_layout()
        out = Path(out)
        fig.savefig(out, dpi=PLOT_DPI)
    finally:
        plt.close(fig)
    return out
