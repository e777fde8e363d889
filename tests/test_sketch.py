"""The sketches `retrieve duplicates` finds candidates by beside fc7: a copy's is near its
original's, another picture's is not, and a flat picture's is no pattern at all."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from indexes.duplicates.find import copies_of_copies
from indexes.duplicates.sketches import RADIUS, near_pairs
from retrieval.sketch import DIMENSION, inner_sketch, sketch

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
    xb = np.zeros((4, 3), np.float32)
    xb[1, 0], xb[2, 0], xb[3, 0] = RADIUS / 2, 5 * RADIUS, 5 * RADIUS + RADIUS / 4
    assert near_pairs(np.array([10, 11, 12, 13]), xb, k=2) == {(10, 11), (12, 13)}


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


def test_the_copies_of_one_file_are_compared_with_each_other():
    accepted = {(1, 2): None, (1, 3): None, (4, 5): None}
    assert copies_of_copies(accepted, {(1, 2): 0.1, (1, 3): 0.2, (4, 5): 0.1}) == [(2, 3)]
    assert copies_of_copies(accepted, {(1, 2): 0.1, (1, 3): 0.2, (2, 3): 9.0, (4, 5): 0.1}) == []
    assert copies_of_copies(accepted, {}, most=1) == []  # 1 is alike to a crowd of two
