""""Not duplicates": pairs of files a person said are not copies of each other, kept in
DIR/decisions.sqlite and honoured by every later `retrieve duplicates`, plan and serve
request until forgotten. A decision names the files by path, as the index does.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from retrieval.errors import RetrieveError

if TYPE_CHECKING:
    from indexes.duplicates.find import Report

DATABASE = "decisions.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS not_duplicates (a BLOB NOT NULL, b BLOB NOT NULL, at REAL NOT NULL,
                                           PRIMARY KEY (a, b));
"""
Pair = tuple[bytes, bytes]  # file names as bytes, the smaller first


def _pair(a: str | bytes, b: str | bytes) -> Pair:
    a, b = os.fsencode(a), os.fsencode(b)
    return (a, b) if a < b else (b, a)


class Decisions:
    """The decisions of the index in ``folder`` (read-only where it cannot be written)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / DATABASE

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")  # a decision, once said, survives a crash
            db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise RetrieveError(f"{self.path}: cannot keep decisions here ({e})") from None
        return db

    def mark(self, paths: Iterable[str]) -> int:
        """Every two of ``paths`` are not duplicates: how many pairs were new."""
        pairs = {_pair(a, b) for a, b in itertools.combinations(set(paths), 2)}
        db = self._connect()
        try:
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO not_duplicates VALUES (?, ?, ?)",
                           [(a, b, time.time()) for a, b in sorted(pairs)])
            db.execute("COMMIT")
            return db.total_changes - before
        finally:
            db.close()

    def forget(self, paths: Iterable[str]) -> int:
        """Forget the decisions among ``paths`` (one path: every decision about it): how many
        pairs were forgotten."""
        paths = sorted({os.fsencode(p) for p in paths})
        if not self.path.exists():
            return 0
        db = self._connect()
        try:
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            if len(paths) == 1:
                db.execute("DELETE FROM not_duplicates WHERE a = ? OR b = ?", paths * 2)
            else:
                db.executemany("DELETE FROM not_duplicates WHERE a = ? AND b = ?",
                               [_pair(a, b) for a, b in itertools.combinations(paths, 2)])
            db.execute("COMMIT")
            return db.total_changes - before
        finally:
            db.close()

    def pairs(self) -> set[Pair]:
        return {(a, b) for a, b, _ in self._rows()}

    def listing(self) -> list[tuple[str, str, float]]:
        """(a, b, when) of every decision, oldest first."""
        return [(os.fsdecode(a), os.fsdecode(b), at)
                for a, b, at in sorted(self._rows(), key=lambda r: r[2])]

    def _rows(self) -> list[tuple[bytes, bytes, float]]:
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            return [(bytes(a), bytes(b), at)
                    for a, b, at in db.execute("SELECT a, b, at FROM not_duplicates")]
        finally:
            db.close()


@dataclass
class Honoured:
    """What ``honour`` took out of a report."""

    apart: int = 0  # members set apart by a decision
    missing: list[str] = field(default_factory=list)  # members no longer there
    linked: int = 0  # members that are links to the kept file (not copies any more)


def honour(report: Report, folder: str | os.PathLike) -> tuple[Report, Honoured]:
    """``report`` without what the user settled: members a decision sets apart from one
    kept before them in the group (the file to keep first), files no longer there (trashed,
    moved) and links to the kept file; groups left with one file go."""
    pairs = Decisions(folder).pairs()
    out, groups = Honoured(), []
    for g in report.groups:
        members = []
        for m in g.members:
            if not os.path.lexists(m.path):
                out.missing.append(m.path)
            elif members and _same_file(m.path, members[0].path):
                out.linked += 1
            elif any(_pair(m.path, k.path) in pairs for k in members):
                out.apart += 1
            else:
                members.append(m)
        if len(members) > 1:
            groups.append(dataclasses.replace(g, members=members))
    return dataclasses.replace(report, groups=groups), out


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
