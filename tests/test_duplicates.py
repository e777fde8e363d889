"""retrieve duplicates: planted copies grouped, similar scenes and chains kept apart, exact
copies as their own tier, the same groups from Flat and compressed indexes, output formats,
and an interrupted run that resumes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageEnhance

from cli.main import cli
from conftest import tiny_checkpoint
from indexes.config import MAX_DIFFERENCE, MIN_SIMILARITY, DuplicatesConfig
from indexes.duplicates import find as dups
from indexes.duplicates import groups as dup_groups
from indexes.duplicates import plans
from indexes.duplicates import report as dup_report
from indexes.store.store import open_for_reading
from retrieval import copies as copies_module
from retrieval.copies import Match, compare, copies, signature

FAST = ["--workers", "0", "--quiet"]
SIZE = (192, 144)


def photo(seed: int) -> Image.Image:
    """A smooth, colourful picture with some detail, like a photo at a small size."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
        SIZE, Image.Resampling.BICUBIC)
    detail = rng.normal(0, 18, (SIZE[1], SIZE[0], 3))
    return Image.fromarray(np.clip(np.asarray(low, float) + detail, 0, 255).astype(np.uint8))


def save_copies(img: Image.Image, folder, name: str) -> list[str]:
    """The original (JPEG) and five copies of it as files: their names."""
    w, h = img.size
    made = {f"{name}.jpg": (img, "JPEG", {"quality": 95}),
            f"{name}-small.jpg": (img.resize((w // 2, h // 2)), "JPEG", {"quality": 90}),
            f"{name}-q40.jpg": (img, "JPEG", {"quality": 40}),
            f"{name}-crop.jpg": (img.crop((6, 4, w, h - 5)), "JPEG", {"quality": 90}),
            f"{name}-bright.jpg": (ImageEnhance.Brightness(img).enhance(1.2), "JPEG",
                                   {"quality": 90}),
            f"{name}.png": (img, "PNG", {})}
    for file, (im, fmt, options) in made.items():
        im.save(folder / file, fmt, **options)
    return sorted(made)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """3 pictures with 5 copies each, 8 distinct pictures, a mirrored copy of one of them, a
    shifted view of it and an edit of a planted one (similar, not copies), one byte-identical
    file; (folder, planted groups, tiny checkpoint)."""
    root = tmp_path_factory.mktemp("dups")
    folder = root / "photos"
    folder.mkdir()
    planted = [save_copies(photo(seed), folder, f"p{seed}") for seed in range(3)]
    for seed in range(10, 18):
        photo(seed).save(folder / f"other-{seed}.jpg", quality=92)
    base = photo(10)
    base.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "other-10-mirrored.jpg")
    shifted = photo(18)  # the camera turned: the scene moved, and more of it came in
    shifted.paste(base.crop((40, 0, SIZE[0], SIZE[1])), (0, 0))
    shifted.save(folder / "other-10-shifted.jpg", quality=92)
    shutil.copy(folder / "other-11.jpg", folder / "other-11 (copy).jpg")
    edited = photo(0)  # p0 with something painted in: alike, but not a copy
    edited.paste(photo(7).crop((0, 0, 24, 18)), (40, 40))
    edited.save(folder / "p0-edited.jpg", quality=92)
    torch.manual_seed(0)  # module fixtures run before the autouse seeding of each test
    ckpt = tiny_checkpoint(root / "tiny.pt")
    return folder, planted, ckpt


def build(folder, index, ckpt, *extra):
    r = CliRunner().invoke(cli, ["build-index", str(folder), "--weights", str(ckpt), "--index",
                                 str(index), *FAST, *extra])
    assert r.exit_code == 0, r.output


def run(index, *extra):
    r = CliRunner().invoke(cli, ["duplicates", "--index", str(index), "--device", "cpu", *extra])
    assert r.exit_code == 0, r.output
    return r


def names(doc) -> list[tuple[str, list[str]]]:
    return sorted((g["tier"], sorted(p.rsplit("/", 1)[1] for p in g["paths"]))
                  for g in doc["groups"])


def fresh_copy(index, tmp_path, saved: bool = False):
    """A copy of the index without the duplicates' saved work (or with it: ``saved``), for a
    test that must redo that work or runs other settings, which replace it: the module's index
    keeps the default run's, which most tests ask for."""
    copy = tmp_path / "idx"
    shutil.copytree(index, copy)
    if not saved:
        (copy / dups.STATE).unlink(missing_ok=True)
    return copy


@pytest.fixture(scope="module")
def flat(collection, tmp_path_factory):
    folder, _, ckpt = collection
    index = tmp_path_factory.mktemp("flat") / "idx"
    build(folder, index, ckpt)
    return index


def test_planted_copies_are_grouped_and_similar_pictures_are_not(collection, flat):
    _, planted, _ = collection
    doc = json.loads(run(flat, "--json", "-q").stdout)
    assert names(doc) == sorted([("exact", ["other-11 (copy).jpg", "other-11.jpg"]),
                                 ("near", ["other-10-mirrored.jpg", "other-10.jpg"])]
                                + [("near", group) for group in planted])
    assert doc["threshold_source"] == "calibrated" and doc["threshold"] > 0
    for g in doc["groups"]:
        kept = g["members"][0]
        assert kept["width"] * kept["height"] == max(m["width"] * m["height"]
                                                     for m in g["members"])
        if g["tier"] == "near":
            if len(g["paths"]) == 6:  # a planted group
                assert g["paths"][0].endswith(".png")  # full size; the largest file of those
            assert all(m["similarity"] >= 0.9 and m["difference"] <= 0.25
                       for m in g["members"])
    again = json.loads(run(flat, "--json", "-q").stdout)
    assert again["threshold_source"] == "calibrated before" and names(again) == names(doc)


def test_an_edited_photo_is_alike_but_not_a_copy(collection, flat):
    """p0-edited passes fc7 and the correlation; the difference in one part keeps it out."""
    _, planted, _ = collection
    lenient = json.loads(run(flat, "--json", "-q", "--max-difference", "1e9").stdout)
    assert ("near", sorted(planted[0] + ["p0-edited.jpg"])) in names(lenient)
    doc = json.loads(run(flat, "--json", "-q").stdout)
    assert ("near", planted[0]) in names(doc)


@pytest.mark.parametrize("kind", [["--factory", "IVF2,SQ8"], ["--factory", "IVF2,SQ8", "--on-disk"]])
def test_a_compressed_index_gives_the_same_groups(kind, collection, flat, tmp_path):
    """The flat index rebuilt compressed in its folder: the same groups, from its own search,
    the pixels of the pairs the flat index's runs compared not compared again (kept by file)."""
    folder, _, ckpt = collection
    flat_doc = json.loads(run(flat, "--json", "-q").stdout)
    index = fresh_copy(flat, tmp_path, saved=True)
    build(folder, index, ckpt, *kind, "--rebuild")
    sq_doc = json.loads(run(index, "--json", "-q").stdout)
    assert names(sq_doc) == names(flat_doc) and sq_doc["threshold"] != flat_doc["threshold"]
    assert sq_doc["compared"] <= sq_doc["candidates"] // 10  # here none: the same candidates


def test_fc7_alone_is_what_the_pixel_check_is_for(flat, tmp_path):
    """At an infinite threshold every neighbour is a candidate: taken unverified, groups mix
    different pictures; the pixels still tell the copies from the rest."""
    def pictures(group):  # "p1-small.jpg" -> "p1", "other-12.jpg" -> "other-12"
        return {p.rsplit("/", 1)[1].split(".")[0].removesuffix("-mirrored")
                .removesuffix("-shifted").split("-")[0] for p in group["paths"]}

    default = names(json.loads(run(flat, "--json", "-q").stdout))
    index = fresh_copy(flat, tmp_path, saved=True)
    loose = json.loads(run(index, "--json", "-q", "--no-verify", "--threshold", "1e9").stdout)
    assert any(len(pictures(g)) > 1 for g in loose["groups"])
    strict = json.loads(run(index, "--json", "-q", "--threshold", "1e9").stdout)
    assert names(strict) == default


def test_a_chain_does_not_merge_what_is_not_alike(monkeypatch):
    """A ~ B and B ~ C by fc7, A the file to keep: A's group takes B, and C only when C's
    pixels match A's own."""
    resolution = {"/a": 30, "/b": 20, "/c": 10}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/a", 2: "/b", 3: "/c"}
    pairs = {(1, 2): 1.0, (2, 3): 1.5}
    match = Match(0.95, 0.1)
    groups = dup_groups.near_groups({pair: match for pair in pairs}, pairs, items)
    assert [[m.path for m in g.members] for g in groups] == [["/a", "/b"]]
    looked = []

    def second_look(kept, m):  # C's pixels compared with A's, fc7 never offered that pair
        looked.append((kept, m))
        return (2.5, match) if alike else None

    for alike, expected in ((False, [["/a", "/b"]]), (True, [["/a", "/b", "/c"]])):
        groups = dup_groups.near_groups({pair: match for pair in pairs}, pairs, items, second_look)
        assert [[m.path for m in g.members] for g in groups] == expected
    assert looked == [(1, 3), (1, 3)]
    pairs[1, 3] = 2.0  # with A ~ C as well, all three are copies of A
    groups = dup_groups.near_groups({pair: match for pair in pairs}, pairs, items)
    assert [[m.path for m in g.members] for g in groups] == [["/a", "/b", "/c"]]


def test_a_copy_joins_the_star_it_differs_least_from(monkeypatch):
    """C, a cropped copy of frame B, is also a crop of frame A (the camera moved): accepted
    with both, it goes to B's group, where it differs less, though A is kept first."""
    resolution = {"/a": 40, "/b": 30, "/c": 20, "/d": 10}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/a", 2: "/b", 3: "/c", 4: "/d"}
    accepted = {(1, 3): Match(0.99, 0.15), (2, 3): Match(0.99, 0.01), (2, 4): Match(0.99, 0.02)}
    pairs = {pair: 1.0 for pair in accepted}
    groups = dup_groups.near_groups(accepted, pairs, items)
    assert [[m.path for m in g.members] for g in groups] == [["/b", "/c", "/d"]]


def test_a_file_goes_with_what_it_matches_best_not_with_the_first_kept(monkeypatch):
    """W, a wallpaper, passes for P, a larger light paper, but matches its own copy V far
    better: W and V are one group, P and its copy Q another, though P is kept first."""
    resolution = {"/p": 40, "/q": 30, "/w": 20, "/v": 10}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/p", 2: "/q", 3: "/w", 4: "/v"}
    accepted = {(1, 2): Match(0.99, 0.06), (1, 3): Match(0.95, 0.19), (3, 4): Match(1.0, 0.0)}
    pairs = {pair: 1.0 for pair in accepted}
    groups = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None)
    assert [[m.path for m in g.members] for g in groups] == [["/p", "/q"], ["/w", "/v"]]


def test_a_crop_the_larger_frame_refuses_joins_the_group_around_the_photo(monkeypatch):
    """F, a photo in a frame, is kept first for its size and matches the photo O and its
    copies A and B; P, a portrait crop of O, matches O and A but not F, which shows all of O
    inside its frame. P joins the group, then kept by O, which matches every file of it: by
    their accepted pairs, or else by their pixels compared then. No file that does leaves P
    out."""
    resolution = {"/f": 50, "/o": 40, "/a": 30, "/b": 20, "/p": 10}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/f", 2: "/o", 3: "/a", 4: "/b", 5: "/p"}
    accepted = {(1, 2): Match(0.99, 0.05), (1, 3): Match(0.99, 0.05), (1, 4): Match(0.99, 0.05),
                (2, 3): Match(0.99, 0.01), (2, 4): Match(0.99, 0.01), (3, 4): Match(0.99, 0.01),
                (2, 5): Match(0.99, 0.02), (3, 5): Match(0.99, 0.02)}
    pairs = {**dict.fromkeys(accepted, 1.0), (1, 5): 1.0}  # F and P compared, and refused
    looks = {}

    def groups():
        return [[m.path for m in g.members] for g in dup_groups.near_groups(
            accepted, pairs, items, lambda kept, m: looks.get((kept, m)), shapes=lambda i: True)]

    assert groups() == [["/o", "/f", "/a", "/b", "/p"]]
    del accepted[2, 4], accepted[3, 4]  # B matches F alone
    assert groups() == [["/f", "/o", "/a", "/b"]]
    looks[2, 4] = (1.0, Match(0.99, 0.01))  # but O's pixels and B's match
    assert groups() == [["/o", "/f", "/a", "/b", "/p"]]


def test_a_copy_another_kept_file_reached_first_goes_back_to_its_original(monkeypatch):
    """C, a heavy JPEG of paper O, passes for T, another paper kept first, a little less well
    than for O: T's group takes C first and leaves O alone, then O takes C back. A copy M that
    matches a copy N of its own group more closely than it matches a file left alone (F)
    stays where it is."""
    resolution = {"/t": 40, "/o": 40, "/c": 20}
    sizes = {"/t": 900, "/o": 800, "/c": 100}  # T is kept first: its file is larger
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path],
                                                            sizes[path]))
    items = {1: "/t", 2: "/o", 3: "/c"}
    accepted = {(1, 3): Match(0.99, 0.095), (2, 3): Match(0.99, 0.07)}  # T and O: refused
    pairs = {pair: 1.0 for pair in accepted}
    groups = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None)
    assert [[m.path for m in g.members] for g in groups] == [["/o", "/c"]]

    resolution.update({"/k": 40, "/n": 30, "/m": 20, "/f": 10})
    sizes.update(dict.fromkeys(["/k", "/n", "/m", "/f"], 1))
    items = {1: "/k", 2: "/n", 3: "/m", 4: "/f"}
    accepted = {(1, 2): Match(0.99, 0.02), (1, 3): Match(0.99, 0.10), (2, 3): Match(0.99, 0.01),
                (3, 4): Match(0.99, 0.05)}
    pairs = {pair: 1.0 for pair in accepted}
    groups = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None)
    assert [[m.path for m in g.members] for g in groups] == [["/k", "/n", "/m"]]


