"""The sketches `retrieve duplicates` finds candidates by beside fc7: a copy's is near its
original's, another picture's is not, and a flat picture's is no pattern at all."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

from indexes.duplicates.find import copies_of_copies
from indexes.duplicates.sketches import RADIUS, near_pairs
from retrieval.sketch import sketch

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


def test_the_copies_of_one_file_are_compared_with_each_other():
    accepted = {(1, 2): None, (1, 3): None, (4, 5): None}
    assert copies_of_copies(accepted, {(1, 2): 0.1, (1, 3): 0.2, (4, 5): 0.1}) == [(2, 3)]
    assert copies_of_copies(accepted, {(1, 2): 0.1, (1, 3): 0.2, (2, 3): 9.0, (4, 5): 0.1}) == []
    assert copies_of_copies(accepted, {}, most=1) == []  # 1 is alike to a crowd of two
