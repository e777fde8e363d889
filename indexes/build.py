"""Incremental, resumable index builds: extract only new or changed files, drop vanished ones."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from retrieval.config import DEFAULT_RAW, IMAGENET
from retrieval.errors import IndexCorrupt, RetrieveError

from . import commit as commits
from . import files, manifest
from .config import DEFAULT_FACTORY, BuildConfig
from .files import BuildLock
from .staging import FileState, StagedRow, Staging
from .store import IndexStore, Item


class Extractor(Protocol):
    """What a build needs from the model side (retrieval.features.FeatureExtractor)."""

    def identity(self) -> dict:
        """weights (source), sha256, layer, dim, transform, model: recorded in the manifest."""

    def embed(self, paths: Sequence[str]) -> Iterator[tuple[list[int], np.ndarray, list]]:
        """Per batch: positions in ``paths`` that decoded, their (b, dim) float32 vectors,
        and [(path, reason)] of those that did not."""


class Team(Protocol):
    """The processes of one build under torchrun (retrieval.distributed.Team). Rank 0 holds
    the lock, plans, and alone writes the database; every rank extracts and stages a share."""

    rank: int
    size: int

    def broadcast(self, obj):
        """Rank 0's ``obj``, on every rank."""

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` in rank order, on rank 0 (None on the others)."""


def share(todo: Sequence, rank: int, size: int) -> Sequence:
    """Rank ``rank``'s part of ``todo`` among ``size`` processes: contiguous, deterministic."""
    return todo[len(todo) * rank // size:len(todo) * (rank + 1) // size]


def recorded_settings(folder: str | os.PathLike) -> dict:
    """What the index at ``folder`` was built with, or what its first build, interrupted, was
    building with: {} when there is neither or it is unreadable."""
    if not (Path(folder) / files.DATABASE).is_file():
        return {}
    try:
        store = IndexStore.open(folder)
    except IndexCorrupt:
        return {}
    try:
        return store.settings or store.staging_settings or {}
    finally:
        store.close()


def weights_to_build_with(folder: str | os.PathLike, asked: str | None) -> str:
    """The weights a build of ``folder`` uses: those ``asked`` for, else those the index was
    built with (or an interrupted first build was building with), else ``imagenet``."""
    return asked or recorded_settings(folder).get("weights") or IMAGENET


def _kept(config: BuildConfig, recorded: dict) -> BuildConfig:
    """``config`` with the fields left None taken from ``recorded``, else the defaults: a
    re-run keeps the factory, normalisation and on-disk lists the index was built with."""
    factory = config.factory if config.factory is not None else recorded.get("factory")
    normalize = config.normalize if config.normalize is not None else recorded.get("normalize")
    on_disk = config.on_disk if config.on_disk is not None else recorded.get("on_disk")
    exclude = config.exclude if config.exclude is not None else recorded.get("exclude")
    raw = config.raw or recorded.get("raw") or DEFAULT_RAW
    return BuildConfig(factory or DEFAULT_FACTORY, bool(normalize), bool(on_disk),
                       tuple(exclude or ()), raw)


@dataclass
class BuildReport:
    folder: Path
    total: int = 0  # items in the index after the build
    new: int = 0
    changed: int = 0
    removed: int = 0
    extracted: int = 0  # run through the model in this run (the rest came from staging)
    reused: int = 0  # taken from the staging of an interrupted run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0


class IndexWriteError(RetrieveError):
    """The index could not be written (disk full, no permission): nothing committed is lost."""


class NothingIndexed(RetrieveError):
    """Every input was skipped (or there was none): the index would be empty."""

    def __init__(self, message: str, skipped: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.skipped = skipped


@dataclass
class _Plan:
    to_extract: list[FileState] = field(default_factory=list)
    adds: list[commits.Staged] = field(default_factory=list)
    remove_ids: list[int] = field(default_factory=list)
    known: set[bytes] = field(default_factory=set)  # paths already in the index (changed ones)
    removed: int = 0


def build_index(folder: str | os.PathLike, paths: Iterable[str | os.PathLike], extractor: Extractor,
                config: BuildConfig | None = None, rebuild: bool = False,
                team: Team | None = None, lock: BuildLock | None = None) -> BuildReport:
    """Bring the index at ``folder`` up to date with the image files ``paths``.

    Fields of ``config`` left None keep what the index was built with (see ``_kept``).
    Holds the build lock throughout. Raises IndexMismatch when the index was made with other
    weights, layer, factory or normalisation (unless ``rebuild``), NothingIndexed when the
    index would end up empty, FactoryError when the index type cannot be trained or updated.
    IndexWriteError when a file of the index cannot be written (a full disk): what was
    committed stays, what was staged is reused by the next run.

    ``team`` (torchrun): every rank calls this with the same arguments; rank 0 plans, each
    rank extracts its ``share`` of the files to extract, and rank 0 commits once all have
    staged theirs. Other ranks return a report of their own share only.
    ``lock``: the build lock of ``folder``, already held by the caller (``--watch`` holds it
    across its builds); else taken and released here.
    """
    config = config or BuildConfig()
    start = time.perf_counter()
    folder = Path(os.path.abspath(folder))
    try:
        if team is not None and team.rank != 0:
            report = BuildReport(folder)
            _extract_share(folder, extractor, None, report, team)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            own = lock is None
            if own:
                lock = BuildLock(folder)
                lock.acquire()
            try:
                store = IndexStore.open(folder, create=True, discard_damaged=rebuild)
                try:
                    report = _build(store, paths, extractor, config, rebuild, team)
                finally:
                    store.close()
            finally:
                if own:
                    lock.release()
    except (OSError, sqlite3.OperationalError) as e:  # a full disk, a read-only folder, ...
        where = getattr(e, "filename", None) or folder
        why = getattr(e, "strerror", None) or str(e)
        raise IndexWriteError(f"{where}: {why}; the index keeps its last complete build; fix "
                              "this and run build-index again (it resumes)") from None
    report.seconds = time.perf_counter() - start
    return report


def _build(store: IndexStore, paths, extractor: Extractor, config: BuildConfig,
           rebuild: bool, team: Team | None) -> BuildReport:
    store.tidy()
    config = _kept(config, store.settings or store.staging_settings or {})
    settings = {**extractor.identity(), **asdict(config)}
    if not rebuild:
        manifest.check_settings(store.folder, store.settings, settings)
    moved = commits.check_on_disk(store, settings, rebuild)  # before hours of extraction
    # The weights' path too: a first build killed before its commit is resumed by a re-run
    # that does not name them again (recorded_settings falls back on these).
    store.reset_staging({k: settings[k] for k in (*manifest.MATCHING_KEYS, "weights")})
    report = BuildReport(store.folder)
    states = _stat_all(paths, store.folder, report.skipped)
    items = {} if rebuild else store.items()
    plan = _plan(items, store.staged(), states)
    report.reused = len(plan.adds)
    _extract_share(store.folder, extractor, plan.to_extract, report, team)
    plan = _plan(items, store.staged(), states)  # again: every process's batches are staged now
    report.new = sum(a.state.path not in plan.known for a in plan.adds)
    report.changed = len(plan.adds) - report.new
    report.removed = plan.removed
    report.total = (0 if rebuild else store.count) - len(plan.remove_ids) + len(plan.adds)
    if report.total == 0:
        what = f"all {len(report.skipped)} files were skipped" if report.skipped else "no images found"
        raise NothingIndexed(f"nothing could be indexed into {store.folder}: {what}",
                             report.skipped)
    if plan.adds or plan.remove_ids or rebuild or store.generation == 0 or moved:
        commits.commit(store, settings, plan.adds, plan.remove_ids, rebuild)
    elif store.settings != json.loads(json.dumps(settings)):  # e.g. other --exclude patterns
        with store.atomic():  # that changed no file: recorded, no new generation needed
            store.set_meta("settings", settings)
        manifest.write(store)
    return report


def _stat_all(paths, folder: Path, skipped: list) -> list[FileState]:
    """FileState of each distinct path (absolute); unreadable ones go to ``skipped``."""
    seen: dict[bytes, FileState] = {}
    for p in paths:
        p = os.path.abspath(p)
        try:
            st = FileState.of(p)
        except OSError as e:
            skipped.append((p, _unreadable(p, e)))
            continue
        seen.setdefault(st.path, st)
    return list(seen.values())


def _unreadable(path: str, e: OSError) -> str:
    """Why a file cannot be stat'ed, in the words retrieval.images.load_image uses."""
    if e.errno == errno.ELOOP:
        return "symbolic link loop"
    if e.errno == errno.ENOENT:
        return "broken symbolic link" if os.path.islink(path) else "file not found"
    return f"cannot read ({e.strerror})"


def _plan(items: dict[bytes, Item], staged: dict[FileState, StagedRow],
          states: list[FileState]) -> _Plan:
    """What to do with ``states``, given the committed ``items`` and the ``staged`` rows."""
    plan = _Plan()
    current = {s.path for s in states}
    for s in states:
        item = items.get(s.path)
        if item is not None:
            if (item.size, item.mtime_ns) == (s.size, s.mtime_ns):
                continue  # unchanged
            plan.known.add(s.path)
            plan.remove_ids.append(item.id)
        hit = staged.get(s)  # staged as the file is now
        if hit is not None:
            plan.adds.append(commits.Staged(s, hit.batch, hit.row))  # from an interrupted run
        else:
            plan.to_extract.append(s)
    gone = [item.id for path, item in items.items() if path not in current]
    plan.remove_ids += gone
    plan.removed = len(gone)
    return plan


def _extract(staging: Staging, extractor: Extractor, todo: Sequence[FileState],
             report: BuildReport) -> None:
    """Run the model over ``todo`` batch by batch, staging each batch as it comes."""
    if not todo:
        return
    names = [os.fsdecode(s.path) for s in todo]
    for positions, vectors, errors in extractor.embed(names):
        report.skipped += errors
        if len(positions):
            report.extracted += len(positions)
            staging.write([todo[i] for i in positions], vectors)


def _extract_share(folder: Path, extractor: Extractor, todo: Sequence[FileState] | None,
                   report: BuildReport, team: Team | None) -> None:
    """Extract and stage this process's share of ``todo`` (rank 0's: the other ranks pass
    None and get it broadcast); on rank 0, ``report`` then counts every rank's work."""
    if team is None:
        _extract(Staging(folder), extractor, todo, report)
        return
    todo = team.broadcast(todo)
    _extract(Staging(folder, team.rank), extractor, share(todo, team.rank, team.size), report)
    for extracted, skipped in (team.gather((report.extracted, report.skipped)) or [])[1:]:
        report.extracted += extracted
        report.skipped += skipped
