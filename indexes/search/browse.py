"""The collection as a person browses it: the folder every image sits under, its folders with
their counts, pages of images filtered by folder and text and sorted, one image's facts.

SQL over the items table, so that no request holds more than a page of images in memory
(the folders are counted in one pass, in memory as large as their number).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import NamedTuple

from indexes.store.store import IndexStore

SORTS = {  # what a page may be sorted by -> its SQL order (path last: a stable order)
    "path": "path",
    "newest": "mtime_ns DESC, path",
    "oldest": "mtime_ns, path",
    "largest": "size DESC, path",
    "smallest": "size, path",
}
SEP = os.sep.encode()


class Facts(NamedTuple):
    """An indexed image as the database knows it (the file as it was when indexed)."""

    path: str
    size: int  # bytes
    mtime_ns: int
    indexed_at: float  # seconds since the epoch


def root(store: IndexStore) -> str:
    """The deepest folder that holds every indexed image ('' for an empty index)."""
    low, high = next(store.select("SELECT min(path), max(path) FROM items"))
    if low is None:
        return ""
    low, high = bytes(low), bytes(high)  # sorted: what these two share, all of them share
    n = 0
    while n < min(len(low), len(high)) and low[n] == high[n]:
        n += 1
    folder = low[:low.rfind(SEP, 0, n)]  # up to the last separator both have
    return os.fsdecode(folder or SEP)


def folders(store: IndexStore) -> list[tuple[str, int]]:
    """(folder, number of images directly in it) of every folder that holds one, by path."""
    counts = Counter(bytes(p).rpartition(SEP)[0] for p, in store.select("SELECT path FROM items"))
    return [(os.fsdecode(f or SEP), n) for f, n in sorted(counts.items())]


def _where(folder: str | None, text: str | None, below: str) -> tuple[str, list]:
    """The WHERE clause of images under ``folder`` (and its subfolders) whose path below
    ``below`` holds ``text`` (case-insensitive for ASCII letters, as SQLite's LIKE)."""
    clauses, params = [], []
    if folder:
        prefix = os.fsencode(folder).rstrip(SEP) + SEP
        # path >= "dir/" and < "dir0" ('0' follows '/'): a range of the path's own index.
        clauses.append("path >= ? AND path < ?")
        params += [prefix, prefix[:-1] + bytes([prefix[-1] + 1])]
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("CAST(substr(path, ?) AS TEXT) LIKE ? ESCAPE '\\'")
        params += [len(os.fsencode(below)) + 1, f"%{escaped}%"]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def page(store: IndexStore, offset: int, limit: int, folder: str | None = None,
         text: str | None = None, sort: str = "path") -> tuple[int, list[tuple[int, str]]]:
    """(how many images match, [(id, path)] of ``limit`` of them from ``offset`` on), the
    images under ``folder`` whose path below the collection's root holds ``text``, in the
    order ``sort`` names (a key of SORTS)."""
    where, params = _where(folder, text, root(store) if text else "")
    total = next(store.select(f"SELECT COUNT(*) FROM items{where}", params))[0]
    rows = store.select(f"SELECT id, path FROM items{where} ORDER BY {SORTS[sort]} "
                        "LIMIT ? OFFSET ?", [*params, limit, offset])
    return total, [(i, os.fsdecode(bytes(p))) for i, p in rows]


def facts(store: IndexStore, item: int) -> Facts | None:
    """What the database holds of ``item``; None when it is not (or no longer) indexed."""
    row = next(store.select("SELECT path, size, mtime_ns, indexed_at FROM items WHERE id = ?",
                            (item,)), None)
    return None if row is None else Facts(os.fsdecode(bytes(row[0])), *row[1:])
