"""Near-duplicate groups among everything an index holds (`retrieve duplicates`).

Three stages, each bounded by the size of the collection, never by its square:

1. **Exact copies**: files with the same bytes (same size, then the same sha256), found without
   the network; each such group is one image for what follows.
2. **Candidates**: every indexed vector searched against the index itself (k nearest, in
   batches: Flat, IVF, PQ, PCA alike), kept when closer than the threshold. The default
   threshold is calibrated on copies the tool makes of a sample of the indexed images
   (``calibrate``): 1.5 times the distance that 99% of them stay within.
3. **Verification**: each candidate pair's pixels compared (``retrieval.copies.compare``):
   fc7 finds what looks alike, the pixels tell a copy from a similar scene, and from the same
   scene with something changed (a burst shot, an edit): alike as a whole, different in part.

Groups are stars around the file to keep (the largest resolution, then the largest file):
every member is a verified duplicate of the kept file itself, so that A like B and B like C
never put A and C together unless A is like C. Progress is kept in DIR/duplicates.sqlite: an
interrupted run goes on where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import signal
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retrieval.copies import CHECK, Match, compare_files
from retrieval.errors import NotAnImage
from retrieval.images import image_size

from . import faiss_ops
from .closeness import nearest_other
from .config import DUPLICATE_K, DuplicatesConfig
from .store import IndexStore

STATE = "duplicates.sqlite"
BATCH = 1024  # images searched per step (and per saved step)
CALIBRATION_IMAGES = 100  # indexed images whose copies calibrate the threshold
# The default threshold: the distance COPY_QUANTILE of the calibration copies stay within,
# times THRESHOLD_MARGIN: real copies are made otherwise than ours and fall farther (with
# random weights, brightened photos reach 1.4x), and the pixel check keeps the precision.
COPY_QUANTILE = 0.99
THRESHOLD_MARGIN = 1.5
VERIFY_BATCH = 256  # pairs verified per saved step
SCHEMA_VERSION = 2  # 2: checked holds each pair's difference
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER,
                                   sha256 TEXT);
CREATE TABLE IF NOT EXISTS searched (run TEXT, start INTEGER, PRIMARY KEY (run, start));
CREATE TABLE IF NOT EXISTS pairs (run TEXT, a INTEGER, b INTEGER, distance REAL,
                                  PRIMARY KEY (run, a, b));
CREATE TABLE IF NOT EXISTS checked (run TEXT, a INTEGER, b INTEGER, similarity REAL,
                                    difference REAL, PRIMARY KEY (run, a, b));
"""

# path -> (n_copies, d) fc7 vectors of copies of that image (retrieval.features'
# FeatureExtractor.copy_vectors); NotAnImage when the file cannot be read.
CopyVectors = Callable[[str], np.ndarray]
# (stage, done, total), told as each stage starts and after each saved step: "hashing" (files),
# "calibrating" (images), "searching" (images), "verifying" (pairs). It may raise to stop
# the run: the work saved so far is kept, and the next run goes on from it.
Progress = Callable[[str, int, int], None]


class _Stage:
    """A stage's progress: a tqdm bar on stderr (``progress`` True) or calls of ``progress``
    (a Progress), or neither."""

    def __init__(self, progress: bool | Progress, stage: str, total: int, unit: str) -> None:
        self.tell = progress if callable(progress) else None
        self.stage, self.done, self.total = stage, 0, total
        self.bar = tqdm(total=total, desc=stage, unit=unit, disable=progress is not True,
                        leave=False)
        if self.tell is not None:
            self.tell(stage, 0, total)

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if self.tell is not None:
            self.tell(self.stage, self.done, self.total)

    def close(self) -> None:
        self.bar.close()


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
class Member:
    id: int  # in the index
    path: str
    distance: float  # fc7 distance to the kept file (0 for itself and exact copies)
    similarity: float | None  # pixel correlation with the kept file (None: not compared)
    difference: float | None  # of its most different part from the kept file (retrieval.copies)
    width: int
    height: int
    bytes: int
    same_bytes_as: str | None = None  # in a near group: the member whose bytes it has


@dataclass
class Group:
    tier: str  # "exact" (the same bytes) or "near"
    members: list[Member]  # the file to keep first


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


