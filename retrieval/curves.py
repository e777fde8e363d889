"""Training records in OUT: metrics.jsonl (one JSON line per epoch) and curves.png, both
written aside and renamed into place, so a reader never sees half a file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .atomic import write_atomic

# Drawing curves.png takes ~0.13 s of CPU (0.24 s with matplotlib's constrained layout, which
# draws the figure twice; measured on a 2-core CPU): after an epoch it is redrawn once
# CURVES_EVERY_S have passed since the last drawing, and always when training stops, so that
# epochs of a second or two (small folders, --freeze-features, the demo's shapes) do not spend
# a sixth of their time plotting; epochs longer than this get a drawing each, as before.
CURVES_EVERY_S = 10.0


def write_metrics(path: Path, metrics: list[dict]) -> None:
    """All epochs so far, one JSON object per line (rewritten whole: resume-safe)."""
    text = "".join(json.dumps(m, sort_keys=False) + "\n" for m in metrics)
    write_atomic(path, lambda f: f.write(text.encode()))


def write_curves(path: Path, metrics: list[dict]) -> None:
    """Loss (train, val) and validation error (top-1, top-k) against the epoch, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    # fixed margins, room for tick labels such as 0.0025: a layout engine would draw it twice
    fig.subplots_adjust(left=0.08, right=0.985, bottom=0.12, top=0.92, wspace=0.25)
    ax_loss.plot(epochs, [m["train_loss"] for m in metrics], "o-", label="train")
    ax_loss.plot(epochs, [m["val_loss"] for m in metrics], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_err.plot(epochs, [m["val_top1_error"] for m in metrics], "o-", label="top-1")
    k = metrics[-1].get("top_k", 5) if metrics else 5
    ax_err.plot(epochs, [m["val_top5_error"] for m in metrics], "s-", label=f"top-{k}")
    ax_err.set(xlabel="epoch", ylabel="validation error", title="Validation error", ylim=(0, 1))
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


class Curves:
    """curves.png of a run: ``epoch_done`` after each epoch (draws when CURVES_EVERY_S have
    passed since the last drawing), ``finish`` when training stops (draws what is not drawn
    yet). ``enabled`` False (a torchrun rank other than 0): never draws."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        self.drawn, self.last = None, time.monotonic()

    def epoch_done(self, metrics: list[dict]) -> None:
        if time.monotonic() - self.last >= CURVES_EVERY_S:
            self._draw(metrics)

    def finish(self, metrics: list[dict]) -> None:
        if metrics and self.drawn != len(metrics):
            self._draw(metrics)

    def _draw(self, metrics: list[dict]) -> None:
        if self.enabled:
            write_curves(self.path, metrics)
            self.drawn, self.last = len(metrics), time.monotonic()
