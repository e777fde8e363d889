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


def rng_state(cuda: bool = False) -> dict:
    """torch, numpy and python RNG states as tensors and plain lists (weights_only-safe), and
    with ``cuda`` those of the visible GPUs: a CPU run never touches CUDA (reading a GPU's
    state would start a CUDA context on every GPU of the machine)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if cuda else [],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(py_state), gauss]}


def set_rng_state(state: dict, cuda: bool = False) -> None:
    """Restore ``rng_state``'s states; with ``cuda``, GPU i takes the saved state of GPU i for
    each GPU visible here: a checkpoint from a machine with more GPUs holds more states
    (torch.cuda.set_rng_state_all would raise IndexError), one with fewer leaves the rest."""
    torch.set_rng_state(state["torch"])
    if cuda:
        for i, gpu_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gpu_state, i)
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


def restore(training: dict, optimizer, scheduler, path: Path, rank: int = 0,
            cuda: bool = False) -> Progress:
    """Optimiser, scheduler and this process's RNG states from a checkpoint's ``training``.

    Each process of a torchrun run goes on with its own streams (``rng_ranks``, saved by
    every rank); a rank the checkpoint has none for (more processes now) keeps its seeding.
    """
    states = training.get("rng_ranks") or [training.get("rng")]
    try:
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
        if rank < len(states):
            set_rng_state(states[rank], cuda)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
        raise TrainingError(f"{path}: training state cannot be restored ({str(e)[:150]})") from None
    return Progress(training["epoch"], list(training["metrics"]),
                    training["best_val_top1_error"], training["best_epoch"])