class State:
    """DIR/duplicates.sqlite: what a run has done so far (in memory when DIR is read-only)."""

    def __init__(self, folder: Path) -> None:
        try:
            self.db = sqlite3.connect(folder / STATE, isolation_level=None)
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

    def get(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def start(self, run: str) -> None:
        """Forget the work of other runs (another generation, threshold, k or nprobe)."""
        with self.transaction():
            for table in ("searched", "pairs", "checked"):
                self.db.execute(f"DELETE FROM {table} WHERE run != ?", (run,))

    def close(self) -> None:
        self.db.close()


def find_duplicates(store: IndexStore, config: DuplicatesConfig,
                    copy_vectors: CopyVectors | None = None,
                    progress: bool | Progress = False) -> Report:
    """Group the near-duplicates among the images of ``store`` (see the module docstring).

    ``copy_vectors`` embeds copies of an image, for the calibration when no threshold is
    given (RetrieveError without it); ``progress``: bars on stderr (True) or a Progress
    callback. Nothing is moved or deleted.
    """
    items = {item.id: os.fsdecode(path) for path, item in store.items().items()}
    state = State(store.folder)
    try:
        exact = exact_groups(items, state, progress)
        copies_of = {i for group in exact for i in group[1:]}  # searched as their first file
        threshold, source, calibration = _threshold(store, config, copy_vectors, state,
                                                    progress)
        run = f"{store.generation}:{threshold!r}:{config.k}:{config.nprobe}:check{CHECK}"
        state.start(run)
        pairs = candidates(store, config, threshold, sorted(set(items) - copies_of), state, run,
                           progress)
        check = PixelCheck(items, config, state, run) if config.verify else None
        accepted = verified(pairs, check, progress)
        look = None if check is None else _second_look(store, check)
        groups = _folded([_exact_group(g, items) for g in exact],
                         _near_groups(accepted, pairs, items, look))
    finally:
        state.close()
    return Report(str(store.folder), len(items), threshold, source, groups, len(pairs),
                  len(accepted), calibration)


# -- 1. exact copies ------------------------------------------------------------------------
def exact_groups(items: dict[int, str], state: State,
                 progress: bool | Progress) -> list[list[int]]:
    """Ids of files with the same bytes, grouped (only files that share a size are read)."""
    by_size: dict[int, list[int]] = defaultdict(list)
    stats = {}
    for i, path in items.items():
        try:
            st = os.stat(path)
        except OSError:
            continue
        stats[i] = st
        by_size[st.st_size].append(i)
    alike = [i for ids in by_size.values() if len(ids) > 1 for i in ids]
    by_hash: dict[str, list[int]] = defaultdict(list)
    bar = _Stage(progress, "hashing", len(alike), "files")
    for start in range(0, len(alike), BATCH):  # saved a batch at a time
        chunk = alike[start:start + BATCH]
        with state.transaction():
            for i in chunk:
                digest = _sha256(items[i], stats[i], state)
                if digest is not None:
                    by_hash[digest].append(i)
        bar.update(len(chunk))
    bar.close()
    return [sorted(ids, key=lambda i: items[i]) for ids in by_hash.values() if len(ids) > 1]


def _sha256(path: str, st: os.stat_result, state: State) -> str | None:
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
    state.db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)",
                     (key, st.st_size, st.st_mtime_ns, h.hexdigest()))
    return h.hexdigest()


