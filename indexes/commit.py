"""Staging extracted batches and committing them as a new index generation, crash-safely."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.errors import FactoryError

from . import faiss_ops, files, manifest
from .staging import FileState, Staging
from .store import IndexStore


@dataclass(frozen=True)
class Staged:
    """An extracted vector waiting in staging/``batch`` at ``row``."""

    state: FileState
    batch: str
    row: int


def _by_batch(adds: Sequence[Staged]) -> dict[str, list[int]]:
    """batch -> positions in ``adds`` of its rows."""
    groups: dict[str, list[int]] = defaultdict(list)
    for pos, a in enumerate(adds):
        groups[a.batch].append(pos)
    return groups


def _vectors(store: IndexStore, adds: Sequence[Staged], positions: list[int], normalize: bool):
    x = Staging(store.folder).vectors(adds[positions[0]].batch, [adds[p].row for p in positions])
    x = faiss_ops.as_float32(x)  # (b, d)
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


def check_on_disk(store: IndexStore, settings: dict, rebuild: bool) -> bool:
    """FactoryError unless ``settings['on_disk']`` can be had; True when it moves the lists
    of the committed index to disk (a commit is due even with nothing new)."""
    if not settings["on_disk"]:
        if store.settings and store.settings.get("on_disk") and not rebuild:
            raise FactoryError(f"{store.folder} keeps its inverted lists on disk; it cannot "
                               "bring them back into memory: build it again with --rebuild")
        return False
    if not faiss_ops.can_live_on_disk(faiss_ops.make_index(settings["factory"], settings["dim"])):
        raise FactoryError(f"--on-disk needs an IVF index type (e.g. IVF4096,SQ8 or "
                           f"PCA256,IVF4096,SQ8); {settings['factory']!r} has no inverted lists")
    return bool(store.settings) and not store.settings.get("on_disk") and not rebuild


def commit(store: IndexStore, settings: dict, adds: Sequence[Staged], remove_ids: Sequence[int],
           rebuild: bool) -> None:
    """Make generation+1: the committed index minus ``remove_ids`` plus ``adds``.

    ``rebuild`` (or a first build): a new index of ``settings['factory']`` from ``adds`` only,
    trained on them when the factory needs it. Raises FactoryError before touching anything.
    ``settings['on_disk']``: the inverted lists go to a new index-<generation+1>.ivfdata,
    filled in parts of bounded memory (``faiss_ops.fill_on_disk``).
    """
    factory, normalize = settings["factory"], settings["normalize"]
    fresh = rebuild or store.generation == 0
    generation = store.generation + 1
    if fresh:
        index = faiss_ops.make_index(factory, settings["dim"])
        if not index.is_trained:
            faiss_ops.train(index, _training_sample(store, adds, normalize, settings["dim"]), factory)
    else:
        index = faiss_ops.read(store.index_path)
    next_id = int(store.meta("next_id", 0))
    batches, rows = [], []  # (positions in adds, their new ids) per staged batch
    for positions in _by_batch(adds).values():
        ids = np.arange(next_id, next_id + len(positions), dtype=np.int64)
        batches.append((positions, ids))
        rows += [(int(i), adds[p].state) for i, p in zip(ids, positions)]
        next_id += len(positions)
    vectors = ((_vectors(store, adds, positions, normalize), ids) for positions, ids in batches)
    remove = np.asarray(remove_ids, np.int64)
    if settings.get("on_disk"):
        template = index if fresh else faiss_ops.empty_copy(index, store.index_path)
        index = faiss_ops.fill_on_disk(template, vectors, files.lists_file(store.folder, generation),
                                       store.folder / files.STAGING,
                                       keep=None if fresh else index, remove_ids=remove)
    else:
        if not fresh:
            index = faiss_ops.remove(index, remove, factory)
        for x, ids in vectors:
            faiss_ops.add(index, x, ids)
    faiss_ops.write(index, files.index_file(store.folder, generation))
    store.commit_generation(settings, rows, remove_ids, fresh, next_id)
    # Committed. What follows only tidies up; a crash here is repaired by the next open.
    for old in (files.index_file(store.folder, generation - 1),
                files.lists_file(store.folder, generation - 1)):
        old.unlink(missing_ok=True)
    files.clear_staging(store.folder)
    manifest.write(store)
