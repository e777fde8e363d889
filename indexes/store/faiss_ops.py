"""FAISS helpers over float32 numpy arrays: make, train, fill, remove, read, write, search.

Every FAISS call of the package goes through here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from retrieval.atomic import write_atomic
from retrieval.errors import FactoryError, SearchError

from indexes.config import DEFAULT_NPROBE
from indexes.store.files import corrupt

# Training vectors kept for IVF / PQ: FAISS needs ~39 per centroid and warns above 256
# per centroid that it subsamples anyway; 50k 4096-d vectors are 800 MB.
MAX_TRAIN_VECTORS = 50_000
# A Refine stage (`...,RFlat`, `...,Refine(SQ8)`) re-ranks this many times k candidates of its
# first stage with its finer codes; FAISS's default of 1 only reorders the first stage's k.
REFINE_K_FACTOR = 16
# Exact (Flat) search scans the vectors once per query below FAISS's
# distance_compute_blas_threshold, compared with queries x dimension, and multiplies matrices
# (BLAS) from there. Its default, 128,000 (31 queries of 4096-d), keeps a server's batches on
# the slow path: on 100k 4096-d vectors, 2 cores, 16 queries take 612 ms scanning and 166 ms
# by BLAS, 1 query 117 ms either way, 2 queries 84 ms scanning and 139 ms by BLAS. BLAS
# distances (|x|^2 + |y|^2 - 2xy) lose precision to cancellation (an image's distance to
# itself comes out 0.1, not 0): its candidates are re-ranked by exact distances.
BLAS_FROM_QUERIES = 4
BLAS_CANDIDATES = 2  # times k (plus BLAS_MARGIN) candidates re-ranked exactly
BLAS_MARGIN = 16
RERANK_FLOATS = 1 << 24  # candidate vectors held at once for re-ranking (64 MiB)
FAISS_BLAS_THRESHOLD = faiss.cvar.distance_compute_blas_threshold
ADD_CHUNK = 8192  # vectors per add_with_ids call when rebuilding (bounds the temporary copies)
# An index built --on-disk encodes parts of at most this many bytes of codes and ids in memory
# and appends each to its file of inverted lists (indexes/store/ondisk.py; ``fill_on_disk`` below,
# which merges parts into a new file as faiss.contrib.ondisk.merge_ondisk does, is what
# benchmarks/index_scale.py measures).
ON_DISK_PART_BYTES = 512 << 20


def as_float32(x: np.ndarray) -> np.ndarray:
    """(n, d) float32 C-contiguous: the only layout FAISS takes without a copy."""
    return np.ascontiguousarray(x, dtype=np.float32)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows (zero rows stay zero), as a new float32 array."""
    x = as_float32(x).copy()
    faiss.normalize_L2(x)
    return x


def make_index(factory: str, dim: int) -> faiss.Index:
    """An empty L2 index from a FAISS factory string, with ids of our choosing.

    IVF indexes (also behind a PCA or OPQ transform) store our ids themselves (add_with_ids,
    remove_ids by id). Others (Flat, HNSW, PQ, IVF re-ranked by a Refine) are wrapped in
    IDMap2: IDMap's remove_ids renumbers positions, which is only right for index types that
    shift their vectors on removal, so IVF is never wrapped.
    """
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
    except RuntimeError as e:
        raise FactoryError(f"--factory {factory!r}: FAISS cannot build it ({faiss_reason(e)}); "
                           "examples: Flat, PCA512,IVF1024,SQ8, IVF1024,PQ64,Refine(SQ8), "
                           "HNSW32") from None
    refine = refine_stage(index)
    if refine is not None:
        refine.k_factor = REFINE_K_FACTOR  # saved with the index
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = DEFAULT_NPROBE  # saved with the index; query --nprobe overrides it
    for part in (index, ivf):
        # Polysemous training only reorders PQ codebooks for Hamming pre-filtering, which
        # search never uses here; it costs minutes of annealing and changes no distance.
        # (An IVF found behind a Refine or a transform comes back as the base class: downcast
        # it, or an IVFPQ inside `IVF1024,PQ64,Refine(SQ8)` keeps the annealing.)
        part = faiss.downcast_index(part) if part is not None else None
        if part is not None and hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
    return index if keeps_ids(index) else faiss.IndexIDMap2(index)


