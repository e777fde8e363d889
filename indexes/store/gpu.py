"""FAISS on the GPU: where this process may run it, the one GPU copy of an index it shares, the
limits past which the CPU answers, and one stderr line saying where FAISS runs and why.

The rules below are faiss-gpu's own, read from its sources (file names in the comments), so that
an index FAISS would refuse is never half-copied and a search it would refuse never reaches it.
Torch-free, like the rest of indexes/.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import faiss
import numpy as np

from indexes.store import faiss_ops

# faiss/gpu/utils/DeviceDefs.cuh: GPU k-selection goes up to 2048 (CUDA >= 9.2); a search asking
# more neighbours, or visiting more IVF lists, is refused (faiss/gpu/impl/IndexUtils.cu:
# "GPU index only supports min/max-K selection up to 2048").
GPU_MAX_SELECTION_K = 2048
# Shared memory a CUDA block gets without opting in, 48 KiB on every GPU since Kepler.
# GpuIndexIVFPQ keeps M x 2^nbits lookup distances there, in float32 unless told float16
# (GpuIndexIVFPQ::verifyPQSettings_): IVF1024,PQ64 needs 64 KiB, 32 KiB in float16; GPU IVF
# scans of 8- and 4-bit scalar codes keep 2 floats per dimension there (IVFFlatScan.cu).
GPU_SHARED_MEMORY = 48 << 10
# Bytes per code (sub-quantizers at 8 bits) GpuIndexIVFPQ takes: IVFPQ::isSupportedPQCodeLength.
GPU_PQ_CODE_BYTES = frozenset((1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96))
GPU_PQ_BITS = 8
# Queries from which a GPU copy pays for itself: making it reads the whole index once, as one
# CPU search of a batch does, and a GPU search is then ~100 times quicker (to be measured at
# 1, 64 and 1024 queries by benchmarks/gpu_check.py). `query` with fewer images stays on the CPU.
GPU_FROM_QUERIES = 64


def gpu_count() -> int:
    """GPUs faiss sees: 0 with faiss-cpu, or faiss-gpu on a machine without a GPU."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


@dataclass(frozen=True)
class Placement:
    """Where FAISS may run in this process: ``gpu`` (None: the CPU) and why."""

    gpu: int | None
    why: str
    gpus: int  # that faiss sees: with none there is nothing to say


def place(device: str = "auto", local_rank: int = 0) -> Placement:
    """FAISS's device for `--device` (auto, cpu, cuda, cuda:N): the network's GPU, or this
    rank's under torchrun; the CPU with --device cpu or where faiss sees no GPU."""
    gpus = gpu_count()
    if device == "cpu":
        return Placement(None, "--device cpu", gpus)
    if gpus == 0:
        return Placement(None, "faiss sees no GPU", 0)
    if device.startswith("cuda:"):
        number = int(device.split(":", 1)[1])
        if number >= gpus:
            return Placement(None, f"--device {device}, but faiss sees {gpus} GPU(s)", gpus)
        return Placement(number, f"--device {device}", gpus)
    return Placement(local_rank % gpus, f"--device {device}", gpus)


_placement: Placement | None = None


def configure(device: str = "auto") -> Placement:
    """Set where FAISS may run in this process (the CLI calls it with --device)."""
    global _placement
    _placement = place(device, int(os.environ.get("LOCAL_RANK", 0)))
    return _placement


def placement() -> Placement:
    """The configured placement; ``auto`` until ``configure`` says otherwise."""
    return _placement if _placement is not None else configure("auto")


_said: set[str] = set()
_say_lock = threading.Lock()


def say(line: str) -> None:
    """One line on stderr about where FAISS runs, once per process; nothing where faiss sees no
    GPU (a CPU machine's output stays as it was)."""
    with _say_lock:
        if line in _said or placement().gpus == 0:
            return
        _said.add(line)
    print(f"FAISS: {line}", file=sys.stderr, flush=True)


def pays_for(queries: int) -> bool:
    """Whether ``queries`` searches of one index are worth its GPU copy; says so when not."""
    where = placement()
    if queries >= GPU_FROM_QUERIES or where.gpu is None:
        return True
    verb = "query does" if queries == 1 else "queries do"
    say(f"searching on the CPU: {queries} {verb} not pay for copying the index to GPU "
        f"{where.gpu} (from {GPU_FROM_QUERIES} on they do)")
    return False


