"""build-index, query and info through the command line, with a tiny random AlexNet (and
once with the paper's own network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import cli
from conftest import CLASSES, SMALL, TINY_DIM, draw_shape, tiny_checkpoint
from indexes.store.store import open_for_reading
from retrieval import sheet
from retrieval.model import AlexNet, ModelConfig
from retrieval.transforms import Preprocess
from retrieval.weights import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """One tiny checkpoint for the whole module."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt")


def run(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def build(folder, index, checkpoint, *extra, ok: bool = True):
    return run("build-index", folder, "--weights", checkpoint, "--index", index, *FAST, *extra, ok=ok)


def parse_text(stdout: str) -> list[tuple[str, list[tuple[int, float, str]]]]:
    blocks = []
    for block in stdout.strip().split("\n\n"):
        head, *lines = block.splitlines()
        rows = [(int(r), float(d), p) for r, d, p in (line.split(None, 2) for line in lines)]
        blocks.append((head, rows))
    return blocks


def test_every_image_finds_itself_first(image_folder, checkpoint, tmp_path):
    check_every_image_finds_itself_first(image_folder, checkpoint, tmp_path / "idx")


@pytest.mark.slow  # the paper's network: 61 million weights
def test_the_papers_network_end_to_end(image_folder, tmp_path):
    """The same with the 60M-parameter network: its 4096-d fc7 goes into the index."""
    ckpt = tmp_path / "paper.pt"
    save_checkpoint(ckpt, AlexNet(ModelConfig(num_classes=4)), Preprocess(image_size=SMALL), CLASSES)
    check_every_image_finds_itself_first(image_folder, ckpt, tmp_path / "idx")
    assert run("info", "--index", tmp_path / "idx").stdout.splitlines()[3] == \
        "Vectors:      fc7, 4096 dimensions"


def check_every_image_finds_itself_first(image_folder, checkpoint, index):
    root, paths = image_folder
    out = build(root, index, checkpoint).stdout
    assert out.startswith("Indexed 12 images (12 new, 0 changed, 0 removed, 0 skipped) into ")
    text = parse_text(run("query", root, "--index", index, "-k", 3).stdout)
    assert sorted(q for q, _ in text) == sorted(str(p) for p in paths)
    for q, rows in text:
        assert [r for r, _, _ in rows] == [1, 2, 3]
        assert rows[0][2] == q and rows[0][1] < 1e-3
        assert rows[1][1] >= rows[0][1]
    doc = json.loads(run("query", root, "--index", index, "-k", 3, "--json").stdout)
    assert doc["index"] == str(index) and doc["k"] == 3
    assert [(q["query"], [(r["rank"], r["path"]) for r in q["results"]]) for q in doc["queries"]] \
        == [(q, [(r, p) for r, _, p in rows]) for q, rows in text]
    for q, (_, rows) in zip(doc["queries"], text):
        assert [round(r["distance"], 4) for r in q["results"]] == pytest.approx([d for _, d, _ in rows], abs=1e-4)


def test_incremental_add_change_delete(image_folder, checkpoint, tmp_path):
    root, paths = image_folder
    index = tmp_path / "idx"
    build(root, index, checkpoint)
    paths[0].unlink()
    draw_shape(3, seed=99).save(paths[4])  # a square becomes stripes
    draw_shape(1, seed=77).save(root / "square" / "new.png")
    out = build(root, index, checkpoint).stdout
    assert out.startswith("Indexed 12 images (1 new, 1 changed, 1 removed, 0 skipped)")
    result = json.loads(run("query", paths[4], "--index", index, "-k", 12, "--json").stdout)
    found = [r["path"] for r in result["queries"][0]["results"]]
    assert found[0] == str(paths[4]) and str(paths[0]) not in found and len(found) == 12
    assert str(root / "square" / "new.png") in found
    again = run("build-index", root, "--index", index, *FAST).stdout  # the index's own weights
    assert again.startswith("Indexed 12 images (0 new, 0 changed, 0 removed, 0 skipped)")


def test_bad_files_are_skipped_and_reported(image_folder, checkpoint, tmp_path):
    root, _ = image_folder
    (root / "text.jpg").write_text("this is not a JPEG")
    (root / "empty.jpg").write_bytes(b"")
    errors = tmp_path / "errors.tsv"
    # one decoding worker process: a corrupt file must not stop the DataLoader
    result = build(root, tmp_path / "idx", checkpoint, "--errors", errors, "--workers", "1")
    assert "(12 new, 0 changed, 0 removed, 2 skipped)" in result.stdout
    assert f"skipped {root / 'empty.jpg'}: empty file" in result.stderr
    assert f"skipped {root / 'text.jpg'}: not an image" in result.stderr
    assert sorted(errors.read_text().splitlines()) == [
        f"{root / 'empty.jpg'}\tempty file", f"{root / 'text.jpg'}\tnot an image"]
    bad = run("query", root / "text.jpg", "--index", tmp_path / "idx", ok=False)
    assert bad.exit_code == 1 and bad.output == f"Error: {root / 'text.jpg'}: not an image\n"
    several = run("query", root, "--index", tmp_path / "idx", "-k", 1)
    assert f"skipped {root / 'text.jpg'}: not an image" in several.stderr
    assert len(parse_text(several.stdout)) == 12


def test_nothing_indexable_exits_1(checkpoint, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_text("text")
    result = build(folder, tmp_path / "idx", checkpoint, ok=False)
    assert result.exit_code == 1
    assert "Error: nothing could be indexed into" in result.stderr
    assert "all 1 files were skipped" in result.stderr


def test_changed_weights_are_refused_and_rebuild_accepted(image_folder, checkpoint, tmp_path):
    root, paths = image_folder
    ckpt = tmp_path / "mine.pt"
    shutil.copy(checkpoint, ckpt)
    index = tmp_path / "idx"
    build(root, index, ckpt)
    tiny_checkpoint(ckpt, list("abcd"))
    q = run("query", paths[0], "--index", index, ok=False)
    assert q.exit_code == 1 and "the weights changed since the index was built" in q.output
    assert len(q.output.strip().splitlines()) == 1
    b = build(root, index, ckpt, ok=False)
    assert b.exit_code == 1 and "was built with other settings (weights" in b.output
    assert "--rebuild" in b.output
    assert "(12 new, 0 changed, 0 removed, 0 skipped)" in build(root, index, ckpt, "--rebuild").stdout
    assert parse_text(run("query", paths[0], "--index", index, "-k", 1).stdout)[0][1][0][2] == str(paths[0])
    ckpt.unlink()
    gone = run("query", paths[0], "--index", index, ok=False)
    assert gone.exit_code == 1 and "the weights this index was built with are missing" in gone.output


def test_sheet_is_a_png_of_the_expected_size(image_folder, checkpoint, tmp_path):
    root, paths = image_folder
    build(root, tmp_path / "idx", checkpoint)
    out = tmp_path / "sheet.png"
    run("query", paths[0], paths[5], "--index", tmp_path / "idx", "-k", 4, "--sheet", out)
    width = 5 * (sheet.TILE + sheet.PADDING) + sheet.PADDING
    height = 2 * (sheet.TILE + sheet.LABEL_HEIGHT + sheet.PADDING) + sheet.PADDING
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (width, height)
        # the query tile is framed in the query colour
        assert img.convert("RGB").getpixel((sheet.PADDING, sheet.PADDING)) == sheet.QUERY_COLOUR


def test_info_and_damaged_index(image_folder, checkpoint, tmp_path):
    root, _ = image_folder
    index = tmp_path / "idx"
    build(root, index, checkpoint)
    lines = run("info", "--index", index).stdout.splitlines()
    assert lines[0] == f"Index:        {index}"
    assert lines[1] == "Images:       12"
    assert lines[2].startswith(f"Weights:      {checkpoint} (sha256 ")
    assert lines[3] == f"Vectors:      fc7, {TINY_DIM} dimensions"
    assert lines[4] == "Index type:   Flat (index-1.faiss)"
    facts = json.loads(run("info", "--index", index, "--json").stdout)
    assert (facts["count"], facts["dim"], facts["layer"], facts["factory"]) == (12, TINY_DIM, "fc7", "Flat")
    assert facts["normalize"] is False and facts["transform"]["center_crop"] == SMALL
    assert facts["model"]["width"] == 1 / 16
    assert facts["size_on_disk"] > 12 * TINY_DIM * 4
    (index / "index-1.faiss").write_bytes(b"\0" * 100)
    bad = run("info", "--index", index, ok=False)
    assert bad.exit_code == 1 and len(bad.output.splitlines()) == 1
    assert bad.output.startswith(f"Error: {index / 'index-1.faiss'}: damaged index file")
    assert f"retrieve build-index PATH... --index {index} --rebuild" in bad.output
    missing = run("info", "--index", tmp_path / "nowhere", ok=False)
    assert missing.exit_code == 1 and "no index here" in missing.output


def test_normalized_flat_and_ivf_factories(image_folder, checkpoint, tmp_path):
    root, paths = image_folder
    out = build(root, tmp_path / "n", checkpoint, "--normalize", "--factory", "IVF2,Flat").stdout
    assert "12 new" in out
    result = parse_text(run("query", paths[3], "--index", tmp_path / "n", "-k", 2, "--nprobe", 2).stdout)
    assert result[0][1][0][2] == str(paths[3]) and result[0][1][0][1] < 1e-3
    again = run("build-index", root, "--index", tmp_path / "n", *FAST).stdout  # keeps its settings
    assert again.startswith("Indexed 12 images (0 new, 0 changed, 0 removed, 0 skipped)")
    other = build(root, tmp_path / "n", checkpoint, "--factory", "Flat", ok=False)
    assert "(factory 'IVF2,Flat', now 'Flat')" in other.output
    few = build(root, tmp_path / "pq", checkpoint, "--factory", "IVF64,Flat", ok=False)
    assert "needs at least 64 vectors to train, there are only 12" in few.output


def test_a_query_racing_a_build_reads_a_whole_generation(image_folder, checkpoint, tmp_path,
                                                         monkeypatch):
    from indexes.store import faiss_ops
    from indexes.store.store import neighbours

    root, paths = image_folder
    index = tmp_path / "idx"
    build(root, index, checkpoint)
    xq = np.zeros((1, TINY_DIM), np.float32)
    read = faiss_ops.read

    def read_after_a_commit(path, mmap=False):  # generation 1 was read from the database...
        monkeypatch.setattr(faiss_ops, "read", read)
        paths[0].unlink()
        build(root, index, checkpoint)  # ...when a build commits generation 2, deleting index-1
        return read(path, mmap)

    monkeypatch.setattr(faiss_ops, "read", read_after_a_commit)
    opened = open_for_reading(index)
    found = [p for p, _ in neighbours(opened, xq, 100)[0]]
    assert not (index / "index-1.faiss").exists()
    assert opened.generation == 2 and sorted(found) == sorted(map(str, paths[1:]))

    loaded = open_for_reading(index)
    loaded.load_index(mmap=True)  # a query holding generation 2's vectors...
    paths[1].unlink()
    build(root, index, checkpoint)  # ...while a build removes a file: it is left out
    found = [p for p, _ in neighbours(loaded, xq, 100)[0]]
    assert sorted(found) == sorted(map(str, paths[2:]))