def refine_stage(index: faiss.Index):
    """The IndexRefine inside ``index`` (behind IDMap or a transform), or None."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        return index
    inner = getattr(index, "index", None)  # IDMap, IDMap2, PreTransform
    return refine_stage(inner) if isinstance(inner, faiss.Index) else None


def refine_k_factor(index: faiss.Index) -> float | None:
    """How many times k candidates a Refine stage re-ranks; None without one."""
    refine = refine_stage(index)
    return None if refine is None else refine.k_factor


def keeps_ids(index: faiss.Index) -> bool:
    """Whether ``index`` takes add_with_ids itself: an IVF, or a transform in front of one."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return keeps_ids(index.index)
    return isinstance(index, faiss.IndexIVF)


def transformed(index: faiss.Index, x: np.ndarray) -> np.ndarray:
    """``x`` (n, d) through the transforms in front of ``index`` (a PCA...): what the index
    behind them (``inner_space``) holds; ``x`` itself without any."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        for t in transforms(index):
            x = t.apply(x)
        index = faiss.downcast_index(index.index)
    return as_float32(x)


def train(index: faiss.Index, xt: np.ndarray, factory: str) -> None:
    """Train ``index`` on ``xt`` (n, d) when its type needs training; clear error if too few."""
    if index.is_trained:
        return
    needed = min_training_vectors(factory)
    if len(xt) < needed:
        raise FactoryError(f"--factory {factory!r} needs at least {needed} vectors to train, "
                          f"there are only {len(xt)} images; index more images or use Flat")
    try:
        inner = _behind_ids(index)
        if isinstance(inner, faiss.IndexPreTransform):
            train_chain(transforms(inner), xt)
        index.train(as_float32(xt))
    except RuntimeError as e:
        raise FactoryError(f"--factory {factory!r}: training failed on {len(xt)} vectors "
                          f"({faiss_reason(e)}); index more images or use Flat") from None


# Rows a PCA's covariance is summed over at once (float32 products, float64 sums): 64 MiB of
# 4096-d vectors.
PCA_CHUNK_BYTES = 64 << 20


def train_transform(transform: faiss.VectorTransform, x: np.ndarray) -> None:
    """Train ``transform`` on ``x`` (n, d_in), untrained ones only. A PCA (``PCA256,...``) with
    at least as many vectors as dimensions is trained as FAISS's PCAMatrix::train does it (the
    scatter matrix about the mean, its eigenvectors by decreasing eigenvalue, then FAISS's own
    prepare_Ab for PCAW/PCAR/balanced bins) but with LAPACK's divide-and-conquer eigensolver
    (numpy's eigh): FAISS calls dsyev, which takes 103 s of a 2-core CPU at 4096-d (125 s on a
    16-core H200 host), eigh 7 s (benchmarks/pca_train.py). FAISS trains any other transform
    itself."""
    if transform.is_trained:
        return
    x = as_float32(x)
    n, d = x.shape
    if not isinstance(transform, faiss.PCAMatrix) or n < d or n > transform.max_points_per_d * d:
        transform.train(x)  # FAISS subsamples past max_points_per_d; a Gram matrix under d
        return
    mean = (x.mean(axis=0, dtype=np.float64) if transform.have_bias else np.zeros(d)).astype(
        np.float32)
    scatter = np.zeros((d, d))
    step = max(1, PCA_CHUNK_BYTES // (4 * d))
    for s in range(0, n, step):
        c = x[s:s + step] - mean
        scatter += c.T @ c
    values, vectors = np.linalg.eigh(scatter)  # ascending; vectors[:, i] goes with values[i]
    faiss.copy_array_to_vector(mean, transform.mean)
    faiss.copy_array_to_vector(values[::-1].astype(np.float32), transform.eigenvalues)
    faiss.copy_array_to_vector(np.ascontiguousarray(vectors[:, ::-1].T, dtype=np.float32).ravel(),
                               transform.PCAMat)
    transform.prepare_Ab()
    transform.is_trained = True


def transforms(index: faiss.IndexPreTransform) -> list[faiss.VectorTransform]:
    """The transforms in front of ``index``'s inner index, in order, downcast."""
    return [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]


def train_chain(chain: list[faiss.VectorTransform], x: np.ndarray) -> None:
    """Train each transform of ``chain`` (``train_transform``) on ``x`` brought through the
    ones before it."""
    x = as_float32(x)
    for i, t in enumerate(chain):
        train_transform(t, x)
        if i + 1 < len(chain):
            x = t.apply(x)