def test_a_faint_copy_stays_with_its_larger_original_not_a_small_jpeg_it_matches_better(
        monkeypatch):
    """W, a light paper's copy brightened until nearly all white, is accepted with O, its
    original (0.04), and with J, a small JPEG at quality 50 of another paper (0.006), which O
    refused: W stays in O's group and J is alone. J takes W as before where W has shapes, or
    where O and J were never compared; and where W has shapes, O, left alone then, joins
    them, a copy of W's (``_gathered``)."""
    resolution, sizes = {"/o": 40, "/w": 36, "/j": 24}, {"/o": 900, "/w": 300, "/j": 100}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path],
                                                            sizes[path]))
    items = {1: "/o", 2: "/w", 3: "/j"}
    accepted = {(1, 2): Match(0.995, 0.04), (2, 3): Match(0.995, 0.006)}
    refused = {**dict.fromkeys(accepted, 0.04), (1, 3): 0.05}  # fc7 offered O and J

    def groups(pairs, faint):
        found = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None,
                                       lambda i: items[i] not in faint)
        return [[m.path for m in g.members] for g in found]

    assert groups(refused, faint={"/w"}) == [["/o", "/w"]]
    assert groups(refused, faint=()) == [["/w", "/o", "/j"]]
    assert groups(dict.fromkeys(accepted, 0.04), faint={"/w"}) == [["/w", "/j"]]


