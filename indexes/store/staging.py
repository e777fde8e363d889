"""Extracted vectors waiting for a commit: self-describing batch files in DIR/staging/.

Every batch is one file, ``staging/<rank>-<n>.npz``, written atomically: its (b, d) vectors
(float16 where the index's codes lose more than float16 does, see ``commit.stage_half``) and
each row's file (path, size, mtime). A batch is there whole or not at all and needs no
database row, so the ranks of a torchrun build stage side by side without writing the
database (rank 0 alone does), and a later run, with any number of processes, reuses every
batch staged with its settings (``staging_settings`` in the database) instead of extracting
those files again.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from retrieval.atomic import write_atomic

from indexes.store import files

BATCH_NAME = re.compile(r"^(\d+)-(\d+)\.npz$")  # <rank>-<n>.npz


@dataclass(frozen=True)
class FileState:
    """A file as last seen: path as os.fsencode bytes, size and modification time."""

    path: bytes
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> "FileState":
        st = os.stat(path)
        return cls(os.fsencode(path), st.st_size, st.st_mtime_ns)


class StagedRow(NamedTuple):
    """An extracted vector not yet committed: row ``row`` of staging/``batch``."""

    batch: str
    row: int


class Staging:
    """The staging folder of the index at ``folder``, written by process ``rank``."""

    def __init__(self, folder: Path, rank: int = 0) -> None:
        self.dir, self.rank = folder / files.STAGING, rank
        self._next: int | None = None

    def names(self) -> list[str]:
        """The batch files, in (rank, n) order."""
        if not self.dir.is_dir() or self.dir.is_symlink():
            return []
        found = [(m, p.name) for p in self.dir.iterdir() if (m := BATCH_NAME.match(p.name))]
        return [name for m, name in sorted(found, key=lambda f: (int(f[0][1]), int(f[0][2])))]

    def entries(self):
        """(name, paths, sizes, mtimes) of each readable batch, in (rank, n) order; the
        vectors are not read."""
        for name in self.names():
            try:
                with np.load(self.dir / name, allow_pickle=False) as z:
                    paths, sizes, mtimes = z["paths"], z["sizes"], z["mtimes"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue
            yield name, paths, sizes, mtimes

    def rows(self) -> dict[FileState, StagedRow]:
        """The file (path, size, mtime) of every staged vector -> where it is. A file staged
        twice, as it was and after a change, has both; batches that cannot be read are left
        out."""
        out: dict[FileState, StagedRow] = {}
        for name, paths, sizes, mtimes in self.entries():
            for row, (p, s, m) in enumerate(zip(paths.tolist(), sizes.tolist(), mtimes.tolist())):
                out[FileState(p, s, m)] = StagedRow(name, row)
        return out

    def write(self, states: Sequence[FileState], vectors: np.ndarray, half: bool = False) -> str:
        """Stage one batch of (b, d) float32 vectors of ``states``; returns its file name.
        ``half``: as float16 (half the disk), unless a value is beyond float16's range."""
        if self._next is None:
            mine = [int(m[2]) for n in self.names() if (m := BATCH_NAME.match(n))
                    and int(m[1]) == self.rank]
            self._next = max(mine, default=-1) + 1
        name = f"{self.rank}-{self._next}.npz"
        arrays = {"vectors": as_staged(vectors, half),
                  "paths": np.array([s.path for s in states], dtype=bytes),
                  "sizes": np.array([s.size for s in states], dtype=np.int64),
                  "mtimes": np.array([s.mtime_ns for s in states], dtype=np.int64)}
        write_batch(self.dir / name, arrays)
        self._next += 1
        return name

    def vectors(self, name: str, rows: Sequence[int]) -> np.ndarray:
        """Rows ``rows`` of a batch's vectors, (len(rows), d) float32."""
        with np.load(self.dir / name, allow_pickle=False) as z:
            return np.ascontiguousarray(z["vectors"][list(rows)], dtype=np.float32)

    @staticmethod
    def is_batch(name: str) -> bool:
        return BATCH_NAME.match(name) is not None


def as_staged(vectors: np.ndarray, half: bool) -> np.ndarray:
    """``vectors`` as they are staged: float16 when ``half`` and every value is within its
    range (65504), else float32."""
    if half:
        with np.errstate(over="ignore"):
            small = np.asarray(vectors, dtype=np.float16)
        if np.isfinite(small).all():
            return small
    return np.ascontiguousarray(vectors, dtype=np.float32)


def write_batch(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """One batch file, atomically (write aside, fsync, rename). A ``staging`` link planted in
    the index folder is gone by now: every build tidies before anything is staged."""
    write_atomic(path, lambda f: np.savez(f, **arrays))
