"""A fresh process for a test without a fresh interpreter's imports: each job is a fork of one
server process that has imported torch, torchvision, FAISS and the command line's modules
once (3 to 4 s of CPU that each `python -c ...` child would pay again).

A job sees what a new `python -c CODE ARGS...` would, plus those modules already imported:
none of them imports what a `retrieve query` must not load (tests/test_cli_imports.py) or
starts a thread before the fork. conftest's ``preloaded`` fixture starts one per session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Reads one request per line on stdin: {"code", "argv", "env", "out", "err"} forks a child that
# runs CODE as __main__ with sys.argv = ARGV and ENV added to its environment, its stdout and
# stderr into the files OUT and ERR, and answers its pid; {"wait": pid} answers its wait status once it has ended.
SERVER = r"""
import json, os, sys, traceback
import faiss, torch, torchvision  # noqa: F401
import cli.main, indexes.build.incremental, indexes.search.searcher, retrieval.features  # noqa: F401

def child(job):
    for fd, path in ((1, job["out"]), (2, job["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.stdin.close()
    os.environ.update(job["env"])
    sys.argv = job["argv"]
    status = 0
    try:
        exec(compile(job["code"], "<job>", "exec"), {"__name__": "__main__"})
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (e.code is not None)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

for line in sys.stdin:
    job = json.loads(line)
    if "wait" in job:
        answer = os.waitpid(job["wait"], 0)[1]
    else:
        answer = os.fork()
        if answer == 0:
            child(job)
    print(answer, flush=True)
import gc
gc.freeze()  # as `retrieve` does (cli/main.py): an exit without a second of collections
"""


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended meanwhile


@dataclass
class Job:
    pid: int
    out: Path
    err: Path


class Preloaded:
    """The server, started in ``folder`` (where the jobs' output files go)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.jobs = folder, 0
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _ask(self, request: dict) -> int:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the preloaded server ended (status {self.proc.wait()})")
        return int(answer)

    def start(self, code: str, *args: str, env: dict | None = None) -> Job:
        """Fork a child running CODE with ARGS as `python -c CODE ARGS...` would, with ENV
        added to its environment."""
        self.jobs += 1
        out, err = (self.folder / f"{self.jobs}.{name}" for name in ("out", "err"))
        pid = self._ask({"code": code, "argv": ["-c", *map(str, args)], "env": env or {},
                         "out": str(out), "err": str(err)})
        return Job(pid, out, err)

    def wait(self, job: Job) -> int:
        """The job's wait status (os.waitpid's) once it has ended."""
        return self._ask({"wait": job.pid})

    def run(self, code: str, *args: str, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """Start a job and wait for it: its exit code, stdout and stderr. A job still running
        after TIMEOUT seconds is killed (SIGKILL: exit code -9)."""
        job = self.start(code, *args, env=env)
        killer = threading.Timer(timeout, _kill, (job.pid,))
        killer.start()
        try:
            status = os.waitstatus_to_exitcode(self.wait(job))
        finally:
            killer.cancel()
        return subprocess.CompletedProcess(["-c", code, *args], status, job.out.read_text(),
                                           job.err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