def min_training_vectors(factory: str) -> int:
    """Fewest vectors FAISS accepts: one per IVF list, 2**nbits per PQ / SQ codebook."""
    need = 1
    for m in re.finditer(r"IVF(\d+)", factory):
        need = max(need, int(m.group(1)))
    for m in re.finditer(r"PQ\d+(?:x(\d+))?", factory):
        need = max(need, 2 ** int(m.group(1) or 8))
    return need


def add(index: faiss.Index, xb: np.ndarray, ids: np.ndarray) -> None:
    try:
        index.add_with_ids(as_float32(xb), np.ascontiguousarray(ids, dtype=np.int64))
    except RuntimeError as e:  # a factory string whose index cannot take vectors with ids
        raise FactoryError(f"this index type cannot store vectors with ids ({faiss_reason(e)}); "
                           "build it with another --factory, e.g. Flat or IVF1024,Flat") from None


def remove(index: faiss.Index, ids: np.ndarray, factory: str) -> faiss.Index:
    """Remove ``ids``; returns the index (a rebuilt one when its type cannot remove, e.g. HNSW)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return index
    try:
        index.remove_ids(ids)
        return index
    except RuntimeError:
        pass  # HNSW and a few others: rebuild from the vectors they can reconstruct
    if not hasattr(index, "id_map"):
        raise FactoryError(f"--factory {factory!r} cannot remove vectors; run build-index "
                           "with --rebuild")
    keep = np.setdiff1d(faiss.vector_to_array(index.id_map), ids).astype(np.int64)
    rebuilt = faiss.clone_index(index)  # same type and training, emptied below
    rebuilt.reset()
    try:
        for start in range(0, len(keep), ADD_CHUNK):
            chunk = keep[start:start + ADD_CHUNK]
            add(rebuilt, np.stack([index.reconstruct(int(i)) for i in chunk]), chunk)
    except RuntimeError as e:
        raise FactoryError(f"--factory {factory!r} can neither remove vectors nor reconstruct them "
                          f"({faiss_reason(e)}); run build-index with --rebuild") from None
    return rebuilt


def can_live_on_disk(index: faiss.Index) -> bool:
    """Whether ``index`` is an IVF (also behind a transform) whose lists can go on disk."""
    return keeps_ids(index) and not isinstance(faiss.try_extract_index_ivf(index),
                                                faiss.IndexIVFPQR)


def is_on_disk(index: faiss.Index) -> bool:
    """Whether the inverted lists of ``index`` are a memory-mapped file (built --on-disk)."""
    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists),
                                          faiss.OnDiskInvertedLists)


def empty_copy(index: faiss.Index, path: Path) -> faiss.Index:
    """IVF ``index`` (read from ``path``) with no vectors: its transform, quantizer and codec,
    and empty inverted lists in memory. Lists on disk are not read again."""
    if not is_on_disk(index):
        empty = faiss.clone_index(index)
        empty.reset()
        return empty
    index = faiss.read_index(str(path), faiss.IO_FLAG_SKIP_IVF_DATA)
    ivf = faiss.extract_index_ivf(index)
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns them now
    index.ntotal = ivf.ntotal = 0
    return index


def fill_on_disk(template: faiss.Index, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                 lists_path: Path, work: Path, keep: faiss.Index | None = None,
                 remove_ids: np.ndarray | None = None) -> faiss.Index:
    """An IVF index like the trained, empty ``template`` holding every (vectors, ids) of
    ``batches`` and the vectors of ``keep`` (the previous generation) but ``remove_ids``,
    with its inverted lists in the new file ``lists_path``, fsync'ed.

    Memory: one part of ON_DISK_PART_BYTES at a time; each is written to ``work`` and read
    back memory-mapped for the merge, then deleted.
    """
    ivf = faiss.extract_index_ivf(template)
    per_part = max(1, ON_DISK_PART_BYTES // (ivf.code_size + 8))
    work.mkdir(parents=True, exist_ok=True)
    part_files: list[Path] = []

    def flush(part: faiss.Index) -> None:
        if part.ntotal:
            part_files.append(work / f"part-{len(part_files)}.faiss")
            write(part, part_files[-1])

    part = faiss.clone_index(template)
    for xb, ids in batches:
        add(part, xb, ids)
        if part.ntotal >= per_part:
            flush(part)
            part = faiss.clone_index(template)
    flush(part)
    del part
    sources = [faiss.read_index(str(p), faiss.IO_FLAG_MMAP) for p in part_files]
    if keep is not None:
        sources.append(keep)
    lists = faiss.InvertedListsPtrVector()
    for source in sources:
        lists.push_back(faiss.extract_index_ivf(source).invlists)
    out = faiss.clone_index(template)
    on_disk = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(lists_path))
    with _quiet_c_stdout():
        ntotal = on_disk.merge_from_multiple(lists.data(), lists.size(), False, False)
    out_ivf = faiss.extract_index_ivf(out)
    out_ivf.replace_invlists(on_disk, True)
    on_disk.this.disown()  # the index owns them now
    out.ntotal = out_ivf.ntotal = ntotal
    del sources, lists
    for p in part_files:
        p.unlink()
    if remove_ids is not None and len(remove_ids):
        out.remove_ids(np.ascontiguousarray(remove_ids, dtype=np.int64))
    fd = os.open(lists_path, os.O_RDONLY)
    try:
        os.fsync(fd)  # the merge wrote it through a shared mapping
    finally:
        os.close(fd)
    return out


@contextmanager
def _quiet_c_stdout():
    """FAISS's on-disk lists print notes to the C stdout ("resizing ...", the directory they
    were found in), which would corrupt `query --json`: fd 1 goes to /dev/null meanwhile.
    Process-wide: in `retrieve serve`, a log line another thread writes to stdout in those
    milliseconds (a generation being opened) is lost with them."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def write(index: faiss.Index, path: Path) -> None:
    """Write ``index`` atomically (``retrieval.atomic.write_atomic``): ``path`` is the old
    file or the new one. FAISS streams into the open file through a callback writer."""

    def to(f) -> None:
        try:
            faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))
        except RuntimeError as e:  # how FAISS reports a failed write (a full disk, ...)
            raise OSError(errno.EIO, f"cannot write the index ({faiss_reason(e)})",
                          str(path)) from None

    write_atomic(path, to)


