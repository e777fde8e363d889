"""Indexed files that an applied plan took away (to the trash, to another folder), kept in
DIR/gone.sqlite so that query and serve stop returning them at once: a record holds for the
generation it was made in; the next build-index finds the files missing and drops them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

DATABASE = "gone.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS gone (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL,
                                 path BLOB NOT NULL, action TEXT NOT NULL, place TEXT,
                                 journal TEXT NOT NULL, at REAL NOT NULL);
"""


def _connect(folder: Path) -> sqlite3.Connection:
    db = sqlite3.connect(folder / DATABASE, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def record(folder: str | os.PathLike, generation: int, item: int, path: str, action: str,
           place: str | None, journal: str) -> None:
    """Item ``item`` of ``generation`` (at ``path``) went by ``action`` to ``place``."""
    db = _connect(Path(folder))
    try:
        db.execute("INSERT OR REPLACE INTO gone VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (item, generation, os.fsencode(path), action, place, journal, time.time()))
    finally:
        db.close()


def forget(folder: str | os.PathLike, item: int) -> None:
    """Item ``item`` is back (an undo)."""
    if not (Path(folder) / DATABASE).exists():
        return
    db = _connect(Path(folder))
    try:
        db.execute("DELETE FROM gone WHERE id = ?", (item,))
    finally:
        db.close()


def items(folder: str | os.PathLike, generation: int) -> dict[int, dict]:
    """id -> {"path", "action", "place", "journal"} of the items of ``generation`` that a plan
    took away (nothing when no plan was ever applied)."""
    path = Path(folder) / DATABASE
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT id, path, action, place, journal FROM gone "
                              "WHERE generation = ?", (generation,)).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}  # unreadable: the files themselves are gone, build-index will drop them
    return {i: {"path": os.fsdecode(bytes(p)), "action": a, "place": place, "journal": j}
            for i, p, a, place, j in rows}


def describe(entry: dict) -> str:
    """What happened to a gone file, in words."""
    where = {"trash": "moved to the trash", "move": f"moved to {entry['place']}",
             "hardlink": "replaced", "symlink": "replaced"}[entry["action"]]
    return (f"{entry['path']} was {where} by `retrieve duplicates --apply` (journal "
            f"{entry['journal']})")
