"""A fresh process for a test without a fresh interpreter's imports: each job is a fork of one
server process that has imported torch, torchvision, FAISS and the command line's modules
once (3 to 4 s of CPU that each `python -c ...` child would pay again). A job may itself start
processes that are forks of the server too: torchrun's ranks (tests/preloaded_client.py).

A job sees what a new `python -c CODE ARGS...` would, plus those modules already imported:
none of them imports what a `retrieve query` must not load (tests/test_cli_imports.py) or
starts a thread before the fork. conftest's ``preloaded`` fixture starts one per session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Reads one request per line on stdin: {"code", "argv", "env", "out", "err"} forks a child that
# runs CODE as __main__ with sys.argv = ARGV and ENV added to its environment, its stdout and
# stderr into the files OUT and ERR, and answers its pid; {"wait": pid} answers its wait status
# once it has ended (meanwhile the server goes on serving: a job may start clients, below).
# On the unix socket SOCKET, tests/preloaded_client.py asks for a process in its own place: it
# sends its argv, environment and working directory with its stdin, stdout and stderr (SCM_RIGHTS);
# the fork runs `python ARGV...` (a script, or -m MODULE) with them and sends back its pid and,
# at the end, its exit status; it kills itself if the client goes (tests/preloaded_client.py).
SERVER = r"""
import atexit, json, os, runpy, select, signal, socket, sys, threading, traceback
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # first: clients queue meanwhile
listener.bind(sys.argv[1])
listener.listen(16)
import faiss, onnx, onnxruntime, torch, torch.distributed, torchvision  # noqa: F401
import cli.building, cli.index, cli.main, indexes.build.incremental  # noqa: F401
import indexes.search.searcher, retrieval.distributed, retrieval.features  # noqa: F401
import retrieval.onnx_export, retrieval.onnx_fc7  # noqa: F401

def run_main(code=None, argv=None):
    "Run CODE, or `python ARGV...`'s script or module, as __main__: its exit status."
    try:
        if code is not None:
            exec(compile(code, "<job>", "exec"), {"__name__": "__main__"})
        elif argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (e.code is not None)
    except BaseException:
        traceback.print_exc()
        return 1

def child(job):
    listener.close()
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the server's requests
    for fd, path in ((1, job["out"]), (2, job["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.environ.update(job["env"])
    sys.argv = job["argv"]
    status = run_main(code=job["code"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

def client_child(conn, request, fds):
    "The client's process: its fds, environment and directory; its status sent back."
    listener.close()
    for fd, target in zip(fds, (0, 1, 2)):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def orphaned():  # the client went (killed): so does its process
        while conn.recv(1):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    conn.sendall(b"%d\n" % os.getpid())
    threading.Thread(target=orphaned, daemon=True).start()
    status = run_main(argv=request["argv"])
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(b"%d\n" % (status & 0xFF))
    os._exit(status)

def receive(conn):
    "A client's request (length-prefixed JSON) and the three fds sent with it."
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size, _, data = data.partition(b"\n")
    while len(data) < int(size):
        data += conn.recv(int(size) - len(data))
    return json.loads(data), fds

def accept():
    "Fork a process for the client that connects (one that goes before it asks is dropped)."
    conn = listener.accept()[0]
    try:
        request, fds = receive(conn)
    except (OSError, ValueError):
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        client_child(conn, request, fds)
    for f in fds:
        os.close(f)
    conn.close()
    forked.add(pid)

owed, forked, pending = set(), set(), b""  # jobs whose status is asked, clients' forks
while True:
    ready = select.select([0, listener], [], [], 0.02 if owed or forked else None)[0]
    for pid in [*owed, *forked]:  # looked at every 20 ms (os.waitpid: pidfds are Linux's)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done and pid in owed:  # a job asked for has ended: its wait status
            print(status, flush=True)
        if done:  # (a client's fork: its status went to its client)
            owed.discard(pid)
            forked.discard(pid)
    if listener in ready:
        accept()
    if 0 in ready:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            job = json.loads(line)
            if "wait" in job:
                owed.add(job["wait"])
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
        short = len(tempfile.gettempdir()) < 64  # a socket's path has at most 107 bytes
        self.sockets = tempfile.mkdtemp(prefix="preloaded-", dir=None if short else "/tmp")
        self.socket = os.path.join(self.sockets, "fork")
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, self.socket], cwd=ROOT,
                                     text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        while not os.path.exists(self.socket):  # bound before its imports: a moment
            if self.proc.poll() is not None:
                raise RuntimeError(f"the preloaded server ended (status {self.proc.returncode})")
            time.sleep(0.01)

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

    def client(self, *argv: str) -> list[str]:
        """The command line of a process like `python ARGV...` that is a fork of the server
        (tests/preloaded_client.py); ENV ``PRELOADED_SOCKET=self.socket`` must reach it."""
        return [sys.executable, "-u", str(ROOT / "tests" / "preloaded_client.py"), *argv]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.sockets, ignore_errors=True)
