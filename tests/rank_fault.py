"""A torchrun worker for tests/test_distributed_build.py: `retrieve ARGS...` in which rank
RANK_FAULT_RANK (env) stops at its second staged batch, by SIGKILL (RANK_FAULT=kill) or by a
full disk (RANK_FAULT=full). Run as `torchrun --nproc-per-node N tests/rank_fault.py ARGS...`."""

import errno
import os
import signal
import sys

from cli.main import main
from indexes.store import staging

if os.environ["RANK"] == os.environ["RANK_FAULT_RANK"]:
    write_batch, calls = staging.write_batch, []

    def second(*args):
        calls.append(args)
        if len(calls) == 2:
            if os.environ["RANK_FAULT"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))
        write_batch(*args)

    staging.write_batch = second

sys.argv = ["retrieve", *sys.argv[1:]]
main()
