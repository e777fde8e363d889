"""Staging extracted batches and committing them as a new index generation, crash-safely."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import faiss_ops, files
from .store import FileState, IndexStore


@dataclass(frozen=True)
class Staged:
    """An extracted vector waiting in staging/<batch>.npy at ``row``."""

    state: FileState
    batch: int
    row: int


def reset_staging(store: IndexStore, settings: dict) -> None:
    """Keep staged vectors only if they were made with these ``settings``; else drop them."""
    if store.staging_settings == settings:
        return
    store.db.execute("BEGIN IMMEDIATE")
    store.db.execute("DELETE FROM staged")
    store._set_meta("staging_settings", settings)
    store.db.execute("COMMIT")
    files.clear_staging(store.folder)


def stage(store: IndexStore, states: Sequence[FileState], vectors: np.ndarray) -> list[Staged]:
    """Write one batch of (b, d) vectors to staging (atomic), then record its rows."""
    batch = int(store._meta("next_batch", 0))
    files.write_npy(files.staging_file(store.folder, batch), faiss_ops.as_float32(vectors))
    store.db.execute("BEGIN IMMEDIATE")
    store.db.executemany("INSERT OR REPLACE INTO staged VALUES (?, ?, ?, ?, ?)",
                         [(s.path, s.size, s.mtime_ns, batch, row) for row, s in enumerate(states)])
    store._set_meta("next_batch", batch + 1)
    store.db.execute("COMMIT")
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
    next_id = int(store._meta("next_id", 0))
    rows = []
    for positions in _by_batch(adds).values():
        ids = np.arange(next_id, next_id + len(positions), dtype=np.int64)
        faiss_ops.add(index, _vectors(store, adds, positions, normalize), ids)
        rows += [(int(i), adds[p].state) for i, p in zip(ids, positions)]
        next_id += len(positions)
    old_generation, generation = store.generation, store.generation + 1
    faiss_ops.write_atomic(index, files.index_file(store.folder, generation))
    _apply(store, settings, rows, remove_ids, fresh, generation, next_id)
    # Committed. What follows only tidies up; a crash here is repaired by the next open.
    files.index_file(store.folder, old_generation).unlink(missing_ok=True)
    files.clear_staging(store.folder)
    store.write_manifest()


def _apply(store: IndexStore, settings: dict, rows, remove_ids, fresh: bool, generation: int,
           next_id: int) -> None:
    """One SQLite transaction: item changes, settings and the new generation, or nothing."""
    now = time.time()
    db = store.db
    db.execute("BEGIN IMMEDIATE")
    try:
        if fresh:
            db.execute("DELETE FROM items")
        else:
            db.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in remove_ids])
        db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                       [(i, s.path, s.size, s.mtime_ns, now) for i, s in rows])
        db.execute("DELETE FROM staged")
        store._set_meta("settings", settings)
        store._set_meta("next_id", next_id)
        store._set_meta("built_at", store.now())
        store._set_meta("generation", generation)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