def test_a_plain_copy_as_close_to_two_kept_files_goes_to_the_one_of_its_brightness(monkeypatch):
    """A, a plain grey of level 198, is kept first; C, a copy of B (a grey of 243), matches
    A's pixels as closely as B's (a gain of 1.23 is a copy's): C goes to B's group, of its
    brightness. Not where it differs from B by more than AS_CLOSE beyond A, nor where the
    brightness of a file is unknown; nor where C has shapes, whose differences tell: it goes
    to the kept file it differs least from, however little."""
    resolution = {"/a": 50, "/b": 40, "/a2": 30, "/b2": 20, "/c": 10}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/a", 2: "/b", 3: "/a2", 4: "/b2", 5: "/c"}
    level = {"/a": 198.0, "/a2": 198.0, "/b": 243.0, "/b2": 243.0, "/c": 243.0}

    def groups(c_from_a, c_from_b, known=level, shaped=()):
        accepted = {(1, 3): Match(1.0, 0.0), (2, 4): Match(1.0, 0.0),
                    (1, 5): Match(1.0, c_from_a), (2, 5): Match(1.0, c_from_b)}
        pairs = {**dict.fromkeys(accepted, 0.05), (1, 2): 0.05}  # A and B refused each other
        found = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None,
                                       lambda i: items[i] in shaped, lambda i: known.get(items[i]))
        return [[m.path for m in g.members] for g in found]

    with_a, with_b = [["/a", "/a2", "/c"], ["/b", "/b2"]], [["/a", "/a2"], ["/b", "/b2", "/c"]]
    assert groups(0.0, 0.004) == with_b
    assert groups(0.0, dup_groups.AS_CLOSE + 0.004) == with_a
    assert groups(0.0, 0.004, known={}) == with_a
    assert groups(0.0, 0.004, shaped={"/c"}) == with_a
    assert groups(0.004, 0.0, shaped={"/c"}) == with_b


