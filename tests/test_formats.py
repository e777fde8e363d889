"""Every format people keep, from real files written by each format's own library, through
the one decode, build-index, query, duplicates and serve's thumbnail and image routes."""

from __future__ import annotations

import io
import json
from functools import partial

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_checkpoint
from fastapi.testclient import TestClient
from formats_corpus import make_formats, photo, write_dng
from PIL import Image

from cli.app import BROWSER_TYPES, create_app
from cli.main import cli
from indexes.search.service import IndexService
from retrieval import formats
from retrieval.config import ExtractConfig
from retrieval.errors import NotAnImage
from retrieval.features import FeatureExtractor
from retrieval.images import BACKGROUND, image_size, load_image
from retrieval.walk import Walked, find_images

LOSSY = 12  # mean absolute error per channel (0-255) a lossy codec may leave on these pictures
COPIES = ("same.jpg", "same.heic", "same.avif", "same.webp")  # one picture in four formats
PAIR = ("IMG_0001.JPG", "IMG_0001.dng")  # a camera's RAW+JPEG
RENDERED = ("heic", "jpeg xl", "tiff", "dng")  # cases that browsers cannot show: sent as JPEG


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """(folder, cases): every format of formats_corpus, plus a RAW+JPEG pair and one picture
    saved in four formats (copies that `duplicates` must group)."""
    folder = tmp_path_factory.mktemp("formats") / "photos"
    cases = make_formats(folder)
    pair = photo(20)
    pair.save(folder / PAIR[0], quality=92)
    write_dng(folder / PAIR[1], pair)
    same = photo(30, size=(192, 144))
    for name in COPIES:
        same.save(folder / name, quality=95)
    return folder, cases


@pytest.fixture(scope="session")
def indexed(corpus, tmp_path_factory):
    """The corpus indexed once by the command line: (folder, cases, index, checkpoint, result)."""
    folder, cases = corpus
    root = tmp_path_factory.mktemp("formats-index")
    torch.manual_seed(0)
    ckpt = tiny_checkpoint(root / "tiny.pt")
    result = CliRunner().invoke(cli, ["build-index", str(folder), "--weights", str(ckpt),
                                      "--index", str(root / "idx"), "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    return folder, cases, root / "idx", ckpt, result


def test_every_format_decodes_upright_in_rgb_on_the_one_background(corpus):
    _, cases = corpus
    for case, c in cases.items():
        img = load_image(c.path)
        assert img.mode == "RGB", case
        if c.upright is None:  # a demosaic of noise: its size alone is known
            assert img.size == c.size, case
            continue
        assert img.size == c.upright.size, case  # a wrong turn swaps width and height
        assert sorted(image_size(c.path)) == sorted(img.size), case  # duplicates' keep-largest
        error = np.abs(np.asarray(img, float) - np.asarray(c.upright, float)).mean()
        assert error < LOSSY, (case, error)
    corner = load_image(cases["png logo 0"].path).getpixel((0, 0))
    assert corner == BACKGROUND  # transparent: the fixed colour, not white, not black


def test_large_heic_decodes_from_its_thumbnail_when_small_is_enough():
    big = io.BytesIO()
    photo(1, size=(256, 192)).save(big, "HEIF", quality=50, thumbnails=[64])
    assert load_image(io.BytesIO(big.getvalue()), draft_size=32).size == (64, 48)
    assert load_image(io.BytesIO(big.getvalue()), draft_size=100).size == (256, 192)


def test_a_missing_decoder_skips_the_file_naming_the_extra(corpus, monkeypatch, tmp_path):
    _, cases = corpus
    damaged = tmp_path / "damaged.heic"
    damaged.write_bytes(cases["heic, turned"].path.read_bytes()[:40])  # its header only
    with pytest.raises(NotAnImage, match="corrupt or truncated image"):
        load_image(damaged)
    monkeypatch.setitem(formats._registered, "heif", False)  # as if pillow-heif were absent
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i != "HEIF"])
    monkeypatch.setitem(formats._registered, "raw", False)
    for case, extra in [("heic, turned", "heif"), ("heic, no extension", "heif"),
                        ("dng with preview, turned", "raw")]:
        with pytest.raises(NotAnImage) as e:
            load_image(cases[case].path)
        assert e.value.reason.endswith(f"needs the {extra} extra: pip install 'retrieve[{extra}]'")


