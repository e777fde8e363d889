"""Several GPUs with torchrun: one process per GPU; rank 0 writes.

``torchrun --nproc-per-node=N -m cli.main train ...`` (DistributedDataParallel) and
``... build-index ...`` (a share of the files per rank) set RANK, WORLD_SIZE and LOCAL_RANK;
without them everything here is a no-op for a single process.
"""

from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import RetrieveError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this machine

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed_mode(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (``backend_for``) and pick this process's
    GPU; a plain ``python``/``retrieve`` run gives a one-process DistInfo."""
    info = env_info()
    info = _join(device, backend_for(device, info))
    if info.enabled:
        dist.barrier()  # on this process's GPU (the device_id it joined with)
    return info


def backend_for(device: torch.device, info: DistInfo) -> str:
    """NCCL between GPUs, one process each; gloo on the CPU and where processes share a GPU
    (NCCL refuses two ranks on one GPU: "Duplicate GPU detected")."""
    if device.type == "cuda" and info.local_world_size <= torch.cuda.device_count():
        return "nccl"
    return "gloo"


def _join(device: torch.device, backend: str, **options) -> DistInfo:
    """Join the process group torchrun describes with ``backend``, this process on its
    LOCAL_RANK GPU on CUDA (GPUs shared round-robin when there are fewer than processes),
    bound to it with NCCL (``device_id``: the communicator made at once, barriers on it);
    nothing for a plain one-process run."""
    info = env_info()
    if info.enabled:
        if device.type == "cuda":
            gpu = process_device(device, info)
            torch.cuda.set_device(gpu)
            if backend == "nccl" and "device_id" in inspect.signature(
                    dist.init_process_group).parameters:  # torch >= 2.3
                options["device_id"] = gpu
        if not dist.is_initialized():
            dist.init_process_group(backend, **options)
    return info


# How long a rank of build-index waits for the others (rank 0 stat'ing millions of files, a
# slower rank's share): long, because a rank that dies is noticed by torchrun, which then
# stops every rank, not by this timeout.
TEAM_TIMEOUT = timedelta(hours=24)


def env_info() -> DistInfo:
    """This process's place in a torchrun run (RANK, WORLD_SIZE, LOCAL_RANK), or one process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                    int(os.environ.get("LOCAL_RANK", 0)),
                    int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


class Team:
    """The processes of a build-index under torchrun, which exchange only small Python
    objects (the plan, counts, skipped files: the vectors go through the index folder), over
    gloo whatever the device. ``indexes.build.incremental.Team`` is what the build needs of it."""

    def __init__(self, info: DistInfo) -> None:
        self.rank, self.size = info.rank, info.world_size

    @classmethod
    def join(cls, device: torch.device) -> "Team | None":
        """The team torchrun started this process in (on CUDA, pinned to its LOCAL_RANK
        GPU), or None for a plain one-process run."""
        info = _join(device, "gloo", timeout=TEAM_TIMEOUT)
        return cls(info) if info.enabled else None

    def broadcast(self, obj):
        box = [obj]
        with _peers_gone():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list | None:
        out = [None] * self.size if self.rank == 0 else None
        with _peers_gone():
            dist.gather_object(obj, out, dst=0)
        return out

    def leave(self) -> None:
        cleanup()


@contextmanager
def _peers_gone():
    """gloo's "Connection closed by peer" (a rank died) or timeout, as one line."""
    try:
        yield
    except RuntimeError:
        raise RetrieveError("another rank stopped before the build was done (its own message "
                            "says why); what every rank staged is kept: run build-index again "
                            "to resume") from None


def process_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each process of a multi-GPU run gets its own GPU (LOCAL_RANK), round-robin over the
    visible ones when there are more processes than GPUs."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return device


def gather_objects(obj) -> list:
    """Every process's ``obj`` in rank order on rank 0 (``[obj]`` for one process); None on
    the other ranks. Every process must call it."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (identity for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision (stop now?) for every process."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