def test_another_pictures_copies_all_matched_by_the_kept_file_are_a_group_of_their_own(
        monkeypatch):
    """G, a paper of a 32-pixel grid, passes for H, one of a 16-pixel grid, and so do their
    copies G2 and H2, at 0.17 to 0.19: H and H2 match each other far better, and are a group of
    their own. A copy of the kept file that differs from it as much (O, P: 0.11 from B, the
    kept file brightened) but little from another copy of it (R) stays in its group."""
    resolution = {"/g": 40, "/g2": 30, "/h": 20, "/h2": 10}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/g", 2: "/g2", 3: "/h", 4: "/h2"}
    accepted = {(1, 2): Match(0.99, 0.02), (3, 4): Match(0.99, 0.01),
                (1, 3): Match(0.99, 0.17), (1, 4): Match(0.99, 0.18), (2, 3): Match(0.99, 0.18),
                (2, 4): Match(0.99, 0.19)}
    pairs = {pair: 1.0 for pair in accepted}
    groups = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None)
    assert [[m.path for m in g.members] for g in groups] == [["/g", "/g2"], ["/h", "/h2"]]

    resolution.update({"/b": 40, "/o": 30, "/p": 20, "/r": 10})
    items = {1: "/b", 2: "/o", 3: "/p", 4: "/r"}
    accepted = {(1, 2): Match(0.99, 0.11), (1, 3): Match(0.99, 0.11), (2, 3): Match(1.0, 0.0),
                (1, 4): Match(0.99, 0.01), (2, 4): Match(0.99, 0.02), (3, 4): Match(0.99, 0.02)}
    pairs = {pair: 1.0 for pair in accepted}
    groups = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None)
    assert [[m.path for m in g.members] for g in groups] == [["/b", "/o", "/p", "/r"]]


