"""A stand-in for faiss-gpu on a machine without a GPU, written from FAISS's sources: the index
types ToGpuCloner takes (faiss/gpu/GpuCloner.cpp) and the errors it raises for the others, the
IVFPQ shared-memory rule (GpuIndexIVFPQ::verifyPQSettings_), the k / nprobe selection limit
(faiss/gpu/impl/IndexUtils.cu), and a GPU Flat index's |x|^2 + |y|^2 - 2xy distances. The copy
is a CPU clone searched that way; it counts its searches and refuses to reconstruct vectors.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np

from indexes.store import gpu

NOT_ON_GPU = ("Error in virtual faiss::Index* faiss::gpu::ToGpuCloner::clone_Index(const "
              "faiss::Index*) at /project/faiss/faiss/gpu/GpuCloner.cpp:262: Error: 'This index "
              "type is not implemented on GPU.'")
SHARED_MEMORY = ("Error in void faiss::gpu::GpuIndexIVFPQ::verifyPQSettings_() const at "
                 "/project/faiss/faiss/gpu/GpuIndexIVFPQ.cu:583: Error: 'requiredSmemSize <= "
                 "getMaxSharedMemPerBlock(config_.device)' failed: Device 0 has 49152 bytes of "
                 "shared memory, while 8 bits per code and {m} sub-quantizers requires {need} "
                 "bytes. Consider useFloat16LookupTables and/or reduce parameters")
K_LIMIT = ("Error in void faiss::gpu::validateKSelect(int) at /project/faiss/faiss/gpu/impl/"
           "IndexUtils.cu:27: Error: 'k > 0 && k <= getMaxKSelection()' failed: GPU index only "
           "supports min/max-K selection up to {limit} (requested {k})")
NPROBE_LIMIT = ("Error in void faiss::gpu::validateNProbe(size_t) at /project/faiss/faiss/gpu/"
                "impl/IndexUtils.cu:35: Error: GPU IVF index only supports nprobe selection up "
                "to {limit} (requested {nprobe})")


class Resources:
    """faiss.StandardGpuResources without a GPU."""


class FakeGpu:
    """Patches faiss (get_num_gpus, StandardGpuResources, index_cpu_to_gpu) for one test."""

    def __init__(self, monkeypatch, gpus: int = 1, limit: int = gpu.GPU_MAX_SELECTION_K) -> None:
        self.limit, self.devices, self.copies, self.searches = limit, [], [], 0
        self.refused = 0  # clone calls FAISS would have failed: none may reach it
        self.fail: str | None = None  # e.g. an out-of-memory message for the next copies
        self.search_fail: str | None = None  # the same for the next searches
        self.gate: threading.Event | None = None  # held shut: copying waits for it
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: gpus)
        monkeypatch.setattr(faiss, "StandardGpuResources", Resources)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", self.index_cpu_to_gpu)
        monkeypatch.setattr(gpu, "GPU_MAX_SELECTION_K", limit)
        monkeypatch.setattr(gpu, "_placement", None)
        monkeypatch.setattr(gpu, "_said", set())
        monkeypatch.setattr(gpu, "_copies", {})
        monkeypatch.setattr(gpu, "_gpu_state", {})

    def index_cpu_to_gpu(self, res, device, index, opts=None):
        if self.gate is not None:
            self.gate.wait()
        self.check(index, opts or faiss.GpuClonerOptions())
        if self.fail is not None:
            raise RuntimeError(self.fail)
        copy = faiss.clone_index(index)
        original = copy.search

        def search(x, k, *args, **kw):
            ivf = faiss.try_extract_index_ivf(copy)
            if not 0 < k <= self.limit:
                raise RuntimeError(K_LIMIT.format(limit=self.limit, k=k))
            if ivf is not None and ivf.nprobe > self.limit:
                raise RuntimeError(NPROBE_LIMIT.format(limit=self.limit, nprobe=ivf.nprobe))
            if self.search_fail is not None:
                raise RuntimeError(self.search_fail)
            self.searches += 1
            saved = faiss.cvar.distance_compute_blas_threshold
            faiss.cvar.distance_compute_blas_threshold = 1  # how the GPU computes Flat distances
            try:
                return original(x, k, *args, **kw)
            finally:
                faiss.cvar.distance_compute_blas_threshold = saved

        def no_reconstruct(*args, **kw):
            raise AssertionError("a vector was reconstructed through the GPU copy")

        copy.search = search
        copy.reconstruct_batch = copy.reconstruct = no_reconstruct
        self.devices.append(device)
        self.copies.append(copy)
        return copy

    def check(self, index, opts) -> None:
        """Raise as ToGpuCloner does for what it cannot copy."""
        index = faiss.downcast_index(index)
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexPreTransform)):
            return self.check(index.index, opts)
        if isinstance(index, faiss.IndexIVFPQ):
            need = 4 * index.pq.M * 2 ** index.pq.nbits
            if need > 48 << 10 and not opts.useFloat16:
                self.refused += 1
                raise RuntimeError(SHARED_MEMORY.format(m=index.pq.M, need=need))
            return
        if not isinstance(index, (faiss.IndexFlat, faiss.IndexIVFFlat,
                                  faiss.IndexIVFScalarQuantizer)):
            self.refused += 1
            raise RuntimeError(NOT_ON_GPU)


def raw_gpu_distances(xb: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Squared distances as a GPU Flat index computes them: |x|^2 + |y|^2 - 2xy in float32."""
    xb, xq = xb.astype(np.float32), xq.astype(np.float32)
    return (xq ** 2).sum(1)[:, None] + (xb ** 2).sum(1)[None, :] - 2 * xq @ xb.T
