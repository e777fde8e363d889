"""The sketches `retrieve duplicates` finds candidates by beside fc7: a copy's is near its
original's, another picture's is not, and a flat picture's is no pattern at all."""

from __future__ import annotations

import faiss
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from indexes.config import DuplicatesConfig
from indexes.duplicates.find import copies_of_copies, crowded_out
from indexes.duplicates.sketches import RADIUS, near_pairs, sketch_files
from retrieval.sketch import DIMENSION, framed_sketch, inner_sketch, sketch

SIZE = (320, 240)


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(
        SIZE, Image.Resampling.BICUBIC)
    return Image.fromarray(np.clip(np.asarray(low, float) + rng.normal(0, 8, (240, 320, 3)),
                                   0, 255).astype(np.uint8))


def test_a_copy_sketches_like_its_original_and_another_picture_does_not():
    img = picture(0)
    w, h = img.size
    copies = [img.resize((w * 2 // 5, h * 2 // 5), Image.Resampling.LANCZOS),
              ImageEnhance.Brightness(img).enhance(1.25),  # what random fc7 weights may miss
              ImageEnhance.Contrast(img).enhance(0.8),
              img.crop((8, 6, w - 8, h - 6))]
    own = sketch(img)
    for copy in copies:
        assert np.linalg.norm(sketch(copy) - own) < RADIUS
    assert min(np.linalg.norm(sketch(picture(seed)) - own) for seed in range(1, 6)) > RADIUS
    flat = sketch(Image.new("RGB", SIZE, (90, 120, 200)))
    assert np.abs(flat[:-3]).max() < 1e-3  # no pattern; its colour, brightness divided out
    assert np.allclose(flat[-3:], sketch(Image.new("RGB", SIZE, (72, 96, 160)))[-3:], atol=1e-2)


def test_sketches_offer_the_nearest_within_the_radius():
    xb = np.zeros((4, DIMENSION), np.float32)
    xb[1, 0], xb[2, 0], xb[3, 0] = RADIUS / 2, 5 * RADIUS, 5 * RADIUS + RADIUS / 4
    assert near_pairs(np.array([10, 11, 12, 13]), xb, k=2) == {(10, 11), (12, 13)}


def test_a_copy_whose_colours_changed_is_offered_by_its_pattern():
    """A grey or a sepia copy has its original's pattern but not its colour: a sketch is
    searched among the patterns alone too; another picture's pattern is not offered."""
    def photo(seed: int) -> Image.Image:  # its channels go together, as a photo's do
        light = np.asarray(picture(seed).convert("L"), float)[..., None]
        tint = np.random.default_rng(seed).uniform(0.6, 1.0, 3)
        return Image.fromarray(np.clip(light * tint + 20, 0, 255).astype(np.uint8))

    pictures = [photo(seed) for seed in range(6)]
    for copy in (pictures[0].convert("L").convert("RGB"),
                 ImageOps.colorize(pictures[0].convert("L"), (40, 20, 5), (255, 225, 160))):
        xb = np.stack([sketch(p) for p in [copy] + pictures])
        ids = np.arange(len(xb))
        assert np.linalg.norm(xb[0] - xb[1]) > RADIUS  # the colour is too far
        pairs = near_pairs(ids, xb, k=4)
        assert (0, 1) in pairs and not any(0 in pair for pair in pairs - {(0, 1)})
    assert near_pairs(ids[1:], xb[1:], k=4) == set()  # other pictures' patterns are far


def test_a_mirrored_or_turned_copy_is_offered_by_its_pattern_so_moved():
    """A copy mirrored or turned a quarter sketches as its original would so moved: its
    sketch is searched for that way too; another picture's is not offered."""
    pictures = [picture(seed) for seed in range(6)]
    turned = [pictures[0].transpose(t) for t in (Image.Transpose.FLIP_LEFT_RIGHT,
                                                 Image.Transpose.ROTATE_90)]
    xb = np.stack([sketch(p) for p in turned + pictures])
    assert min(np.linalg.norm(xb[:2] - xb[2], axis=1)) > RADIUS  # upright, too far
    assert near_pairs(np.arange(len(xb)), xb, k=4) == {(0, 2), (1, 2), (0, 1)}


def window(seed: int) -> Image.Image:
    """A screenshot's layout: a title bar, a side bar and lines of words (dark bars)."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", SIZE, (246, 246, 248))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 320, 12), fill=(58, 60, 66))
    draw.rectangle((0, 12, 60, 240), fill=(225, 226, 230))
    for y in range(24, 230, 8):
        x = 70
        while x < 310:
            w = int(rng.integers(8, 30))
            draw.rectangle((x, y, min(x + w, 310), y + 3), fill=(40, 40, 50))
            x += w + 5
    return img


def test_a_screenshot_cropped_on_every_side_is_offered_by_its_inner_sketch():
    """A crop of 5% a side moves a layout's sharp edges too far for the sketch: the original's
    inner sketch is what offers the pair."""
    img = window(0)
    w, h = img.size
    crop = ImageEnhance.Brightness(img.crop((16, 12, w - 16, h - 12))).enhance(1.1)
    pictures = [img, crop] + [window(seed) for seed in range(1, 8)]
    xb = np.stack([np.concatenate([sketch(p), inner_sketch(p)]) for p in pictures])
    ids = np.arange(len(pictures))
    assert np.linalg.norm(sketch(crop) - sketch(img)) > RADIUS
    assert (0, 1) not in near_pairs(ids, xb[:, :DIMENSION], k=4)
    assert (0, 1) in near_pairs(ids, xb, k=4)


def test_a_copy_letterboxed_or_given_a_border_is_offered_by_its_framed_sketch(tmp_path):
    """A picture posted as a black square or given a white border sketches as bars and a
    smaller picture, far from its original; inside them it sketches as its original does.
    Another picture's is not offered, and a picture without bars has no framed sketch."""
    def tiles(seed: int) -> Image.Image:  # sharp edges, which a margin moves far
        rng = np.random.default_rng(seed)
        return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
            SIZE, Image.Resampling.NEAREST)

    img = tiles(0)
    side = max(img.size)
    square = Image.new("RGB", (side, side))
    square.paste(img, (0, (side - img.height) // 2))
    bordered = ImageOps.expand(img, border=side // 10, fill="white")  # a mat
    files = []
    for n, shown in enumerate([img, square, bordered] + [tiles(seed) for seed in range(1, 8)]):
        files.append(str(tmp_path / f"{n}.jpg"))
        shown.save(files[-1], quality=90)
    xb = np.stack(sketch_files(files))
    ids = np.arange(len(files))
    assert min(np.linalg.norm(xb[1:3, :DIMENSION] - xb[0, :DIMENSION], axis=1)) > RADIUS
    assert not {(0, 1), (0, 2)} & near_pairs(ids, xb[:, :2 * DIMENSION], k=4)
    assert {(0, 1), (0, 2), (1, 2)} <= near_pairs(ids, xb, k=4)
    assert not any(pair for pair in near_pairs(ids, xb, k=4) if pair[1] >= 3 and pair[0] < 3)
    assert np.isnan(xb[0, 2 * DIMENSION:]).all() and framed_sketch(img) is None


def test_the_copies_of_one_file_are_compared_with_each_other():
    accepted = {(1, 2): None, (1, 3): None, (4, 5): None}
    assert copies_of_copies(accepted, {(1, 2): 0.1, (1, 3): 0.2, (4, 5): 0.1}) == [(2, 3)]
    assert copies_of_copies(accepted, {(1, 2): 0.1, (1, 3): 0.2, (2, 3): 9.0, (4, 5): 0.1}) == []
    assert copies_of_copies(accepted, {}, most=1) == []  # 1 is alike to a crowd of two


class _Store:
    """What ``crowded_out`` reads of a store: its index (ids 0 to n-1 of ``xb``)."""

    def __init__(self, xb: np.ndarray) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatL2(xb.shape[1]))
        self.index.add_with_ids(xb.astype(np.float32), np.arange(len(xb), dtype=np.int64))

    def load_index(self, mmap: bool = False):
        return self.index


def test_a_copy_crowded_out_of_its_nearest_is_searched_among_the_pictures_with_copies():
    """A crop of one page among the copies of other pages alike: its k nearest are those, all
    within the threshold and none its copy; searched again among one file of each picture
    with copies, it meets its own page."""
    at = {0: 0.0, 1: 0.10, 2: 0.11, 3: 0.12, 4: 0.13, 5: 0.2, 6: 0.21, 7: 0.05, 8: 0.06, 9: 0.5}
    xb = np.zeros((10, 2), np.float32)
    for i, x in at.items():
        xb[i, 0] = x
    xb[7, 1] = xb[8, 1] = 3.0  # far from everything
    # 1-2 and 3-4: other pages and their copies; 5-6: the crop's own page and a copy of it;
    # 9: a picture with copies beyond the threshold.
    accepted = {(1, 2): None, (3, 4): None, (5, 6): None, (7, 8): None, (9, 10): None}
    known = {(0, 1): 0.10, (0, 2): 0.11, (0, 3): 0.12, **{pair: 0.01 for pair in accepted}}
    config = DuplicatesConfig(k=3)
    found = crowded_out(_Store(xb), config, 0.3, {0, 1, 7}, accepted, known)
    assert set(found) == {(0, 5)}
    assert abs(found[0, 5] - 0.2) < 1e-6
    assert crowded_out(_Store(xb), config, 0.3, {1, 7}, accepted, known) == {}  # copies found