def test_a_letterboxed_copy_kept_first_joins_the_originals_group_where_its_pixels_say_so(
        monkeypatch):
    """L, a letterboxed copy, is kept first for its size and takes B, a bordered copy, that
    fc7 offered with it; O, the original, keeps its other copies. O's pixels match L's and
    B's: one group, kept O. Not where O does not match one of them, nor where a kept file is
    faint (a paper's match is no evidence to join on)."""
    resolution = {"/l": 50, "/o": 40, "/b": 35, "/m1": 30, "/m2": 20, "/m3": 10}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/l", 2: "/o", 3: "/b", 4: "/m1", 5: "/m2", 6: "/m3"}
    accepted = {(1, 3): Match(0.99, 0.02), (2, 4): Match(0.99, 0.01), (2, 5): Match(0.99, 0.01),
                (2, 6): Match(0.99, 0.01), (3, 4): Match(0.99, 0.15)}
    pairs = {pair: 1.0 for pair in accepted}
    looked = {(2, 1): (2.0, Match(0.99, 0.05)), (2, 3): (2.5, Match(0.99, 0.08))}
    split = [["/l", "/b"], ["/o", "/m1", "/m2", "/m3"]]

    def groups(look, faint=()):
        found = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: look.get((kept, m)),
                                       lambda i: items[i] not in faint)
        return sorted([m.path for m in g.members] for g in found)

    assert groups(looked) == [["/o", "/m1", "/m2", "/m3", "/l", "/b"]]
    assert groups({(2, 1): looked[2, 1]}) == split  # B's pixels do not match O's
    assert groups(looked, faint={"/l"}) == split
    assert groups(looked, faint={"/o"}) == split
    assert sorted([m.path for m in g.members] for g in dup_groups.near_groups(
        accepted, pairs, items, lambda kept, m: looked.get((kept, m)))) == split  # no shapes told


def test_two_stars_are_one_around_a_file_that_matches_every_file_of_both(monkeypatch):
    """L, a letterboxed screenshot, is kept first for its size; W, a watermarked copy, is
    refused with it (bars and a mark), and its own star takes G, a grey copy that matches W a
    little better than the original O. L cannot take W, but O matches all of them (N, a noisy
    copy, too): one group, kept O. Not where O does not match W either, nor where O is
    faint."""
    resolution = {"/l": 50, "/o": 40, "/w": 30, "/g": 30, "/n": 30}
    monkeypatch.setattr(dup_groups, "_facts", lambda path: (resolution[path], resolution[path], 1))
    items = {1: "/l", 2: "/o", 3: "/w", 4: "/g", 5: "/n"}
    accepted = {(1, 2): Match(0.99, 0.09), (1, 4): Match(0.99, 0.09), (1, 5): Match(0.99, 0.09),
                (2, 3): Match(0.99, 0.004), (2, 4): Match(0.99, 0.001), (2, 5): Match(0.99, 0.03),
                (3, 4): Match(0.99, 0.0)}
    pairs = {pair: 1.0 for pair in accepted}

    def groups(accepted, faint=()):
        found = dup_groups.near_groups(accepted, pairs, items, lambda kept, m: None,
                                       lambda i: items[i] not in faint)
        return sorted([g.members[0].path, *sorted(m.path for m in g.members[1:])]
                      for g in found)  # the kept file first

    assert groups(accepted) == [["/o", "/g", "/l", "/n", "/w"]]
    split = [["/g", "/w"], ["/l", "/n", "/o"]]
    assert groups(accepted, faint={"/o"}) == split
    assert groups({pair: m for pair, m in accepted.items() if pair != (2, 3)}) == split


def test_outputs_parse(flat, tmp_path):
    r = run(flat, "--csv", tmp_path / "g.csv", "--html", tmp_path / "g.html",
            "--sheet", tmp_path / "g.png")
    text_groups = r.stdout.strip().split("\n\n")
    assert len(text_groups) == 5 and text_groups[0].startswith("exact copies (2 files):")
    assert sum(b.startswith("near-duplicates (6 files):") for b in text_groups) == 3
    assert sum(b.startswith("near-duplicates (2 files):") for b in text_groups) == 1
    assert all(b.splitlines()[1].lstrip().startswith("keep  ") for b in text_groups)
    assert r.stderr.startswith("Found 5 groups (1 of exact copies) among 30 images in ")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert len(rows) == 2 + 3 * 6 + 2 and sum(int(r["kept"]) for r in rows) == 5
    page = (tmp_path / "g.html").read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == len(rows)
    with Image.open(tmp_path / "g.png") as sheet:
        assert sheet.format == "PNG" and sheet.size[0] > sheet.size[1] > 0


def test_work_saved_by_an_older_version_is_redone_not_misread(flat, tmp_path):
    import sqlite3

    index = fresh_copy(flat, tmp_path)
    old = sqlite3.connect(index / dups.STATE)  # schema 2: the pixel check's work kept by run
    old.execute("CREATE TABLE checked (run TEXT, a INTEGER, b INTEGER, similarity REAL, "
                "difference REAL, PRIMARY KEY (run, a, b))")
    old.execute("INSERT INTO checked VALUES ('0:1.0:16:None:check28', 1, 2, 1.0, 0.0)")
    old.execute("PRAGMA user_version = 2")
    old.commit()
    old.close()
    doc = json.loads(run(index, "--json", "-q").stdout)
    assert names(doc) == names(json.loads(run(flat, "--json", "-q").stdout))


