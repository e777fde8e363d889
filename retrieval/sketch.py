"""A picture's sketch: a few numbers that a copy of it keeps whatever the network makes of the
copy, for finding copies' candidates without fc7 (`retrieve duplicates`' second source).

The sketch is the middle of the picture, grey, at SKETCH x SKETCH squares, its mean taken off and
its contrast brought to one (a floor keeps a flat picture's sketch near nothing), beside the
picture's colour with its brightness divided out. A resized, recompressed, brightened or darkened
copy, one with more contrast, or a crop of a few percent, has nearly the same sketch; fc7 with
weights that were not trained for it may put such a copy far away. Sketches are close for many
pictures that are not copies as well (every flat picture of one colour): they only offer pairs,
the pixel check decides.

A copy letterboxed or given a border (a feed's square post, a framed print) sketches as bars
and a smaller picture; inside them (its framed sketch) it sketches as its original does.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .copies import inside_bars

SKETCH = 8  # squares a side
MIDDLE = 0.8  # of each side: a crop of 5% a side moves the middle's squares by a fifth of one
# A picture's inner sketch is what its middle would be were it cropped CROPPED of each side (a
# crop's sketch is its original's inner one): a picture whose sketch is a layout of sharp edges
# (a screenshot, a page), or whose pattern is faint, has a crop's sketch too far from its own.
CROPPED = 0.05
FLOOR = 2.0  # grey levels (standard deviation of the squares): flatter is no pattern at all
COLOUR_WEIGHT = 2.0  # a colour 10% off grey weighs as much as a fifth of the pattern
PATTERN = SKETCH * SKETCH  # the pattern's numbers, then the colour's three
DIMENSION = PATTERN + 3


def sketch(img: Image.Image, middle: float = MIDDLE) -> np.ndarray:
    """The sketch of an RGB image: float32 (DIMENSION,), the pattern of ``middle`` of it (of
    each side) of unit length at most and the colour (each channel's mean over the grey mean,
    less one)."""
    w, h = img.size
    margin = (1 - middle) / 2
    box = (w * margin, h * margin, w * (1 - margin), h * (1 - margin))
    squares = np.asarray(img.resize((SKETCH, SKETCH), Image.Resampling.BOX, box=box),
                         dtype=np.float64)  # (SKETCH, SKETCH, 3)
    grey = squares.mean(axis=2)
    pattern = grey - grey.mean()
    pattern /= np.sqrt((pattern ** 2).sum() + FLOOR ** 2 * pattern.size)
    means = squares.reshape(-1, 3).mean(axis=0)
    colour = means / max(float(means.mean()), 1.0) - 1
    return np.concatenate([pattern.reshape(-1), COLOUR_WEIGHT * colour]).astype(np.float32)


def inner_sketch(img: Image.Image) -> np.ndarray:
    """The sketch ``img`` would have cropped by CROPPED of each side."""
    return sketch(img, MIDDLE * (1 - 2 * CROPPED))


def framed_sketch(img: Image.Image) -> np.ndarray | None:
    """The sketch of ``img`` inside its bars or frame (``copies.inside_bars``), None where it
    has none."""
    box = inside_bars(img)
    return None if box is None else sketch(img.crop(box))