# -- 2. candidates --------------------------------------------------------------------------
def _threshold(store: IndexStore, config: DuplicatesConfig, copy_vectors: CopyVectors | None,
               state: State, progress: bool | Progress = False
               ) -> tuple[float, str, Calibration | None]:
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
              progress: bool | Progress = False) -> Calibration:
    """THRESHOLD_MARGIN x the distance COPY_QUANTILE of the copies of up to ``images``
    indexed images stay within, each copy searched in the index as a query and measured to
    its original there (a copy not among its DUPLICATE_K nearest counts as infinitely far)."""
    ids = np.array(sorted(item.id for item in store.items().values()), dtype=np.int64)
    sample = np.random.default_rng(seed).permutation(ids)[:images]
    paths = store.paths(sample)
    copy_rows, originals = [], []
    bar = _Stage(progress, "calibrating", len(sample), "images")
    for i in sample:
        try:
            vectors = copy_vectors(paths[int(i)])
        except NotAnImage:
            continue
        finally:
            bar.update(1)
        copy_rows.append(vectors)
        originals += [int(i)] * len(vectors)
    bar.close()
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
               state: State, run: str, progress: bool | Progress
               ) -> dict[tuple[int, int], float]:
    """(a, b) -> fc7 distance of every pair of ``ids`` within ``threshold``, a < b; each
    batch of BATCH searched images saved as it is done, so that a rerun skips it."""
    index = faiss_ops.inner_space(store.load_index(mmap=True))  # a PCA's output space
    wanted = set(ids)
    done = {r[0] for r in state.db.execute("SELECT start FROM searched WHERE run = ?", (run,))}
    bar = _Stage(progress, "searching", len(ids), "images")
    for start in range(0, len(ids), BATCH):
        if start in done:
            bar.update(len(ids[start:start + BATCH]))
            continue
        batch = np.asarray(ids[start:start + BATCH], dtype=np.int64)
        D, I = store.search(faiss_ops.stored_vectors(index, batch), config.k + 1, config.nprobe,
                            inner=True)  # Euclidean, as query prints; on the GPU where it is used
        found = {}
        for a, d_row, i_row in zip(batch.tolist(), D, I):
            for d, b in zip(d_row.tolist(), i_row.tolist()):
                if b != a and b in wanted and d <= threshold:
                    found[min(a, b), max(a, b)] = d
        with state.transaction():  # the batch's pairs and its being done, or neither
            state.db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?)",
                                 [(run, a, b, d) for (a, b), d in found.items()])
            state.db.execute("INSERT INTO searched VALUES (?, ?)", (run, start))
        bar.update(len(batch))
    bar.close()
    rows = state.db.execute("SELECT a, b, distance FROM pairs WHERE run = ?", (run,))
    return {(a, b): d for a, b, d in rows}


# -- 3. verification and groups -------------------------------------------------------------
class PixelCheck:
    """Pairs' pixels compared (``retrieval.copies.compare``), each batch saved as it is done,
    in ``config.workers`` processes when there are several batches to do."""

    def __init__(self, items: dict[int, str], config: DuplicatesConfig, state: State,
                 run: str) -> None:
        self.items, self.config, self.state, self.run = items, config, state, run
        self.known = {(a, b): Match(s, d) for a, b, s, d in state.db.execute(
            "SELECT a, b, similarity, difference FROM checked WHERE run = ?", (run,))}

    def matches(self, pairs: list[tuple[int, int]], progress: bool | Progress = False
                ) -> dict[tuple[int, int], Match]:
        """(a, b) -> their Match, for each of ``pairs`` (a < b)."""
        todo = [pair for pair in pairs if pair not in self.known]
        batches = [todo[start:start + VERIFY_BATCH] for start in range(0, len(todo), VERIFY_BATCH)]
        files = ([(self.items[a], self.items[b]) for a, b in batch] for batch in batches)
        bar = _Stage(progress, "verifying", len(pairs), "pairs")
        bar.update(len(pairs) - len(todo))  # saved by an earlier run
        with _mapping(self.config.workers if len(batches) > 1 else 0) as mapped:
            for batch, found in zip(batches, mapped(compare_files, files)):
                self.known.update(zip(batch, found))
                with self.state.transaction():  # saved a batch at a time
                    self.state.db.executemany(
                        "INSERT OR REPLACE INTO checked VALUES (?, ?, ?, ?, ?)",
                        [(self.run, a, b, m.similarity, m.difference)
                         for (a, b), m in zip(batch, found)])
                bar.update(len(batch))
        bar.close()
        return {pair: self.known[pair] for pair in pairs}

    def accepts(self, match: Match) -> bool:
        return (match.similarity >= self.config.min_similarity
                and match.difference <= self.config.max_difference)


@contextmanager
def _mapping(workers: int) -> Iterator[Callable]:
    """``map``, in this process (0) or in ``workers`` processes (results in order)."""
    if workers == 0:
        yield map
        return
    # spawn: the children need only Pillow and numpy, not this process's threads (torch,
    # FAISS); Ctrl-C is this process's to handle: the children finish their batch and go.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        yield pool.map
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def verified(pairs: dict[tuple[int, int], float], check: PixelCheck | None,
             progress: bool | Progress) -> dict[tuple[int, int], Match | None]:
    """The candidate pairs whose pixels match (all of them, unchecked, without a check):
    (a, b) -> their ``Match``."""
    if check is None:
        return {pair: None for pair in pairs}
    return {pair: m for pair, m in check.matches(sorted(pairs), progress).items()
            if check.accepts(m)}


# A member found only through another member: (kept, m) -> (fc7 distance, Match) when the
# pixels of m match those of the kept file, else None.
SecondLook = Callable[[int, int], tuple[float, Match] | None]


