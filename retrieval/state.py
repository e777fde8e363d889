"""What a training run needs to go on after a stop: RNG states, progress, the optimiser and
scheduler states."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import TrainingError


def rng_state() -> dict:
    """torch, CUDA, numpy and python RNG states as tensors and plain lists (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(py_state), gauss]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Progress:
    """What a checkpoint must carry besides the weights and the optimiser to go on."""

    epoch: int = 0  # epochs completed
    metrics: list[dict] = field(default_factory=list)
    best_val_top1_error: float = math.inf
    best_epoch: int = 0


def restore(training: dict, optimizer, scheduler, path: Path) -> Progress:
    try:
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
        set_rng_state(training["rng"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise TrainingError(f"{path}: training state cannot be restored ({str(e)[:150]})") from None
    return Progress(training["epoch"], list(training["metrics"]),
                    training["best_val_top1_error"], training["best_epoch"])
