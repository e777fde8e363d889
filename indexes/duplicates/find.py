"""Near-duplicate groups among everything an index holds (`retrieve duplicates`).

Three stages, each bounded by the size of the collection, never by its square:

1. **Exact copies**: files with the same bytes (same size, then the same sha256), found without
   the network; each such group is one image for what follows.
2. **Candidates**: every indexed vector searched against the index itself (k nearest, in
   batches: Flat, IVF, PQ, PCA alike), kept when closer than the threshold. The default
   threshold is calibrated on copies the tool makes of a sample of the indexed images
   (``calibrate``): 1.5 times the distance that 99% of them stay within. Beside them, when
   pixels are verified, each image's k nearest by their sketches (``sketches``: what a copy
   keeps whatever fc7 makes of it), and the k nearest to what a crop of it would sketch like.
3. **Verification**: each candidate pair's pixels compared (``retrieval.copies.compare``):
   fc7 finds what looks alike, the pixels tell a copy from a similar scene, and from the same
   scene with something changed (a burst shot, an edit): alike as a whole, different in part.
   Then the pairs of two files that matched one same third (not a crowd: k files at most) are
   compared as well (a copy of a copy is a copy of the original, however far fc7 put the two).

Groups are stars around the file to keep (the largest resolution, then the largest file):
every member is a verified duplicate of the kept file itself, so that A like B and B like C
never put A and C together unless A is like C. Progress is kept in DIR/duplicates.sqlite: an
interrupted run goes on where it stopped, and each pair's comparison is kept by its two files,
so that a run with other settings, or after build-index added or changed files, compares only
the pairs it has not compared before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.copies import CHECK, brightness, faint_files, shows_shapes

from indexes.config import DUPLICATE_K, DuplicatesConfig
from indexes.duplicates.groups import (Group, Member, PixelCheck, exact_group, fc7_distances,
                                       folded, mapping, near_groups, second_look, verified)
from indexes.duplicates import sketches
from indexes.duplicates.progress import Progress, ProgressFn, as_progress
from indexes.store import faiss_ops
from indexes.store.closeness import nearest_other
from indexes.store.store import IndexStore, transaction

__all__ = ["Calibration", "Group", "Member", "Report", "State", "calibrate", "faintness",
           "find_duplicates"]

STATE = "duplicates.sqlite"
BUSY_S = 60.0  # how long a run waits for another run's write to the saved state
BATCH = 1024  # images searched per step (and per saved step)
CALIBRATION_IMAGES = 100  # indexed images whose copies calibrate the threshold
# The default threshold: the distance COPY_QUANTILE of the calibration copies stay within,
# times THRESHOLD_MARGIN: real copies are made otherwise than ours and fall farther (with
# random weights, brightened photos reach 1.4x), and the pixel check keeps the precision.
COPY_QUANTILE = 0.99
THRESHOLD_MARGIN = 1.5
CALIBRATION_CHUNK = 16  # images whose copies are embedded between two reports of progress
# 2: checked holds each pair's difference; 3: checked is keyed by the two files compared
# (files: each path as it was, size and modification time, and whether its picture is faint,
# once a plan asked), not by the run.
SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER,
                                   sha256 TEXT);
CREATE TABLE IF NOT EXISTS searched (run TEXT, start INTEGER, PRIMARY KEY (run, start));
CREATE TABLE IF NOT EXISTS pairs (run TEXT, a INTEGER, b INTEGER, distance REAL,
                                  PRIMARY KEY (run, a, b));
CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY AUTOINCREMENT, path BLOB UNIQUE NOT NULL,
                                  size INTEGER, mtime_ns INTEGER, faint INTEGER);
CREATE TABLE IF NOT EXISTS checked (a INTEGER, b INTEGER, similarity REAL, difference REAL,
                                    PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS checked_b ON checked (b);
CREATE TABLE IF NOT EXISTS sketches (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER,
                                     vector BLOB);
"""

# paths -> for each, (n_copies, d) fc7 vectors of copies of that image, or None when it cannot
# be read (retrieval.features' FeatureExtractor.copy_vectors, in batches).
CopyVectors = Callable[[list[str]], list[np.ndarray | None]]


