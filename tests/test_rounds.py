"""build-index in rounds: a generation per --commit-every files, a crash between two rounds,
float16 staging, the training sample streamed through a transform, lists grown in place."""

from __future__ import annotations

import numpy as np
import pytest

from indexes.build import commit, training
from indexes.build.incremental import BuildConfig, build_index
from indexes.store.staging import Staging
from indexes.store.store import open_for_reading
from test_index_store import DIM, FakeExtractor, all_files, make_files, vector_of

QUERIES = np.random.default_rng(3).standard_normal((10, DIM)).astype(np.float32)


def state(index, nprobe=None):
    """(generation, path -> id, the neighbours of QUERIES) of the index at ``index``."""
    store = open_for_reading(index)
    try:
        items = {p: item.id for p, item in store.items().items()}
        D, I = store.search(QUERIES, 5, nprobe)
        return store.generation, items, I.tolist(), np.round(D, 4).tolist()
    finally:
        store.close()


class StopAtRound(FakeExtractor):
    """Ctrl-C as round ``stop`` starts extracting (the rounds before it are committed)."""

    def __init__(self, stop: int, **kw) -> None:
        super().__init__(**kw)
        self.stop, self.calls = stop, 0

    def embed(self, paths):
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        yield from super().embed(paths)


def test_rounds_commit_a_generation_each_and_a_crash_between_two_is_resumed(tmp_path, monkeypatch):
    img = tmp_path / "img"
    make_files(img, 20)
    build_index(tmp_path / "one", all_files(img), FakeExtractor())  # one round
    staged_at_commit = []
    commit_round = commit.Rounds.commit

    def counting(self, plan, r, last):
        staged_at_commit.append(len(Staging(self.store.folder).rows()))
        commit_round(self, plan, r, last)

    monkeypatch.setattr(commit.Rounds, "commit", counting)
    every = BuildConfig(commit_every=8)
    report = build_index(tmp_path / "rounds", all_files(img), FakeExtractor(), every)
    assert (report.total, report.new, report.rounds) == (20, 20, 3)
    assert staged_at_commit == [8, 8, 4]  # staging never holds more than a round
    generation, *answers = state(tmp_path / "rounds")
    assert generation == 3 and answers == list(state(tmp_path / "one")[1:])  # same ids, answers

    ex = StopAtRound(3)  # killed after two rounds
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "killed", all_files(img), ex, every)
    generation, items, _, _ = state(tmp_path / "killed")
    assert (generation, len(items)) == (2, 16)  # the two committed rounds, whole
    ex = FakeExtractor()
    again = build_index(tmp_path / "killed", all_files(img), ex, every)
    assert (again.total, again.new, again.extracted, again.rounds) == (20, 4, 4, 1)
    assert sorted(ex.embedded) == [str(p) for p in all_files(img)[16:]]
    assert list(state(tmp_path / "killed")[1:]) == answers


def test_changes_and_removals_across_rounds(tmp_path):
    img = tmp_path / "img"
    paths = make_files(img, 20)
    every = BuildConfig(commit_every=3)
    build_index(tmp_path / "idx", all_files(img), FakeExtractor())
    paths[1].write_bytes(b"image 1, edited")
    paths[15].write_bytes(b"image 15, edited")
    for p in paths[5:9]:
        p.unlink()
    make_files(img, 4, start=100)
    report = build_index(tmp_path / "idx", all_files(img), FakeExtractor(), every)
    assert (report.total, report.new, report.changed, report.removed, report.rounds) == \
        (20, 4, 2, 4, 2)
    store = open_for_reading(tmp_path / "idx")
    try:
        assert sorted(store.items()) == sorted(bytes(str(p), "utf8") for p in all_files(img))
        assert store.load_index().ntotal == 20
        D, I = store.search(np.stack([vector_of(paths[1]), vector_of(paths[15])]), 1)
        assert [store.paths(i)[int(i[0])] for i in I] == [str(paths[1]), str(paths[15])]
    finally:
        store.close()


@pytest.mark.parametrize("factory, dtype", [("Flat", np.float32), ("PCA16,IVF4,SQ8", np.float16),
                                            ("IVF4,Flat", np.float32)])
def test_vectors_are_staged_in_float16_where_the_codes_are_lossy(tmp_path, factory, dtype):
    img = tmp_path / "img"
    make_files(img, 200)
    with pytest.raises(KeyboardInterrupt):  # stopped after staging two batches
        build_index(tmp_path / "idx", all_files(img), FakeExtractor(stop_after=2),
                    BuildConfig(factory))
    staging = Staging(tmp_path / "idx")
    with np.load(staging.dir / staging.names()[0]) as z:
        assert z["vectors"].dtype == dtype
    assert staging.vectors(staging.names()[0], [0]).dtype == np.float32


def test_a_new_index_trains_on_its_sample_streamed_through_the_transform(tmp_path, monkeypatch):
    assert training.sample_size("PCA256,IVF4096,SQ8", 4096, 2 * 4096) == 39 * 4096
    assert training.sample_size("PCA256,IVF65536,SQ8", 4096, 2 * 4096) == (3 << 30) // 8192
    assert training.sample_size("IVF4096,PQ64", 4096, 4 * 4096) == (1 << 30) // 16384
    monkeypatch.setattr(training, "TRANSFORM_TRAIN_BYTES", 4 * DIM * 60)  # PCA: 60 vectors
    monkeypatch.setattr(training, "TRAIN_BYTES", 4 * 16 * 150)  # IVF: 150 of 16-d
    img = tmp_path / "img"
    paths = make_files(img, 200)
    report = build_index(tmp_path / "idx", all_files(img), FakeExtractor(batch_size=50),
                         BuildConfig("PCA16,IVF4,Flat", commit_every=100))
    # round 0: the sample (39 x 4 lists, held to the 150 TRAIN_BYTES allows) spread over all,
    # then the 50 left
    assert (report.total, report.rounds) == (200, 2)
    store = open_for_reading(tmp_path / "idx")
    try:
        found = store.search(np.stack([vector_of(p) for p in paths[::20]]), 1, nprobe=4)[1]
        assert [store.paths(i)[int(i[0])] for i in found] == [str(p) for p in paths[::20]]
    finally:
        store.close()


def test_on_disk_lists_grow_in_place_and_answer_as_in_memory(tmp_path):
    img = tmp_path / "img"
    paths = make_files(img, 200)
    for name, on_disk in (("mem", False), ("disk", True)):  # the sample (156), then 44
        build_index(tmp_path / name, all_files(img), FakeExtractor(batch_size=50),
                    BuildConfig("IVF4,Flat", on_disk=on_disk))
    first = (tmp_path / "disk" / "index-2.ivfdata").stat()
    make_files(img, 50, start=1000)
    paths[3].write_bytes(b"changed")
    for p in paths[10:30]:
        p.unlink()
    for name, on_disk in (("mem", False), ("disk", True)):
        report = build_index(tmp_path / name, all_files(img), FakeExtractor(batch_size=50),
                             BuildConfig("IVF4,Flat", on_disk=on_disk, commit_every=20))
        assert (report.total, report.new, report.changed, report.removed, report.rounds) == \
            (230, 50, 1, 20, 3)
    assert state(tmp_path / "disk", 4)[1:] == state(tmp_path / "mem", 4)[1:]
    names = sorted(p.name for p in (tmp_path / "disk").glob("index-*"))
    assert names == ["index-5.faiss", "index-5.ivfdata"]
    assert (tmp_path / "disk" / "index-5.ivfdata").stat().st_ino == first.st_ino  # not rewritten
