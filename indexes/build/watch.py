"""`build-index --watch`: after the first build the index follows its folders, committing one
small generation per burst of changes (watchfiles' events, or polling where none arrive)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import RetrieveError
from retrieval.walk import IGNORE_FILE

from indexes.build.incremental import BuildReport, build_index
from indexes.config import BuildConfig
from indexes.extractor import Extractor
from indexes.store.files import BuildLock

HOLDER = "build-index --watch"  # what the lock says of a watch (files.BuildLock.holder)
# A burst of changes ends after QUIET_MS without another (a file still being copied keeps it
# open), or after BURST_MS in all, so that a steady stream of new photos is committed as it
# comes rather than once it stops.
QUIET_MS = 500
BURST_MS = 10_000
WAKE_MS = 1_000  # the watcher wakes this often without a change (to see ``stop``)
POLL_MS = 5_000  # how often folders are looked at where file-system events do not arrive
# File systems whose changes made by other machines raise no event here (inotify and FSEvents
# see local writes only): network shares and FUSE mounts of remote storage.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
    "gpfs", "davfs", "fuse.sshfs", "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse", "fuse.davfs2"})
MOUNTS = Path("/proc/self/mounts")


@dataclass
class Generation:
    """One build of a watch: its ``report``, or the ``error`` that stopped it (the index keeps
    its last generation and the watch goes on); ``changes``: the events that started it (0
    for the first build and for the one that catches up once the watcher runs)."""

    report: BuildReport | None
    error: RetrieveError | None = None
    changes: int = 0
    first: bool = False


def watch_index(folder: str | os.PathLike, roots: Sequence[str | os.PathLike],
                images: Callable[[], Iterable], extractor: Extractor, config: BuildConfig,
                on_build: Callable[[Generation], None], poll_ms: int | None = None,
                stop=None, quiet_ms: int = QUIET_MS, rebuild: bool = False) -> None:
    """Build the index at ``folder`` from ``images()`` (the walk of ``roots``), then again
    after every burst of changes under ``roots``, each time through ``build_index``'s
    incremental path (new, changed and vanished files only), until ``stop`` is set or Ctrl-C.

    Holds the build lock throughout as HOLDER: a build-index started meanwhile is refused
    with the watch's pid. ``poll_ms``: look at the folders that often instead of waiting for
    events (network mounts). Errors of the first build are raised; those of later builds go
    to ``on_build`` and the watch goes on (the index keeps its last generation). ``rebuild``:
    the first build replaces the index (build-index --rebuild).
    """
    import watchfiles

    folder = Path(os.path.abspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    lock = BuildLock(folder)
    lock.acquire(holder=HOLDER)
    try:
        on_build(Generation(build_index(folder, images(), extractor, config, rebuild=rebuild,
                                        lock=lock), first=True))
        # The watcher starts with the first step of this loop, after the first build: its
        # first wake (events or none) builds again, for what changed in between.
        caught_up = False
        for changes in watchfiles.watch(
                *roots, watch_filter=relevant(folder, roots), debounce=BURST_MS, step=quiet_ms,
                stop_event=stop, rust_timeout=WAKE_MS, yield_on_timeout=True,
                force_polling=poll_ms is not None, poll_delay_ms=poll_ms or POLL_MS,
                ignore_permission_denied=True):
            if changes or not caught_up:
                caught_up = True
                _generation(folder, images, extractor, config, lock, on_build, len(changes))
    finally:
        lock.release()


def _generation(folder: Path, images, extractor: Extractor, config: BuildConfig,
                lock: BuildLock, on_build, changes: int) -> None:
    try:
        report = build_index(folder, images(), extractor, config, lock=lock)
    except RetrieveError as e:  # nothing left to index, a full disk: said, and the watch goes on
        on_build(Generation(None, e, changes))
    else:
        on_build(Generation(report, None, changes))


def relevant(folder: Path, roots: Sequence[str | os.PathLike]) -> Callable[[object, str], bool]:
    """watchfiles' filter: a change that may change the index, i.e. not inside the index
    folder (its own commits) and not a hidden file or folder (the walk skips those), except
    a .retrieveignore."""
    index = {str(folder), os.path.realpath(folder)}  # the events may name either
    bases = [os.path.abspath(r) for r in roots] + [os.path.realpath(r) for r in roots]

    def changed(change, path: str) -> bool:
        if any(path == i or path.startswith(i + os.sep) for i in index):
            return False
        if os.path.basename(path) == IGNORE_FILE:
            return True
        base = next((b for b in bases if path.startswith(b + os.sep)), None)
        rel = path[len(base) + 1:] if base else os.path.basename(path)
        return not any(part.startswith(".") for part in rel.split(os.sep))

    return changed


def network_mount(roots: Sequence[str | os.PathLike]) -> str | None:
    """The type of the first network file system among ``roots``' mounts (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mounts = [line.split() for line in MOUNTS.read_text().splitlines()]
    except OSError:
        return None
    points = sorted(((m[1].replace("\\040", " "), m[2]) for m in mounts if len(m) > 2),
                    key=lambda m: len(m[0]), reverse=True)
    for root in roots:
        real = os.path.realpath(root)
        point, kind = next(((p, k) for p, k in points
                            if real == p or real.startswith(p.rstrip("/") + "/")), ("", ""))
        if kind in NETWORK_FILESYSTEMS:
            return kind
    return None
