"""`retrieve duplicates` as a background job of `retrieve serve`: one at a time, joined by every
client that asks for it (never started twice), its progress told as the library reports it,
cancellable (the work saved so far is kept, and the next run goes on from it); the reports kept
per index generation and settings.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.errors import RetrieveError

if TYPE_CHECKING:  # imported by find itself, when a search runs
    from indexes.duplicates.find import Report
    from indexes.duplicates.progress import ProgressFn

KEPT_REPORTS = 4  # settings whose reports are kept for the committed generation
STATES = ("running", "done", "cancelled", "failed")
# (settings key, progress) -> the report: find_duplicates over the committed generation.
Find = Callable[[object, "ProgressFn"], "Report"]


class Cancelled(RetrieveError):
    """The search for duplicates was cancelled before it ended."""


class Busy(RetrieveError):
    """A search with other settings is running: one at a time."""


@dataclass
class Job:
    """One search for duplicates: what it does now, and how it ended."""

    id: int
    generation: int
    settings: str  # repr of the DuplicatesConfig: with the generation, the cache's key
    config: object
    state: str = "running"  # one of STATES
    stage: str = "starting"  # a stage of find_duplicates' progress
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    report: Report | None = None
    failure: Exception | None = None  # what ended a failed job, raised to those who wait on it
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> tuple[int, str]:
        return self.generation, self.settings

    def describe(self) -> dict:
        """What GET /api/duplicates/status answers of it (``config``: its settings)."""
        return {"config": self.config, "id": self.id, "state": self.state, "stage": self.stage,
                "done": self.done, "total": self.total, "generation": self.generation,
                "started": self.started, "finished": self.finished,
                "seconds": round((self.finished or time.time()) - self.started, 3),
                "cancelling": self.state == "running" and self.cancel.is_set(),
                "error": self.error}


class Jobs:
    """The searches of one served index. ``find(config, progress)`` runs one (in a thread of
    its own); ``generation()`` reads the committed generation."""

    def __init__(self, find: Find, generation: Callable[[], int]) -> None:
        self._find, self._generation = find, generation
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self.latest: Job | None = None
        self.version = 0  # grows at every change a client may want to see
        self._reports: dict[tuple[int, str], Report] = {}

    def start(self, config) -> Job:
        """The job of ``config`` over the committed generation: the running one, a finished
        one (its report kept), or a new one; Busy while one with other settings runs."""
        generation, settings = self._generation(), repr(config)
        with self._changed:
            job = self.latest
            if job is not None and job.key == (generation, settings) and job.state in (
                    "running", "done"):
                return job
            if job is not None and job.state == "running":
                raise Busy("another search for duplicates is running (other settings, or the "
                           "index before its latest build): wait for it or cancel it")
            report = self._reports.get((generation, settings))
            job = Job(next(self._ids), generation, settings, config)
            if report is not None:  # kept: done at once
                job.state, job.stage, job.report = "done", "done", report
                job.finished = time.time()
            else:
                threading.Thread(target=self._run, args=(job,), name="retrieve-duplicates",
                                 daemon=True).start()
            self._tell(job)
            return job

    def cancel(self) -> Job | None:
        """Stop the running job at its next step (its saved work is kept)."""
        with self._changed:
            job = self.latest
            if job is not None and job.state == "running" and not job.cancel.is_set():
                job.cancel.set()
                self._tell(job)
            return job

    def report(self, config) -> Report:
        """The report of ``config``: the job's, once it ends (a running one with other
        settings is waited for first); Cancelled, or the job's own error."""
        while True:
            try:
                job = self.start(config)
            except Busy:
                with self._changed:
                    self._changed.wait_for(lambda: self.latest.state != "running")
                continue
            with self._changed:
                self._changed.wait_for(lambda: job.state != "running")
            if job.state == "done":
                return job.report
            if job.state == "cancelled":
                raise Cancelled("the search for duplicates was cancelled; ask again to go on")
            raise job.failure

    def status(self, job: Job | None = None) -> tuple[int, dict | None]:
        """(version, what ``job`` (the latest by default) is doing, as Job.describe says,
        read whole while its search goes on)."""
        with self._changed:
            job = job or self.latest
            return self.version, None if job is None else job.describe()

    def _tell(self, job: Job) -> None:
        """Under the lock: ``job`` is the latest and changed."""
        self.latest = job
        self.version += 1
        self._changed.notify_all()

    def _run(self, job: Job) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            if job.cancel.is_set():
                raise Cancelled("cancelled")
            with self._changed:
                job.stage, job.done, job.total = stage, done, total
                self._tell(job)

        try:
            report = self._find(job.config, progress)
        except Cancelled:
            self._end(job, "cancelled")
        except Exception as e:  # shown to every client that asks (the status and the routes)
            job.failure = e
            self._end(job, "failed", str(e) if isinstance(e, RetrieveError)
                      else f"internal error ({type(e).__name__}: {e})")
        else:
            with self._changed:
                self._reports = {k: r for k, r in self._reports.items()
                                 if k[0] == job.generation}  # an older generation's go
                self._reports[job.key] = report
                while len(self._reports) > KEPT_REPORTS:
                    del self._reports[next(iter(self._reports))]
            job.report = report
            self._end(job, "done")

    def _end(self, job: Job, state: str, error: str | None = None) -> None:
        with self._changed:
            job.state, job.error, job.finished = state, error, time.time()
            if state == "done":
                job.stage = "done"
            self._tell(job)