def read(path: Path, mmap: bool = False) -> faiss.Index:
    """Read an index; ``mmap``: map flat codes read-only (quick start), else load in memory."""
    if not path.is_file():
        raise corrupt(path.parent, path.name, "index file is missing")
    if path.with_suffix(".ivfdata").is_file():  # built --on-disk: lists mapped, read-only
        try:
            with _quiet_c_stdout():  # the lists are looked for beside the index file
                return faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR
                                        | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as e:
            raise corrupt(path.parent, path.name,
                          f"damaged index file ({faiss_reason(e)})") from None
    if mmap:
        flag = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)
        try:
            return faiss.read_index(str(path), flag | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            pass  # index types without mmap support: read normally
    try:
        return faiss.read_index(str(path))
    except RuntimeError as e:
        raise corrupt(path.parent, path.name, f"damaged index file ({faiss_reason(e)})") from None


def reconstruct(index: faiss.Index, ids) -> np.ndarray:
    """The stored vectors of ``ids`` (n, d) float32 (IDMap2 maps ids to positions)."""
    return index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))


def inner_space(index: faiss.Index) -> faiss.Index:
    """The index behind a PCA (or another transform): its vectors and searches in the
    transformed space, where a search of every stored vector need not undo the transform.
    ``index`` itself (the same Python object) when there is no transform."""
    while isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):
        index = faiss.downcast_index(faiss.downcast_index(index).index)
    return index


