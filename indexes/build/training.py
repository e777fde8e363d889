"""Training a new index on a sample streamed from staging, its size set by the number of lists;
and which indexes keep their vectors exactly (those are staged in float32, the rest float16)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import faiss
import numpy as np

from retrieval.errors import FactoryError

from indexes.store import faiss_ops

# FAISS's k-means warns with fewer training points than 39 per centroid (faiss/Clustering.cpp):
# IVF4096 trains on 159,744 vectors, a PQ's 256-centroid codebooks on 9,984.
TRAIN_PER_CENTROID = 39
# The most training vectors held at once, at the dimension the trained part sees: 1 GiB is
# 1M vectors of 256-d behind PCA256 (IVF65536 wants 2.6M: k-means then has 16 per centroid,
# FAISS's warning says so), 65k of 4096-d for an IVF with no transform in front.
TRAIN_BYTES = 1 << 30
# Vectors a transform in front of the index (PCA, OPQ) is trained on, at the input dimension:
# 32k of 4096-d, 8 per dimension for the covariance PCA256 is taken from.
TRANSFORM_TRAIN_BYTES = 512 << 20
# The most the sample may take in staging, where it waits whole (393k vectors of 4096-d in
# float16): staging stays under 4 GB whatever the factory.
SAMPLE_STAGING_BYTES = 3 << 30


def sample_size(factory: str, dim: int, staged_bytes: int) -> int:
    """Vectors a new index of ``factory`` over ``dim``-d vectors is trained on:
    TRAIN_PER_CENTROID for each list (or codebook centroid), at most what training holds
    (TRAIN_BYTES at the trained part's dimension) and what staging may hold
    (SAMPLE_STAGING_BYTES at ``staged_bytes`` a vector)."""
    index = faiss_ops.make_index(factory, dim)
    inner = faiss.downcast_index(index)
    trained_dim = inner.index.d if isinstance(inner, faiss.IndexPreTransform) else index.d
    return min(TRAIN_PER_CENTROID * faiss_ops.min_training_vectors(factory),
               TRAIN_BYTES // (4 * trained_dim), SAMPLE_STAGING_BYTES // staged_bytes)


def train(index: faiss.Index, chunks: Callable[[], Iterable[np.ndarray]], factory: str) -> None:
    """Train ``index`` on the vectors ``chunks()`` yields, (b, d) float32 at a time, read
    again for each pass. A transform in front (PCA256,IVF4096,...) is trained on the first
    TRANSFORM_TRAIN_BYTES of them; the index behind it on all of them, transformed chunk by
    chunk (up to TRAIN_BYTES). Raises FactoryError when FAISS cannot train it."""
    inner = faiss.downcast_index(index)
    if not isinstance(inner, faiss.IndexPreTransform):
        faiss_ops.train(index, _gather(chunks(), TRAIN_BYTES // (4 * index.d)), factory)
        return
    transforms = faiss_ops.transforms(inner)
    limit = TRANSFORM_TRAIN_BYTES // (4 * inner.d)
    first = _gather(chunks(), limit)
    if len(first) < min(limit, faiss_ops.min_training_vectors(factory)):
        faiss_ops.train(index, first, factory)  # too few in all: the error says how many it needs
    try:
        faiss_ops.train_chain(transforms, first)
    except RuntimeError as e:
        why = faiss_ops.faiss_reason(e)
        raise FactoryError(f"--factory {factory!r}: training failed on {len(first)} vectors "
                           f"({why}); index more images or use Flat") from None
    del first

    def through(x: np.ndarray) -> np.ndarray:
        for t in transforms:
            x = t.apply(x)
        return x

    behind = inner.index
    faiss_ops.train(behind, _gather((through(x) for x in chunks()), TRAIN_BYTES // (4 * behind.d)),
                    factory)
    inner.is_trained = True


def _gather(chunks: Iterable[np.ndarray], limit: int) -> np.ndarray:
    """The first ``limit`` rows of ``chunks``, in one (n, d) float32 array."""
    parts, n = [], 0
    for x in chunks:
        if n >= limit:
            break
        parts.append(faiss_ops.as_float32(x[:limit - n]))
        n += len(parts[-1])
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def exact_storage(index: faiss.Index) -> bool:
    """Whether ``index`` answers from the float32 vectors it is given (Flat storage, no
    transform): staging them as float16 would change its distances. Lossy codes (SQ, PQ,
    PCA) round far more than float16 does."""
    kind = faiss.downcast_index(index)  # a new wrapper: ``index`` keeps what it references
    if isinstance(kind, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return exact_storage(kind.index)
    if isinstance(kind, faiss.IndexRefine):
        return exact_storage(kind.refine_index)
    if isinstance(kind, faiss.IndexPreTransform):
        return False
    if isinstance(kind, faiss.IndexHNSW):
        return exact_storage(kind.storage)
    ivf = faiss.try_extract_index_ivf(kind)
    code_size = ivf.code_size if ivf is not None else getattr(kind, "code_size", 0)
    return code_size >= 4 * kind.d
