"""build-index and query on hostile files: one line per bad file, every good file indexed."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from cli.output import printable
from conftest import SMALL, draw_shape
from hostile import EXIF_ORIENTATION, make_hostile
from indexes.store.store import open_for_reading
from test_build_query import build, checkpoint, run  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory, checkpoint):  # noqa: F811
    """The hostile folder (plus good photos around it), built once for the module."""
    root = tmp_path_factory.mktemp("hostile")
    cases = make_hostile(root / "photos")
    for i in range(3):
        good = root / "photos" / "good" / f"{i}.png"
        good.parent.mkdir(exist_ok=True)
        draw_shape(i, size=SMALL, seed=40 + i).save(good)
        cases[f"good {i}"] = (good, "ok")
    errors = root / "errors.tsv"
    result = build(root / "photos", root / "idx", checkpoint, "--errors", errors)
    return root / "idx", cases, result, errors


def _ok(cases) -> set[str]:
    return {str(path) for path, expected in cases.values() if expected == "ok"}


def test_each_bad_file_is_one_line_and_every_good_file_is_indexed(hostile_index):
    index, cases, result, errors = hostile_index
    bad = {case: (str(p), why) for case, (p, why) in cases.items() if why != "ok"}
    assert result.stdout.startswith(
        f"Indexed {len(_ok(cases))} images ({len(_ok(cases))} new, 0 changed, 0 removed, "
        f"{len(bad)} skipped) into {index}")
    lines = result.stderr.splitlines()
    assert len(lines) == len(bad) and "Traceback" not in result.output
    for case, (path, why) in bad.items():
        assert sum(line.startswith(f"skipped {path}: {why}") for line in lines) == 1, case
    assert len(errors.read_text().splitlines()) == len(bad)
    store = open_for_reading(index)
    try:
        assert set(store.items()) == {os.fsencode(p) for p in _ok(cases)}
        assert store.load_index().ntotal == len(_ok(cases))
    finally:
        store.close()


def test_odd_names_come_back_one_line_each_and_as_valid_json(hostile_index):
    index, cases, _, _ = hostile_index
    n = len(_ok(cases))
    newline = cases["name with a newline"][0]
    text = run("query", newline, "--index", index, "-k", n).stdout
    lines = text.splitlines()
    assert lines[0] == printable(str(newline)) == str(newline).replace("\n", "\\n")
    assert len(lines) == 1 + n
    shown = {line.split(None, 2)[2] for line in lines[1:]}
    assert shown == {printable(p) for p in _ok(cases)}
    assert printable(str(cases["non-UTF-8 name"][0])).endswith("/caf\\xe9-latin1.jpg")
    doc = json.loads(run("query", newline, "--index", index, "-k", n, "--json").stdout)
    found = [r["path"] for r in doc["queries"][0]["results"]]
    assert doc["queries"][0]["query"] == str(newline) and set(found) == _ok(cases)
    assert os.fsencode(str(cases["non-UTF-8 name"][0])) in {os.fsencode(p) for p in found}


def test_duplicates_take_every_file_build_index_took(hostile_index):
    """A 1-pixel picture, a 10000x1 strip, a CMYK JPEG, an animated GIF, odd names: compared
    without a traceback; the copies among them (one drawing saved every way) grouped."""
    index, cases, _, _ = hostile_index
    r = run("duplicates", "--index", index, "--workers", "0", "--json", "--threshold", "1e9")
    assert "Traceback" not in r.output
    groups = json.loads(r.stdout)["groups"]
    grouped = {p for g in groups for p in g["paths"]}
    assert grouped <= _ok(cases)
    same_drawing = {str(cases[c][0]) for c in ("png named .jpg", "bmp", "webp", "cmyk jpeg")}
    assert any(same_drawing <= set(g["paths"]) for g in groups)
    assert str(cases["10000x1 strip"][0]) not in grouped  # nothing else looks like it
    planned = run("duplicates", "--index", index, "--workers", "0", "--json", "--threshold",
                  "1e9", "--trash")  # the plan reads each grouped file's picture again
    assert "Traceback" not in planned.output
    assert {f["path"] for g in json.loads(planned.stdout)["groups"] for f in g["files"]} == grouped


def test_querying_bad_files(hostile_index):
    index, cases, _, _ = hostile_index
    truncated = cases["truncated jpeg"][0]
    one = run("query", truncated, "--index", index, ok=False)
    assert one.exit_code == 1 and one.output.startswith(f"Error: {truncated}: corrupt or truncated")
    assert len(one.output.splitlines()) == 1
    bomb = run("query", cases["decompression bomb"][0], truncated, "--index", index, ok=False)
    assert bomb.exit_code == 1 and bomb.stdout == ""
    assert bomb.stderr.splitlines()[-1] == "Error: none of the query images could be read"


def test_a_folder_without_images_is_a_clear_error(hostile_index, checkpoint, tmp_path):  # noqa: F811
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no photos here")
    result = build(empty, tmp_path / "idx", checkpoint, ok=False)
    assert result.exit_code == 1
    assert result.output == f"Error: nothing could be indexed into {tmp_path / 'idx'}: no images found\n"
    unfinished = run("info", "--index", tmp_path / "idx", ok=False)
    assert unfinished.exit_code == 1 and "no build has finished yet" in unfinished.output
    query = run("query", empty, "--index", hostile_index[0], ok=False)
    assert query.exit_code == 1 and query.output == f"Error: no images in {empty}\n"


def _exif_png(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes())  # lossless: the upright pixels come back exactly
    return buf.getvalue()


def test_exif_rotated_photos_are_stored_as_the_upright_vector(checkpoint, tmp_path):  # noqa: F811
    upright = draw_shape(2, size=SMALL, seed=3).crop((0, 0, SMALL, 48))  # not square
    folder = tmp_path / "photos"
    folder.mkdir()
    upright.save(folder / "upright.png")
    sideways = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    for orientation, turn in sideways.items():
        (folder / f"rotated-{orientation}.png").write_bytes(_exif_png(upright.transpose(turn), orientation))
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.png")  # no EXIF tag
    build(folder, tmp_path / "idx", checkpoint)
    store = open_for_reading(tmp_path / "idx")
    try:
        ids = {os.path.basename(os.fsdecode(p)): i for p, (i, _, _) in store.items().items()}
        index = store.load_index()
        vector = {name: index.reconstruct(i) for name, i in ids.items()}
    finally:
        store.close()
    for orientation in sideways:
        np.testing.assert_array_equal(vector[f"rotated-{orientation}.png"], vector["upright.png"])
    assert not np.allclose(vector["sideways.png"], vector["upright.png"])  # the check can fail
    doc = json.loads(run("query", folder / "upright.png", "--index", tmp_path / "idx", "-k", 4,
                         "--json").stdout)
    found = [(os.path.basename(r["path"]), r["distance"]) for r in doc["queries"][0]["results"]]
    # one vector, stored three times: the same distance to the query, the same-image distance
    assert {name for name, _ in found[:3]} == {"upright.png", "rotated-6.png", "rotated-8.png"}
    assert found[0][1] == found[1][1] == found[2][1] < 1e-3 < found[3][1]