# -- what the GPU takes ------------------------------------------------------------------------
def refusal(index: faiss.Index) -> str | None:
    """Why FAISS cannot copy ``index`` to a GPU, or None. Decided before trying: a copy FAISS
    gives up on halfway leaks what it made (Cloner::clone_Index allocates the wrapper first).
    A Refine stage stays on the CPU around its base; only the base is looked at."""
    if faiss_ops.is_on_disk(index):
        return "its inverted lists are on disk (a GPU copy would hold all of them in GPU memory)"
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexPreTransform)):
        return refusal(index.index)
    if isinstance(index, faiss.IndexRefine):
        return refusal(index.base_index)
    if isinstance(index, faiss.IndexIVFPQR):  # a subclass of IndexIVFPQ: it would lose its codes
        return "IndexIVFPQR has no GPU version (FAISS would copy it without its re-ranking codes)"
    if isinstance(index, faiss.IndexIVFPQ):
        m, nbits = index.pq.M, index.pq.nbits
        if nbits != GPU_PQ_BITS or m not in GPU_PQ_CODE_BYTES:
            return (f"FAISS's GPU IVFPQ takes {GPU_PQ_BITS}-bit codes of "
                    f"{', '.join(map(str, sorted(GPU_PQ_CODE_BYTES)))} bytes, not PQ{m}x{nbits}")
        return None
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        small = (faiss.ScalarQuantizer.QT_8bit, faiss.ScalarQuantizer.QT_4bit)
        if index.sq.qtype in small and 2 * 4 * index.d >= GPU_SHARED_MEMORY:
            return (f"FAISS's GPU scan of {index.d}-d scalar codes needs more shared memory "
                    "than a GPU block has")
        return None
    if isinstance(index, (faiss.IndexFlat, faiss.IndexIVFFlat)):
        return None
    return f"{type(index).__name__} is not implemented on the GPU by FAISS"


def cloner_options(index: faiss.Index) -> faiss.GpuClonerOptions:
    """index_cpu_to_gpu's options: float16 IVFPQ lookup tables where float32 ones would not fit
    in a block's shared memory (IVF1024,PQ64 at 4096-d); float32 everywhere else, so that a
    Flat copy holds the vectors exactly as the CPU does."""
    opts = faiss.GpuClonerOptions()
    ivf = faiss.try_extract_index_ivf(index)
    ivf = None if ivf is None else faiss.downcast_index(ivf)
    if isinstance(ivf, faiss.IndexIVFPQ):
        opts.useFloat16 = 4 * ivf.pq.M * 2 ** ivf.pq.nbits > GPU_SHARED_MEMORY
    return opts


_gpu_state: dict[int, tuple[object, threading.Lock]] = {}
_state_lock = threading.Lock()


def resources(gpu: int) -> tuple[object, threading.Lock]:
    """This process's StandardGpuResources for ``gpu`` and the lock every FAISS call on that GPU
    takes: FAISS's GPU resources are not thread-safe (serve's batcher and its duplicates)."""
    with _state_lock:
        if gpu not in _gpu_state:
            _gpu_state[gpu] = (faiss.StandardGpuResources(), threading.Lock())
        return _gpu_state[gpu]


def to_gpu(index: faiss.Index, gpu: int, opts=None) -> faiss.Index:
    """faiss.index_cpu_to_gpu with this process's resources, kept alive with the copy (faiss
    >= 1.12 refuses attributes of other names on its objects)."""
    res, _ = resources(gpu)
    copy = faiss.index_cpu_to_gpu(res, gpu, index, opts or faiss.GpuClonerOptions())
    copy.referenced_objects = [res]
    return copy


