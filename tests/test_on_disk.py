"""Indexes built --on-disk: IVF inverted lists in a memory-mapped file, filled in parts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from indexes.build.incremental import BuildConfig, build_index
from indexes.store import faiss_ops, files
from indexes.store.store import IndexStore, neighbours, open_for_reading
from retrieval.errors import FactoryError
from test_index_store import DIM, FakeExtractor, all_files, make_files

FACTORY = "IVF8,Flat"  # exact codes: on-disk and in-memory indexes must agree to the bit
QUERIES = np.random.default_rng(7).standard_normal((20, DIM)).astype(np.float32)


def answers(index, k: int = 10):
    store = open_for_reading(index)
    try:
        return neighbours(store, QUERIES, k, nprobe=8)
    finally:
        store.close()


def build(index, folder, on_disk: bool, factory: str = FACTORY, **kw):
    return build_index(index, all_files(folder), FakeExtractor(batch_size=16),
                       BuildConfig(factory, on_disk=on_disk), **kw)


@pytest.fixture
def parts(monkeypatch):
    """Parts of 40 vectors: a build of a few hundred merges several."""
    monkeypatch.setattr(faiss_ops, "ON_DISK_PART_BYTES", 40 * (4 * DIM + 8))


def test_on_disk_answers_as_in_memory_through_adds_changes_and_removals(tmp_path, parts):
    img = tmp_path / "img"
    paths = make_files(img, 300)
    build(tmp_path / "mem", img, False)
    report = build(tmp_path / "disk", img, True)
    assert report.total == 300
    assert sorted(p.name for p in (tmp_path / "disk").glob("index-*")) == \
        ["index-1.faiss", "index-1.ivfdata"]
    assert answers(tmp_path / "disk") == answers(tmp_path / "mem")

    make_files(img, 50, start=1000)  # new
    paths[3].write_bytes(b"changed")  # changed
    for p in paths[10:30]:  # removed
        p.unlink()
    for index, on_disk in ((tmp_path / "mem", False), (tmp_path / "disk", True)):
        report = build(index, img, on_disk)
        assert (report.total, report.new, report.changed, report.removed) == (330, 50, 1, 20)
    assert answers(tmp_path / "disk") == answers(tmp_path / "mem")
    # the new generation's two files, the old ones gone
    assert sorted(p.name for p in (tmp_path / "disk").glob("index-*")) == \
        ["index-2.faiss", "index-2.ivfdata"]
    store = open_for_reading(tmp_path / "disk")
    assert faiss_ops.is_on_disk(store.load_index(mmap=True)) and store.settings["on_disk"]
    store.close()


def test_a_moved_index_finds_its_lists_and_prints_nothing(tmp_path, capfd):
    img = tmp_path / "img"
    make_files(img, 100)
    build(tmp_path / "disk", img, True)
    before = answers(tmp_path / "disk")
    shutil.move(tmp_path / "disk", tmp_path / "moved")
    capfd.readouterr()
    assert answers(tmp_path / "moved") == [
        [(p, d) for p, d in row] for row in before]  # the same files (the images did not move)
    assert capfd.readouterr().out == ""  # FAISS's notes never reach stdout (query --json)


def test_on_disk_needs_an_ivf_and_is_refused_before_extracting(tmp_path):
    img = tmp_path / "img"
    make_files(img, 20)
    ex = FakeExtractor()
    with pytest.raises(FactoryError, match="--on-disk needs an IVF index type"):
        build_index(tmp_path / "idx", all_files(img), ex, BuildConfig("Flat", on_disk=True))
    assert ex.embedded == []


def test_an_index_moves_to_disk_but_not_back(tmp_path):
    img = tmp_path / "img"
    make_files(img, 100)
    build(tmp_path / "idx", img, False)
    before = answers(tmp_path / "idx")
    report = build(tmp_path / "idx", img, True)  # nothing new: the lists move all the same
    assert report.new == 0 and (tmp_path / "idx" / "index-2.ivfdata").is_file()
    assert answers(tmp_path / "idx") == before
    build(tmp_path / "idx", img, None)  # a plain re-run keeps them on disk
    with pytest.raises(FactoryError, match="cannot bring them back into memory"):
        build(tmp_path / "idx", img, False)
    assert build(tmp_path / "idx", img, False, rebuild=True).total == 100
    assert sorted(p.name for p in (tmp_path / "idx").glob("index-*")) == ["index-3.faiss"]


def test_a_crash_before_the_commit_keeps_the_old_generation(tmp_path, monkeypatch, parts):
    img = tmp_path / "img"
    make_files(img, 200)
    build(tmp_path / "idx", img, True)
    before = answers(tmp_path / "idx")
    make_files(img, 60, start=500)

    def crash(*_):
        raise KeyboardInterrupt
    monkeypatch.setattr(IndexStore, "commit_generation", crash)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "idx", img, True)
    monkeypatch.undo()
    assert (tmp_path / "idx" / "index-2.ivfdata").is_file()  # written, never committed
    assert answers(tmp_path / "idx") == before
    assert build(tmp_path / "idx", img, True).total == 260
    names = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert [n for n in names if n.startswith("index-")] == ["index-2.faiss", "index-2.ivfdata"]
    assert not [n for n in names if n.endswith(".tmp")] and files.STAGING not in names


def test_info_json_records_it(tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    img = tmp_path / "img"
    make_files(img, 50)
    build(tmp_path / "idx", img, True)
    out = CliRunner().invoke(cli, ["info", "--index", str(tmp_path / "idx"), "--json"]).stdout
    assert json.loads(out)["on_disk"] is True