def _second_look(store: IndexStore, check: PixelCheck) -> SecondLook:
    """Pairs fc7 did not offer, compared by their pixels (and their fc7 distance measured)."""
    index = functools.cache(lambda: faiss_ops.inner_space(store.load_index(mmap=True)))

    def look(kept: int, m: int) -> tuple[float, Match] | None:
        pair = (min(kept, m), max(kept, m))
        match = check.matches([pair])[pair]
        if not check.accepts(match):
            return None
        x = faiss_ops.stored_vectors(index(), np.array(pair, dtype=np.int64))
        return float(np.linalg.norm(x[0] - x[1])), match

    return look


def _pixels(match: Match | None) -> tuple[float | None, float | None]:
    return (None, None) if match is None else (match.similarity, match.difference)


def _facts(path: str) -> tuple[int, int, int]:
    """(width, height, bytes) of a file; zeros where it cannot be read."""
    try:
        return (*image_size(path), os.path.getsize(path))  # HEIC and RAW files too
    except (OSError, NotAnImage):
        return 0, 0, 0


def _keep_order(ids: Iterable[int], items: dict[int, str], facts: dict) -> list[int]:
    """The largest resolution first, then the largest file, then by path."""
    for i in ids:
        if i not in facts:
            facts[i] = _facts(items[i])
    return sorted(ids, key=lambda i: (-facts[i][0] * facts[i][1], -facts[i][2], items[i]))


def _folded(exact: list[Group], near: list[Group]) -> list[Group]:
    """The exact copies of a file that is in a near group join that group, right after it
    (with its distance and pixels): a file in two groups would be planned twice."""
    near_of = {m.id: g for g in near for m in g.members}
    alone = []
    for g in exact:
        found = next((m for m in g.members if m.id in near_of), None)  # the one searched
        if found is None:
            alone.append(g)
            continue
        members = near_of[found.id].members
        at = next(n for n, m in enumerate(members) if m.id == found.id)
        members[at + 1:at + 1] = [
            Member(m.id, m.path, members[at].distance, members[at].similarity,
                   members[at].difference, m.width, m.height, m.bytes, found.path)
            for m in g.members if m is not found]
    return alone + near


def _exact_group(ids: list[int], items: dict[int, str]) -> Group:
    facts: dict = {}
    order = _keep_order(ids, items, facts)
    return Group("exact", [Member(i, items[i], 0.0, 1.0, 0.0, *facts[i]) for i in order])


def _near_groups(accepted: dict[tuple[int, int], Match | None],
                 pairs: dict[tuple[int, int], float], items: dict[int, str],
                 second_look: SecondLook | None = None) -> list[Group]:
    """Stars around the files to keep: each member an accepted pair with its kept file.

    A file whose partners all went to other stars first is compared (``second_look``) with
    the kept files of those stars, and joins the first that matches: fc7 may put a copy past
    the threshold from one copy and within it from another.
    """
    partners: dict[int, set[int]] = defaultdict(set)
    for a, b in accepted:
        partners[a].add(b)
        partners[b].add(a)
    facts: dict = {}
    stars: dict[int, dict[int, tuple[float, Match | None]]] = {}  # kept -> member -> (d, match)
    star_of: dict[int, int] = {}
    left = []
    for kept in _keep_order(partners, items, facts):
        if kept in star_of:
            continue
        members = [m for m in partners[kept] if m not in star_of]
        if not members:
            left.append(kept)
            continue
        pair = {m: (min(kept, m), max(kept, m)) for m in members}
        stars[kept] = {m: (pairs[pair[m]], accepted[pair[m]]) for m in members}
        star_of.update({kept: kept, **{m: kept for m in members}})
    for m in left if second_look is not None else []:
        for kept in dict.fromkeys(star_of[p] for p in sorted(partners[m])):  # each star once
            found = second_look(kept, m)
            if found is not None:
                stars[kept][m] = found
                break
    groups = []
    for kept, members in stars.items():
        order = sorted(_keep_order(members, items, facts), key=lambda m: members[m][0])
        groups.append(Group("near", [Member(kept, items[kept], 0.0, 1.0, 0.0, *facts[kept])] + [
            Member(m, items[m], members[m][0], *_pixels(members[m][1]), *facts[m])
            for m in order]))  # nearest to the kept file first
    return sorted(groups, key=lambda g: g.members[0].path)
