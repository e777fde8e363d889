"""File moves and links that never lose a file: no overwrite, data on disk before the source
goes, and leftovers with fixed names that a resumed or undone step can find and clear."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from dataclasses import dataclass

from retrieval.atomic import fsync_dir

HASH_CHUNK = 1 << 20  # bytes read at a time when hashing
# errnos of os.link on file systems without hard links (FAT, some network mounts)
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


@dataclass(frozen=True)
class Stamp:
    """What a file was when a plan was written: its size, mtime and (where read) sha256."""

    size: int
    mtime_ns: int
    sha256: str | None = None


def stamp(path: str, with_hash: bool = True) -> Stamp | None:
    """The file's Stamp now (None when it is not there or not a regular file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return Stamp(st.st_size, st.st_mtime_ns, sha256(path) if with_hash else None)


def sha256(path: str) -> str | None:
    """The hex sha256 of the file's bytes (None when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def aside(path: str, what: str) -> str:
    """The fixed name of the temporary file a step makes beside ``path``."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.retrieve-{what}")


def remove(path: str) -> None:
    """Unlink ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def move(src: str, dst: str) -> None:
    """Move the file ``src`` to ``dst`` (its folders made), never over an existing ``dst``
    (FileExistsError). On one file system: a hard link, then ``src`` unlinked (a rename where
    there are no hard links); across file systems: a copy beside ``dst``, fsynced and renamed
    into place, then ``src`` unlinked. At no moment is neither there."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno == errno.EXDEV:
            _copy_across(src, dst)
        elif e.errno in NO_HARD_LINKS:
            if os.path.lexists(dst):
                raise FileExistsError(errno.EEXIST, "File exists", dst) from None
            os.rename(src, dst)
            fsync_dir(os.path.dirname(dst))
            return
        else:
            raise
    fsync_dir(os.path.dirname(dst))  # the new name on disk before the old one goes
    os.unlink(src)


def _copy_across(src: str, dst: str) -> None:
    tmp = aside(dst, "copy")
    remove(tmp)
    shutil.copy2(src, tmp)  # with its mode and times
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if os.path.lexists(dst):
        remove(tmp)
        raise FileExistsError(errno.EEXIST, "File exists", dst)
    os.rename(tmp, dst)


def link_aside(target: str, path: str, kind: str) -> str:
    """A hard or symbolic link (``kind``) to ``target`` made beside ``path``: its name."""
    tmp = aside(path, "link")
    remove(tmp)
    if kind == "hardlink":
        os.link(target, tmp)
    else:
        os.symlink(os.path.abspath(target), tmp)
    return tmp


def is_link_to(path: str, target: str, kind: str) -> bool:
    """Whether ``path`` is a hard link (the same file) or a symbolic link to ``target``."""
    try:
        if kind == "symlink":
            return os.path.islink(path) and os.readlink(path) == os.path.abspath(target)
        return not os.path.islink(path) and os.path.samefile(path, target)
    except OSError:
        return False


def put_in_place(tmp: str, path: str) -> None:
    """Rename ``tmp`` over ``path`` (atomic) and make it last."""
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def copy_back(source: str, path: str, mode: int, mtime_ns: int) -> None:
    """Put a copy of ``source``'s bytes at ``path`` (over a link there), with ``mode`` and
    ``mtime_ns``: written beside it, fsynced, renamed into place."""
    tmp = aside(path, "restore")
    remove(tmp)
    shutil.copyfile(source, tmp)
    os.chmod(tmp, mode & 0o7777)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    put_in_place(tmp, path)


def remove_empty_folders(folder: str, stop: str) -> None:
    """Remove ``folder`` and its parents while they are empty, up to (not) ``stop``."""
    stop = os.path.abspath(stop)
    folder = os.path.abspath(folder)
    while folder != stop and folder.startswith(stop + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)
