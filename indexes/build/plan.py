"""A build's plan in SQLite: the files found, what to extract in which round, what vanished.

The plan is a scratch database beside items.sqlite (``plan.sqlite``, attached to the index's
connection as ``plan``, without journal or fsync: a killed build's plan is thrown away and
made again by the next walk). The walk streams into it; new, changed and vanished files are
set differences between the walk and the items table, worked out by SQLite. What Python holds
grows with a round (``BuildConfig.commit_every`` files), never with the number of images.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from indexes.store import files
from indexes.store.staging import FileState, Staging
from indexes.store.store import transaction

SCHEMA = """
CREATE TABLE plan.walk (path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE plan.todo (seq INTEGER PRIMARY KEY, path BLOB NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, old_id INTEGER, round INTEGER);
CREATE INDEX plan.todo_round ON todo (round, seq);
CREATE TABLE plan.gone (id INTEGER PRIMARY KEY);
CREATE TABLE plan.staged (path BLOB NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    batch TEXT NOT NULL, row INTEGER NOT NULL,
    PRIMARY KEY (path, size, mtime_ns)) WITHOUT ROWID;
CREATE TABLE plan.adds (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
"""
# A file of the round that some staged batch holds as the file is now (path, size and mtime).
STAGED = ("plan.staged s ON s.path = t.path AND s.size = t.size AND s.mtime_ns = t.mtime_ns")
REMOVAL_CHUNK = 1 << 20  # ids removed from FAISS at a time (8 MiB)

Skip = Callable[[str, str], None]  # (path, reason) of a file left out


class Plan:
    """The plan of one build over the index connection ``db`` (its store's ``db``)."""

    def __init__(self, db) -> None:
        self.db = db

    @classmethod
    @contextmanager
    def open(cls, store) -> Iterator["Plan"]:
        """A new, empty plan attached to ``store`` (holding the build lock), removed after."""
        path = store.folder / files.PLAN
        path.unlink(missing_ok=True)
        store.db.execute("ATTACH DATABASE ? AS plan", (str(path),))
        try:
            store.db.execute("PRAGMA plan.journal_mode = OFF")
            store.db.execute("PRAGMA plan.synchronous = OFF")
            store.db.executescript(SCHEMA)
            yield cls(store.db)
        finally:
            store.db.execute("DETACH DATABASE plan")
            path.unlink(missing_ok=True)

    def _one(self, sql: str, *args) -> int:
        return self.db.execute(sql, args).fetchone()[0] or 0

    # -- what there is to do ------------------------------------------------------------------
    def walk(self, paths: Iterable[str | os.PathLike], skip: Skip) -> None:
        """Record each of ``paths`` (made absolute; the first of duplicates kept) with its size
        and mtime; those that cannot be stat'ed go to ``skip``. ``paths`` is consumed as it
        comes: the files that exist and are wanted (``retrieval.images.find_images``)."""
        def rows():
            for p in paths:
                p = os.path.abspath(p)
                try:
                    st = os.stat(p)
                except OSError as e:
                    skip(p, unreadable(p, e))
                    continue
                yield os.fsencode(p), st.st_size, st.st_mtime_ns

        with transaction(self.db):
            self.db.executemany("INSERT OR IGNORE INTO plan.walk VALUES (?, ?, ?)", rows())

    def compare(self, rebuild: bool) -> None:
        """The files to extract (new or changed since indexed; all of them with ``rebuild``),
        in path order, and the items whose files are gone."""
        with transaction(self.db):
            if rebuild:
                self.db.execute("INSERT INTO plan.todo (path, size, mtime_ns) "
                                "SELECT path, size, mtime_ns FROM plan.walk ORDER BY path")
                return
            self.db.execute(
                "INSERT INTO plan.todo (path, size, mtime_ns, old_id) "
                "SELECT w.path, w.size, w.mtime_ns, i.id FROM plan.walk w "
                "LEFT JOIN main.items i ON i.path = w.path "
                "WHERE i.id IS NULL OR i.size != w.size OR i.mtime_ns != w.mtime_ns "
                "ORDER BY w.path")
            self.db.execute("INSERT INTO plan.gone SELECT id FROM main.items "
                            "WHERE path NOT IN (SELECT path FROM plan.walk)")

    @property
    def gone(self) -> int:
        return self._one("SELECT count(*) FROM plan.gone")

    def take_sample(self, size: int) -> None:
        """Make ``size`` files of those to extract, evenly spread over them, round 0: the
        sample a new index is trained on before anything is added to it."""
        n = self._one("SELECT count(*) FROM plan.todo")
        k = min(size, n)
        if k:  # seq runs 1..n; (seq - 1) * k mod n < k holds for k evenly spaced ones
            with transaction(self.db):
                self.db.execute("UPDATE plan.todo SET round = 0 WHERE ((seq - 1) * ?) % ? < ?",
                                (k, n, k))

    def rounds(self, size: int) -> Iterator[tuple[int, bool]]:
        """(round, last) in order: the sample first if there is one, then rounds of at most
        ``size`` files in path order, assigned as they come. At least one round, empty when
        there is nothing to extract: the last one carries the removal of vanished files."""
        sampled = bool(self._one("SELECT EXISTS (SELECT 1 FROM plan.todo WHERE round = 0)"))
        left = "SELECT EXISTS (SELECT 1 FROM plan.todo WHERE round IS NULL)"
        if sampled:
            yield 0, not self._one(left)
        for r in itertools.count(1):
            with transaction(self.db):
                taken = self.db.execute(
                    "UPDATE plan.todo SET round = ? WHERE seq IN (SELECT seq FROM plan.todo "
                    "WHERE round IS NULL ORDER BY seq LIMIT ?)", (r, size)).rowcount
            more = bool(self._one(left))
            if taken or (r == 1 and not sampled):
                yield r, not more
            if not more:
                return

    # -- one round ------------------------------------------------------------------------------
    def rescan(self, staging: Staging) -> None:
        """Note every batch in ``staging`` (at most a round of them): which file each row is."""
        with transaction(self.db):
            self.db.execute("DELETE FROM plan.staged")
            for name, paths, sizes, mtimes in staging.entries():  # later batches win
                rows = zip(paths.tolist(), sizes.tolist(), mtimes.tolist())
                self.db.executemany("INSERT OR REPLACE INTO plan.staged VALUES (?, ?, ?, ?, ?)",
                                    ((p, s, m, name, row) for row, (p, s, m) in enumerate(rows)))

    def staged(self, r: int) -> int:
        """Files of round ``r`` that are staged as they are now."""
        return self._one(f"SELECT count(*) FROM plan.todo t JOIN {STAGED} WHERE t.round = ?", r)

    def to_extract(self, r: int) -> list[FileState]:
        """The files of round ``r`` that are not staged as they are now, in path order."""
        rows = self.db.execute(
            "SELECT t.path, t.size, t.mtime_ns FROM plan.todo t WHERE t.round = ? AND NOT EXISTS "
            "(SELECT 1 FROM plan.staged s WHERE s.path = t.path AND s.size = t.size "
            "AND s.mtime_ns = t.mtime_ns) ORDER BY t.seq", (r,))
        return [FileState(bytes(p), s, m) for p, s, m in rows]

    def batches(self, r: int) -> Iterator[tuple[str, list[int], list[int]]]:
        """(batch file, its rows, their files' seq) of round ``r``, in path order: ids follow
        the files' order, whichever process staged them (runs of one batch)."""
        rows = self.db.execute(
            f"SELECT s.batch, s.row, t.seq FROM plan.todo t JOIN {STAGED} WHERE t.round = ? "
            "ORDER BY t.seq", (r,))
        for batch, group in itertools.groupby(rows, key=lambda row: row[0]):
            group = list(group)
            yield batch, [row for _, row, _ in group], [seq for _, _, seq in group]

    def added(self, ids: np.ndarray, seqs: list[int]) -> None:
        """Record that the files ``seqs`` went into FAISS under ``ids``."""
        with transaction(self.db):
            self.db.executemany("INSERT INTO plan.adds VALUES (?, ?)", zip(ids.tolist(), seqs))

    def removals(self, r: int, last: bool) -> Iterator[np.ndarray]:
        """Ids to remove with round ``r``, in chunks: the old ids of its changed files and,
        in the ``last`` round, those of vanished files."""
        sql = "SELECT old_id FROM plan.todo WHERE round = ? AND old_id IS NOT NULL"
        rows = self.db.execute(sql + (" UNION ALL SELECT id FROM plan.gone" if last else ""), (r,))
        while chunk := rows.fetchmany(REMOVAL_CHUNK):
            yield np.array([i for i, in chunk], np.int64)

    def removal_count(self, r: int, last: bool) -> int:
        changed = self._one("SELECT count(*) FROM plan.todo WHERE round = ? "
                            "AND old_id IS NOT NULL", r)
        return changed + (self.gone if last else 0)

    def counts(self) -> tuple[int, int]:
        """(new, changed) files among those added in this round."""
        row = self.db.execute("SELECT sum(t.old_id IS NULL), sum(t.old_id IS NOT NULL) "
                              "FROM plan.adds a JOIN plan.todo t ON t.seq = a.seq").fetchone()
        return row[0] or 0, row[1] or 0

    def apply(self, r: int, last: bool, fresh: bool) -> Callable:
        """The item changes of round ``r`` in SQL, for ``IndexStore.commit_generation``."""
        def apply(db, now: float) -> None:
            if not fresh:  # a fresh index replaces every item (commit_generation deletes them)
                db.execute("DELETE FROM main.items WHERE id IN (SELECT old_id FROM plan.todo "
                           "WHERE round = ? AND old_id IS NOT NULL)", (r,))
                if last:
                    db.execute("DELETE FROM main.items WHERE id IN (SELECT id FROM plan.gone)")
            db.execute("INSERT INTO main.items SELECT a.id, t.path, t.size, t.mtime_ns, ? "
                       "FROM plan.adds a JOIN plan.todo t ON t.seq = a.seq", (now,))
        return apply

    def done(self) -> None:
        """The round is committed: forget its adds."""
        with transaction(self.db):
            self.db.execute("DELETE FROM plan.adds")


def unreadable(path: str, e: OSError) -> str:
    """Why a file cannot be stat'ed, in the words retrieval.images.load_image uses."""
    if e.errno == errno.ELOOP:
        return "symbolic link loop"
    if e.errno == errno.ENOENT:
        return "broken symbolic link" if os.path.islink(path) else "file not found"
    return f"cannot read ({e.strerror})"
