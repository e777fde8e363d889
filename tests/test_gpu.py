"""FAISS's GPU paths on a machine without a GPU, through a stand-in that fails as faiss-gpu does
(tests/fake_gpu.py): where FAISS runs and the one line saying why, the k / nprobe limits, exact
Flat distances, one copy per process, --device cpu and cuda:N, k-means and adds on the GPU."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from fake_gpu import FakeGpu, raw_gpu_distances
from indexes.build.incremental import BuildConfig, build_index
from indexes.config import DuplicatesConfig
from indexes.duplicates.find import State, candidates
from indexes.store import faiss_ops, gpu
from indexes.store.store import open_for_reading
from test_index_store import FakeExtractor, brute_force, make_files, vector_of

FACTORIES = {  # the README's factories, and FAISS's index types without a GPU version
    "Flat": None, "PCA512,IVF1024,SQ8": None, "PCA256,IVF4096,SQ8": None,
    "IVF1024,PQ64": None, "IVF1024,PQ64,Refine(SQ8)": None,
    "HNSW32": "IndexHNSWFlat is not implemented on the GPU by FAISS",
    "PQ64": "IndexPQ is not implemented on the GPU by FAISS",
    "SQ8": "IndexScalarQuantizer is not implemented on the GPU by FAISS",
    "IVF64,PQ64+16": "IndexIVFPQR has no GPU version",
    "IVF64,PQ64x4": "takes 8-bit codes",
}
HALF = {"IVF1024,PQ64", "IVF1024,PQ64,Refine(SQ8)", "IVF64,PQ64+16"}  # 64 KiB float32 tables


class Large(FakeExtractor):
    """fc7-like vectors: non-negative and large, where |x|^2 + |y|^2 - 2xy loses the zero."""

    def embed(self, paths):
        for good, x, errors in super().embed(paths):
            yield good, np.abs(x) * 30, errors


def built(tmp_path, name, n=60, factory="Flat"):
    paths = make_files(tmp_path / f"{name}-img", n)
    build_index(tmp_path / name, paths, Large(), BuildConfig(factory=factory))
    return tmp_path / name, np.stack([np.abs(vector_of(p)) * 30 for p in paths])


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """(folder, vectors) of a 60-image Flat index built on the CPU, searched by every test."""
    return built(tmp_path_factory.mktemp("gpu"), "flat")


@pytest.fixture(scope="module")
def ivf(tmp_path_factory):
    return built(tmp_path_factory.mktemp("gpu"), "ivf", factory="IVF4,Flat")


def lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAISS:")]


def test_flat_on_the_gpu_is_exact_and_searches_past_its_limit_run_on_the_cpu(
        flat, monkeypatch, capsys):
    fake = FakeGpu(monkeypatch, limit=32)  # k=3 asks the GPU for 22 candidates, k=10 for 36
    folder, xb = flat
    store = open_for_reading(folder)
    store.use_gpu()
    D, I = store.search(xb[:5], 3)
    assert fake.searches == 1 and len(fake.copies) == 1
    D_ref, I_ref = brute_force(xb, xb[:5], 3)
    assert (I == I_ref).all() and (D[:, 0] == 0).all()  # each image at 0 from itself
    np.testing.assert_allclose(D, D_ref, rtol=1e-5)
    assert np.abs(np.diag(raw_gpu_distances(xb[:5], xb[:5]))).max() > 0  # what re-ranking fixes
    assert store.search(xb[:1], 3)[0][0, 0] == 0  # one query too: the GPU always decomposes
    assert lines(capsys) == [f"FAISS: searching {folder} on GPU 0 (60 vectors copied in 0.0 s; "
                             "exact distances re-ranked on the CPU)"]
    for _ in range(2):
        D, I = store.search(xb[:5], 10)
    assert fake.searches == 2  # faiss-gpu would have refused it
    assert (I == brute_force(xb, xb[:5], 10)[1]).all()
    assert lines(capsys) == ["FAISS: k=10 (36 candidates) is past the GPU's limit of 32: such "
                             "searches run on the CPU"]  # once per process


def test_ivf_nprobe_past_the_gpu_limit_runs_on_the_cpu(ivf, monkeypatch, capsys):
    folder, xb = ivf
    fake = FakeGpu(monkeypatch, limit=32)
    store = open_for_reading(folder)
    store.use_gpu()
    xq = xb[:6] + 1
    on_gpu = store.search(xq, 5, nprobe=4)
    assert fake.searches == 1
    on_cpu = store.search(xq, 5, nprobe=64)  # FAISS visits at most its 4 lists either way
    assert fake.searches == 1 and "nprobe=64 is past the GPU's limit of 32" in lines(capsys)[-1]
    for (D, I), (D_ref, I_ref) in [(on_gpu, brute_force(xb, xq, 5)), (on_cpu, on_gpu)]:
        assert (I == I_ref).all()
        np.testing.assert_allclose(D, D_ref, rtol=1e-4)


def test_each_factory_goes_to_the_gpu_or_says_why_not(tmp_path, monkeypatch, capsys):
    """refusal() answers before FAISS is asked, as ToGpuCloner would (never a half-made copy);
    float16 lookup tables where IVF1024,PQ64's float32 ones exceed a block's shared memory."""
    fake = FakeGpu(monkeypatch)
    for factory, why in FACTORIES.items():
        index = faiss_ops.make_index(factory, 4096)
        refused = gpu.refusal(index)
        assert (refused is None) if why is None else why in refused, factory
        opts = gpu.cloner_options(index)
        assert opts.useFloat16 == (factory in HALF), factory
        base = faiss_ops.refine_stage(index)
        if refused is None:  # the stand-in, written from FAISS's sources, takes it too
            fake.check(index if base is None else base.base_index, opts)
    assert fake.refused == 0
    folder, _ = built(tmp_path, "hnsw", factory="HNSW32")
    store = open_for_reading(folder)
    store.use_gpu()
    assert store.search(np.zeros((1, 32), np.float32), 2)[1].shape == (1, 2)
    assert lines(capsys) == [f"FAISS: searching {folder} on the CPU: IndexHNSWFlat is not "
                             "implemented on the GPU by FAISS"]
    assert fake.copies == [] and fake.refused == 0


def test_a_refine_stage_stays_on_the_cpu_around_its_gpu_base(monkeypatch):
    FakeGpu(monkeypatch)
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((400, 32)).astype(np.float32)
    index = faiss_ops.make_index("IVF4,SQ8,Refine(Flat)", 32)
    faiss_ops.train(index, xb, "IVF4,SQ8,Refine(Flat)")
    faiss_ops.add(index, xb, np.arange(400) + 1000)  # ids are not positions
    copy = gpu.make_copy(index, 0)
    assert copy.k_factor == faiss_ops.REFINE_K_FACTOR
    assert copy.refuses(128, 4, 400, exact=False) is None
    assert "k=129 (2064 candidates)" in copy.refuses(129, 4, 400, exact=False)
    D, I = copy.search(xb[:8], 5, 4)
    D_ref, I_ref = faiss_ops.search(index, xb[:8], 5)
    assert (I == I_ref).all() and I[:, 0].tolist() == list(range(1000, 1008))
    np.testing.assert_allclose(D, D_ref, rtol=1e-5)


def test_out_of_gpu_memory_falls_back_with_one_line(flat, monkeypatch, capsys):
    fake = FakeGpu(monkeypatch)
    fake.fail = ("Error in virtual void* faiss::gpu::StandardGpuResourcesImpl::allocMemory("
                 "const faiss::gpu::AllocRequest&) at StandardGpuResources.cpp:570: Error: "
                 "'err == cudaSuccess' failed: StandardGpuResources: alloc fail type "
                 "TemporaryMemoryBuffer dev 0 space Device stream 0x1 size 17179869184 bytes "
                 "(cudaMalloc error out of memory [2])")
    folder, xb = flat
    store = open_for_reading(folder)
    store.use_gpu()
    assert (store.search(xb[:3], 3)[1] == brute_force(xb, xb[:3], 3)[1]).all()
    [line] = lines(capsys)
    assert line.startswith(f"FAISS: searching {folder} on the CPU: GPU 0 could not take it "
                           "(StandardGpuResources: alloc fail") and "out of memory" in line
    fake.fail, fake.search_fail = None, fake.fail  # the copy is made; a batch runs out
    store = open_for_reading(folder)
    store.use_gpu()
    gpu.forget()
    assert (store.search(xb[:3], 3)[1] == brute_force(xb, xb[:3], 3)[1]).all()
    [line] = lines(capsys)[-1:]
    assert line.startswith("FAISS: a search failed on GPU 0 (FAISS could not search the index "
                           "(StandardGpuResources: alloc fail") and line.endswith(
                               "such searches run on the CPU")


def test_device_cpu_keeps_faiss_on_the_cpu_and_cuda_n_picks_the_gpu(flat, monkeypatch, capsys):
    from click.testing import CliRunner

    from cli.options import Device, faiss_on

    fake = FakeGpu(monkeypatch, gpus=2)
    folder, xb = flat
    faiss_on("cpu")
    store = open_for_reading(folder)
    store.use_gpu()
    store.search(xb[:3], 3)
    assert fake.copies == [] and lines(capsys) == ["FAISS: searching on the CPU (--device cpu)"]
    gpu.configure("cpu")  # nothing is built on the GPU either
    index = faiss_ops.make_index("IVF2,Flat", 32)
    with gpu.training(index), gpu.adding(index) as add:
        assert add is faiss_ops.add
    faiss_on("cuda:1")
    store = open_for_reading(folder)
    store.use_gpu()
    store.search(xb[:3], 3)
    assert fake.devices == [1]
    assert gpu.place("cuda:2").gpu is None and "faiss sees 2 GPU(s)" in gpu.place("cuda:2").why
    assert gpu.place("auto", local_rank=3).gpu == 1  # torchrun's rank 3 on the second GPU
    runner = CliRunner()
    import click

    @click.command()
    @click.option("--device", type=Device())
    def show(device):
        click.echo(device)

    assert runner.invoke(show, ["--device", "CUDA:1"]).output == "cuda:1\n"
    refused = runner.invoke(show, ["--device", "gpu"])
    assert refused.exit_code == 2 and "'gpu' is not auto, cpu, cuda or cuda:N" in refused.output


def test_one_copy_per_process_made_in_the_background_for_a_server(flat, monkeypatch, capsys):
    import threading

    fake = FakeGpu(monkeypatch)
    folder, xb = flat
    fake.gate = threading.Event()
    served = open_for_reading(folder)
    served.use_gpu(wait=False)  # what IndexService does
    D, I = served.search(xb[:2], 3)  # answered on the CPU while the copy waits at the gate
    assert (I == brute_force(xb, xb[:2], 3)[1]).all() and fake.searches == 0
    fake.gate.set()
    gpu._copies[str(folder)].done.wait(30)
    served.search(xb[:2], 3)
    other = open_for_reading(folder)  # serve's /api/duplicates opens its own store
    other.use_gpu()
    other.search(xb[:2], 3)
    assert fake.searches == 2 and len(fake.copies) == 1
    assert lines(capsys)[0] == (f"FAISS: copying {folder} to GPU 0 in the background; the CPU "
                                "answers meanwhile")


def test_duplicates_candidates_are_the_same_on_the_gpu(flat, tmp_path, monkeypatch):
    folder, xb = flat
    config, ids = DuplicatesConfig(k=4), list(range(60))
    threshold = float(np.median(brute_force(xb, xb, 2)[0][:, 1]))  # about half the images

    def pairs(use_gpu):
        store = open_for_reading(folder)
        if use_gpu:
            store.use_gpu()
        run = f"gpu={use_gpu}"
        return candidates(store, config, threshold, ids, State(tmp_path), run, False)

    on_cpu = pairs(False)
    fake = FakeGpu(monkeypatch)
    assert pairs(True) == on_cpu and len(on_cpu) > 10 and fake.searches == 1


@pytest.mark.parametrize("factory", ["IVF4,Flat", "PCA16,IVF4,Flat", "IVF4,PQ4x4"])
def test_kmeans_and_list_assignment_on_the_gpu_build_the_same_index(monkeypatch, factory):
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((300, 32)).astype(np.float32)
    ids = np.arange(300, dtype=np.int64) + 7

    def make():
        index = faiss_ops.make_index(factory, 32)
        with gpu.training(index):
            faiss_ops.train(index, xb, factory)
        with gpu.adding(index) as add:
            add(index, xb[:150], ids[:150])
            add(index, xb[150:], ids[150:])
        return index

    on_cpu = make()
    fake = FakeGpu(monkeypatch)
    on_gpu = make()
    pq = "PQ" in factory  # its sub-quantizers' k-means on the GPU too
    assert len(fake.copies) == 2 + pq  # k-means' Flat indexes and the centroids for assignment
    ivf, ivf_ref = faiss.extract_index_ivf(on_gpu), faiss.extract_index_ivf(on_cpu)
    assert ivf.clustering_index is None and on_gpu.ntotal == 300
    if pq:
        ivf, ivf_ref = faiss.downcast_index(ivf), faiss.downcast_index(ivf_ref)
        assert ivf.pq.assign_index is None
        np.testing.assert_array_equal(faiss.vector_to_array(ivf.pq.centroids),
                                      faiss.vector_to_array(ivf_ref.pq.centroids))
    np.testing.assert_array_equal(ivf.quantizer.reconstruct_n(0, 4),
                                  ivf_ref.quantizer.reconstruct_n(0, 4))
    sizes = [ivf.invlists.list_size(i) for i in range(4)]
    assert sizes == [ivf_ref.invlists.list_size(i) for i in range(4)]
    for index in (on_cpu, on_gpu):
        faiss_ops.set_nprobe(index, 4)
    found = [faiss_ops.search(index, xb[:20], 3)[1] for index in (on_gpu, on_cpu)]
    assert (found[0] == found[1]).all()