@dataclass
class Calibration:
    """Distances of copies to their originals, and of originals to their nearest other image."""

    threshold: float
    images: int  # sampled images that could be read
    copies_within: float  # share of the copies within the threshold
    others_within: float  # share of the images whose nearest other image is within it
    copy_distances: list[float] = field(default_factory=list)
    other_distances: list[float] = field(default_factory=list)


@dataclass
class Report:
    index: str
    images: int
    threshold: float
    threshold_source: str  # "calibrated", "calibrated before" or "given"
    groups: list[Group]
    candidates: int  # pairs within the threshold
    verified: int  # of them, accepted by the pixel check (all when it is off)
    calibration: Calibration | None = None
    compared: int = 0  # pairs whose pixels this run compared (the others' were saved)


class State:
    """DIR/duplicates.sqlite: what a run has done so far (in memory when DIR is read-only)."""

    def __init__(self, folder: Path) -> None:
        try:
            self.db = sqlite3.connect(folder / STATE, isolation_level=None,
                                      timeout=BUSY_S)
            self._create()
        except sqlite3.Error:
            self.db = sqlite3.connect(":memory:", isolation_level=None)
            self._create()
        # Saved work, not the index: losing the last steps to a power cut only redoes them.
        self.db.execute("PRAGMA synchronous=NORMAL")

    def _create(self) -> None:
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self.db.execute("DROP TABLE IF EXISTS checked")  # saved work of an older check
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.db.executescript(SCHEMA)
        if self.get("check") != CHECK:  # pairs compared by another version of the check
            with self.transaction():
                self.db.execute("DELETE FROM checked")
                self.db.execute("UPDATE files SET faint = NULL")
                self.put("check", CHECK)

    def get(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def transaction(self):
        """One transaction on the saved state (store.transaction)."""
        return transaction(self.db)

    def start(self, run: str) -> None:
        """Forget the searches of other runs (another generation, threshold, k or nprobe): the
        pairs compared are kept by their files (``file_ids``)."""
        with self.transaction():
            for table in ("searched", "pairs"):
                self.db.execute(f"DELETE FROM {table} WHERE run != ?", (run,))

    def file_ids(self, items: dict[int, str], stats: dict[int, os.stat_result]
                 ) -> dict[int, int]:
        """Item id -> the id of its file as it is now (``stats``: the items that could be
        read; the others get none) in the files table, whose pairs compared are saved in
        ``checked``. A file changed since, or no longer indexed, is forgotten with its pairs
        (one no longer indexed with its hash and sketch too); a changed one gets a new id
        (never one used before)."""
        out: dict[int, int] = {}
        with transaction(self.db, "BEGIN IMMEDIATE"):  # another run waits: one id a file
            saved = {path: (fid, size, mtime_ns) for fid, path, size, mtime_ns in
                     self.db.execute("SELECT id, path, size, mtime_ns FROM files")}
            new, indexed = [], {os.fsencode(path) for path in items.values()}
            for i, st in stats.items():  # a file unreadable now keeps what was saved of it
                key = os.fsencode(items[i])
                row = saved.get(key)
                if row is not None and row[1:] == (st.st_size, st.st_mtime_ns):
                    out[i] = row[0]
                else:
                    new.append((i, key, st))
            changed = {key for _, key, _ in new}
            forgotten = [(fid,) for key, (fid, _, _) in saved.items()
                         if key not in indexed or key in changed]
            self.db.executemany("DELETE FROM checked WHERE a = ?", forgotten)
            self.db.executemany("DELETE FROM checked WHERE b = ?", forgotten)
            self.db.executemany("DELETE FROM files WHERE id = ?", forgotten)
            gone = [(key,) for key in saved if key not in indexed]
            self.db.executemany("DELETE FROM hashes WHERE path = ?", gone)
            self.db.executemany("DELETE FROM sketches WHERE path = ?", gone)
            for i, key, st in new:
                out[i] = self.db.execute(
                    "INSERT INTO files (path, size, mtime_ns) VALUES (?, ?, ?)",
                    (key, st.st_size, st.st_mtime_ns)).lastrowid
        return out

    def close(self) -> None:
        self.db.close()


def find_duplicates(store: IndexStore, config: DuplicatesConfig,
                    copy_vectors: CopyVectors | None = None,
                    progress: bool | ProgressFn = False) -> Report:
    """Group the near-duplicates among the images of ``store`` (see the module docstring).

    ``copy_vectors`` embeds copies of images, for the calibration when no threshold is
    given (RetrieveError without it). ``progress``: tqdm bars on stderr (True), or a
    callback called with (stage, done, total) as each stage ("hashing", "calibrating",
    "searching", "sketching", "verifying") goes on, which may raise to stop the run (its
    saved work kept). Nothing is moved or deleted.
    """
    report = as_progress(progress)
    items = {item.id: os.fsdecode(path) for path, item in store.items().items()}
    state = State(store.folder)
    try:
        stats = current_stats(items)
        exact = exact_groups(items, stats, state, report)
        copies_of = {i for group in exact for i in group[1:]}  # searched as their first file
        threshold, source, calibration = _threshold(store, config, copy_vectors, state, report)
        # the search's key: the pixel check's work is kept by file, another CHECK redoes that
        run = f"{store.generation}:{threshold!r}:{config.k}:{config.nprobe}"
        state.start(run)
        searched = sorted(set(items) - copies_of)
        pairs = candidates(store, config, threshold, searched, state, run, report)
        crowded = _crowded(pairs, config.k)
        if config.verify:  # unverified, pairs of sketches alone would be mostly wrong
            pairs.update(sketched(store, config, {i: items[i] for i in searched}, pairs, state,
                                  report))
        check = (PixelCheck(items, state.file_ids(items, stats), config, state)
                 if config.verify else None)
        accepted = verified(pairs, check, report)
        if check is not None:
            more = pair_distances(store, copies_of_copies(accepted, pairs, config.k))
            if more:
                pairs.update(more)
                accepted.update(verified(more, check, report))
            more = crowded_out(store, config, threshold, crowded, accepted, pairs)
            if more:
                pairs.update(more)
                accepted.update(verified(more, check, report))
        look = None if check is None else second_look(store, check)
        groups = folded([exact_group(g, items) for g in exact],
                        near_groups(accepted, pairs, items, look,
                                    lambda i: shows_shapes(items[i]),
                                    lambda i: brightness(items[i])))
    finally:
        state.close()
    return Report(str(store.folder), len(items), threshold, source, groups, len(pairs),
                  len(accepted), calibration, 0 if check is None else check.compared)


FAINT_BATCH = 256  # files whose faintness is read per saved step
# Files to weigh before worker processes pay for themselves. A worker decodes each file anew
# (about 24 ms a photo) where this process may hold it decoded already: a run that compared
# its pairs here (fewer than groups.POOL_FROM) holds its grouped files, whose faintness is
# then next to free here. From 128 files, a first run's plan of 141 grouped files took 32.6 s
# instead of 29.0 (the workers decoded them again); as many files as POOL_FROM pairs come
# from a run that compared in workers.
FAINT_POOL_FROM = 1024


def faintness(index: str | os.PathLike, paths: Iterable[str], workers: int = 0,
              progress: bool | ProgressFn | Progress = False) -> dict[str, bool]:
    """Path -> whether its picture is faint (``retrieval.copies.shows_next_to_nothing``), for
    a plan: saved in ``index``'s files table by path, size and modification time, so that a
    later plan reads it; what is not saved is read in ``workers`` processes when there are
    FAINT_POOL_FROM files or more, each batch saved as it is done. A file gone is faint (it
    cannot be told)."""
    state = State(Path(index))
    try:
        out, todo = {}, []
        for path in sorted(set(paths)):  # one by one: a page of groups asks for a few
            try:
                st = os.stat(path)
            except OSError:
                out[path] = True
                continue
            known = state.db.execute("SELECT faint FROM files WHERE path = ? AND size = ? AND "
                                     "mtime_ns = ?", (os.fsencode(path), st.st_size,
                                                      st.st_mtime_ns)).fetchone()
            if known is not None and known[0] is not None:
                out[path] = bool(known[0])
            else:
                todo.append((path, st))
        batches = [todo[start:start + FAINT_BATCH] for start in range(0, len(todo), FAINT_BATCH)]
        with as_progress(progress).stage("weighing", len(todo), "files") as advance, \
                mapping(workers if len(todo) >= FAINT_POOL_FROM else 0) as mapped:
            for batch, found in zip(batches, mapped(faint_files, [[p for p, _ in b]
                                                                  for b in batches])):
                out.update((path, faint) for (path, _), faint in zip(batch, found))
                with state.transaction():  # a file not in the table (not compared) is not kept
                    state.db.executemany(
                        "UPDATE files SET faint = ? WHERE path = ? AND size = ? AND mtime_ns = ?",
                        [(int(faint), os.fsencode(path), st.st_size, st.st_mtime_ns)
                         for (path, st), faint in zip(batch, found)])
                advance(len(batch))
        return out
    finally:
        state.close()


# -- 1. exact copies ------------------------------------------------------------------------
def current_stats(items: dict[int, str]) -> dict[int, os.stat_result]:
    """Item id -> its file's stat now, for the files that are there."""
    stats = {}
    for i, path in items.items():
        try:
            stats[i] = os.stat(path)
        except OSError:
            continue
    return stats


def exact_groups(items: dict[int, str], stats: dict[int, os.stat_result], state: State,
                 progress: Progress) -> list[list[int]]:
    """Ids of files with the same bytes, grouped (only files that share a size are read)."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, st in stats.items():
        by_size[st.st_size].append(i)
    alike = [i for ids in by_size.values() if len(ids) > 1 for i in ids]
    by_hash: dict[str, list[int]] = defaultdict(list)
    with progress.stage("hashing", len(alike), "files") as advance:
        for start in range(0, len(alike), BATCH):  # saved a batch at a time
            chunk, read = alike[start:start + BATCH], []
            for i in chunk:  # read outside a transaction: another run is not kept waiting
                digest = _sha256(items[i], stats[i], state, read)
                if digest is not None:
                    by_hash[digest].append(i)
            with state.transaction():
                state.db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", read)
            advance(len(chunk))
    return [sorted(ids, key=lambda i: items[i]) for ids in by_hash.values() if len(ids) > 1]


def _sha256(path: str, st: os.stat_result, state: State, read: list) -> str | None:
    """The file's sha256, as saved for its size and modification time, or read (its row
    appended to ``read``, to save); None when it cannot be read."""
    key = os.fsencode(path)
    row = state.db.execute("SELECT size, mtime_ns, sha256 FROM hashes WHERE path = ?",
                           (key,)).fetchone()
    if row and row[:2] == (st.st_size, st.st_mtime_ns):
        return row[2]
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError:
        return None
    read.append((key, st.st_size, st.st_mtime_ns, h.hexdigest()))
    return h.hexdigest()


# -- 2. candidates --------------------------------------------------------------------------
def _threshold(store: IndexStore, config: DuplicatesConfig, copy_vectors: CopyVectors | None,
               state: State, progress: Progress) -> tuple[float, str, Calibration | None]:
    if config.threshold is not None:
        return config.threshold, "given", None
    s = store.settings
    key = f"calibration:{s['sha256']}:{s['factory']}:{s['normalize']}:{config.nprobe}"
    cached = state.get(key)
    if cached is not None:
        return cached["threshold"], "calibrated before", Calibration(**cached)
    if copy_vectors is None:
        from retrieval.errors import RetrieveError

        raise RetrieveError("no threshold to calibrate with: give --threshold")
    calibration = calibrate(store, copy_vectors, nprobe=config.nprobe, progress=progress)
    state.put(key, calibration.__dict__)
    return calibration.threshold, "calibrated", calibration


def calibrate(store: IndexStore, copy_vectors: CopyVectors, images: int = CALIBRATION_IMAGES,
              nprobe: int | None = None, seed: int = 0,
              progress: bool | ProgressFn | Progress = False) -> Calibration:
    """THRESHOLD_MARGIN x the distance COPY_QUANTILE of the copies of up to ``images``
    indexed images stay within, each copy searched in the index as a query and measured to
    its original there (a copy not among its DUPLICATE_K nearest counts as infinitely far)."""
    ids = np.array(sorted(item.id for item in store.items().values()), dtype=np.int64)
    sample = np.random.default_rng(seed).permutation(ids)[:images]
    paths = store.paths(sample)
    copy_rows, originals = [], []
    with as_progress(progress).stage("calibrating", len(sample), "images") as advance:
        for start in range(0, len(sample), CALIBRATION_CHUNK):
            chunk = sample[start:start + CALIBRATION_CHUNK]
            for i, vectors in zip(chunk, copy_vectors([paths[int(i)] for i in chunk])):
                if vectors is not None:  # None: the file cannot be read
                    copy_rows.append(vectors)
                    originals += [int(i)] * len(vectors)
            advance(len(chunk))
    if not copy_rows:
        from retrieval.errors import RetrieveError

        raise RetrieveError("no indexed image could be read to calibrate on: give --threshold")
    D, I = store.search(np.concatenate(copy_rows), DUPLICATE_K, nprobe)
    found = I == np.array(originals)[:, None]
    copy_d = np.where(found.any(1), np.where(found, D, 0).sum(1), np.inf)  # inf: not among them
    used = np.unique(originals)
    other_d = nearest_other(store, used, nprobe)
    finite = copy_d[np.isfinite(copy_d)]
    threshold = float(np.quantile(finite, COPY_QUANTILE)) * THRESHOLD_MARGIN if len(finite) else 0.0
    return Calibration(threshold, len(used), float((copy_d <= threshold).mean()),
                       float((other_d <= threshold).mean()),
                       [float(d) for d in copy_d], [float(d) for d in other_d])


def candidates(store: IndexStore, config: DuplicatesConfig, threshold: float, ids: list[int],
               state: State, run: str, progress: bool | ProgressFn | Progress
               ) -> dict[tuple[int, int], float]:
    """(a, b) -> fc7 distance of every pair of ``ids`` within ``threshold``, a < b; each
    batch of BATCH searched images saved as it is done, so that a rerun skips it."""
    index = faiss_ops.inner_space(store.load_index(mmap=True))  # a PCA's output space
    wanted = set(ids)
    with state.transaction():  # what is saved, at once: another run may forget it meanwhile
        done = {r[0] for r in state.db.execute("SELECT start FROM searched WHERE run = ?",
                                               (run,))}
        found = {(a, b): d for a, b, d in state.db.execute(
            "SELECT a, b, distance FROM pairs WHERE run = ?", (run,))}
    with as_progress(progress).stage("searching", len(ids), "images") as advance:
        for start in range(0, len(ids), BATCH):
            if start not in done:
                found.update(_search_batch(store, index, ids[start:start + BATCH], wanted,
                                           config, threshold, state, run, start))
            advance(len(ids[start:start + BATCH]))
    return dict(sorted(found.items()))


def sketched(store: IndexStore, config: DuplicatesConfig, items: dict[int, str],
             known: dict[tuple[int, int], float], state: State, progress: Progress
             ) -> dict[tuple[int, int], float]:
    """(a, b) -> fc7 distance of the pairs the sketches offer that fc7 did not (``known``)."""
    ids, xb = sketches.sketches(items, state, progress, config.workers)
    return pair_distances(store, sorted(sketches.near_pairs(ids, xb, config.k) - set(known)))


def copies_of_copies(accepted: dict[tuple[int, int], object], known: dict[tuple[int, int], float],
                     most: int = DUPLICATE_K) -> list[tuple[int, int]]:
    """The pairs, not among ``known``, of two files accepted with one same third that was
    accepted with ``most`` files or fewer: a copy of a copy is compared with the original too
    (fc7 may have put the two far apart); a file alike to a crowd (a flat colour, with lenient
    bars) would make the pairs grow as the square of the crowd."""
    partners: dict[int, set[int]] = defaultdict(set)
    for a, b in accepted:
        partners[a].add(b)
        partners[b].add(a)
    out = set()
    for group in partners.values():
        if len(group) <= most:
            out.update((a, b) for a in group for b in group if a < b and (a, b) not in known)
    return sorted(out)


def _crowded(pairs: dict[tuple[int, int], float], k: int) -> set[int]:
    """The files with ``k`` candidate pairs or more: their k nearest were all within the
    threshold, and so maybe not their copies (``crowded_out``)."""
    offered: dict[int, int] = defaultdict(int)
    for a, b in pairs:
        offered[a] += 1
        offered[b] += 1
    return {f for f, n in offered.items() if n >= k}


def crowded_out(store: IndexStore, config: DuplicatesConfig, threshold: float,
                crowded: set[int], accepted: dict[tuple[int, int], object],
                known: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    """(a, b) -> fc7 distance of the pairs of each ``crowded`` file that no pair was
    accepted with and its ``config.k`` nearest pictures that have copies, within the threshold
    and not among ``known``: of each set of files joined by accepted pairs, the one accepted
    with most. Pictures alike to fc7 (pages of one layout, screenshots of one window) fill a
    file's k nearest with each other's copies: a crop of one page sits among the crops of
    the others, its own page's files 40th to 60th; one file a picture, they crowd it no more."""
    matched = _hubs(accepted)
    alone = sorted(crowded - {f for pair in accepted for f in pair})
    if not alone or not matched:
        return {}
    index = faiss_ops.inner_space(store.load_index(mmap=True))
    near = faiss_ops.exact_index(faiss_ops.stored_vectors(index, matched))
    out = {}
    for start in range(0, len(alone), BATCH):
        batch = alone[start:start + BATCH]
        D, I = near.search(faiss_ops.stored_vectors(index, batch), min(config.k, len(matched)))
        for a, d_row, i_row in zip(batch, np.sqrt(np.maximum(D, 0)), I):
            for d, j in zip(d_row.tolist(), i_row.tolist()):
                pair = (min(a, matched[j]), max(a, matched[j])) if j >= 0 else None
                if pair is not None and d <= threshold and pair not in known:
                    out[pair] = d
    return out


