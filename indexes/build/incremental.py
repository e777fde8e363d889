"""Incremental, resumable index builds: extract only new or changed files, drop vanished ones."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from retrieval.config import DEFAULT_RAW, IMAGENET
from retrieval.errors import IndexCorrupt, RetrieveError

from indexes.build import commit as commits
from indexes.build import training
from indexes.build.plan import Plan
from indexes.config import DEFAULT_FACTORY, BuildConfig
from indexes.extractor import Extractor
from indexes.store import files, manifest
from indexes.store.files import BuildLock
from indexes.store.staging import FileState, Staging
from indexes.store.store import IndexStore


class Team(Protocol):
    """The processes of one build under torchrun (retrieval.distributed.Team). Rank 0 holds
    the lock, plans, and alone writes the database; every rank extracts and stages a share
    of each round."""

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
                       tuple(exclude or ()), raw, config.commit_every)


@dataclass
class BuildReport:
    folder: Path
    total: int = 0  # items in the index after the build
    new: int = 0
    changed: int = 0
    removed: int = 0
    extracted: int = 0  # run through the model in this run (the rest came from staging)
    reused: int = 0  # taken from the staging of an interrupted run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), see on_skip
    skipped_count: int = 0
    rounds: int = 0  # generations committed
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


Skip = Callable[[str, str], None]


def build_index(folder: str | os.PathLike, paths: Iterable[str | os.PathLike], extractor: Extractor,
                config: BuildConfig | None = None, rebuild: bool = False,
                team: Team | None = None, on_skip: Skip | None = None,
                lock: BuildLock | None = None) -> BuildReport:
    """Bring the index at ``folder`` up to date with the image files ``paths`` (any iterable,
    consumed once as it comes: the files that exist and are wanted).

    The plan is SQL (``indexes.build.plan``); the files to extract go through the model and are
    committed in rounds of ``config.commit_every``, each a generation of its own, so that
    memory and staging stay bounded by a round whatever the number of images. A new index is
    first trained on a sample spread over the files (``training.sample_size``).

    Fields of ``config`` left None keep what the index was built with (see ``_kept``).
    Holds the build lock throughout. Raises IndexMismatch when the index was made with other
    weights, layer, factory or normalisation (unless ``rebuild``), NothingIndexed when the
    index would end up empty, FactoryError when the index type cannot be trained or updated.
    IndexWriteError when a file of the index cannot be written (a full disk): what was
    committed stays, what was staged is reused by the next run. Each file left out goes to
    ``on_skip(path, reason)`` as its round ends (default: ``report.skipped``).

    ``team`` (torchrun): every rank calls this with the same arguments; rank 0 plans, each
    rank extracts its ``share`` of each round's files, and rank 0 commits the round once all
    have staged theirs. Other ranks return a report of their own share only.
    ``lock``: the build lock of ``folder``, already held by the caller (``--watch`` holds it
    across its builds); else taken and released here.
    """
    config = config or BuildConfig()
    start = time.perf_counter()
    folder = Path(os.path.abspath(folder))
    report = BuildReport(folder)

    def skip(path: str, reason: str) -> None:
        report.skipped_count += 1
        if on_skip is None:
            report.skipped.append((path, reason))
        else:
            on_skip(path, reason)

    try:
        if team is not None and team.rank != 0:
            while (todo := team.broadcast(None)) is not None:
                _extract_share(folder, extractor, todo, report, team, skip)
        else:
            _locked(folder, paths, extractor, config, rebuild, team, report, skip, lock)
            if team is not None:
                team.broadcast(None)  # no more rounds (a failed rank 0 just exits: its peers
                # then stop on the closed connection, wherever they wait)
    except (OSError, sqlite3.OperationalError) as e:  # a full disk, a read-only folder, ...
        where = getattr(e, "filename", None) or folder
        why = getattr(e, "strerror", None) or str(e)
        raise IndexWriteError(f"{where}: {why}; the index keeps its last complete build; fix "
                              "this and run build-index again (it resumes)") from None
    report.seconds = time.perf_counter() - start
    return report


def _locked(folder: Path, paths, extractor: Extractor, config: BuildConfig, rebuild: bool,
            team: Team | None, report: BuildReport, skip: Skip, lock: BuildLock | None) -> None:
    """``_build`` holding the build lock (``lock``, held by the caller, or taken here)."""
    folder.mkdir(parents=True, exist_ok=True)
    own = lock is None
    if own:
        lock = BuildLock(folder)
        lock.acquire()
    try:
        store = IndexStore.open(folder, create=True, discard_damaged=rebuild)
        try:
            _build(store, paths, extractor, config, rebuild, team, report, skip)
        finally:
            store.close()
    finally:
        if own:
            lock.release()


def _build(store: IndexStore, paths, extractor: Extractor, config: BuildConfig, rebuild: bool,
           team: Team | None, report: BuildReport, skip: Skip) -> None:
    store.tidy()
    config = _kept(config, store.settings or store.staging_settings or {})
    settings = {**extractor.identity(), "factory": config.factory, "normalize": config.normalize,
                "on_disk": config.on_disk, "exclude": config.exclude, "raw": config.raw}
    if not rebuild:
        manifest.check_settings(store.folder, store.settings, settings)
    moved = commits.check_on_disk(store, settings, rebuild)  # before hours of extraction
    # The weights' path too: a first build killed before its commit is resumed by a re-run
    # that does not name them again (recorded_settings falls back on these).
    staging_key = {k: settings[k] for k in (*manifest.MATCHING_KEYS, "weights")}
    rounds = commits.Rounds(store, settings, rebuild or store.generation == 0, moved)
    half = commits.stage_half(settings)
    with Plan.open(store) as plan:
        plan.walk(paths, skip)
        plan.compare(rebuild)
        if rounds.needs_training:
            staged = settings["dim"] * (2 if half else 4)  # bytes a staged vector takes
            plan.take_sample(training.sample_size(config.factory, settings["dim"], staged))
        for r, last in plan.rounds(config.commit_every):
            store.reset_staging(staging_key)
            _round(store, plan, r, last, rounds, extractor, report, team, skip, half)
    if rounds.fresh:  # nothing was committed: the index would be empty
        raise _nothing(store, report)
    if not report.rounds and store.settings != json.loads(json.dumps(settings)):
        with store.atomic():  # e.g. other --exclude patterns that changed no file: recorded,
            store.set_meta("settings", settings)  # no new generation needed
        manifest.write(store)
    report.total = store.count


def _round(store: IndexStore, plan: Plan, r: int, last: bool, rounds: commits.Rounds,
           extractor: Extractor, report: BuildReport, team: Team | None, skip: Skip,
           half: bool) -> None:
    """Extract what round ``r`` still needs, then commit it if it changes anything."""
    staging = Staging(store.folder)
    plan.rescan(staging)
    report.reused += plan.staged(r)
    todo = plan.to_extract(r)
    if todo:
        _extract_share(store.folder, extractor, todo, report, team, skip, half)
        plan.rescan(staging)  # every process's batches are staged now
    if not rounds.due(plan, r, last):
        return
    fresh = rounds.fresh
    after = (0 if fresh else store.count - plan.removal_count(r, last)) + plan.staged(r)
    if after == 0:
        raise _nothing(store, report)
    rounds.commit(plan, r, last)
    new, changed = plan.counts()
    plan.done()
    report.new += new
    report.changed += changed
    report.removed += plan.gone if last and not fresh else 0
    report.rounds += 1


def _nothing(store: IndexStore, report: BuildReport) -> NothingIndexed:
    what = (f"all {report.skipped_count} files were skipped" if report.skipped_count
            else "no images found")
    return NothingIndexed(f"nothing could be indexed into {store.folder}: {what}", report.skipped)


def _extract(staging: Staging, extractor: Extractor, todo: Sequence[FileState],
             report: BuildReport, skip: Skip, half: bool) -> None:
    """Run the model over ``todo`` batch by batch, staging each batch as it comes."""
    if not todo:
        return
    names = [os.fsdecode(s.path) for s in todo]
    for positions, vectors, errors in extractor.embed(names):
        for path, reason in errors:
            skip(path, reason)
        if len(positions):
            report.extracted += len(positions)
            staging.write([todo[i] for i in positions], vectors, half)


def _extract_share(folder: Path, extractor: Extractor, todo: Sequence[FileState] | None,
                   report: BuildReport, team: Team | None, skip: Skip,
                   half: bool = False) -> None:
    """Extract and stage this process's share of ``todo``, a round's files. Under torchrun
    rank 0 sends the round to every rank (the others pass what they received) and then
    counts every rank's work in ``report``."""
    if team is None:
        _extract(Staging(folder), extractor, todo, report, skip, half)
        return
    if team.rank == 0:
        todo = team.broadcast((todo, half))
    todo, half = todo
    mine = BuildReport(folder)
    errors: list[tuple[str, str]] = []
    _extract(Staging(folder, team.rank), extractor, share(todo, team.rank, team.size), mine,
             lambda p, why: errors.append((p, why)), half)
    gathered = team.gather((mine.extracted, errors))
    report.extracted += mine.extracted if gathered is None else 0
    for extracted, skipped in gathered or []:
        report.extracted += extracted
        for path, reason in skipped:
            skip(path, reason)