# -- the copy ------------------------------------------------------------------------------------
@dataclass
class GpuCopy:
    """An index's copy on one GPU: ``index`` is searched (the GPU copy, or a CPU Refine stage
    around the GPU copy of its base, whose answers are positions that ``ids`` maps to ids)."""

    index: faiss.Index
    gpu: int
    lock: threading.Lock
    ids: np.ndarray | None = None
    k_factor: float = 1.0  # GPU candidates per result asked by a Refine stage
    keep: list = field(default_factory=list)  # the objects ``index`` points into

    def inner(self) -> "GpuCopy":
        """The copy of the index behind a PCA (``faiss_ops.inner_space``): duplicates' space."""
        return GpuCopy(faiss_ops.inner_space(self.index), self.gpu, self.lock, self.ids,
                       self.k_factor, self.keep + [self.index])

    def refuses(self, k: int, nprobe: int | None, ntotal: int, exact: bool) -> str | None:
        """Why FAISS's GPU would refuse this search (k or nprobe past its selection limit)."""
        asked = faiss_ops.exact_candidates(k, ntotal) if exact else math.ceil(k * self.k_factor)
        if asked > GPU_MAX_SELECTION_K:
            shown = f"k={k}" + (f" ({asked} candidates)" if asked != k else "")
            return f"{shown} is past the GPU's limit of {GPU_MAX_SELECTION_K}"
        if nprobe is not None and nprobe > GPU_MAX_SELECTION_K:
            return f"nprobe={nprobe} is past the GPU's limit of {GPU_MAX_SELECTION_K}"
        return None

    def search(self, xq: np.ndarray, k: int, nprobe: int | None,
               vectors: faiss.Index | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``faiss_ops.search`` on the GPU (``vectors``: the CPU Flat index whose exact
        distances re-rank its candidates), under the GPU's lock; ids, not positions."""
        with self.lock:
            if nprobe is not None:
                faiss_ops.set_nprobe(self.index, nprobe)
            D, I = faiss_ops.search(self.index, xq, k, vectors=vectors)
        if self.ids is not None:
            I = np.where(I >= 0, self.ids[np.maximum(I, 0)], -1)
        return D, I


def make_copy(cpu: faiss.Index, gpu: int) -> GpuCopy:
    """The GPU copy of ``cpu`` (check ``refusal`` first); RuntimeError from FAISS when the GPU
    cannot take it (out of memory)."""
    _, lock = resources(gpu)
    opts = cloner_options(cpu)
    refine = faiss_ops.refine_stage(cpu)
    with lock:
        if refine is None:
            return GpuCopy(to_gpu(cpu, gpu, opts), gpu, lock, keep=[cpu])
        base = to_gpu(refine.base_index, gpu, opts)
        around = faiss.IndexRefine(base, refine.refine_index)  # the refine codes stay on the CPU
        around.k_factor = refine.k_factor
    ids = faiss.vector_to_array(cpu.id_map) if hasattr(cpu, "id_map") else None
    return GpuCopy(around, gpu, lock, ids, refine.k_factor, keep=[base, refine, cpu])


@dataclass
class _Entry:
    key: tuple  # (generation, gpu)
    copy: GpuCopy | None = None
    done: threading.Event = field(default_factory=threading.Event)


_copies: dict[str, _Entry] = {}  # index folder -> the copy of its latest generation asked for
_copies_lock = threading.Lock()


def shared_copy(folder: str, generation: int, cpu: faiss.Index, wait: bool = True
                ) -> GpuCopy | None:
    """The GPU copy of ``cpu`` (``generation`` of the index in ``folder``), made once per process
    and shared by every store of that folder (a server's batcher and its duplicates alike).
    None where FAISS stays on the CPU (said once, with why) and, with ``wait`` False, while the
    copy is being made in the background (the CPU answers meanwhile: serve keeps answering
    while a new generation goes to the GPU)."""
    where = placement()
    if where.gpu is None:
        say(f"searching on the CPU ({where.why})")
        return None
    key = (generation, where.gpu)
    with _copies_lock:
        entry = _copies.get(folder)
        fresh = entry is None or entry.key != key
        if fresh:
            entry = _copies[folder] = _Entry(key)  # an older copy lives on with its stores
    if fresh and wait:
        _fill(entry, cpu, where.gpu, folder)
    elif fresh:
        say(f"copying {folder} to GPU {where.gpu} in the background; the CPU answers meanwhile")
        threading.Thread(target=_fill, args=(entry, cpu, where.gpu, folder), daemon=True,
                         name="retrieve-faiss-copy").start()
    if wait:
        entry.done.wait()
    return entry.copy if entry.done.is_set() else None


def _fill(entry: _Entry, cpu: faiss.Index, gpu: int, folder: str) -> None:
    try:
        why = refusal(cpu)
        if why is not None:
            say(f"searching {folder} on the CPU: {why}")
            return
        start = time.perf_counter()
        try:
            entry.copy = make_copy(cpu, gpu)
        except RuntimeError as e:  # out of GPU memory, or a rule of FAISS's not mirrored here
            say(f"searching {folder} on the CPU: GPU {gpu} could not take it "
                f"({faiss_ops.faiss_reason(e)})")
            return
        half = " with float16 lookup tables" if cloner_options(cpu).useFloat16 else ""
        rest = "; its Refine stage on the CPU" if faiss_ops.refine_stage(cpu) is not None else ""
        exact = "; exact distances re-ranked on the CPU" if faiss_ops.is_exact(cpu) else ""
        say(f"searching {folder} on GPU {gpu} ({cpu.ntotal:,} vectors copied in "
            f"{time.perf_counter() - start:.1f} s{half}{rest}{exact})")
    finally:
        entry.done.set()


def forget(folder: str | None = None) -> None:
    """Drop the shared copies (of ``folder``, or all): for tests and long-lived processes."""
    with _copies_lock:
        for key in [folder] if folder is not None else list(_copies):
            _copies.pop(key, None)


# -- building: k-means and list assignment on the GPU -----------------------------------------
def _gpu_ivf(index: faiss.Index):
    """(gpu, the IVF of ``index``) when building it may use the GPU, else None."""
    gpu = placement().gpu
    ivf = faiss.try_extract_index_ivf(index)
    return None if gpu is None or ivf is None else (gpu, ivf)


@contextmanager
def training(index: faiss.Index) -> Iterator[None]:
    """IVF training's k-means on the GPU: the assignment step of the coarse k-means (FAISS's
    ``clustering_index``) and of an IVFPQ's sub-quantizers (``pq.assign_index``) on GPU Flat
    indexes, the rest as on the CPU. Nothing changes without a GPU, or when the GPU cannot
    take them (said in one line)."""
    found = _gpu_ivf(index)
    if found is None or index.is_trained:
        yield
        return
    gpu, ivf = found
    ivf = faiss.downcast_index(ivf)
    pq = ivf.pq if isinstance(ivf, faiss.IndexIVFPQ) else None
    _, lock = resources(gpu)
    with lock:
        try:
            ivf.clustering_index = to_gpu(faiss.IndexFlatL2(ivf.d), gpu)
            if pq is not None:
                pq.assign_index = to_gpu(faiss.IndexFlatL2(pq.dsub), gpu)
        except RuntimeError as e:
            ivf.clustering_index = None
            say(f"k-means on the CPU: GPU {gpu} could not take it ({faiss_ops.faiss_reason(e)})")
        else:
            say(f"k-means of {ivf.nlist} lists on GPU {gpu}")
        try:
            yield
        finally:
            ivf.clustering_index = None  # never written with the index
            if pq is not None:
                pq.assign_index = None


Add = Callable[[faiss.Index, np.ndarray, np.ndarray], None]


@contextmanager
def adding(index: faiss.Index) -> Iterator[Add]:
    """``add(index, xb, ids)``: ``faiss_ops.add``, with an IVF index's assignment of each vector to
    its list (a search of its nlist centroids) on the GPU, then ``add_core`` on the CPU, as
    IndexIVF::add_with_ids does with its own quantizer."""
    found = _gpu_ivf(index)
    quantizer = None if found is None else faiss.downcast_index(found[1].quantizer)
    if (found is None or not faiss_ops.keeps_ids(index) or not found[1].is_trained
            or not isinstance(quantizer, faiss.IndexFlat)):
        yield faiss_ops.add
        return
    gpu, ivf = found
    _, lock = resources(gpu)
    with lock:
        try:
            centroids = to_gpu(quantizer, gpu)
        except RuntimeError as e:
            say(f"adding on the CPU: GPU {gpu} could not take the centroids "
                f"({faiss_ops.faiss_reason(e)})")
            yield faiss_ops.add
            return
        say(f"assigning added vectors to {ivf.nlist} lists on GPU {gpu}")

        def add(index: faiss.Index, xb: np.ndarray, ids: np.ndarray) -> None:
            xt = faiss_ops.transformed(index, faiss_ops.as_float32(xb))  # (n, ivf.d)
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            _, lists = centroids.search(xt, 1)  # (n, 1)
            ivf.add_core(len(xt), faiss.swig_ptr(xt), faiss.swig_ptr(ids),
                         faiss.swig_ptr(np.ascontiguousarray(lists.ravel())))
            index.ntotal = ivf.ntotal  # a transform in front counts what it holds too

        yield add