def test_pairs_compared_and_pictures_weighed_are_kept_by_file_through_settings_and_changes(
        collection, monkeypatch, tmp_path):
    """The pixel check's work is saved by the two files compared: another threshold, a file
    added to the index (its next generation) or a file changed compare only the pairs not
    compared before; a plan looks at whether a file is faint once; another version of the
    check forgets both."""
    source, planted, ckpt = collection
    folder, index = tmp_path / "photos", tmp_path / "idx"
    folder.mkdir()
    for name in [*planted[0][:4], "other-12.jpg", "other-13.jpg"]:
        shutil.copy(source / name, folder / name)
    compared = []
    real = copies_module.compare
    monkeypatch.setattr(copies_module, "compare", lambda a, b: compared.append(
        {a.source.rsplit("/", 1)[1], b.source.rsplit("/", 1)[1]}) or real(a, b))

    def grouped(threshold="1e9"):  # every other file a candidate
        compared.clear()
        return names(json.loads(run(index, "--json", "-q", "--threshold", threshold).stdout))

    build(folder, index, ckpt)
    assert grouped() == [("near", sorted(planted[0][:4]))] and len(compared) == 15
    assert grouped("1e8") == grouped() == [("near", sorted(planted[0][:4]))]
    assert compared == []

    shutil.copy(source / planted[0][4], folder / planted[0][4])
    build(folder, index, ckpt)
    assert grouped() == [("near", sorted(planted[0][:5]))]
    assert len(compared) == 6 and all(planted[0][4] in pair for pair in compared)
    said = run(index, "--json", "--threshold", "1e9")  # the summary line says what was saved
    assert json.loads(said.stdout)["compared"] == 0
    assert "candidate pairs (0 compared now, the others' pixels saved by an earlier run)" in (
        said.stderr)

    changed = planted[0][1]  # a copy saved again, another copy of the picture
    with Image.open(source / planted[0][0]) as img:
        img.save(folder / changed, quality=60)
    build(folder, index, ckpt)
    assert grouped() == [("near", sorted(planted[0][:5]))]
    assert len(compared) == 6 and all(changed in pair for pair in compared)

    looked = []  # a plan asks whether each near copy is faint, once for the index
    real_faint = copies_module.shows_next_to_nothing
    monkeypatch.setattr(copies_module, "shows_next_to_nothing",
                        lambda path: looked.append(path) or real_faint(path))
    for times in (5, 0):
        looked.clear()
        plan = json.loads(run(index, "--json", "-q", "--trash", "--threshold", "1e9").stdout)
        assert [f["action"] for g in plan["groups"] for f in g["files"]] == ["keep"] + 4 * ["trash"]
        assert len(looked) == times

    def saved():  # pairs compared, files weighed, files sketched
        state = dups.State(index)
        try:
            return tuple(state.db.execute(f"SELECT COUNT({what}) FROM {table}").fetchone()[0]
                         for what, table in (("*", "checked"), ("faint", "files"),
                                             ("*", "sketches")))
        finally:
            state.close()

    assert saved() == (21, 5, 7)  # the pairs of 7 files; the group's 5 files weighed
    away = tmp_path / "away.jpg"
    (folder / changed).rename(away)  # unreadable a while (a drive not mounted): kept
    assert grouped() == [("near", sorted(set(planted[0][:5]) - {changed}))]
    away.rename(folder / changed)
    assert grouped() == [("near", sorted(planted[0][:5]))] and compared == []
    (folder / "other-13.jpg").unlink()  # no longer indexed: its pairs and sketch go
    build(folder, index, ckpt)
    assert grouped() == [("near", sorted(planted[0][:5]))] and compared == []
    assert saved() == (15, 5, 6)
    monkeypatch.setattr(dups, "CHECK", dups.CHECK + 1)  # another version of the check
    assert saved() == (0, 0, 6)


def test_runs_at_once_on_one_index_neither_fail_nor_lose_what_they_found(flat, tmp_path):
    """The page's search and the command line's on one index at once: a run that saves a
    batch another saved meanwhile goes on, and one whose saved search another threshold's run
    forgets meanwhile keeps what it found."""
    import sqlite3

    threshold = json.loads(run(flat, "--json", "-q").stdout)["threshold"]
    index = fresh_copy(flat, tmp_path, saved=True)  # its pairs compared: quick runs
    store = open_for_reading(index)
    config = DuplicatesConfig(threshold=threshold)

    def searched_again():  # its search to do again: batches to save
        with sqlite3.connect(index / dups.STATE) as db:
            db.execute("DELETE FROM searched")

    def seen(report):
        return names(dup_report.to_json(report)), report.candidates

    searched_again()
    alone = seen(dups.find_duplicates(store, config))
    others = []

    def meanwhile(stage, done, total):
        if stage == "searching" and not others:  # before this run's first batch
            others.append(dups.find_duplicates(open_for_reading(index), config))
        elif stage == "searching" and done == total:  # its batches saved, then forgotten
            others.append(dups.find_duplicates(open_for_reading(index),
                                               DuplicatesConfig(threshold=threshold * 1.001)))

    searched_again()
    found = dups.find_duplicates(store, config, progress=meanwhile)
    store.close()
    assert [seen(r) for r in (found, *others)] == [alone] * 3 and len(alone[0]) == 5


