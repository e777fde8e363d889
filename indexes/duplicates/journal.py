"""The journal of an applied plan: one JSON line per record, each step's "begin" written and
fsynced before the step touches a file, so that after a crash every step that may have
started is known, and `--undo` or a re-run can finish it.

Records: a header; ``{"step": n, "begin": ACTION, ...}`` with all that undoing needs;
``{"step": n, "done": true, ...}``; ``{"step": n, "failed": "why"}``; ``{"step": n,
"undone": true}``. A step's state is its last record's kind.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from retrieval.atomic import fsync_dir
from retrieval.errors import RetrieveError

FORMAT = "retrieve-duplicates-journal"
VERSION = 1
FOLDER = "journals"  # in the index folder
KINDS = ("begin", "done", "failed", "undone")


class JournalError(RetrieveError):
    """A journal that cannot be read, written, or is in use by another run."""


def path_for(index: str | os.PathLike, plan_id: str) -> Path:
    """Where the journal of the plan ``plan_id`` lives: INDEX/journals/plan-ID.jsonl."""
    return Path(index) / FOLDER / f"plan-{plan_id}.jsonl"


class Journal:
    """An open journal, locked (flock) against a second apply or undo of the same plan."""

    def __init__(self, path: str | os.PathLike, header: dict | None = None) -> None:
        """Open ``path``; with ``header``, create it if needed (else it must exist)."""
        self.path = Path(path)
        try:
            if header is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b" if header is not None else "r+b")
        except OSError as e:
            raise JournalError(f"{self.path}: cannot open the journal ({e.strerror})") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise JournalError(f"{self.path}: another apply or undo of this plan is running")
        self.records = self._read()
        if not self.records and header is not None:
            self.write({"journal": FORMAT, "version": VERSION, **header})
            fsync_dir(self.path.parent)
        if not self.records or self.records[0].get("journal") != FORMAT:
            self.close()
            raise JournalError(f"{self.path}: not a journal of `retrieve duplicates --apply`")

    def _read(self) -> list[dict]:
        self._file.seek(0)
        lines = self._file.read().split(b"\n")
        records = []
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if n < len(lines) - 1:
                    raise JournalError(f"{self.path}: line {n + 1} is damaged") from None
                # A last line cut by a crash: it was never fsynced, so never acted on.
                self._file.truncate(self._file.tell() - len(line))
                return records
        if lines[-1].strip():  # whole but without its newline: the next record starts clean
            self._file.write(b"\n")
        return records

    @property
    def header(self) -> dict:
        return self.records[0]

    def steps(self) -> dict[int, dict]:
        """step -> {"begin": its begin record, "state": its last kind, "done": its done record}"""
        out: dict[int, dict] = {}
        for r in self.records[1:]:
            kind = next(k for k in KINDS if k in r)
            step = out.setdefault(r["step"], {})
            step[kind] = r
            step["state"] = kind
        return out

    def write(self, record: dict, sync: bool = True) -> None:
        """Append ``record``; ``sync``: fsync it (and all before it), to have it on disk
        before what it announces is done."""
        data = json.dumps(record, ensure_ascii=True).encode() + b"\n"
        try:
            self._file.seek(0, os.SEEK_END)
            self._file.write(data)
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        except OSError as e:
            raise JournalError(f"{self.path}: cannot write the journal ({e.strerror})") from None
        self.records.append(record)

    def close(self) -> None:
        try:
            os.fsync(self._file.fileno())  # the last records, written without a sync
        except (OSError, ValueError):
            pass
        self._file.close()  # and the lock with it
