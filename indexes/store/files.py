"""The files of an index directory, atomic JSON writes and the build lock."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path

from retrieval.atomic import write_atomic
from retrieval.errors import IndexCorrupt, RetrieveError

DATABASE = "items.sqlite"
MANIFEST = "manifest.json"
LOCK = "lock"
STAGING = "staging"
PLAN = "plan.sqlite"  # a build's scratch plan (indexes/build/plan.py), removed when it ends
INDEX_PATTERN = re.compile(r"^index-(\d+)\.(faiss|ivfdata)$")  # ivfdata: on-disk lists
REBUILD_HINT = "rebuild it with `retrieve build-index PATH... --index {dir} --rebuild`"


def index_file(folder: Path, generation: int) -> Path:
    """The FAISS file of a committed generation: index-<gen>.faiss."""
    return folder / f"index-{generation}.faiss"


def lists_file(folder: Path, generation: int) -> Path:
    """The inverted lists of an index built --on-disk: index-<gen>.ivfdata."""
    return folder / f"index-{generation}.ivfdata"


def corrupt(folder: Path, name: str, what: str) -> IndexCorrupt:
    """IndexCorrupt naming the damaged file and how to rebuild the index."""
    return IndexCorrupt(f"{folder / name}: {what}; " + REBUILD_HINT.format(dir=folder))


def write_json(path: Path, obj: dict) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    write_atomic(path, lambda f: f.write(data))


def read_json(folder: Path, name: str) -> dict:
    try:
        obj = json.loads((folder / name).read_text())
    except FileNotFoundError:
        raise corrupt(folder, name, "missing") from None
    except (OSError, ValueError) as e:
        raise corrupt(folder, name, f"damaged ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise corrupt(folder, name, "damaged (not a JSON object)")
    return obj


def remove_strays(folder: Path, generation: int, is_batch) -> None:
    """Delete index files of other generations, temp files, an interrupted build's plan, and
    files in staging/ that are not batches (``is_batch(name)``; the .npy batches of older
    versions among them).

    Only safe while holding the build lock: another build's files are never strays.
    """
    for p in folder.iterdir():
        m = INDEX_PATTERN.match(p.name)
        if (m and int(m.group(1)) != generation) or (p.name.startswith(".") and p.name.endswith(".tmp")):
            p.unlink(missing_ok=True)
    for name in (PLAN, PLAN + "-journal"):
        (folder / name).unlink(missing_ok=True)
    staging = folder / STAGING
    if staging.is_symlink():  # never write or delete through a link out of the index folder
        staging.unlink()
    if staging.is_dir():
        for p in staging.iterdir():
            if not is_batch(p.name):
                p.unlink(missing_ok=True)


def clear_staging(folder: Path) -> None:
    shutil.rmtree(folder / STAGING, ignore_errors=True)


class BuildLock:
    """An exclusive, non-blocking flock on DIR/lock: one build-index per index at a time.

    The holder writes who it is into the file (pid, what it runs, since when), so that a
    build that finds the lock taken says which process holds it. The kernel drops the flock
    when its process dies, however it dies: a killed build never leaves the index locked.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None

    def acquire(self, wait_message: bool = True, holder: str = "build-index") -> bool:
        """Take the lock as ``holder``; False (or RetrieveError naming the process that holds
        it, when ``wait_message``) if another holds it."""
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if wait_message:
                raise RetrieveError(f"another build-index is running on {self.folder}"
                                    f"{self.holder()}") from None
            return False
        note = json.dumps({"pid": os.getpid(), "holder": holder,
                           "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        self._fd = fd
        return True

    def holder(self) -> str:
        """`` (pid N, build-index --watch since ...)``: who holds the lock, as it wrote; empty
        when it wrote nothing readable."""
        try:
            note = json.loads((self.folder / LOCK).read_text())
            return f" (pid {int(note['pid'])}, {note['holder']} since {note['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
