"""The on-disk index: SQLite (the source of truth), one FAISS file per generation, a manifest.

Layout of an index directory::

    items.sqlite         items (id, path BLOB, size, mtime_ns), settings, generation
    index-<gen>.faiss    the vectors of the committed generation, ids = items.id (IDMap2)
    index-<gen>.ivfdata  its inverted lists, for an index built --on-disk (memory-mapped; one
                         file grown in place, each generation's name a hard link to it)
    manifest.json        what the index holds, for people and tools (rewritten after each commit)
    staging/<r>-<n>.npz  extracted, not yet committed batches of process r: at most a round
                         (a killed build resumes from them; see staging.py)
    plan.sqlite          the running build's plan (plan.py), removed when it ends
    lock                 flock held by the running build-index (its rank 0 under torchrun)

A commit (one per round of a build) writes index-<gen+1>.faiss aside, then one SQLite
transaction applies the item changes and sets the generation to gen+1; only then is the old file deleted. A crash at
any point leaves either generation whole, and the next open removes the other one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from retrieval.errors import IndexCorrupt, SearchError

from indexes.store import faiss_ops, files, gone, gpu, manifest
from indexes.store.staging import FileState, Staging, StagedRow

# Extra neighbours a search asks for in place of files an applied plan took away (a search
# past the GPU's k limit of 2048 runs on the CPU copy: indexes.store.gpu).
GONE_ROOM = 1024
COMMIT_RETRIES = 5  # times a reader re-reads the generation when a build commits under it
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, path BLOB UNIQUE NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, indexed_at REAL NOT NULL);
"""