def test_a_one_image_index_has_no_duplicates(collection, tmp_path):
    _, planted, ckpt = collection
    folder = tmp_path / "one"
    folder.mkdir()
    photo(1).save(folder / "only.jpg")
    build(folder, tmp_path / "idx", ckpt)
    r = run(tmp_path / "idx", "--json")
    assert json.loads(r.stdout)["groups"] == []
    assert r.stderr.startswith("Found 0 groups (0 of exact copies) among 1 images")


def test_an_interrupted_run_resumes_without_redoing_its_work(flat, monkeypatch, tmp_path):
    store = open_for_reading(fresh_copy(flat, tmp_path))
    config = DuplicatesConfig(threshold=1e9, k=8)  # 8 neighbours of each a candidate: ~150 pairs
    calls, interrupted, batches = [], [], []
    real, real_batch = copies_module.compare, dup_groups.compare_files

    def counted(a, b):
        calls.append(1)
        if len(calls) == 120 and not interrupted:  # in the third batch of 50
            interrupted.append(1)
            raise KeyboardInterrupt
        return real(a, b)

    def recorded(files):  # the pairs of files of each batch compared to its end
        found = real_batch(files)
        batches.append(set(files))
        return found

    monkeypatch.setattr(dup_groups, "VERIFY_BATCH", 50)
    monkeypatch.setattr(copies_module, "compare", counted)
    monkeypatch.setattr(dup_groups, "compare_files", recorded)
    with pytest.raises(KeyboardInterrupt):
        dups.find_duplicates(store, config)
    first, saved = len(calls), set().union(*batches)
    calls.clear()
    batches.clear()
    told = []  # (stage, done, total) as the run tells them (the page's progress)
    report = dups.find_duplicates(store, config, progress=lambda *said: told.append(said))
    assert len(report.groups) == 5
    assert report.candidates > 120  # the interruption came in the third batch of 50
    assert first == 120 and len(saved) == 100
    redone = set().union(*batches)  # and pairs fc7 did not offer, compared for a chain
    assert not redone & saved and len(calls) == len(redone) >= report.candidates - 100
    stages = [s for s, _, _ in told]
    assert sorted(set(stages), key=stages.index) == ["hashing", "searching", "sketching",
                                                          "verifying"]
    verifying = [(done, total) for s, done, total in told if s == "verifying"]
    total = verifying[0][1]  # then the copies of copies, a verification of their own
    assert verifying[:2] == [(0, total), (100, total)]  # saved: done
    ends = [(done, t) for done, t in verifying if done == t]  # each verification's end
    assert ends[0] == (total, total) and sum(t for _, t in ends) == report.candidates
    assert all(0 <= done <= total for _, done, total in told)
    store.close()


def test_the_exact_copies_of_a_file_in_a_near_group_join_it(flat, tmp_path):
    """fc7 alone and a generous threshold put other-11.jpg in a group of near-duplicates: its
    byte copy joins it there, not in a group of its own (a file in two groups would be planned
    twice, and the plan refused)."""
    index = fresh_copy(flat, tmp_path, saved=True)
    doc = json.loads(run(index, "--json", "-q", "--no-verify", "--threshold", "1e9").stdout)
    paths = [p for g in doc["groups"] for p in g["paths"]]
    assert len(paths) == len(set(paths))
    group = next(g for g in doc["groups"] if any(p.endswith("/other-11.jpg") for p in g["paths"]))
    by_name = {m["path"].rsplit("/", 1)[1]: m for m in group["members"]}
    # the one searched (the first by path) is in the group, the other joins it
    original, copy = by_name["other-11 (copy).jpg"], by_name["other-11.jpg"]
    assert group["tier"] == "near" and copy["same_bytes_as"] == original["path"]
    assert original["same_bytes_as"] is None
    assert (copy["distance"], copy["similarity"]) == (original["distance"], original["similarity"])
    run(index, "--no-verify", "--threshold", "1e9", "--hardlink", "--plan", tmp_path / "p.json")
    plan = plans.read(str(tmp_path / "p.json"))  # no file in it twice
    reasons = {f["path"]: f["reason"] for g in plan["groups"] for f in g["files"]
               if f["action"] != "keep"}
    assert reasons.get(copy["path"], "kept").startswith(
        ("kept", f"same bytes as {original['path']}"))


