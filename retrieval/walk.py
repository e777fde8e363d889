"""Which files under the folders a user names are images to read: the walk, the exclude
patterns (``--exclude``, ``.retrieveignore``) and the pairing of a RAW file with its JPEG.

Everything here streams folder by folder (nothing grows with the number of files), so that a
build's plan can take the paths as they come.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from . import formats
from .config import DEFAULT_RAW

IGNORE_FILE = ".retrieveignore"  # gitignore-style patterns, relative to its folder


@dataclass(frozen=True)
class Selection:
    """Which of the files found are wanted: the ``exclude`` patterns (gitignore syntax,
    relative to each folder named; an absolute path under it works too) and ``raw``."""

    exclude: tuple[str, ...] = ()
    raw: str = DEFAULT_RAW

    @classmethod
    def kept(cls, exclude: Iterable[str] | None, raw: str | None, recorded: dict) -> "Selection":
        """The patterns and RAW choice asked for, else those ``recorded`` in an index's
        settings (a re-run keeps them), else none and DEFAULT_RAW."""
        if exclude is None:
            exclude = recorded.get("exclude") or ()
        raw = raw or recorded.get("raw") or DEFAULT_RAW
        return cls(tuple(p for p in exclude if p.strip()), raw)


@dataclass
class Walked:
    """What a walk left out, counted: files matched by a pattern, and files that stood in for
    by their RAW or JPEG partner."""

    excluded: int = 0
    paired: int = 0
    ignore_files: list[str] = field(default_factory=list)  # the .retrieveignore files read


def is_image_candidate(path: Path) -> bool:
    """An image extension (whatever the decode reads, installed or not), or a known image
    signature in the first bytes."""
    return path.suffix.lower() in formats.extensions() or _looks_like_image(path)


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return formats.sniff(head) is not None


def find_images(roots: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = (),
                selection: Selection = Selection(), walked: Walked | None = None) -> Iterator[Path]:
    """Yield absolute paths of image candidates under each root, recursively, sorted per
    folder, as ``selection`` wants them (``walked`` counts what it left out).

    A root may be a file: it is taken as it is. Hidden folders and files, and the folders in
    ``exclude`` (the index directory), are skipped; symlinked folders are not followed.
    """
    walked = walked if walked is not None else Walked()
    skip = {os.path.realpath(p) for p in exclude}
    for root in roots:
        root = Path(os.path.abspath(root))
        if root.is_file():
            yield root
            continue
        given = _anchored(selection.exclude, root)
        ignores = _Ignores(str(root), pathspec.GitIgnoreSpec.from_lines(given) if given else None)
        for dirpath, dirnames, filenames in os.walk(root):
            if IGNORE_FILE in filenames:
                ignores.read(dirpath, walked)
            dirnames[:] = [d for d in sorted(dirnames) if not d.startswith(".")
                           and os.path.realpath(os.path.join(dirpath, d)) not in skip
                           and not ignores.counted(os.path.join(dirpath, d), True, walked)]
            found = [p for p in _candidates(dirpath, filenames)
                     if not ignores.counted(str(p), False, walked)]
            yield from pair_raw(found, selection.raw, walked)


def _candidates(dirpath: str, filenames: list[str]) -> Iterator[Path]:
    for name in sorted(filenames):
        if name.startswith("."):
            continue
        path = Path(dirpath) / name
        if path.is_file():
            if is_image_candidate(path):
                yield path
        elif path.is_symlink() and path.suffix.lower() in formats.extensions():
            yield path  # broken link or loop: reported by the decode, not lost silently


def _anchored(patterns: Iterable[str], root: Path) -> list[str]:
    """``patterns`` for the walk of ``root``: an absolute path becomes a pattern anchored at
    the root when it lies under it, and is left out when it does not."""
    out = []
    for p in patterns:
        if not os.path.isabs(p):
            out.append(p)
            continue
        rel = os.path.relpath(os.path.abspath(p), root)
        if rel != ".." and not rel.startswith(".." + os.sep):
            out.append("/" + rel.replace(os.sep, "/") + ("/" if p.endswith("/") else ""))
    return out


class _Ignores:
    """The patterns that apply under one root: the given ones (relative to the root) and
    those of every .retrieveignore read so far, each relative to its folder. The deepest
    file that decides wins, as with git's .gitignore files."""

    def __init__(self, root: str, given: pathspec.PathSpec | None) -> None:
        self.given = [(root, given)] if given is not None else []
        self.files: dict[str, pathspec.PathSpec] = {}

    def read(self, folder: str, walked: Walked) -> None:
        path = os.path.join(folder, IGNORE_FILE)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                self.files[folder] = pathspec.GitIgnoreSpec.from_lines(f.read().splitlines())
        except OSError:
            return  # unreadable: as if absent
        walked.ignore_files.append(path)

    def counted(self, path: str, is_dir: bool, walked: Walked) -> bool:
        """Whether ``path`` is excluded (counted in ``walked``)."""
        if not self.given and not self.files:
            return False
        specs = [(base, spec) for base, spec in self.files.items()
                 if path.startswith(base + os.sep)]
        specs.sort(key=lambda b: len(b[0]), reverse=True)  # the deepest first
        for base, spec in (*specs, *self.given):
            rel = os.path.relpath(path, base).replace(os.sep, "/") + ("/" if is_dir else "")
            include = spec.check_file(rel).include
            if include is not None:
                walked.excluded += include
                return include
        return False


def pair_raw(paths: list[Path], raw: str, walked: Walked) -> list[Path]:
    """``paths`` (one folder's files) with each RAW file and its same-name JPEG or HEIC (the
    camera's RAW+JPEG) taken once, as ``raw`` says: ``jpeg`` keeps the rendered file, ``raw``
    the RAW file, ``both`` both. ``walked.paired`` counts the files left out."""
    if raw == "both":
        return paths
    stems: dict[str, set[str]] = {}
    for p in paths:
        stems.setdefault(p.stem.lower(), set()).add(_kind(p))
    drop = "raw" if raw == "jpeg" else "rendered"
    pair = {"raw", "rendered"}
    kept = [p for p in paths if not (_kind(p) == drop and stems[p.stem.lower()] >= pair)]
    walked.paired += len(paths) - len(kept)
    return kept


def _kind(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in formats.RAW_EXTENSIONS:
        return "raw"
    return "rendered" if ext in formats.RENDERED_EXTENSIONS else "other"
