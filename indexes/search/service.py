"""An index served to many clients at once: the weights and the FAISS index loaded once, the
queries that arrive together answered by one forward pass and one search, and every
generation a build commits picked up by the next batch (`retrieve serve` is HTTP over this).

One worker thread owns the model and the index; request threads hand it prepared images or
item ids and wait on a future. Torch-free: the model side is the extractor the loader makes
(``prepare(file) -> input``, ``vectors(inputs) -> (n, d)``, ``identity()``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from retrieval.errors import NotAnImage, RetrieveError

from indexes.search import browse

from indexes.store import closeness, gone, manifest

from indexes.duplicates import jobs as dup_jobs
from indexes.search.searcher import LoadExtractor
from indexes.store.store import describe, hits, open_for_reading

MAX_BATCH = 64  # queries per forward pass and search
BATCH_WAIT_S = 0.002  # after the first query, how long a batch waits for more to join it
Hit = tuple[int, str, float]  # (id, path, Euclidean distance)


class UnknownItem(RetrieveError):
    """An id that is not (or no longer) in the index."""


class ItemGone(RetrieveError):
    """An indexed image whose file can no longer be read, where its vector is needed."""


class WeightsChanged(RetrieveError):
    """An upload prepared for weights that a rebuild replaced before it was searched."""


@dataclass(frozen=True)
class Prepared:
    """An upload as the input of the extractor that prepared it."""

    extractor: object
    input: object


@dataclass
class _Job:
    k: int
    nprobe: int | None
    max_distance: float | None = None
    image: Prepared | None = None  # an upload
    item: int | None = None  # or the id of an indexed image (left out of its own answer)
    future: Future = field(default_factory=Future)


class IndexService:
    """Search ``folder`` for many clients; ``load(source, trusted)`` makes the extractor of
    the index's weights (again, if a rebuild with other weights commits while serving)."""

    def __init__(self, folder: str | os.PathLike, load: LoadExtractor,
                 max_batch: int = MAX_BATCH, wait_s: float = BATCH_WAIT_S) -> None:
        self.store = open_for_reading(folder)
        self.store.use_gpu(wait=False)  # a new generation goes to the GPU while the CPU answers
        self._load, self.max_batch, self.wait_s = load, max_batch, wait_s
        self._lock = threading.Lock()  # one thread at a time on the database and the index
        self._generation = self.store.generation
        try:
            self.extractor = self._extractor_for(self.store.settings)
        except BaseException:
            self.store.close()
            raise
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        # `retrieve duplicates` in the background, one search at a time (dup_jobs.py)
        self.jobs = dup_jobs.Jobs(self._find_duplicates, self.generation)
        self._duplicates_lock = threading.Lock()
        self._root: tuple[int, str] | None = None  # (generation, collection_root)
        self._honoured: tuple | None = None  # (report, decisions and gone stamps, honoured)
        self._folders: tuple[int, list[tuple[str, int]]] | None = None  # (generation, folders)
        # How close is close (closeness.py), measured beside the batcher: its 256 searches
        # of a large Flat index on a CPU take minutes, which no query should wait for.
        self.scale: closeness.Scale | None = None
        self.measured = threading.Event()  # set once a scale is there (tests, benchmarks)
        self._scale_lock, self._measuring = threading.Lock(), False
        self.batches = 0  # forward passes and searches made, for tests and benchmarks
        self._worker = threading.Thread(target=self._serve, name="retrieve-batcher", daemon=True)
        self._worker.start()
        self._measure_soon()

    def _extractor_for(self, settings: dict):
        extractor = self._load(*manifest.weights_ref(settings))
        manifest.check_identity(settings, extractor.identity())
        return extractor

    def close(self) -> None:
        self.jobs.cancel()  # a search under way stops at its next step, its work saved
        self._jobs.put(None)
        self._worker.join()
        self.store.close()

    # -- what request threads call ------------------------------------------------------------
    def prepare(self, file) -> Prepared:
        """An uploaded image (binary file object) as the network's input; NotAnImage."""
        extractor = self.extractor
        return Prepared(extractor, extractor.prepare(file))

    def search(self, images: Sequence[Prepared], k: int, nprobe: int | None = None,
               max_distance: float | None = None) -> Future:
        """A future of [hits] for ``prepare``d images, answered with the batch they join
        (no farther than ``max_distance``)."""
        return self._submit([_Job(k, nprobe, max_distance, image=x) for x in images])

    def neighbours(self, item: int, k: int, nprobe: int | None = None,
                   max_distance: float | None = None) -> Future:
        """A future of [hits] for the indexed image ``item``: the ``k`` nearest others (its
        exact copies among them, itself not); UnknownItem, ItemGone."""
        return self._submit([_Job(k, nprobe, max_distance, item=item)])

    def duplicates(self, config) -> object:
        """`retrieve duplicates` over the committed generation (an ``indexes.duplicates.find``
        Report): the job of ``config`` (``self.jobs``: started, or joined, and waited for;
        dup_jobs.Cancelled), with the user's decisions and the files plans took away
        honoured at each call (decisions.honour)."""
        from indexes.duplicates import decisions

        report = self.jobs.report(config)
        folder = self.store.folder
        with self._duplicates_lock:
            # Honoured again when a decision or an applied plan changed something: not at
            # every page of tens of thousands of groups (it looks at every member's file).
            said = tuple(_stamp(folder / name) for name in (decisions.DATABASE, gone.DATABASE))
            if (self._honoured is None or self._honoured[0] is not report
                    or self._honoured[1] != said):
                self._honoured = (report, said, decisions.honour(report, folder)[0])
            return self._honoured[2]

    def _find_duplicates(self, config, progress) -> object:
        """find_duplicates over the committed generation, on a connection of its own (beside
        the batcher), with the served weights for the calibration; then whether each near
        copy is faint, which the review page's plans ask, weighed once for all its pages (in
        ``config.workers`` processes for many files)."""
        from indexes.duplicates.find import faintness, find_duplicates
        from indexes.duplicates.plans import near_paths

        store = open_for_reading(self.store.folder)
        store.use_gpu()  # the batcher's copy when it is of this generation (indexes.store.gpu)
        try:
            report = find_duplicates(store, config, self.extractor.copy_vectors, progress)
        finally:
            store.close()
        if config.verify:  # unverified, no file is compared: none of it is kept
            faintness(report.index, near_paths(report.groups), config.workers, progress)
        return report

    def generation(self) -> int:
        """The committed generation."""
        with self._lock:
            return self.store.generation

    def _submit(self, jobs: list[_Job]) -> Future:
        for job in jobs:
            self._jobs.put(job)
        done: Future = Future()
        pending = [job.future for job in jobs]

        def collect(_):
            if done.done() or not all(f.done() for f in pending):
                return
            errors = [f.exception() for f in pending if f.exception() is not None]
            if errors:
                done.set_exception(errors[0])
            else:
                done.set_result([f.result() for f in pending])

        for f in pending:
            f.add_done_callback(collect)
        return done

    def info(self) -> dict:
        """What `retrieve info --json` prints, for the committed generation."""
        with self._lock, self.store.snapshot():
            self._follow()
            return describe(self.store)

    def items(self, offset: int, limit: int, folder: str | None = None,
              text: str | None = None, sort: str = "path") -> tuple[int, list[tuple[int, str]]]:
        """(number of matching images, [(id, path)] of ``limit`` of them from ``offset`` on):
        ``browse.page`` of the committed generation."""
        with self._lock, self.store.snapshot():
            return browse.page(self.store, offset, limit, folder, text, sort)

    def folders(self) -> tuple[str, list[tuple[str, int]]]:
        """(the folder that holds every image, [(folder, images directly in it)]), counted
        once per generation."""
        with self._lock, self.store.snapshot():
            generation = self.store.generation
            if self._folders is None or self._folders[0] != generation:
                self._folders = generation, browse.folders(self.store)
            return browse.root(self.store) or os.sep, self._folders[1]

    def facts(self, item: int) -> browse.Facts:
        """What the index holds of ``item`` (UnknownItem)."""
        with self._lock:
            return self._present(item, browse.facts(self.store, item))

    def path(self, item: int) -> str:
        """The indexed path of ``item``: files are only ever read by id, from the database."""
        with self._lock:
            return self._present(item, self.store.paths([item]).get(item))

    def _present(self, item: int, found):
        """``found`` (what the index holds of ``item``, None if nothing), unless the item is
        unknown (UnknownItem) or its file was trashed or moved since (ItemGone); under the lock."""
        if found is None:
            raise UnknownItem(f"no image with id {item} in the index")
        taken = gone.items(self.store.folder, self.store.generation).get(item)
        if taken is not None:
            raise ItemGone(f"item {item}: {gone.describe(taken)}")
        return found

    def paths(self, ids) -> dict[int, str]:
        """id -> indexed path, for the known ``ids``."""
        with self._lock:
            return self.store.paths(ids)

    def gone(self) -> dict[int, dict]:
        """The items an applied plan took away (gone.items), until the next build-index."""
        with self._lock:
            return gone.items(self.store.folder, self.store.generation)

    def collection_root(self) -> str:
        """The folder holding every indexed file (moves keep the paths below it)."""
        with self._lock, self.store.snapshot():
            key = self.store.generation
            if self._root is None or self._root[0] != key:
                self._root = (key, browse.root(self.store) or os.sep)  # in SQL: any size
            return self._root[1]

    # -- the closeness scale, beside the batcher ----------------------------------------------
    def _measure_soon(self) -> None:
        """Measure the committed generation's scale in a thread of its own (one at a time: a
        measurement under way goes on to the newest generation when it is done)."""
        with self._scale_lock:
            if self._measuring:
                return
            self._measuring = True
        threading.Thread(target=self._measure, name="retrieve-closeness", daemon=True).start()

    def _measure(self) -> None:
        while True:
            scale = None
            try:
                store = open_for_reading(self.store.folder)  # its own connection and index
                try:
                    scale = closeness.measure(store)
                finally:
                    store.close()
            except Exception:  # a damaged index: searches say so, results go without closeness
                pass
            with self._scale_lock:
                if scale is not None:
                    self.scale = scale
                    self.measured.set()
                if scale is None or scale.generation >= self._generation:
                    self._measuring = False
                    return

    # -- the worker ---------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                batch.append(job)
            self._answer(batch)

    def _answer(self, batch: list[_Job]) -> None:
        try:
            with self._lock, self.store.snapshot():
                self._follow()
                xq, answered = self._vectors(batch)
                for nprobe in {job.nprobe for job in answered}:
                    group = [n for n, job in enumerate(answered) if job.nprobe == nprobe]
                    # one more for an item's own vector, which is no answer to it
                    k = max(answered[n].k + (answered[n].item is not None) for n in group)
                    found = hits(self.store, xq[group], k, nprobe)
                    for n, row in zip(group, found):
                        job = answered[n]
                        near = np.inf if job.max_distance is None else job.max_distance
                        job.future.set_result([h for h in row if h[0] != job.item
                                               and h[2] <= near][:job.k])
            self.batches += 1
        except Exception as e:  # a damaged index, --nprobe on Flat...: every waiting client
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)

    def _follow(self) -> None:
        """Inside a snapshot: move to the committed generation (and its weights) if a build
        has committed another since the last request."""
        generation = self.store.generation
        if generation == self._generation:
            return
        self.store.forget_index()
        settings = self.store.settings
        if not all(settings.get(k) == self.extractor.identity().get(k)
                   for k in ("sha256", "layer", "dim")):
            self.extractor = self._extractor_for(settings)  # rebuilt with other weights
        self._generation = generation
        self._measure_soon()

    def _vectors(self, batch: list[_Job]) -> tuple[np.ndarray, list[_Job]]:
        """Query vectors (n, d) of the jobs that have one, in one forward pass; the others'
        futures get their error (unknown id, unreadable file)."""
        answered, rows, inputs = [], [], []
        for job in batch:
            if job.image is not None:
                if job.image.extractor is not self.extractor:
                    job.future.set_exception(WeightsChanged(
                        "the index was rebuilt with other weights during the request; send "
                        "the image again"))
                    continue
                answered.append(job)
                inputs.append((len(rows), job.image.input))
                rows.append(None)
                continue
            try:
                rows.append(self._item_vector(job.item, inputs, len(rows)))
                answered.append(job)
            except RetrieveError as e:
                job.future.set_exception(e)
        dim = self.store.settings["dim"]
        xq = np.zeros((len(rows), dim), np.float32)
        if inputs:
            xq[[n for n, _ in inputs]] = self.extractor.vectors([x for _, x in inputs])
        for n, row in enumerate(rows):
            if row is not None:
                xq[n] = row
        return xq, answered

    def _item_vector(self, item: int, inputs: list, position: int) -> np.ndarray | None:
        """The stored vector of ``item`` (Flat indexes), or None after queueing its image,
        embedded again from its file, into ``inputs`` (compressed indexes keep no exact one)."""
        path = self.store.paths([item]).get(item)
        if path is None:
            raise UnknownItem(f"no image with id {item} in the index")
        stored = self.store.reconstruct([item])
        if stored is not None:
            return stored[0]
        try:
            inputs.append((position, self.extractor.prepare(path)))
        except NotAnImage as e:
            raise ItemGone(f"item {item}: {path} can no longer be read ({e.reason})") from None
        return None


def _stamp(path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns
