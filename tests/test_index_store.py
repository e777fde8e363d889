"""The index store on seeded synthetic vectors: exactness, recall, atomic commits, resumption."""

from __future__ import annotations

import os
import zlib

import faiss
import numpy as np
import pytest

from indexes.build.incremental import BuildConfig, NothingIndexed, build_index
from indexes.evaluation.metrics import recall_at_k_vs_exact
from indexes.store import faiss_ops, files, manifest
from indexes.store.store import IndexStore, describe, neighbours, open_for_reading
from retrieval.errors import FactoryError, IndexCorrupt, IndexMismatch, RetrieveError

DIM = 32


def vector_of(path) -> np.ndarray:
    """A file's synthetic 'fc7': seeded by its content, so changed files get new vectors."""
    seed = zlib.crc32(open(path, "rb").read())
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class FakeExtractor:
    """Duck-typed extractor: files starting with b'bad' do not decode; counts what it embeds."""

    def __init__(self, batch_size: int = 4, sha256: str = "a" * 64, stop_after: int | None = None):
        self.batch_size, self.sha256, self.stop_after = batch_size, sha256, stop_after
        self.embedded: list[str] = []

    def identity(self) -> dict:
        return {"weights": "fake", "sha256": self.sha256, "layer": "fc7", "dim": DIM,
                "transform": {}, "model": {}}

    def embed(self, paths):
        for n, start in enumerate(range(0, len(paths), self.batch_size)):
            if self.stop_after is not None and n == self.stop_after:
                raise KeyboardInterrupt  # a Ctrl-C part-way through extraction
            chunk = paths[start:start + self.batch_size]
            good = [i for i, p in enumerate(chunk, start) if not open(p, "rb").read().startswith(b"bad")]
            errors = [(p, "not an image") for i, p in enumerate(chunk, start) if i not in good]
            self.embedded += [paths[i] for i in good]
            x = np.stack([vector_of(paths[i]) for i in good]) if good else np.zeros((0, DIM), np.float32)
            yield good, x, errors


def make_files(folder, n: int, start: int = 0) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"{i:04d}.jpg"
        p.write_bytes(f"image {i}".encode())
        paths.append(p)
    return paths


def all_files(folder) -> list:
    return sorted(p for p in folder.iterdir())


def brute_force(xb: np.ndarray, xq: np.ndarray, k: int):
    d2 = ((xq[:, None, :] - xb[None, :, :]) ** 2).sum(-1)  # (nq, nb)
    I = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.take_along_axis(d2, I, 1)), I


def test_flat_search_equals_numpy_brute_force(tmp_path):
    paths = make_files(tmp_path / "img", 60)
    report = build_index(tmp_path / "idx", paths, FakeExtractor())
    assert (report.total, report.new, report.extracted) == (60, 60, 60)
    xb = np.stack([vector_of(p) for p in paths])
    xq = np.random.default_rng(1).standard_normal((5, DIM)).astype(np.float32)
    store = open_for_reading(tmp_path / "idx")
    D, I = store.search(xq, 7)
    D_ref, I_ref = brute_force(xb, xq, 7)
    names = store.paths(I.ravel())
    assert [[names[i] for i in row] for row in I] == [[str(paths[j]) for j in row] for row in I_ref]
    np.testing.assert_allclose(D, D_ref, rtol=1e-4, atol=1e-4)
    # an indexed vector finds its own file first, at distance ~0
    found = neighbours(store, xb[[3, 42]], k=3)
    assert [r[0][0] for r in found] == [str(paths[3]), str(paths[42])]
    assert all(r[0][1] < 1e-3 for r in found)


def test_k_larger_than_index_is_cut(tmp_path):
    paths = make_files(tmp_path / "img", 3)
    build_index(tmp_path / "idx", paths, FakeExtractor())
    found = neighbours(open_for_reading(tmp_path / "idx"), np.stack([vector_of(paths[0])]), k=10)
    assert len(found[0]) == 3


def test_ivf_pq_recall_against_flat(tmp_path):
    n = 1500
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, DIM)) * 4
    xb = (centres[rng.integers(0, 20, n)] + rng.standard_normal((n, DIM))).astype(np.float32)
    xq = xb[rng.choice(n, 50, replace=False)] + 0.1 * rng.standard_normal((50, DIM)).astype(np.float32)
    ids = np.arange(n)
    flat = faiss_ops.make_index("Flat", DIM)
    faiss_ops.add(flat, xb, ids)
    ivfpq = faiss_ops.make_index("IVF16,PQ8", DIM)  # 8 bytes per vector instead of 128
    faiss_ops.train(ivfpq, xb, "IVF16,PQ8")
    faiss_ops.add(ivfpq, xb, ids)
    _, I_exact = faiss_ops.search(flat, xq, 10)
    recalls = {}
    for nprobe in (1, 16):
        faiss_ops.set_nprobe(ivfpq, nprobe)
        recalls[nprobe] = recall_at_k_vs_exact(faiss_ops.search(ivfpq, xq, 10)[1], I_exact, 10)
    assert 0.5 < recalls[16] <= 1.0, recalls  # 0.71 here; the codes are lossy
    assert recalls[1] <= recalls[16]

    # the same codes, their 16 x 10 best re-ranked by exact distances (a Refine stage)
    refined = faiss_ops.make_index("IVF16,PQ8,RFlat", DIM)
    faiss_ops.train(refined, xb, "IVF16,PQ8,RFlat")
    faiss_ops.add(refined, xb, ids)
    faiss_ops.set_nprobe(refined, 16)
    assert recall_at_k_vs_exact(faiss_ops.search(refined, xq, 10)[1], I_exact, 10) > 0.95
    faiss_ops.write(refined, tmp_path / "refined.faiss")
    reread = faiss_ops.read(tmp_path / "refined.faiss")
    assert faiss_ops.refine_k_factor(reread) == faiss_ops.REFINE_K_FACTOR  # kept in the file
    assert faiss.extract_index_ivf(reread).nprobe == 16  # as last set (built with 8)
    assert faiss.extract_index_ivf(faiss_ops.make_index("PCA8,IVF4,SQ8", DIM)).nprobe == 8
    # PQ codes behind a Refine or a transform skip polysemous training too (minutes at 4096-d)
    for factory in ("IVF4,PQ8,Refine(SQ8)", "PCA16,IVF4,PQ8"):
        index = faiss_ops.make_index(factory, DIM)  # (owns the IVF: keep it alive)
        assert not faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training


@pytest.mark.parametrize("factory", ["PCA8,Flat", "PCAW8,Flat", "PCAR8,Flat"])
def test_a_pca_trained_by_eigh_projects_as_faiss_trains_it(factory):
    """train_transform (numpy's eigh) against FAISS's PCAMatrix::train (dsyev): the same
    eigenvalues and the same distances between projected vectors (a component may change
    sign), whitened (PCAW) or rotated (PCAR) as FAISS prepares them."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((300, DIM)) * np.linspace(4, 0.1, DIM)).astype(np.float32)
    owners = [faiss.index_factory(DIM, factory) for _ in range(2)]  # kept alive meanwhile
    ours, theirs = (faiss.downcast_VectorTransform(faiss.downcast_index(o).chain.at(0))
                    for o in owners)
    theirs.train(x)
    faiss_ops.train_transform(ours, x)
    assert ours.is_trained
    np.testing.assert_allclose(faiss.vector_to_array(ours.eigenvalues),
                               faiss.vector_to_array(theirs.eigenvalues), rtol=1e-4)
    a, b = ours.apply(x[:40]), theirs.apply(x[:40])
    if "PCAR" not in factory:  # a random rotation mixes the components: distances alone
        assert np.abs(np.abs(a[:, 0]) - np.abs(b[:, 0])).max() < 1e-3 * np.abs(b).max()
    gaps = lambda y: ((y[:, None] - y[None]) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_allclose(gaps(a), gaps(b), rtol=1e-4, atol=1e-4 * gaps(b).max())
    for whole in ("PCA8,IVF4,Flat", "PCA8,Flat"):  # the PCA in front trained by eigh first
        index = faiss_ops.make_index(whole, DIM)
        faiss_ops.train(index, x, whole)
        assert index.is_trained
        faiss_ops.add(index, x, np.arange(len(x)))
        if "IVF" in whole:
            faiss_ops.set_nprobe(index, 4)
        assert (faiss_ops.search(index, x[:20], 1)[1][:, 0] == np.arange(20)).all()


def test_too_few_vectors_to_train_is_a_clear_error(tmp_path):
    paths = make_files(tmp_path / "img", 10)
    with pytest.raises(FactoryError, match="needs at least 64 vectors to train, there are only 10"):
        build_index(tmp_path / "idx", paths, FakeExtractor(), BuildConfig(factory="IVF64,Flat"))
    with pytest.raises(FactoryError, match="FAISS cannot build it"):
        build_index(tmp_path / "idx", paths, FakeExtractor(), BuildConfig(factory="NoSuchIndex7"))
    with pytest.raises(FactoryError, match="this index type cannot store vectors with ids"):
        build_index(tmp_path / "idx", paths, FakeExtractor(), BuildConfig(factory="IDMap,Flat"))


def test_incremental_add_change_remove(tmp_path):
    img = tmp_path / "img"
    paths = make_files(img, 10)
    build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    paths[2].unlink()
    paths[5].write_bytes(b"image 5, edited and longer")
    make_files(img, 2, start=100)
    ex = FakeExtractor()
    report = build_index(tmp_path / "idx", all_files(img), ex)
    assert (report.total, report.new, report.changed, report.removed) == (11, 2, 1, 1)
    assert sorted(ex.embedded) == sorted(str(p) for p in [paths[5], img / "0100.jpg", img / "0101.jpg"])
    store = open_for_reading(tmp_path / "idx")
    found = neighbours(store, np.stack([vector_of(paths[5])]), k=1)
    assert found[0][0][0] == str(paths[5]) and found[0][0][1] < 1e-3
    assert str(paths[2]) not in {p for row in neighbours(store, np.stack([vector_of(p) for p in all_files(img)]), 11) for p, _ in row}
    gen = store.generation
    store.close()
    again = build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    assert (again.new, again.changed, again.removed, again.extracted) == (0, 0, 0, 0)
    assert IndexStore.open(tmp_path / "idx").generation == gen  # nothing to commit


@pytest.mark.parametrize("factory", ["HNSW8", "IVF4,Flat", "PCA16,IVF4,Flat", "IVF4,SQ8,RFlat"])
def test_removal_from_other_index_types(tmp_path, factory):
    """HNSW and Refine cannot remove ids: they are rebuilt from their reconstructed vectors;
    IVF removes, also behind a PCA."""
    img = tmp_path / "img"
    paths = make_files(img, 40)
    cfg = BuildConfig(factory=factory)
    build_index(tmp_path / "idx", paths, FakeExtractor(), cfg)
    for p in paths[:5]:
        p.unlink()
    report = build_index(tmp_path / "idx", all_files(img), FakeExtractor(), cfg)
    assert (report.total, report.removed) == (35, 5)
    store = open_for_reading(tmp_path / "idx")
    assert store.load_index().ntotal == 35
    found = neighbours(store, np.stack([vector_of(p) for p in paths[5:]]), k=1, nprobe=4 if "IVF" in factory else None)
    assert [r[0][0] for r in found] == [str(p) for p in paths[5:]]


def test_skipped_files_and_nothing_indexed(tmp_path):
    img = tmp_path / "img"
    make_files(img, 3)
    (img / "bad.jpg").write_bytes(b"bad data")
    report = build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    assert report.total == 3 and report.skipped == [(str(img / "bad.jpg"), "not an image")]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"bad")
    with pytest.raises(NothingIndexed, match="all 1 files were skipped"):
        build_index(tmp_path / "idx2", [only_bad / "x.jpg"], FakeExtractor())


def test_other_weights_or_settings_need_rebuild(tmp_path):
    paths = make_files(tmp_path / "img", 6)
    build_index(tmp_path / "idx", paths, FakeExtractor())
    with pytest.raises(IndexMismatch, match="weights fake sha256 aaaaaaaaaaaa"):
        build_index(tmp_path / "idx", paths, FakeExtractor(sha256="b" * 64))
    with pytest.raises(IndexMismatch, match="normalize False, now True"):
        build_index(tmp_path / "idx", paths, FakeExtractor(), BuildConfig(normalize=True))
    report = build_index(tmp_path / "idx", paths, FakeExtractor(sha256="b" * 64),
                         BuildConfig(normalize=True), rebuild=True)
    assert (report.total, report.new, report.extracted) == (6, 6, 6)
    store = open_for_reading(tmp_path / "idx")
    assert store.settings["sha256"] == "b" * 64 and store.settings["normalize"] is True
    D, _ = store.search(np.stack([vector_of(paths[0]) * 5]), 1)  # queries are normalised too
    assert D[0, 0] < 1e-3


def test_second_build_is_refused_while_one_runs(tmp_path):
    (tmp_path / "idx").mkdir()
    lock = files.BuildLock(tmp_path / "idx")
    lock.acquire()
    try:
        with pytest.raises(RetrieveError, match="another build-index is running on"):
            build_index(tmp_path / "idx", make_files(tmp_path / "img", 2), FakeExtractor())
    finally:
        lock.release()


def test_interrupted_extraction_resumes_without_redoing_batches(tmp_path):
    img = tmp_path / "img"
    paths = make_files(img, 6)
    build_index(tmp_path / "idx", paths, FakeExtractor())
    more = make_files(img, 10, start=100)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "idx", all_files(img), FakeExtractor(batch_size=4, stop_after=2))
    store = open_for_reading(tmp_path / "idx")  # the previous generation, whole
    assert store.count == 6 and store.load_index().ntotal == 6 and len(store.staged()) == 8
    store.close()
    ex = FakeExtractor()
    report = build_index(tmp_path / "idx", all_files(img), ex)
    assert (report.total, report.new, report.reused, report.extracted) == (16, 10, 8, 2)
    assert sorted(ex.embedded) == [str(p) for p in more[8:]]
    assert not list((tmp_path / "idx" / files.STAGING).glob("*.npz"))


def test_crash_before_the_database_commit_keeps_the_old_generation(tmp_path, monkeypatch):
    img = tmp_path / "img"
    make_files(img, 5)
    build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    make_files(img, 3, start=50)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after index-2.faiss is written, before SQLite says so

    monkeypatch.setattr(IndexStore, "commit_generation", killed)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    assert (tmp_path / "idx" / "index-2.faiss").exists()
    store = open_for_reading(tmp_path / "idx")
    assert (store.generation, store.count, store.load_index().ntotal) == (1, 5, 5)
    store.close()
    monkeypatch.undo()
    report = build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    assert (report.total, report.reused, report.extracted) == (8, 3, 0)
    names = sorted(p.name for p in (tmp_path / "idx").glob("index-*.faiss"))
    assert names == ["index-2.faiss"]


def test_crash_after_the_database_commit_is_repaired_on_open(tmp_path, monkeypatch):
    img = tmp_path / "img"
    make_files(img, 5)
    build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    make_files(img, 2, start=50)
    apply = IndexStore.commit_generation

    def apply_then_killed(*args, **kwargs):
        apply(*args, **kwargs)
        raise KeyboardInterrupt  # committed in SQLite; old file, staging, manifest not tidied

    monkeypatch.setattr(IndexStore, "commit_generation", apply_then_killed)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    monkeypatch.undo()
    idx = tmp_path / "idx"
    assert (idx / "index-1.faiss").exists() and files.read_json(idx, files.MANIFEST)["generation"] == 1
    store = open_for_reading(idx)  # committed generation 2; stale manifest and old file repaired
    assert (store.generation, store.count, store.load_index().ntotal) == (2, 7, 7)
    assert files.read_json(idx, files.MANIFEST)["count"] == 7
    assert not (idx / "index-1.faiss").exists()
    assert not list((idx / files.STAGING).glob("*.npz"))


def test_non_utf8_file_names_round_trip(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    name = os.fsencode(str(img)) + b"/caf\xe9.jpg"  # Latin-1 bytes: not valid UTF-8
    with open(name, "wb") as f:
        f.write(b"image latin")
    build_index(tmp_path / "idx", [os.fsdecode(name)], FakeExtractor())
    store = open_for_reading(tmp_path / "idx")
    (path, distance), = neighbours(store, np.stack([vector_of(name)]), k=1)[0]
    assert os.fsencode(path) == name and distance < 1e-3
    assert list(store.items()) == [name]


def test_damaged_files_are_named_with_the_rebuild_command(tmp_path):
    idx = tmp_path / "idx"
    build_index(idx, make_files(tmp_path / "img", 4), FakeExtractor())
    assert describe(open_for_reading(idx))["count"] == 4
    (idx / "index-1.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt, match=r"index-1\.faiss: damaged index file.*--rebuild"):
        describe(open_for_reading(idx))
    (idx / "index-1.faiss").unlink()
    with pytest.raises(IndexCorrupt, match=r"index-1\.faiss: index file is missing"):
        describe(open_for_reading(idx))
    (idx / files.MANIFEST).write_text("{not json")
    with pytest.raises(IndexCorrupt, match=r"manifest\.json: damaged .*--rebuild"):
        open_for_reading(idx)
    (idx / files.DATABASE).write_bytes(b"not a database at all" * 100)
    with pytest.raises(IndexCorrupt, match=r"items\.sqlite: damaged"):
        open_for_reading(idx)
    with pytest.raises(IndexCorrupt, match="no index here"):
        open_for_reading(tmp_path / "nowhere")


def test_rebuild_replaces_a_damaged_index(tmp_path):
    idx = tmp_path / "idx"
    paths = make_files(tmp_path / "img", 4)
    build_index(idx, paths, FakeExtractor())
    (idx / files.DATABASE).write_bytes(b"\0" * 4096)
    with pytest.raises(IndexCorrupt, match=r"items\.sqlite: damaged"):
        build_index(idx, paths, FakeExtractor())
    (idx / files.DATABASE).unlink()
    with pytest.raises(IndexCorrupt, match=r"items\.sqlite: missing; rebuild it with"):
        build_index(idx, paths, FakeExtractor())
    (idx / "index-1.faiss").write_bytes(b"junk")
    report = build_index(idx, paths, FakeExtractor(), rebuild=True)
    assert (report.total, report.new) == (4, 4)
    store = open_for_reading(idx)
    assert store.load_index().ntotal == 4 and sorted(p.name for p in idx.glob("index-*")) == ["index-1.faiss"]


def test_a_missing_manifest_is_rewritten_from_the_database(tmp_path):
    idx = tmp_path / "idx"
    build_index(idx, make_files(tmp_path / "img", 3), FakeExtractor())
    (idx / files.MANIFEST).unlink()
    assert manifest.read(open_for_reading(idx).folder)["count"] == 3


def test_a_transaction_is_all_or_nothing(tmp_path):
    store = IndexStore.open(tmp_path / "idx", create=True)
    with store.atomic():
        store.set_meta("a", 1)
    with pytest.raises(ZeroDivisionError):
        with store.atomic():
            store.set_meta("a", 2)
            store.set_meta("b", 3)
            raise ZeroDivisionError
    assert (store.meta("a"), store.meta("b")) == (1, None)
    store.close()


def test_rows_are_named(tmp_path):
    paths = make_files(tmp_path / "img", 3)
    build_index(tmp_path / "idx", paths, FakeExtractor())
    store = open_for_reading(tmp_path / "idx")
    item = store.items()[os.fsencode(paths[1])]
    assert (item.id, item.size) == (1, paths[1].stat().st_size)
    assert item.mtime_ns == paths[1].stat().st_mtime_ns
    assert store.staged() == {}  # all committed


def test_nprobe_holds_for_one_search_also_on_a_device_copy(tmp_path, monkeypatch):
    """A search with nprobe N visits N lists, the next one without nprobe the saved number,
    also when the index searched is a copy (the GPU's) rather than the CPU index itself."""
    n = 400
    rng = np.random.default_rng(0)
    paths = make_files(tmp_path / "img", n)
    build_index(tmp_path / "idx", paths, FakeExtractor(), BuildConfig(factory="IVF16,Flat"))
    from fake_gpu import FakeGpu

    fake = FakeGpu(monkeypatch)  # a copy searched instead of the CPU index, as the GPU's is
    store = open_for_reading(tmp_path / "idx")
    store.use_gpu()
    xq = rng.standard_normal((50, DIM)).astype(np.float32)
    exact = brute_force(np.stack([vector_of(p) for p in paths]), xq, 10)[1]
    names = {str(p): i for i, p in enumerate(paths)}

    def recall(nprobe):
        found = neighbours(store, xq, 10, nprobe)  # one list may hold fewer than 10: -1 pads
        ids = np.array([[names[p] for p, _ in row] + [-1] * (10 - len(row)) for row in found])
        return recall_at_k_vs_exact(ids, exact, 10)

    saved, one, every = recall(None), recall(1), recall(16)
    assert every == 1.0 and one < saved < every  # 8 lists by default (DEFAULT_NPROBE)
    assert recall(None) == saved and recall(1) == one
    assert fake.searches == 5
    assert faiss_ops.nprobe_of(store.load_index()) == 8  # the CPU index is left as saved
    flat = tmp_path / "flat"
    build_index(flat, paths[:5], FakeExtractor())
    with pytest.raises(FactoryError, match="--nprobe applies only to IVF indexes"):
        open_for_reading(flat).search(xq, 1, nprobe=2)


def test_a_rerun_keeps_the_recorded_factory_and_normalisation(tmp_path):
    from indexes.build.incremental import recorded_settings, weights_to_build_with

    paths = make_files(tmp_path / "img", 6)
    idx = tmp_path / "idx"
    assert weights_to_build_with(idx, None) == "imagenet"  # nothing recorded yet
    build_index(idx, paths, FakeExtractor(), BuildConfig(factory="IVF2,Flat", normalize=True))
    report = build_index(idx, make_files(tmp_path / "img", 2, start=50), FakeExtractor())
    assert report.new == 2  # BuildConfig() asks nothing: the recorded settings hold
    settings = recorded_settings(idx)
    assert (settings["factory"], settings["normalize"]) == ("IVF2,Flat", True)
    assert weights_to_build_with(idx, None) == "fake"
    assert weights_to_build_with(idx, "other.pt") == "other.pt"
    with pytest.raises(IndexMismatch, match="factory 'IVF2,Flat', now 'Flat'"):
        build_index(idx, paths, FakeExtractor(), BuildConfig(factory="Flat"))


def test_a_batch_on_a_flat_index_is_exact_though_blas_finds_its_candidates(tmp_path):
    """From BLAS_FROM_QUERIES queries on, BLAS's |x|^2 + |y|^2 - 2xy picks candidates and exact
    distances rank them: large vectors find themselves at 0 and in brute force's order."""
    rng = np.random.default_rng(0)
    xb = (np.abs(rng.standard_normal((3000, 256))) * 30).astype(np.float32)  # fc7-like, large
    flat = faiss_ops.make_index("Flat", 256)
    faiss_ops.add(flat, xb, np.arange(3000) + 7)  # ids are not positions
    xq = np.concatenate([xb[:20], xb[20:40] + rng.standard_normal((20, 256)).astype(np.float32)])
    D, I = faiss_ops.search(flat, xq, 10)
    D_ref, I_ref = brute_force(xb, xq, 10)
    assert (I == I_ref + 7).all()
    np.testing.assert_allclose(D, D_ref ** 2, rtol=1e-5)
    assert (D[:20, 0] == 0).all()  # BLAS alone gives these a few units
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        D_blas, _ = flat.search(xq, 10)
    finally:
        faiss.cvar.distance_compute_blas_threshold = faiss_ops.FAISS_BLAS_THRESHOLD
    assert np.abs(D_blas[:20, 0]).max() > 0  # what the re-ranking is for


def test_a_file_staged_before_it_changed_is_indexed_as_it_is_now(tmp_path):
    """A killed build (rank 1 of a torchrun build, say) staged a file that changed since:
    that row is never used, whichever batch comes first, and the file is indexed anew."""
    from indexes.store.staging import FileState, Staging

    img = tmp_path / "img"
    paths = make_files(img, 6)
    old = FileState.of(paths[2])
    stale = np.full((1, DIM), 7, np.float32)
    paths[2].write_bytes(b"changed since it was staged")
    store = IndexStore.open(tmp_path / "idx", create=True)
    store.reset_staging({**{k: v for k, v in FakeExtractor().identity().items()
                            if k in manifest.MATCHING_KEYS},
                         "factory": "Flat", "normalize": False, "weights": "fake"})
    Staging(tmp_path / "idx", rank=1).write([old], stale)
    store.close()
    report = build_index(tmp_path / "idx", paths, FakeExtractor())
    assert (report.total, report.reused, report.extracted) == (6, 0, 6)
    store = open_for_reading(tmp_path / "idx")
    D, I = store.search(vector_of(paths[2])[None], 1)
    assert store.paths(I[0])[int(I[0, 0])] == str(paths[2]) and D[0, 0] < 1e-3
    store.close()