def test_pixels_compared_in_worker_processes_give_the_same_groups(flat, monkeypatch, tmp_path):
    index = fresh_copy(flat, tmp_path)
    store = open_for_reading(index)
    monkeypatch.setattr(dup_groups, "VERIFY_BATCH", 50)  # several batches: the workers share them
    monkeypatch.setattr(dup_groups, "POOL_FROM", 0)  # workers however few the pairs
    reports = []
    for workers in (0, 2):
        (index / dups.STATE).unlink(missing_ok=True)
        reports.append(dups.find_duplicates(store, DuplicatesConfig(threshold=1e9, k=6,
                                                                    workers=workers)))
    store.close()
    (here, pooled) = reports
    assert pooled.candidates == here.candidates > 100 and pooled.verified == here.verified
    assert ([[(m.path, m.similarity, m.difference) for m in g.members] for g in pooled.groups]
            == [[(m.path, m.similarity, m.difference) for m in g.members] for g in here.groups])


def test_copies_match_their_original_and_other_pictures_do_not():
    img = photo(5)
    own = signature(img)
    w, h = img.size
    made = copies(img) + [
        ("cropped off two sides", img.crop((round(w * .03), round(h * .05), w, h))),
        ("brightened until it clips", ImageEnhance.Brightness(img).enhance(1.6))]
    for kind, copy in made:
        match = compare(own, signature(copy))
        assert match.similarity > 0.95 and match.difference < 0.25, kind
        other_way = compare(signature(copy), own)
        assert (other_way.similarity, other_way.difference) == pytest.approx(
            (match.similarity, match.difference), abs=1e-4)
    assert compare(own, signature(photo(6))).similarity < 0.5
    def accepted(m: Match) -> bool:
        return m.similarity >= MIN_SIMILARITY and m.difference <= MAX_DIFFERENCE

    for turn in (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90):  # either way round
        turned = signature(img.transpose(turn))
        assert accepted(compare(own, turned)) and accepted(compare(turned, own)), turn
    for turn in Image.Transpose:  # another picture, however turned
        assert not accepted(compare(own, signature(photo(6).transpose(turn)))), turn


def test_the_same_picture_with_something_changed_is_alike_but_not_a_copy():
    """A burst shot or an edit: alike as a whole (fc7 and the correlation say so), different in
    one part, which the difference sees."""
    for seed in (0, 5):
        img = photo(seed)
        edited = img.copy()
        edited.paste(photo(7).crop((0, 0, 24, 18)), (40, 40))  # 1/8 of each side changed
        match = compare(signature(img), signature(edited))
        assert match.similarity > MIN_SIMILARITY and match.difference > MAX_DIFFERENCE, seed


def test_query_max_distance_finds_the_copies_of_an_image(collection, flat):
    folder, planted, _ = collection
    threshold = json.loads(run(flat, "--json", "-q").stdout)["threshold"]
    r = CliRunner().invoke(cli, ["query", str(folder / "p1.png"), "--index", str(flat), "-k", "20",
                                 "--max-distance", str(threshold), "--json"])
    assert r.exit_code == 0, r.output
    found = [x["path"].rsplit("/", 1)[1] for x in json.loads(r.stdout)["queries"][0]["results"]]
    assert set(planted[1]) <= set(found)  # its five copies and itself, and fc7 look-alikes
    assert all(x["distance"] <= threshold for x in json.loads(r.stdout)["queries"][0]["results"])


def test_serve_answers_duplicates_and_max_distance(collection, flat, monkeypatch):
    from functools import partial

    from fastapi.testclient import TestClient

    from cli.app import create_app
    from indexes.search.service import IndexService
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    folder, _, _ = collection
    cli_doc = json.loads(run(flat, "--json", "-q").stdout)
    service = IndexService(flat, partial(FeatureExtractor.load,
                                         config=ExtractConfig(1, 0, "cpu")))
    try:
        with TestClient(create_app(service)) as c:
            doc = c.get("/api/duplicates").json()
            assert names(doc) == names(cli_doc) and doc["threshold"] == cli_doc["threshold"]
            kept = doc["groups"][1]["members"][0]
            near = c.get(f"/api/items/{kept['id']}/neighbours",
                         params={"k": 20, "max_distance": doc["threshold"]}).json()
            assert all(r["distance"] <= doc["threshold"] for r in near["results"])
            assert {m["id"] for m in doc["groups"][1]["members"][1:]} <= {
                r["id"] for r in near["results"]}  # its copies; itself is no answer to it
            assert kept["id"] not in {r["id"] for r in near["results"]}
            state = dups.State(flat)  # the search weighed each near copy for the page's plans
            weighed = {os.fsdecode(path) for path, in state.db.execute(
                "SELECT path FROM files WHERE faint IS NOT NULL")}
            state.close()
            assert {p for g in doc["groups"] if g["tier"] == "near" for p in g["paths"]} <= weighed
            monkeypatch.setattr(copies_module, "shows_next_to_nothing", None)  # not asked again
            page = c.get("/api/duplicates/groups").json()
            assert [len(g["files"]) for g in page["groups"]] == [len(g["paths"])
                                                                  for g in doc["groups"]]
    finally:
        service.close()
