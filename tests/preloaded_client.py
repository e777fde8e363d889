"""`python -u preloaded_client.py ARGV...` behaves as `python -u ARGV...` (a script, or -m MODULE)
would, run by a fork of the preloaded server (tests/preloaded.py) that has already imported torch,
torchvision, FAISS and the command line: a torchrun rank without a new interpreter's 4 s of imports.

It sends the server its argv, environment and working directory, with its stdin, stdout and
stderr; then it stands in for the fork: signals sent to it are passed on, and it ends as the
fork ends: with its exit status, or killed by the signal passed on (SIGKILL when none was: a
process that kills itself, as tests/rank_fault.py does). If it is killed, the fork kills itself.
The server's socket is in the environment as PRELOADED_SOCKET. Imports nothing heavy.
"""

import json
import os
import signal
import socket
import sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["PRELOADED_SOCKET"])
request = json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}).encode()
socket.send_fds(sock, [b"%d\n" % len(request) + request], [0, 1, 2])
answers = sock.makefile("rb")
pid = int(answers.readline())
passed_on = []


def pass_on(signum, frame):
    passed_on.append(signum)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it has just ended


for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(signum, pass_on)
status = answers.readline()
if status:
    sys.exit(int(status))
signum = passed_on[-1] if passed_on else signal.SIGKILL
signal.signal(signum, signal.SIG_DFL)
os.kill(os.getpid(), signum)
