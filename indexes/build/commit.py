"""Committing a build round by round: each round's staged vectors become a new generation of the
index, crash-safely (the FAISS file written aside, then one SQLite transaction)."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np

from retrieval.errors import FactoryError

from indexes.store import faiss_ops, files, gpu, manifest, ondisk

from indexes.build import training
from indexes.build.plan import Plan
from indexes.store.staging import Staging
from indexes.store.store import IndexStore


def stage_half(settings: dict) -> bool:
    """Whether extracted vectors are staged as float16: when the index's codes are lossy
    anyway (SQ, PQ, PCA: benchmarks/build_scale.py measures recall@10 against float32
    staging); an index that keeps float32 vectors (Flat) gets them as extracted."""
    return not training.exact_storage(faiss_ops.make_index(settings["factory"], settings["dim"]))


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


class Rounds:
    """Commits the rounds of one build of ``store`` as generations. ``fresh``: the first
    commit makes a new index (a first build, --rebuild) and replaces every item; ``moved``:
    it moves the committed index's lists to disk. The index stays open between rounds."""

    def __init__(self, store: IndexStore, settings: dict, fresh: bool, moved: bool) -> None:
        self.store, self.settings, self.fresh, self.moved = store, settings, fresh, moved
        self.factory, self.on_disk = settings["factory"], bool(settings["on_disk"])
        self.next_id = int(store.meta("next_id", 0))
        self.index = None  # the generation last committed by this build
        self.template = None  # --on-disk: the trained index, empty, with lists in memory

    @property
    def needs_training(self) -> bool:
        index = faiss_ops.make_index(self.factory, self.settings["dim"])
        return self.fresh and not index.is_trained

    def due(self, plan: Plan, r: int, last: bool) -> bool:
        """Whether round ``r`` changes anything worth a generation."""
        if self.fresh:
            return plan.staged(r) > 0
        return plan.staged(r) > 0 or plan.removal_count(r, last) > 0 or self.moved

    def commit(self, plan: Plan, r: int, last: bool) -> None:
        """Make generation+1: the committed index minus round ``r``'s removals plus its
        staged vectors (a new index trained on them when fresh)."""
        store, generation = self.store, self.store.generation + 1
        index = self._open(plan, r, generation)
        removals = plan.removals(r, last)
        if self.on_disk:
            grow = ondisk.Growth(index)
            if not self.fresh:
                for ids in removals:
                    grow.remove(ids)
            self._fill(grow, self._vectors(plan, r))
            grow.finish()
        else:
            if not self.fresh:
                for ids in removals:
                    index = faiss_ops.remove(index, ids, self.factory)
            with gpu.adding(index) as add:  # IVF lists assigned on the GPU where FAISS has one
                for x, ids in self._vectors(plan, r):
                    add(index, x, ids)
        faiss_ops.write(index, files.index_file(store.folder, generation))
        store.commit_generation(self.settings, plan.apply(r, last, self.fresh), self.fresh,
                                self.next_id)
        # Committed. What follows only tidies up; a crash here is repaired by the next open.
        for old in (files.index_file(store.folder, generation - 1),
                    files.lists_file(store.folder, generation - 1)):
            old.unlink(missing_ok=True)
        files.clear_staging(store.folder)
        manifest.write(store)
        self.index, self.fresh, self.moved = index, False, False

    def _open(self, plan: Plan, r: int, generation: int):
        """The index round ``r`` changes into generation ``generation``."""
        lists = files.lists_file(self.store.folder, generation)
        if self.index is not None:  # this build's previous round
            if self.on_disk:
                ondisk.follow(self.index, lists)
            return self.index
        if self.fresh:
            index = faiss_ops.make_index(self.factory, self.settings["dim"])
            if not index.is_trained:
                with gpu.training(index):  # k-means on the GPU where FAISS has one
                    training.train(index, lambda: (x for x, _ in self._staged(plan, r)),
                                   self.factory)
        else:
            index = faiss_ops.read(self.store.index_path, mmap=False) if not self.on_disk or \
                self.moved else None
        if not self.on_disk:
            return index
        if index is None:  # on disk already: grown in place
            self.template = faiss_ops.empty_copy(faiss_ops.read(self.store.index_path, mmap=True),
                                                 self.store.index_path)
            return ondisk.open_writable(self.store.index_path, lists)
        self.template = faiss_ops.empty_copy(index, self.store.index_path) if self.moved \
            else faiss.clone_index(index)
        out = faiss.clone_index(self.template)
        ondisk.new_lists(out, lists)
        if self.moved:  # the in-memory lists of the committed index, copied into the file
            grow = ondisk.Growth(out)
            grow.append(index)
            grow.finish()
        return out

    def _staged(self, plan: Plan, r: int) -> Iterator[tuple[np.ndarray, list[int]]]:
        """(vectors (b, d) float32, as indexed, their files' seq) of round ``r``, per batch."""
        staging = Staging(self.store.folder)
        for batch, rows, seqs in plan.batches(r):
            x = staging.vectors(batch, rows)
            yield (faiss_ops.l2_normalize(x) if self.settings["normalize"] else x), seqs

    def _vectors(self, plan: Plan, r: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vectors, new ids) of round ``r``, per batch; each recorded in the plan."""
        for x, seqs in self._staged(plan, r):
            ids = np.arange(self.next_id, self.next_id + len(x), dtype=np.int64)
            plan.added(ids, seqs)
            self.next_id += len(x)
            yield x, ids

    def _fill(self, grow: ondisk.Growth, vectors) -> None:
        """Encode ``vectors`` in in-memory parts of at most ON_DISK_PART_BYTES, each appended
        to the on-disk lists."""
        ivf = faiss.extract_index_ivf(self.template)
        per_part = max(1, faiss_ops.ON_DISK_PART_BYTES // (ivf.code_size + 8))
        part = faiss.clone_index(self.template)
        for x, ids in vectors:
            faiss_ops.add(part, x, ids)
            if part.ntotal >= per_part:
                grow.append(part)
                part = faiss.clone_index(self.template)
        grow.append(part)
