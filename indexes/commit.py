"""Staging extracted batches and committing them as a new index generation, crash-safely."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import faiss_ops, files, manifest
from .store import FileState, IndexStore


@dataclass(frozen=True)
class Staged:
    """An extracted vector waiting in staging/<batch>.npy at ``row``."""

    state: FileState
    batch: int
    row: int


def stage(store: IndexStore, states: Sequence[FileState], vectors: np.ndarray) -> list[Staged]:
    """Stage one batch of (b, d) vectors (see ``IndexStore.stage``)."""
    batch = store.stage(states, vectors)
    return [Staged(s, batch, row) for row, s in enumerate(states)]


def _by_batch(adds: Sequence[Staged]) -> dict[int, list[int]]:
    """batch -> positions in ``adds`` of its rows."""
    groups: dict[int, list[int]] = defaultdict(list)
    for pos, a in enumerate(adds):
        groups[a.batch].append(pos)
    return groups


def _vectors(store: IndexStore, adds: Sequence[Staged], positions: list[int], normalize: bool):
    x = files.read_npy(files.staging_file(store.folder, adds[positions[0]].batch))
    x = faiss_ops.as_float32(x[[adds[p].row for p in positions]])  # (b, d)
    return faiss_ops.l2_normalize(x) if normalize else x


def _training_sample(store: IndexStore, adds: Sequence[Staged], normalize: bool,
                     dim: int) -> np.ndarray:
    """Up to MAX_TRAIN_VECTORS of the new vectors, evenly spread over them."""
    n = len(adds)
    take = set(np.linspace(0, n - 1, min(n, faiss_ops.MAX_TRAIN_VECTORS)).astype(int).tolist())
    parts = []
    for positions in _by_batch(adds).values():
        chosen = [p for p in positions if p in take]
        if chosen:
            parts.append(_vectors(store, adds, chosen, normalize))
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def commit(store: IndexStore, settings: dict, adds: Sequence[Staged], remove_ids: Sequence[int],
           rebuild: bool) -> None:
    """Make generation+1: the committed index minus ``remove_ids`` plus ``adds``.

    ``rebuild`` (or a first build): a new index of ``settings['factory']`` from ``adds`` only,
    trained on them when the factory needs it. Raises FactoryError before touching anything.
    """
    factory, normalize = settings["factory"], settings["normalize"]
    fresh = rebuild or store.generation == 0
    if fresh:
        index = faiss_ops.make_index(factory, settings["dim"])
        if not index.is_trained:
            faiss_ops.train(index, _training_sample(store, adds, normalize, settings["dim"]), factory)
    else:
        index = faiss_ops.read(store.index_path)
        index = faiss_ops.remove(index, np.asarray(remove_ids, np.int64), factory)
    next_id = int(store.meta("next_id", 0))
    rows = []
    for positions in _by_batch(adds).values():
        ids = np.arange(next_id, next_id + len(positions), dtype=np.int64)
        faiss_ops.add(index, _vectors(store, adds, positions, normalize), ids)
        rows += [(int(i), adds[p].state) for i, p in zip(ids, positions)]
        next_id += len(positions)
    old_generation = store.generation
    faiss_ops.write(index, files.index_file(store.folder, old_generation + 1))
    store.commit_generation(settings, rows, remove_ids, fresh, next_id)
    # Committed. What follows only tidies up; a crash here is repaired by the next open.
    files.index_file(store.folder, old_generation).unlink(missing_ok=True)
    files.clear_staging(store.folder)
    manifest.write(store)
