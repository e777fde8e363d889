"""The system trash through send2trash, and a trashed file found again to put it back.

send2trash does not say where it put a file. On Linux and the BSDs it follows the
freedesktop.org trash spec: TRASH/files/NAME beside TRASH/info/NAME.trashinfo, whose
``Path=`` is the file's original place; TRASH is $XDG_DATA_HOME/Trash on the home's file
system, else $topdir/.Trash/$uid or $topdir/.Trash-$uid of the file's own mount. ``find``
reads those. Elsewhere (macOS, Windows) a file is trashed but cannot be found again here.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from indexes.duplicates import fileops

FREEDESKTOP = sys.platform not in ("darwin", "win32")
PROBED_NAMES = 1000  # send2trash's names for one file: NAME, "BASE 1.EXT", "BASE 2.EXT", ...


@dataclass(frozen=True)
class Trashed:
    """A file in the trash: TRASH/files/NAME and TRASH/info/NAME.trashinfo."""

    file: str
    info: str


def put(path: str) -> None:
    """Move ``path`` to the system trash (OSError when it cannot)."""
    if FREEDESKTOP:  # send2trash's own freedesktop implementation: the one ``find`` reads
        from send2trash.plat_other import send2trash
    else:
        from send2trash import send2trash
    send2trash(path)


def _trashes(path: str) -> list[tuple[bytes, bytes]]:
    """(trash folder, its top folder) where send2trash may have put ``path``."""
    from send2trash import plat_other as fd

    out = [(fd.HOMETRASH_B, fd.XDG_DATA_HOME)]  # read at call time: tests move the home
    try:
        top = os.fsencode(fd.find_mount_point(os.path.dirname(os.path.abspath(path))))
    except OSError:
        return out
    uid = str(os.getuid()).encode()
    out += [(os.path.join(top, fd.TOPDIR_TRASH, uid), top),
            (os.path.join(top, fd.TOPDIR_FALLBACK), top)]
    return [(t, top) for t, top in out if os.path.isdir(os.path.join(t, b"info"))]


def _names(path: str, info_dir: bytes):
    """The names send2trash gives ``path`` in turn, then every other name in the trash."""
    probed = list(itertools.takewhile(
        lambda name: os.path.exists(os.path.join(info_dir, name + b".trashinfo")),
        _send2trash_names(path)))
    yield from probed
    try:  # a gap in the names (a file put back, the trash emptied in part): read them all
        rest = [e.name[:-len(b".trashinfo")] for e in os.scandir(info_dir)
                if e.name.endswith(b".trashinfo")]
    except OSError:
        return
    yield from (name for name in rest if name not in probed)


def _send2trash_names(path: str) -> Iterator[bytes]:
    """NAME, "BASE 1.EXT", "BASE 2.EXT", ...: the names send2trash tries in turn."""
    base, ext = os.path.splitext(os.path.basename(os.fsencode(path)))
    yield base + ext
    for n in range(1, PROBED_NAMES):
        yield base + b" %d" % n + ext


def _original(info: bytes, top: bytes) -> bytes | None:
    """The original place a .trashinfo file names (None if unreadable)."""
    try:
        with open(info, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Path="):
            where = unquote_to_bytes(line[5:].strip())
            return where if os.path.isabs(where) else os.path.join(top, where)
    return None


def find(path: str, was: fileops.Stamp, hint: Trashed | None = None) -> Trashed | None:
    """The trashed file that was at ``path`` and is as ``was`` (size and mtime), or None.

    ``hint``: where it was found when trashed (checked first).
    """
    if hint is not None and _is(hint, path, was):
        return hint
    if not FREEDESKTOP:
        return None
    for trash, top in _trashes(path):
        info_dir, files_dir = os.path.join(trash, b"info"), os.path.join(trash, b"files")
        for name in _names(path, info_dir):
            found = Trashed(os.fsdecode(os.path.join(files_dir, name)),
                            os.fsdecode(os.path.join(info_dir, name + b".trashinfo")))
            if _original(os.fsencode(found.info), top) == os.fsencode(path) and _is(
                    found, path, was, check_info=False):
                return found
    return None


def _is(found: Trashed, path: str, was: fileops.Stamp, check_info: bool = True) -> bool:
    try:
        st = os.lstat(found.file)
    except OSError:
        return False
    if (st.st_size, st.st_mtime_ns) != (was.size, was.mtime_ns):
        return False
    return not check_info or os.path.exists(found.info)


def restore(found: Trashed, path: str) -> None:
    """Put a trashed file back at ``path`` (never over a file there: FileExistsError)."""
    fileops.move(found.file, path)
    fileops.remove(found.info)


def forget_orphans(path: str) -> None:
    """Remove .trashinfo files naming ``path`` whose file never reached the trash
    (send2trash writes the info first: a kill between the two leaves one)."""
    if not FREEDESKTOP:
        return
    for trash, top in _trashes(path):
        info_dir, files_dir = os.path.join(trash, b"info"), os.path.join(trash, b"files")
        for name in _send2trash_names(path):
            info = os.path.join(info_dir, name + b".trashinfo")
            if not os.path.exists(info):
                break
            if (not os.path.lexists(os.path.join(files_dir, name))
                    and _original(info, top) == os.fsencode(path)):
                fileops.remove(os.fsdecode(info))