def _hubs(accepted: dict[tuple[int, int], object]) -> list[int]:
    """Of each set of files joined by ``accepted`` pairs, the file accepted with most (the
    lowest id of those)."""
    parent: dict[int, int] = {}

    def root(f: int) -> int:
        while parent.setdefault(f, f) != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    degree: dict[int, int] = defaultdict(int)
    for a, b in accepted:
        parent[root(a)] = root(b)
        degree[a] += 1
        degree[b] += 1
    hub: dict[int, int] = {}
    for f in sorted(degree):
        r = root(f)
        if r not in hub or degree[f] > degree[hub[r]]:
            hub[r] = f
    return sorted(hub.values())


def pair_distances(store: IndexStore, pairs: list[tuple[int, int]]
                   ) -> dict[tuple[int, int], float]:
    """(a, b) -> the fc7 distance of each of ``pairs`` (the index opened only if there are)."""
    if not pairs:
        return {}
    return fc7_distances(faiss_ops.inner_space(store.load_index(mmap=True)), pairs)


def _search_batch(store: IndexStore, index, batch: list[int], wanted: set[int],
                  config: DuplicatesConfig, threshold: float, state: State, run: str,
                  start: int) -> dict[tuple[int, int], float]:
    """The pairs of one batch of images with their k nearest, saved with its being done (as
    another run at once may have saved them too)."""
    ids = np.asarray(batch, dtype=np.int64)
    D, I = store.search(faiss_ops.stored_vectors(index, ids), config.k + 1, config.nprobe,
                        inner=True)  # Euclidean, as query prints; on the GPU where it is used
    found = {}
    for a, d_row, i_row in zip(ids.tolist(), D, I):
        for d, b in zip(d_row.tolist(), i_row.tolist()):
            if b != a and b in wanted and d <= threshold:
                found[min(a, b), max(a, b)] = d
    with state.transaction():  # the batch's pairs and its being done, or neither
        state.db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?)",
                             [(run, a, b, d) for (a, b), d in found.items()])
        state.db.execute("INSERT OR REPLACE INTO searched VALUES (?, ?)", (run, start))
    return found