def stored_vectors(index: faiss.Index, ids) -> np.ndarray:
    """The vectors of ``ids`` as ``index`` holds them, (n, d) in its input space: exact for
    Flat, the decoded codes for PQ or SQ, through the inverse of a PCA. An IVF index gets a
    map from ids to their lists (kept with it, in memory) the first time."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return reconstruct(index, ids)


def exact_index(xb: np.ndarray) -> faiss.Index:
    """Brute-force L2 search over ``xb`` (n, d), positions as ids (IndexFlatL2)."""
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(as_float32(xb))
    return index


def is_exact(index: faiss.Index) -> bool:
    """True when searching ``index`` is brute force over the original vectors: Flat, on the CPU
    or its GPU copy (GpuIndexFlat is no IndexFlat to Python), behind IDMap2 or not."""
    return isinstance(_behind_ids(index), (faiss.IndexFlat, *_GPU_FLAT))


def _behind_ids(index: faiss.Index) -> faiss.Index:
    """``index`` downcast, or the index an IDMap / IDMap2 wraps (IDMap2 is an IDMap)."""
    index = faiss.downcast_index(index)
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index


_GPU_FLAT = (faiss.GpuIndexFlat,) if hasattr(faiss, "GpuIndexFlat") else ()


def nprobe_of(index: faiss.Index) -> int | None:
    """The nprobe an IVF index (also behind IDMap, a transform or a Refine) was saved with;
    None for index types without inverted lists."""
    ivf = faiss.try_extract_index_ivf(index)
    return None if ivf is None else ivf.nprobe


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """IVF: how many inverted lists a query visits (more: slower, better recall).

    Through FAISS's parameter space, which reaches the inverted lists behind IDMap, a
    transform or a Refine stage, on a CPU index or on its GPU copy alike.
    """
    space = getattr(faiss, "GpuParameterSpace", faiss.ParameterSpace)()  # the GPU's knows both
    try:
        space.set_index_parameter(index, "nprobe", nprobe)
    except RuntimeError:
        raise FactoryError("--nprobe applies only to IVF indexes (built with --factory "
                           "IVF...)") from None


def exact_candidates(k: int, ntotal: int) -> int:
    """Candidates a Flat search takes by BLAS (or on the GPU) before re-ranking ``k`` exactly."""
    return min(ntotal, BLAS_CANDIDATES * k + BLAS_MARGIN)


def search(index: faiss.Index, xq: np.ndarray, k: int, vectors: faiss.Index | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(nq, d) queries -> D (nq, k) squared L2 distances and I (nq, k) ids, -1 where none.

    ``vectors``: the CPU Flat index that ``index`` is a GPU copy of. FAISS's GPU computes every
    Flat distance as |x|^2 + |y|^2 - 2xy in float32 (an image comes out ~0.1 from itself), so
    its candidates are re-ranked by exact distances to the vectors read from ``vectors``,
    never reconstructed through the GPU. SearchError (one line) when FAISS refuses.
    """
    if index.ntotal == 0:
        nq = len(xq)
        return np.full((nq, 1), np.inf, np.float32), np.full((nq, 1), -1, np.int64)
    k = max(1, min(k, index.ntotal))
    xq = as_float32(xq)
    wide = exact_candidates(k, index.ntotal)
    if vectors is not None:
        return _reranked(lambda q: _search(index, q, wide), vectors, xq, k, wide)
    if len(xq) >= BLAS_FROM_QUERIES and wide * index.d <= RERANK_FLOATS and is_exact(index):
        return _reranked(lambda q: _by_blas(index, q, wide), index, xq, k, wide)
    return _search(index, xq, k)


def _search(index: faiss.Index, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        return index.search(xq, k)
    except RuntimeError as e:  # a GPU out of memory, a limit of the index type
        raise SearchError(f"FAISS could not search the index ({faiss_reason(e)})") from None


def _by_blas(index: faiss.Index, xq: np.ndarray, wide: int) -> tuple[np.ndarray, np.ndarray]:
    """A CPU Flat search of ``wide`` candidates by BLAS, whatever the number of queries."""
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        return _search(index, xq, wide)
    finally:
        faiss.cvar.distance_compute_blas_threshold = FAISS_BLAS_THRESHOLD


def _reranked(candidates, vectors: faiss.Index, xq: np.ndarray, k: int, wide: int):
    """``candidates(xq) -> (D, I)`` of ``wide`` per query, re-ranked by exact squared distance
    to their vectors in ``vectors``: (D, I), each (nq, k), a chunk of queries at a time."""
    step = max(1, RERANK_FLOATS // (wide * vectors.d))
    parts = []
    for start in range(0, len(xq), step):
        q = xq[start:start + step]
        _, I = candidates(q)
        xb = reconstruct(vectors, I.ravel()).reshape(len(q), wide, -1)  # (nq, wide, d)
        D = ((xb - q[:, None, :]) ** 2).sum(axis=2, dtype=np.float32)  # (nq, wide)
        order = np.argsort(D, axis=1, kind="stable")[:, :min(k, wide)]
        parts.append((np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)))
    return np.concatenate([D for D, _ in parts]), np.concatenate([I for _, I in parts])


def faiss_reason(e: Exception) -> str:
    """FAISS messages carry a C++ location first; keep the human part of the last line."""
    text = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    text = re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", text)
    return re.sub(r"^'.*?' failed: ", "", text)[:200]  # the C++ condition, when one follows

