"""FAISS sections of benchmarks/gpu_check.py: faiss-gpu's smoke test, exact Flat distances on
the GPU, the k / nprobe limits through the store and `evaluate`, every README factory, a 1M x
4096 Flat index, duplicates' candidates and a served index under 32 threads. torch's exact
search (float32 products without TF32, candidates re-ranked in float64) is the reference."""

from __future__ import annotations

import contextlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

K = 10
README_FACTORIES = ["Flat", "IVF1024,PQ64,Refine(SQ8)", "PCA512,IVF1024,SQ8", "PCA256,IVF1024,SQ8",
                    "IVF1024,PQ64", "PCA256,IVF4096,SQ8", "HNSW32", "PQ64", "SQ8"]
DRY_FACTORIES = ["Flat", "IVF4,SQ8,Refine(Flat)", "PCA16,IVF4,SQ8", "IVF4,PQ8x4", "HNSW32"]


def fc7_like(n: int, d: int, seed: int, device) -> torch.Tensor:
    """(n, d) float32 like fc7 vectors: ReLU'd, |x|^2 ~ 2e4 at 4096-d, made on ``device``."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(n, d, generator=g, device=device).relu_().mul_(3)


def torch_exact(xb: torch.Tensor, xq: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact (squared distances, positions), (nq, k): 2k+16 candidates by float32 products
    (TF32 off), re-ranked in float64, 256 queries at a time."""
    from retrieval.features import full_float32

    wide = min(len(xb), 2 * k + 16)
    nb = (xb * xb).sum(1)  # (n,)
    Ds, Is = [], []
    with full_float32():
        for s in range(0, len(xq), 256):
            q = xq[s:s + 256]
            d = (q * q).sum(1)[:, None] + nb[None, :] - 2 * q @ xb.T  # (b, n)
            cand = d.topk(wide, dim=1, largest=False).indices  # (b, wide)
            exact = ((xb[cand].double() - q[:, None, :].double()) ** 2).sum(-1)
            order = exact.argsort(dim=1)[:, :k]
            Ds.append(exact.gather(1, order).float().cpu().numpy())
            Is.append(cand.gather(1, order).cpu().numpy())
    return np.concatenate(Ds), np.concatenate(Is)


def recall(I: np.ndarray, I_ref: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, I_ref)]))


@contextlib.contextmanager
def said():
    """The `FAISS: ...` lines printed meanwhile, as a list filled at the end."""
    lines: list[str] = []
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        yield lines
    lines += [line for line in buf.getvalue().splitlines() if line.startswith("FAISS:")]


def timed(fn, *args, repeat: int = 1):
    """(result, milliseconds per call) of ``fn(*args)``, the GPU finished."""
    fn(*args)  # warm
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, (time.perf_counter() - start) * 1e3 / repeat


def place(ctx) -> None:
    from indexes.store import gpu

    gpu.configure("cuda" if ctx.faiss_gpu else "cpu")