@contextmanager
def transaction(db: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
    """One transaction on ``db`` (opened with isolation_level=None), started by BEGIN (or BEGIN
    IMMEDIATE): committed when the block ends, rolled back on any exception."""
    db.execute(begin)
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Item(NamedTuple):
    """A committed image: its FAISS id and the file's size and mtime when it was indexed."""

    id: int
    size: int
    mtime_ns: int


class IndexStore:
    """An open index directory. ``settings``: what the vectors were made with (None when new).

    ``settings`` is a dict with at least ``dim``, ``factory`` and ``normalize``; the rest
    (weights, layer, transform, build options) is recorded for the manifest and checks.
    """

    def __init__(self, folder: Path, db: sqlite3.Connection) -> None:
        self.folder, self._db = folder, db
        self._index = None
        self._loaded = 0  # the generation of _index
        self._gpu: str | None = None  # "wait" or "background": search on FAISS's GPU copy
        self._device_index: gpu.GpuCopy | None = None  # the GPU copy of _index, once made
        self._nprobe: int | None = None  # what _index was saved with (IVF), for nprobe=None

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike, create: bool = False,
             discard_damaged: bool = False) -> "IndexStore":
        """Open an index directory. Raises IndexCorrupt naming a damaged or missing file.

        ``create``: make the directory and database if there is no index yet.
        ``discard_damaged`` (for --rebuild): replace a damaged or missing database by an
        empty one instead of refusing.
        """
        folder = Path(os.path.abspath(folder))
        db_path = folder / files.DATABASE
        if not db_path.is_file():
            if folder.is_dir() and any(folder.glob("index-*.faiss")) and not discard_damaged:
                raise files.corrupt(folder, files.DATABASE, "missing")
            if not create:
                raise IndexCorrupt(f"{folder}: no index here; make one with "
                                   f"`retrieve build-index PATH... --index {folder}`")
            folder.mkdir(parents=True, exist_ok=True)
        try:
            return cls._connect(folder)
        except IndexCorrupt:
            if not discard_damaged:
                raise
        for name in (files.DATABASE, files.DATABASE + "-journal"):
            (folder / name).unlink(missing_ok=True)
        return cls._connect(folder)

    @classmethod
    def _connect(cls, folder: Path) -> "IndexStore":
        try:
            # Explicit BEGINs; usable from the thread of a server's batcher and its request
            # threads, which take turns (retrieve serve serialises them).
            db = sqlite3.connect(folder / files.DATABASE, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            # A damaged page can hide rows instead of failing (a broken meta index reads as
            # "no build yet"): check every page's structure, linear in size, like one scan.
            problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                db.close()
                lines = [line for line in problem.splitlines() if not line.startswith("***")]
                raise sqlite3.DatabaseError((lines or ["malformed"])[0][:200])
            store = cls(folder, db)
            store.generation  # noqa: B018 (reads the database: damage shows here)
        except sqlite3.DatabaseError as e:
            raise files.corrupt(folder, files.DATABASE, f"damaged ({e})") from None
        return store

    def close(self) -> None:
        self._index = self._device_index = None
        self._db.close()

    def atomic(self):
        """One SQLite transaction, holding the write lock from its start (BEGIN IMMEDIATE):
        everything written inside is committed together, or rolled back on any exception."""
        return transaction(self._db, "BEGIN IMMEDIATE")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: inside it the generation, items and settings are those of one
        commit (a build's commit waits for it to end), and the generation's FAISS file exists."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def forget_index(self) -> None:
        """Drop the cached FAISS index: the next search reads the committed generation's."""
        self._index = self._device_index = None

    # -- settings and counters ---------------------------------------------------------------
    def meta(self, key: str, default=None):
        """A value of the meta table (JSON), or ``default``."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        """Set a meta value; inside ``atomic()``, to commit it with what belongs with it."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def generation(self) -> int:
        """The committed generation: 0 before the first commit."""
        return int(self.meta("generation", 0))

    @property
    def settings(self) -> dict | None:
        """What the committed vectors were made with (weights, layer, dim, factory, ...)."""
        return self.meta("settings")

    @property
    def staging_settings(self) -> dict | None:
        """What the staged, uncommitted vectors were made with."""
        return self.meta("staging_settings")

    @property
    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    @property
    def index_path(self) -> Path:
        return files.index_file(self.folder, self.generation)

    # -- reading -----------------------------------------------------------------------------
    def items(self) -> dict[bytes, Item]:
        """path bytes -> Item(id, size, mtime_ns) of every committed image."""
        rows = self._db.execute("SELECT path, id, size, mtime_ns FROM items")
        return {bytes(p): Item(i, s, m) for p, i, s, m in rows}

    def staged(self) -> dict[FileState, StagedRow]:
        """The file (path, size, mtime) of every staged vector -> StagedRow(batch, row)."""
        return Staging(self.folder).rows()

    def paths(self, ids) -> dict[int, str]:
        """id -> path (str, surrogate-escaped where the name is not UTF-8) for known ids."""
        ids = [int(i) for i in ids if i >= 0]
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT id, path FROM items WHERE id IN ({marks})", chunk)
            out.update((i, os.fsdecode(bytes(p))) for i, p in rows)
        return out

    def page(self, offset: int, limit: int) -> list[tuple[int, str]]:
        """(id, path) of the committed images in id order, ``limit`` from ``offset`` on."""
        rows = self._db.execute("SELECT id, path FROM items ORDER BY id LIMIT ? OFFSET ?",
                                (limit, offset))
        return [(i, os.fsdecode(bytes(p))) for i, p in rows]

    def select(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        """The rows of a read-only query of the tables above (browsing: indexes/search/browse.py)."""
        return self._db.execute(sql, params)

    def reconstruct(self, ids: Sequence[int]) -> np.ndarray | None:
        """The stored vectors of ``ids`` (n, d), as searched (normalised with --normalize);
        None when the index type does not keep them exactly (only Flat does)."""
        index = self.load_index(mmap=True)
        return faiss_ops.reconstruct(index, ids) if faiss_ops.is_exact(index) else None

    def load_index(self, mmap: bool = False):
        """The committed FAISS index on the CPU (cached); ``mmap``: read-only, mapped.

        A build that commits while this runs deletes the file of the generation read just
        before: the newer generation is read instead (a mapped file stays readable once open).
        """
        for _ in range(COMMIT_RETRIES):
            if self._index is not None:
                break
            generation = self.generation
            if generation == 0:
                raise IndexCorrupt(f"{self.folder}: the index is empty (no build has finished); "
                                   f"run `retrieve build-index PATH... --index {self.folder}`")
            path = files.index_file(self.folder, generation)
            try:
                index = faiss_ops.read(path, mmap=mmap)
                count = self.count
            except IndexCorrupt:
                if self.generation != generation:
                    continue  # superseded by a commit meanwhile
                raise
            if self.generation != generation:
                continue  # count may be the newer generation's
            if index.ntotal != count:
                raise files.corrupt(self.folder, path.name,
                                    f"holds {index.ntotal} vectors, the database {count}")
            self._index, self._nprobe = index, faiss_ops.nprobe_of(index)
            self._loaded = generation
        if self._index is None:
            raise IndexCorrupt(f"{self.folder}: builds kept committing while the index was "
                               "being opened; try again")
        return self._index

    def use_gpu(self, wait: bool = True) -> None:
        """Search on FAISS's GPU copy of the index from now on, where FAISS has a GPU and the
        search fits its limits (``indexes.store.gpu``): for serve, evaluate, duplicates and big
        batches, whose searches pay for the copy. Made at the next search, once per process for
        every store of this folder; ``wait`` False: the CPU answers while it is being made."""
        self._gpu = "wait" if wait else "background"

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None, inner: bool = False):
        """(nq, d) float32 queries -> (D, I): Euclidean distances and ids, (nq, <=k), -1 padded.

        FAISS returns squared L2; the square root (clamped at 0) is the paper's distance.
        Queries are L2-normalised first when the index was built with normalisation.
        ``nprobe`` holds for this call only (IVF); None: what the index was saved with.
        ``inner``: the queries are already vectors of the space behind the index's transform
        (``faiss_ops.inner_space``, e.g. stored vectors of a PCA index), searched there as they are.
        On the GPU copy (``use_gpu``) unless the search is past FAISS's GPU limits; a Flat
        index's GPU candidates are re-ranked by exact distances from the CPU's vectors.
        """
        cpu = self.load_index(mmap=True)
        nprobe = nprobe if nprobe is not None else self._nprobe
        xq = faiss_ops.as_float32(xq)
        if inner:
            cpu = faiss_ops.inner_space(cpu)
        elif self.settings.get("normalize"):
            xq = faiss_ops.l2_normalize(xq)
        exact = faiss_ops.is_exact(cpu)
        copy = self._gpu_copy()
        if copy is not None and inner:
            copy = copy.inner()
        why = None if copy is None else copy.refuses(k, nprobe, cpu.ntotal, exact)
        if copy is not None and why is None:
            try:
                D, I = copy.search(xq, k, nprobe, vectors=cpu if exact else None)
                return np.sqrt(np.maximum(D, 0)), I
            except SearchError as e:  # e.g. out of GPU memory for this batch
                why = f"a search failed on GPU {copy.gpu} ({e})"
        if why is not None:
            gpu.say(f"{why}: such searches run on the CPU")
        if nprobe is not None:
            faiss_ops.set_nprobe(cpu, nprobe)
        D, I = faiss_ops.search(cpu, xq, k)
        return np.sqrt(np.maximum(D, 0)), I

    def _gpu_copy(self) -> gpu.GpuCopy | None:
        """The GPU copy of the loaded generation when ``use_gpu`` asked for one and it is made."""
        if self._gpu is not None and self._device_index is None:
            self._device_index = gpu.shared_copy(str(self.folder), self._loaded, self._index,
                                                 wait=self._gpu == "wait")
        return self._device_index

    def size_on_disk(self) -> int:
        """Bytes the folder's files take (blocks: the lists file of --on-disk is sparse)."""
        return sum(p.stat().st_blocks * 512 for p in self.folder.rglob("*") if p.is_file())

    # -- writing (call with the build lock held) ----------------------------------------------
    def reset_staging(self, settings: dict) -> None:
        """Keep staged vectors only if they were made with these ``settings``; else drop them."""
        if self.staging_settings == settings:
            return
        files.clear_staging(self.folder)
        with self.atomic():
            self.set_meta("staging_settings", settings)

    def commit_generation(self, settings: dict, apply: Callable[[sqlite3.Connection, float], None],
                          fresh: bool, next_id: int) -> int:
        """One transaction: the item changes (``apply(db, now)``, the plan's SQL: see
        ``indexes.build.plan``; every item replaced when ``fresh``), the settings and generation + 1,
        which index-<generation+1>.faiss must already hold. Returns the new generation."""
        now, generation = time.time(), self.generation + 1
        with self.atomic():
            if fresh:
                self._db.execute("DELETE FROM items")
            apply(self._db, now)
            self.set_meta("staging_settings", None)  # staging/ is spent: the next open clears it
            self.set_meta("settings", settings)
            self.set_meta("next_id", next_id)
            self.set_meta("built_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            self.set_meta("generation", generation)
        return generation

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for a build's plan (``indexes.build.plan``), which attaches its scratch
        database to it and reads the items table in SQL."""
        return self._db

    def tidy(self) -> None:
        """Remove strays of interrupted builds and bring a stale manifest up to date."""
        if self.staging_settings is None:  # committed, or never started
            files.clear_staging(self.folder)
        files.remove_strays(self.folder, self.generation, Staging.is_batch)
        if self.generation and manifest.generation_on_disk(self.folder) != self.generation:
            manifest.write(self)


def open_for_reading(folder: str | os.PathLike) -> IndexStore:
    """Open a built index for query / info: IndexCorrupt naming any damaged file.

    A manifest that an interrupted build left stale or unwritten is brought up to date
    from the database when no build is running; a damaged one is reported.
    """
    store = IndexStore.open(folder)
    try:
        if store.generation == 0 or store.settings is None:
            raise IndexCorrupt(f"{store.folder}: no build has finished yet; run "
                               f"`retrieve build-index PATH... --index {store.folder}`")
        stale = not (store.folder / files.MANIFEST).exists()
        if not stale:
            stale = manifest.read(store.folder).get("generation") != store.generation
        if stale:
            lock = files.BuildLock(store.folder)
            if lock.acquire(wait_message=False):
                try:
                    store.tidy()
                finally:
                    lock.release()
    except BaseException:
        store.close()
        raise
    return store


def hits(store: IndexStore, xq: np.ndarray, k: int, nprobe: int | None = None,
         max_distance: float | None = None) -> list[list[tuple[int, str, float]]]:
    """For each query row: up to k (id, path, Euclidean distance), nearest first, cut at id -1
    and, with ``max_distance``, at the first one farther than it.

    An id whose file a build removed from the index since it was loaded is left out, and so
    is one whose file an applied `duplicates` plan took away (gone.py).
    """
    taken = gone.items(store.folder, store.generation)
    D, I = store.search(xq, k + min(len(taken), GONE_ROOM), nprobe)  # room for those left out
    names = store.paths(np.unique(I[I >= 0]))
    near = np.inf if max_distance is None else max_distance
    return [[(int(i), names[int(i)], float(d)) for d, i in zip(d_row, i_row)
             if int(i) in names and int(i) not in taken and d <= near][:k]
            for d_row, i_row in zip(D, I)]


def neighbours(store: IndexStore, xq: np.ndarray, k: int, nprobe: int | None = None,
               max_distance: float | None = None) -> list[list[tuple[str, float]]]:
    """``hits`` without the ids: up to k (path, Euclidean distance) per query row."""
    return [[(path, d) for _, path, d in row] for row in hits(store, xq, k, nprobe, max_distance)]


def describe(store: IndexStore) -> dict:
    """What ``info`` shows: the manifest, checked against the database and the FAISS file."""
    store.load_index(mmap=True)  # IndexCorrupt if the FAISS file is missing or damaged
    facts = manifest.contents(store)
    facts.update(index=str(store.folder), size_on_disk=store.size_on_disk())
    return facts