def test_the_walk_finds_every_format_and_takes_a_raw_jpeg_pair_once(corpus):
    folder, cases = corpus
    everything = {c.path for c in cases.values()} | {folder / n for n in COPIES + PAIR}
    walked = Walked()
    assert set(find_images([folder], walked=walked)) == everything - {folder / PAIR[1]}
    assert walked.paired == 1
    assert set(find_images([folder], selection=_raw("raw"))) == everything - {folder / PAIR[0]}
    assert set(find_images([folder], selection=_raw("both"))) == everything


def _raw(choice):
    from retrieval.walk import Selection

    return Selection(raw=choice)


def test_every_format_round_trips_through_build_query_duplicates_and_serve(indexed):
    folder, cases, idx, ckpt, built = indexed
    n = len(cases) + len(COPIES) + 1
    assert built.stdout.startswith(f"Indexed {n} images ({n} new, 0 changed, 0 removed, "
                                   "0 skipped) into ")
    assert "Not indexed: 1 files of RAW+JPEG pairs left out, each pair indexed as its JPEG " \
           "or HEIC (--raw)" in built.stderr
    runner = CliRunner()
    found = json.loads(runner.invoke(cli, ["query", str(folder), "--index", str(idx), "-k", "2",
                                           "--json"]).stdout)
    assert len(found["queries"]) == n
    near = {q["query"]: q["results"] for q in found["queries"]}
    for query, results in near.items():
        assert results[0]["path"] == query and results[0]["distance"] < 1e-3, query
    apart = _distance(ckpt, cases["png logo 0"].path, cases["png logo 1"].path)
    photos = _distance(ckpt, cases["heic, turned"].path, cases["avif, turned"].path)
    assert apart > 0.1 * photos, (apart, photos)  # two logos, two pictures (once 7e-6 apart)
    # Every pair of neighbours a candidate: the pixel check reads every file, and keeps all
    # but the copies apart (transparent logos on the one background among them).
    dups = json.loads(runner.invoke(cli, ["duplicates", "--index", str(idx), "--device", "cpu",
                                          "--json", "--workers", "0", "--threshold", "1e9"]).stdout)
    assert [sorted(p.rsplit("/", 1)[1] for p in g["paths"]) for g in dups["groups"]] == \
        [sorted(COPIES)]
    _check_serve(idx, cases)


def _distance(ckpt, a, b) -> float:
    extractor = FeatureExtractor.load(str(ckpt), config=ExtractConfig(2, 0, "cpu"))
    [(_, x, _)] = list(extractor.embed([str(a), str(b)]))
    return float(np.linalg.norm(x[0] - x[1]))


def _check_serve(idx, cases):
    """Every item's thumbnail is a JPEG; its image route sends the file itself where browsers
    show it, else a JPEG of the whole decoded picture."""
    service = IndexService(idx, partial(FeatureExtractor.load, config=ExtractConfig(1, 0, "cpu")))
    try:
        with TestClient(create_app(service)) as client:
            items = client.get("/api/items", params={"limit": 1000}).json()["items"]
            by_path = {it["path"]: it["id"] for it in items}
            for case, c in cases.items():
                item = by_path[str(c.path)]
                thumb = client.get(f"/api/items/{item}/thumbnail")
                assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
                assert Image.open(io.BytesIO(thumb.content)).format == "JPEG", case
                full = client.get(f"/api/items/{item}/image")
                assert full.status_code == 200, case
                if case.startswith(RENDERED):
                    assert full.headers["content-type"] == "image/jpeg", case
                    assert Image.open(io.BytesIO(full.content)).size == load_image(c.path).size
                else:
                    assert full.content == c.path.read_bytes(), case
                    assert full.headers["content-type"] in BROWSER_TYPES, case
    finally:
        service.close()