class Vectors:
    """build_index's extractor over synthetic vectors: the file NNNNNNN.jpg is row NNNNNNN."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def identity(self) -> dict:
        return {"weights": "imagenet", "sha256": "0" * 64, "layer": "fc7", "dim": self.x.shape[1],
                "transform": {}, "model": {}}

    def embed(self, paths):
        for s in range(0, len(paths), 4096):
            chunk = paths[s:s + 4096]
            yield list(range(s, s + len(chunk))), self.x[[int(Path(p).stem) for p in chunk]], []


def built_store(ctx, name: str, x: np.ndarray, factory: str = "Flat"):
    """(index folder, paths) of an index of ``x``'s rows built by indexes.build.incremental, files in 10
    class folders (for evaluate's labels)."""
    from indexes.build.incremental import BuildConfig, build_index

    root = ctx.work / name
    paths = []
    for i in range(len(x)):
        p = root / "files" / f"c{i % 10}" / f"{i:07d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        paths.append(p)
    build_index(root / "index", paths, Vectors(x), BuildConfig(factory=factory))
    return root / "index", paths


def rows_of(store, I: np.ndarray) -> np.ndarray:
    """Store ids -> rows of x (the files' names)."""
    names = store.paths(np.unique(I[I >= 0]))
    return np.vectorize(lambda i: int(Path(names[int(i)]).stem) if i >= 0 else -1)(I)


# -- sections -------------------------------------------------------------------------------------
def smoke(ctx) -> dict:
    """faiss-gpu from the bundle: GPU Flat and IVF ids equal to the CPU's on random vectors."""
    faiss = ctx.cache["faiss"]
    facts = {"faiss": faiss.__version__,
             "gpus": faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0}
    if facts["gpus"] == 0:
        return {**facts, "faiss_gpu": False, "why": "faiss sees no GPU"}
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((20000, 64)).astype(np.float32)
    xq = xb[:200] + 0.01
    res = faiss.StandardGpuResources()
    flat = faiss.IndexFlatL2(64)
    flat.add(xb)
    on_gpu = faiss.index_cpu_to_gpu(res, 0, flat)
    same_flat = float((flat.search(xq, K)[1] == on_gpu.search(xq, K)[1]).mean())
    ivf = faiss.index_factory(64, "IVF64,Flat")
    ivf.train(xb)
    ivf.add(xb)
    ivf.nprobe = 64
    on_gpu = faiss.index_cpu_to_gpu(res, 0, ivf)
    on_gpu.nprobe = 64
    same_ivf = float((ivf.search(xq, K)[1] == on_gpu.search(xq, K)[1]).mean())
    ok = min(same_flat, same_ivf) >= 0.999
    return {**facts, "faiss_gpu": ok, "ids_equal_flat": same_flat, "ids_equal_ivf": same_ivf}


def exact_100k(ctx) -> dict:
    """100k Flat: an image's distance to itself and the ids, GPU (raw and re-ranked) vs CPU vs
    exact."""
    from indexes.store import faiss_ops, gpu

    n, d, nq = ctx.size((100_000, 4096, 256), (400, 32, 16))
    x = fc7_like(n, d, 1, ctx.device)
    xb = x.cpu().numpy()
    index = faiss_ops.make_index("Flat", d)
    faiss_ops.add(index, xb, np.arange(n))
    xq = xb[:nq]  # each image searched for itself
    D_ref, I_ref = torch_exact(x, x[:nq], K)
    (D, I), cpu_ms = timed(faiss_ops.search, index, xq, K)
    facts = {"n": n, "d": d, "queries": nq, "exact_self_max": float(np.sqrt(D_ref[:, 0]).max()),
             "cpu_self_max": float(np.sqrt(D[:, 0]).max()),
             "cpu_ids_equal_exact": float((I == I_ref).mean()),
             "cpu_ms": round(cpu_ms, 1)}
    if not ctx.faiss_gpu:
        return {**facts, "gpu": "faiss-gpu unavailable: torch's exact search is the reference"}
    place(ctx)
    copy = gpu.make_copy(index, 0)
    D_raw, I_raw = copy.index.search(xq, K)  # FAISS's GPU as it is
    (D_gpu, I_gpu), gpu_ms = timed(copy.search, xq, K, None, index)
    return {**facts, "raw_gpu_self_max": float(np.sqrt(np.maximum(D_raw[:, 0], 0)).max()),
            "raw_gpu_ids_equal_exact": float((I_raw == I_ref).mean()),
            "gpu_self_max": float(np.sqrt(D_gpu[:, 0]).max()),
            "gpu_ids_equal_exact": float((I_gpu == I_ref).mean()),
            "gpu_ids_equal_cpu": float((I_gpu == I).mean()),
            "gpu_max_rel_diff": float(np.abs(D_gpu - D_ref).max() / max(D_ref.max(), 1e-9)),
            "gpu_ms": round(gpu_ms, 1)}


def limits(ctx) -> dict:
    """k and nprobe past faiss-gpu's 2048 through the store, and `evaluate`'s whole ranking
    (k = images + 1, the README's 3,000-image example)."""
    from indexes.config import EvalConfig
    from indexes.evaluation.evaluate import evaluate
    from indexes.store.store import open_for_reading

    n, d, big = ctx.size((3000, 256, 3000), (60, 16, 40))
    x = fc7_like(n, d, 5, "cpu").numpy()
    folder, paths = built_store(ctx, "limits", x)
    ivf_folder, _ = built_store(ctx, "limits-ivf", x, ctx.size("IVF64,Flat", "IVF4,Flat"))
    _, I_ref = torch_exact(torch.from_numpy(x), torch.from_numpy(x[:8]), big)
    place(ctx)
    with said() as lines:
        store = open_for_reading(folder)
        store.use_gpu()
        I_big = rows_of(store, store.search(x[:8], big)[1])
        I_ten = rows_of(store, store.search(x[:8], K)[1])
        ivf = open_for_reading(ivf_folder)
        ivf.use_gpu()
        many = rows_of(ivf, ivf.search(x[:8], K, nprobe=4096)[1])
        few = rows_of(ivf, ivf.search(x[:8], K, nprobe=ctx.size(16, 2))[1])

        def embed(query_paths):
            rows = [int(Path(p).stem) for p in query_paths]
            return x[rows], list(range(len(rows))), []

        report = evaluate(store, [str(p) for p in paths[:20]], embed, EvalConfig())
    return {"k_big": big, "k_big_recall": recall(I_big, I_ref),  # far ranks swap near-ties
            "k10_ids_equal_exact": float((I_ten == I_ref[:, :K]).mean()),
            "nprobe4096_recall": recall(many, I_ref[:, :K]),
            "nprobe_small_recall": recall(few, I_ref[:, :K]),
            "evaluate_map": float(report.methods["fc7"].metrics.mean_ap), "faiss_lines": lines}


def factories(ctx) -> dict:
    """Each README factory built, on the GPU or with the line saying why not: recall@10 of
    its GPU and CPU searches against exact search, build and search times."""
    from indexes.store import faiss_ops, gpu

    n, d, nq = ctx.size((20000, 4096, 64), (300, 32, 8))
    x = fc7_like(n + nq, d, 2, ctx.device)
    xb, xq = x[:n].cpu().numpy(), x[n:].cpu().numpy()
    _, I_ref = torch_exact(x[:n], x[n:], K)
    place(ctx)
    rows = {}
    for factory in ctx.size(README_FACTORIES, DRY_FACTORIES):
        index = faiss_ops.make_index(factory, d)
        why = gpu.refusal(index)
        if why is not None:
            rows[factory] = f"CPU: {why}"
            continue
        if ctx.left() < 30 and not ctx.dry:
            rows[factory] = "skipped: deadline"
            continue
        start = time.perf_counter()
        with gpu.training(index):
            faiss_ops.train(index, xb, factory)
        with gpu.adding(index) as add:
            add(index, xb, np.arange(n))
        row = {"build_s": round(time.perf_counter() - start, 1)}
        (_, I), row["cpu_ms"] = timed(faiss_ops.search, index, xq, K)
        row["recall_cpu"] = recall(I, I_ref)
        if ctx.faiss_gpu:
            try:
                copy = gpu.make_copy(index, 0)
            except RuntimeError as e:
                rows[factory] = {**row, "where": f"CPU: {e}"[:200]}
                continue
            vectors = index if faiss_ops.is_exact(index) else None
            (_, I), row["gpu_ms"] = timed(copy.search, xq, K, faiss_ops.nprobe_of(index), vectors)
            row.update(where="GPU", recall_gpu=recall(I, I_ref),
                       float16=bool(gpu.cloner_options(index).useFloat16))
        rows[factory] = row
    return {"n": n, "d": d, "factories": rows}


def flat_1m(ctx) -> dict:
    """1M x 4096 Flat (16 GB): the upload to the GPU, its memory, search times at 1, 64 and
    1024 queries (re-ranked exactly on the CPU), the CPU's at 1 and 64."""
    from indexes.store import faiss_ops, gpu

    n, d = ctx.size((1_000_000, 4096), (2000, 32))
    x = fc7_like(n, d, 3, ctx.device)
    index = faiss_ops.make_index("Flat", d)
    faiss_ops.add(index, x.cpu().numpy(), np.arange(n))  # one add: FAISS's storage grows once
    queries = {nq: fc7_like(nq, d, 10 + nq, ctx.device) for nq in (1, 64, 1024)}
    _, I_ref = torch_exact(x, queries[64], K)
    facts = {"n": n, "d": d, "gb": round(n * d * 4 / 1e9, 1)}
    xq = {nq: q.cpu().numpy() for nq, q in queries.items()}
    del x
    (_, I), facts["cpu_ms_1"] = timed(faiss_ops.search, index, xq[1], K)
    if ctx.faiss_gpu:
        place(ctx)
        torch.cuda.empty_cache()
        free = torch.cuda.mem_get_info()[0]
        start = time.perf_counter()
        copy = gpu.make_copy(index, 0)
        facts["upload_s"] = round(time.perf_counter() - start, 1)
        facts["gpu_gb"] = round((free - torch.cuda.mem_get_info()[0]) / 1e9, 1)
        for nq, q in xq.items():
            (_, I), facts[f"gpu_ms_{nq}"] = timed(copy.search, q, K, None, index, repeat=3)
            _, facts[f"gpu_raw_ms_{nq}"] = timed(copy.index.search, q, K, repeat=3)
            if nq == 64:
                facts["gpu_ids_equal_exact_64"] = float((I == I_ref).mean())
    if ctx.left() > 60 or ctx.dry:
        (I, _), facts["cpu_ms_64"] = timed(faiss_ops.search, index, xq[64], K)
    return facts


def duplicates(ctx) -> dict:
    """Duplicates on the GPU and on the CPU: the calibrated threshold (copies searched as
    queries, originals' stored vectors) and the candidate pairs and their distances."""
    from indexes.store import gpu
    from indexes.config import DuplicatesConfig
    from indexes.duplicates.find import State, calibrate, candidates
    from indexes.store.store import open_for_reading

    n, d, planted = ctx.size((20000, 512, 1000), (120, 16, 10))
    x = fc7_like(n, d, 4, "cpu")
    x[n - planted:] = x[:planted] + 0.3 * torch.randn(planted, d)  # ~0.3 sqrt(d) apart
    threshold = float(0.6 * np.sqrt(d))  # random pairs are ~2.5 sqrt(d) apart
    folder, _ = built_store(ctx, "duplicates", x.numpy())

    def copy_vectors(paths):  # three copies of each image, as retrieval.copies would make
        seeds = [int(Path(path).stem) for path in paths]
        return [(x[i] + 0.2 * torch.randn(3, d, generator=torch.Generator().manual_seed(i))
                 ).numpy() for i in seeds]

    found, seconds, calibrated = {}, {}, {}
    for where in ("cpu", "cuda" if ctx.faiss_gpu else "cpu"):
        gpu.configure(where)
        store = open_for_reading(folder)
        store.use_gpu()
        calibrated[where] = calibrate(store, copy_vectors).threshold
        state_dir = ctx.work / f"dup-{where}-{len(found)}"
        state_dir.mkdir()
        start = time.perf_counter()
        found[where] = candidates(store, DuplicatesConfig(threshold=threshold), threshold,
                                  sorted(i for i in range(n)), State(state_dir), where, False)
        seconds[where] = round(time.perf_counter() - start, 2)
    cpu, other = found["cpu"], found.get("cuda", found["cpu"])
    common = set(cpu) & set(other)
    return {"n": n, "d": d, "planted": planted, "threshold_cpu": calibrated["cpu"],
            "threshold_gpu": calibrated.get("cuda", calibrated["cpu"]),
            "pairs_cpu": len(cpu), "pairs_gpu": len(other),
            "same_pairs": set(cpu) == set(other),
            "max_distance_diff": max((abs(cpu[p] - other[p]) for p in common), default=0.0),
            "search_s": seconds, "gpu": ctx.faiss_gpu}


def service(ctx) -> dict:
    """The served index (IndexService) under 32 threads asking neighbours by id: queries/s,
    errors, each answer's distances those of exact search (the image itself left out); the
    GPU copy made in the background."""
    from indexes.store import gpu
    from indexes.search.service import IndexService

    n, d, per = ctx.size((20000, 4096, 25), (100, 16, 2))
    x = fc7_like(n, d, 6, "cpu").numpy()
    folder, _ = built_store(ctx, "service", x)
    place(ctx)
    extractor = Vectors(x)
    with said() as lines:
        svc = IndexService(folder, lambda source, trusted: extractor)
        try:
            row_of = {i: int(Path(p).stem) for i, p in svc.store.page(0, n)}
            ids = sorted(row_of)
            asked = [ids[j * 7919 % len(ids)] for j in range(32 * per)]
            rows = torch.from_numpy(x[[row_of[i] for i in asked]])
            D_ref, _ = torch_exact(torch.from_numpy(x), rows, K + 1)
            exact = dict(zip(asked, np.sqrt(D_ref[:, 1:])))  # the K nearest others
            wrong = []

            def client(t: int) -> None:
                for item in asked[t * per:(t + 1) * per]:
                    found = svc.neighbours(item, K).result(timeout=120)[0]
                    got = np.array([dist for _, _, dist in found])
                    if item in [i for i, _, _ in found] or not np.allclose(got, exact[item],
                                                                             rtol=1e-4):
                        wrong.append(item)

            start = time.perf_counter()
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(client, range(32)))
            seconds = time.perf_counter() - start
            batches = svc.batches
        finally:
            svc.close()
    on_gpu = any(e.copy is not None for e in gpu._copies.values())
    return {"n": n, "d": d, "requests": 32 * per, "per_s": round(32 * per / seconds, 1),
            "batches": batches, "wrong": len(wrong), "copy_made": on_gpu, "faiss_lines": lines}
