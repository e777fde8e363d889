"""Applying a plan (`retrieve duplicates --apply`) and undoing it (`--undo`), a step per file.

Each step is written to the journal (journal.py) and fsynced before it touches a file; its
undo works from whatever state a crash left (nothing done, half done, done), so that a run
killed at any moment loses no file: `--undo` puts everything back, and a re-run first undoes
the step it was in, then goes on. A plan whose files changed since it was written is refused
before anything is done; moved and trashed files leave query and serve at once (gone.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from retrieval.errors import RetrieveError

from indexes.duplicates import fileops, plans, trash

from indexes.duplicates.journal import Journal, JournalError, path_for
from indexes.store import files, gone

# Steps whose begin records share one fsync: a begun step not yet started is nothing to undo.
JOURNAL_BATCH = 64


@dataclass
class Outcome:
    """What an apply or an undo did: files per action, their bytes, what it could not do."""

    journal: Path
    files: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    earlier: int = 0  # steps an earlier run of the same plan had done
    problems: list[str] = field(default_factory=list)

    def count(self, action: str, size: int) -> None:
        self.files[action] = self.files.get(action, 0) + 1
        self.bytes += size


def steps(plan: dict) -> list[dict]:
    """The plan's files that are not kept, in order: ``{"step": n, **entry, "move_to"}``."""
    out = []
    for g in plan["groups"]:
        for f in g["files"]:
            if f["action"] != "keep":
                out.append({**f, "step": len(out) + 1, "move_to": plan.get("move_to"),
                            "kept": [k for k in g["files"] if k["action"] == "keep"]})
    return out


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the step is done (a SIGKILL cannot: the journal is
    there for it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


# -- apply ----------------------------------------------------------------------------------
def apply(plan_file: str | os.PathLike, progress: bool = False,
          allowed: Callable[[dict], None] | None = None) -> Outcome:
    """Do what the plan in ``plan_file`` says, and nothing else (PlanChanged, naming the file,
    when one of its files changed since it was written: then nothing is done). A plan applied
    before in part (killed, interrupted) goes on where it stopped. ``allowed(plan)`` may
    refuse a plan by raising (the server's limits)."""
    plan_file = os.path.abspath(plan_file)
    plan = plans.read(plan_file)
    if not os.path.isdir(plan["index"]):  # where the journal lives, and what is told of it
        raise plans.PlanError(f"{plan_file}: its index {plan['index']} is not there")
    if allowed is not None:
        allowed(plan)
    todo = steps(plan)
    pid = plans.plan_id(plan)
    journal = Journal(path_for(plan["index"], pid),
                      {"plan": plan_file, "plan_id": pid, "index": plan["index"],
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    outcome = Outcome(journal.path)
    index = _Index(plan["index"])
    try:
        known = journal.steps()
        pending = []
        for s in todo:
            state = known.get(s["step"], {}).get("state")
            if state == "done":
                outcome.earlier += 1
                continue
            if state == "begin":  # where a killed run stopped: back to the start of the step
                undone = UNDO[s["action"]](known[s["step"]]["begin"], known[s["step"]])
                if isinstance(undone, str):
                    raise JournalError(f"{undone}; see {journal.path}")
            pending.append(s)
        _check(plan_file, pending, progress)
        bar = tqdm(total=len(pending), desc="applying", unit="files", disable=not progress,
                   leave=False)
        for start in range(0, len(pending), JOURNAL_BATCH):
            _apply_batch(pending[start:start + JOURNAL_BATCH], journal, index, outcome)
            bar.update(len(pending[start:start + JOURNAL_BATCH]))
        bar.close()
    finally:
        index.close()
        journal.close()
    return outcome


def _check(plan_file: str, pending: list[dict], progress: bool) -> None:
    """PlanChanged naming the first file to act on, or kept beside one, that is not as the
    plan saw it, or a move's place that is taken."""
    files, seen = [], set()
    for s in pending:
        for f in [s, *s["kept"]]:
            if f["path"] not in seen:
                seen.add(f["path"])
                files.append(f)
    for f in tqdm(files, desc="checking", unit="files", disable=not progress, leave=False):
        why = plans.changed(f)
        if why is not None:
            raise plans.PlanChanged(f"{plan_file}: {f['path']} changed since the plan was "
                                    f"written ({why}); write a new plan")
    for s in pending:
        if s["action"] == "move" and os.path.lexists(s["to"]):
            raise plans.PlanChanged(f"{plan_file}: {s['to']} already exists; the plan would "
                                    f"move {s['path']} there")


def _apply_batch(batch: list[dict], journal: Journal, index: "_Index",
                 outcome: Outcome) -> None:
    """Journal the begin of every step of ``batch`` with one fsync, then do them one by one:
    a begun step that was never started is put back as it was (nothing) by a re-run."""
    begun = []
    for s in batch:
        if _is_original(s["path"], s):
            begun.append((s, _begin(s)))
        else:
            outcome.problems.append(f"{s['path']}: changed while the plan was being applied; "
                                    "left alone")
    for n, (_, rec) in enumerate(begun):
        journal.write(rec, sync=n == len(begun) - 1)  # on disk before any file is touched
    for s, rec in begun:
        with _uninterrupted():
            problem = _run(rec, journal)
            if problem is None:
                outcome.count(s["action"], s["size"])
                index.went(s, journal.path)
            else:
                outcome.problems.append(problem)


def _begin(s: dict) -> dict:
    """The begin record of step ``s``: all that undoing it needs."""
    rec = {"step": s["step"], "begin": s["action"], "path": s["path"], "id": s.get("id"),
           "size": s["size"], "mtime_ns": s["mtime_ns"], "sha256": s.get("sha256"),
           "mode": os.stat(s["path"]).st_mode}
    if s["action"] == "move":
        rec.update(to=s["to"], move_to=s["move_to"])
    elif s["action"] in plans.LINKS:
        rec.update(target=s["target"], exact=fileops.sha256(s["path"])
                   == fileops.sha256(s["target"]))  # the same bytes: nothing to keep aside
    return rec


def _run(rec: dict, journal: Journal) -> str | None:
    """Do the begun step ``rec``: None, or why it was not done (the file left as it was)."""
    path, step = rec["path"], rec["step"]
    if not _is_original(path, rec):
        journal.write({"step": step, "failed": "changed"}, sync=False)
        return f"{path}: changed while the plan was being applied; left alone"
    try:
        done = DO[rec["begin"]](rec)
    except OSError as e:
        why = e.strerror or str(e)
        undone = UNDO[rec["begin"]](rec, {})
        if isinstance(undone, str):  # left begun: `--undo` or a re-run tries again
            return f"{path}: {why}, and it could not be put back ({undone})"
        journal.write({"step": step, "failed": why}, sync=False)
        return f"{path}: not done ({why}); left as it was"
    journal.write({"step": step, "done": True, **done}, sync=False)  # the next begin syncs it
    return None


def _was(rec: dict) -> fileops.Stamp:
    return fileops.Stamp(rec["size"], rec["mtime_ns"], rec.get("sha256"))


def _is_original(path: str, rec: dict) -> bool:
    now = fileops.stamp(path, with_hash=False)
    return now is not None and (now.size, now.mtime_ns) == (rec["size"], rec["mtime_ns"])


def _trashed(rec: dict) -> dict:
    found = trash.find(rec["path"], _was(rec))
    return {} if found is None else {"trashed": found.file, "info": found.info}


def _do_trash(rec: dict) -> dict:
    trash.put(rec["path"])
    return _trashed(rec)


def _do_move(rec: dict) -> dict:
    fileops.move(rec["path"], rec["to"])
    return {}


def _do_link(rec: dict) -> dict:
    tmp = fileops.link_aside(rec["target"], rec["path"], rec["begin"])
    if rec["exact"]:
        fileops.put_in_place(tmp, rec["path"])  # atomic: the copy, or the link
        return {}
    trash.put(rec["path"])  # its own bytes, kept for an undo
    found = _trashed(rec)
    fileops.put_in_place(tmp, rec["path"])
    return found


# -- undo -----------------------------------------------------------------------------------
# What undoing a step did: put its file back, found it as it was (a step never started, or
# rolled back), or why it could not (a line naming the file).
Undone = bool | str
BACK, AS_IT_WAS = True, False


def _hint(state: dict) -> trash.Trashed | None:
    done = state.get("done") or {}
    return trash.Trashed(done["trashed"], done["info"]) if "trashed" in done else None


def _undo_trash(rec: dict, state: dict) -> Undone:
    path = rec["path"]
    if os.path.lexists(path) and _is_original(path, rec):
        trash.forget_orphans(path)  # never trashed
        return AS_IT_WAS
    found = trash.find(path, _was(rec), _hint(state))
    if found is None:
        return AS_IT_WAS if os.path.lexists(path) else _not_in_trash(path)
    if os.path.lexists(path):
        return f"{path}: another file is there now; the trashed one is at {found.file}"
    trash.restore(found, path)
    return BACK


def _undo_move(rec: dict, state: dict) -> Undone:
    path, to = rec["path"], rec["to"]
    stop = rec.get("move_to") or os.path.dirname(to)
    fileops.remove(fileops.aside(to, "copy"))
    if os.path.lexists(path):
        if os.path.lexists(to) and _is_original(to, rec) and (
                os.path.samefile(path, to) or fileops.sha256(to) == fileops.sha256(path)):
            fileops.remove(to)  # the move's second name, or its finished copy
        fileops.remove_empty_folders(os.path.dirname(to), stop)
        return AS_IT_WAS
    if not (os.path.lexists(to) and _is_original(to, rec)):
        return f"{path}: not at {to} any more"
    fileops.move(to, path)
    fileops.remove_empty_folders(os.path.dirname(to), stop)
    return BACK


def _undo_link(rec: dict, state: dict) -> Undone:
    path, target, kind = rec["path"], rec["target"], rec["begin"]
    fileops.remove(fileops.aside(path, "link"))  # a link to the kept file, nothing more
    if fileops.is_link_to(path, target, kind):
        if rec["exact"]:
            if fileops.sha256(target) != rec["sha256"]:
                return f"{path}: the kept file {target} changed since; left as a link to it"
            fileops.copy_back(target, path, rec["mode"], rec["mtime_ns"])
            return BACK
        found = trash.find(path, _was(rec), _hint(state))
        if found is None:
            return _not_in_trash(path) + "; left as a link"
        os.unlink(path)  # a crash now: the file is in the trash, and the next undo finds it
        trash.restore(found, path)
        return BACK
    if os.path.lexists(path):
        trash.forget_orphans(path)  # never replaced
        return AS_IT_WAS
    found = trash.find(path, _was(rec), _hint(state))  # trashed, its link not yet in place
    if found is None:
        return _not_in_trash(path)
    trash.restore(found, path)
    return BACK


def _not_in_trash(path: str) -> str:
    if not trash.FREEDESKTOP:
        return (f"{path}: in the system trash, which this system does not let us read: "
                "restore it from there")
    return f"{path}: not found in the trash (emptied?)"


DO = {"trash": _do_trash, "move": _do_move, "hardlink": _do_link, "symlink": _do_link}
UNDO = {"trash": _undo_trash, "move": _undo_move, "hardlink": _undo_link,
        "symlink": _undo_link}


def journal_of(given: str | os.PathLike) -> Path:
    """The journal ``given`` names: itself, or the journal of the plan it is."""
    try:
        with open(given, "rb") as f:
            is_journal = f.readline().startswith(b'{"journal"')
    except OSError as e:
        raise JournalError(f"{given}: cannot read ({e.strerror})") from None
    if is_journal:
        return Path(given)
    plan = plans.read(os.fspath(given))
    path = path_for(plan["index"], plans.plan_id(plan))
    if not path.exists():
        raise JournalError(f"{given}: this plan was never applied (no {path})")
    return path


def undo(given: str | os.PathLike, progress: bool = False) -> Outcome:
    """Put back every file the journal (or the plan) ``given`` names as begun or done, the
    last first: from the trash, from the move's folder; links replaced by the file."""
    journal = Journal(journal_of(given))
    outcome = Outcome(journal.path)
    index = _Index(journal.header["index"])
    try:
        todo = [(n, s) for n, s in sorted(journal.steps().items(), reverse=True)
                if s["state"] in ("begin", "done")]
        for n, s in tqdm(todo, desc="undoing", unit="files", disable=not progress,
                         leave=False):
            rec = s["begin"]
            with _uninterrupted():
                try:
                    undone = UNDO[rec["begin"]](rec, s)
                except OSError as e:
                    undone = f"{rec['path']}: {e.strerror or e}"
                if isinstance(undone, str):
                    outcome.problems.append(undone)
                    continue
                journal.write({"step": n, "undone": True}, sync=False)  # undoing again is safe
                index.back(rec)
                if undone is BACK:
                    outcome.count(rec["begin"], rec["size"])
    finally:
        journal.close()
    return outcome


class _Index:
    """The index a plan was made from, told which of its files went and came back."""

    def __init__(self, folder: str) -> None:
        self.folder, self._store, self._opened = folder, None, False

    def _open(self):
        if not self._opened:  # once, and only when a file went: FAISS is not needed before
            self._opened = True
            if not (Path(self.folder) / files.DATABASE).is_file():
                return None  # no index any more: nothing to tell it
            from indexes.store.store import IndexStore

            try:
                self._store = IndexStore.open(self.folder)
            except RetrieveError:
                self._store = None  # no index any more: nothing to tell it
        return self._store

    def went(self, s: dict, journal: Path) -> None:
        """Step ``s`` took its file away: query and serve leave it out from now on."""
        if s["action"] not in ("trash", "move") or s.get("id") is None:
            return
        store = self._open()
        if store is not None and store.paths([s["id"]]).get(s["id"]) == s["path"]:
            gone.record(self.folder, store.generation, s["id"], s["path"], s["action"],
                        s.get("to"), str(journal))

    def back(self, rec: dict) -> None:
        if rec.get("id") is not None and os.path.isdir(self.folder):
            gone.forget(self.folder, rec["id"])

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
