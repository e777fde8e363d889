"""Near-duplicates the tool makes itself, and a cheap check that two files show one picture.

``copies`` turns an image into the copies a photo collection gathers (resized by a
messenger, recompressed, cropped, brightened, a PNG of a JPEG): `retrieve duplicates`
calibrates its fc7 threshold on them. ``compare`` checks two images by their pixels,
tolerating exactly those changes, so that a pair fc7 finds close can be verified before it is
called a duplicate: a similar scene is not a copy, and neither is the same scene a moment
later (a burst shot, a frame of a video) or an edited photo.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .errors import NotAnImage
from .images import load_image

COPY_KINDS = ("resized", "recompressed", "cropped", "brightened", "png of a jpeg")
RESIZE = 0.5  # a messenger's downscale
JPEG_QUALITY = 60  # a hard recompression
CROP = 0.04  # of each side
BRIGHTEN = 1.2
CHECK = 2  # the pixel check's version: `duplicates` redoes similarities saved by another
SIGNATURE = 32  # pixels a side of the views the pixel check correlates
THUMB = 128  # pixels on the longer side of the picture the views are cut from
# The pixel check looks for the crop one image is of the other: a box of the first image's
# aspect, at least MIN_SCALE of the largest such box in the second, anywhere in it; a coarse
# grid of scales and positions, then a pattern search from the best.
MIN_SCALE = 0.8
GRID_SCALES = (1.0, 0.95, 0.9, 0.85, 0.8)
GRID_PLACES = (0.0, 0.5, 1.0)  # of the margin the box leaves, across and down
STEPS = (0.025, 0.25)  # the pattern search's first steps in scale and in place, halved 4 times
REFINES = 4
# How far the search goes, so that most pairs (different pictures) cost little: the grid
# only when a centred crop correlates GLANCE (the benchmark's copies: 0.65 and more, and 2/3
# of the pairs fc7 offered there below 0.5), the pattern search only from REFINE_FROM (it
# added 0.14 at most to the grid's best, and a copy needs MIN_SIMILARITY, 0.9, in the end).
GLANCE = 0.5
REFINE_FROM = 0.7
# A brightened copy loses what clips at white: the other image is brightened as much (and
# clipped) before the last comparison, at these gains.
GAINS = (1.1, 1.2, 1.3, 1.4, 1.6)
SAME_PICTURE = 0.98  # a whole-view match this close needs no search for a crop
DIFF_SIZE = 96  # pixels a side of the views ``difference`` is measured on
DIFF_BLOCK = 8  # pixels a side of the squares it looks at: 1/12 of the picture's side
SIGNATURES = 4096  # decoded images a process keeps for the pairs to come (about 50 KB each)


def _encoded(img: Image.Image, fmt: str, **options) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    buf.seek(0)
    return load_image(buf)


def copies(img: Image.Image) -> list[tuple[str, Image.Image]]:
    """The copies of COPY_KINDS of an RGB image, each decoded as a reader of its file would."""
    w, h = img.size
    dx, dy = round(w * CROP), round(h * CROP)
    jpeg = _encoded(img, "JPEG", quality=85)
    return [
        ("resized", img.resize((max(1, round(w * RESIZE)), max(1, round(h * RESIZE))),
                               Image.Resampling.LANCZOS)),
        ("recompressed", _encoded(img, "JPEG", quality=JPEG_QUALITY)),
        ("cropped", img.crop((dx, dy, w - dx, h - dy)) if w > 2 * dx and h > 2 * dy else img),
        ("brightened", ImageEnhance.Brightness(img).enhance(BRIGHTEN)),
        ("png of a jpeg", jpeg),  # PNG keeps the pixels: no need to write one
    ]


Box = tuple[float, float, float, float]  # left, top, right, bottom in a thumbnail's pixels


@dataclass(frozen=True)
class Signature:
    """What ``compare`` compares of one image."""

    thumb: Image.Image  # RGB, THUMB pixels on the longer side
    aspect: float  # the file's own width / height
    full: np.ndarray  # (SIGNATURE, SIGNATURE, 3) float32 view of the whole picture


def signature(source: str | os.PathLike | Image.Image) -> Signature:
    """An image decoded small (draft mode), for ``compare``."""
    img = (source if isinstance(source, Image.Image)
           else load_image(source, draft_size=2 * THUMB))
    aspect = img.width / img.height
    thumb = ImageOps.contain(img.convert("RGB"), (THUMB, THUMB))
    return Signature(thumb, aspect, _view(thumb))


@dataclass(frozen=True)
class Match:
    """How two images compare, by ``compare``."""

    similarity: float  # in [-1, 1]: the pictures look the same (1), brightness and contrast aside
    difference: float  # 0 and up: how different the most different part of them is


def compare(a: Signature, b: Signature) -> Match:
    """Whether two images show one picture, and what is left over where they do.

    ``similarity`` is the best normalised correlation of one image's whole view with a crop of
    the other of the same aspect, either way round. ``difference`` is then taken on that crop
    at DIFF_SIZE pixels: the worst DIFF_BLOCK square of what differs beyond a pixel's
    misplacement, after brightness and contrast are matched, in units of the picture's
    contrast. A copy is alike everywhere (the benchmark's copies: 0.17 at most); a photo with
    something painted in or moved is not (the tests' edit: 0.35 and 0.90), even when it looks
    the same as a whole (similarity 0.98 and more). Pairs that look nothing alike (below
    GLANCE) are not measured: their difference is infinite."""
    whole = _correlation(a.full, b.full)
    if whole >= SAME_PICTURE and abs(np.log(a.aspect / b.aspect)) < 0.01:
        best, gain = _best_gain(a.full, b.full, whole)
        return Match(best, _difference(a, b, (0, 0, *b.thumb.size), gain))
    one, other = _best_crop(a, b), _best_crop(b, a)
    (best, gain, box), (x, y) = (one, (a, b)) if one[0] >= other[0] else (other, (b, a))
    if box is None or best < GLANCE:
        return Match(best, np.inf)  # not the same picture: what differs is not measured
    return Match(best, _difference(x, y, box, gain))


UNREADABLE = Match(-1.0, float("inf"))  # a pair of which one file cannot be decoded


def compare_files(pairs: Sequence[tuple[str, str]]) -> list[Match]:
    """``compare`` for pairs of files (UNREADABLE where one cannot be decoded), each file
    decoded once while it is among the SIGNATURES this process used last (and unchanged)."""
    out = []
    for a, b in pairs:
        sa, sb = _file_signature(a), _file_signature(b)
        out.append(UNREADABLE if sa is None or sb is None else compare(sa, sb))
    return out


def _file_signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _signature_of(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=SIGNATURES)
def _signature_of(path: str, size: int, mtime_ns: int) -> Signature | None:
    try:
        return signature(path)
    except NotAnImage:
        return None


def _view(img: Image.Image, box: Box | None = None, size: int = SIGNATURE) -> np.ndarray:
    """``box`` of ``img`` (all of it by default) resized to ``size`` x ``size``, float32."""
    small = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(small, dtype=np.float32)


def _normalised(view: np.ndarray) -> np.ndarray:
    """A view as a unit vector, each channel's mean taken off: brightness and contrast do not
    count, colours do (a red circle is not a blue one)."""
    x = view.reshape(-1, 3)
    x = (x - x.mean(axis=0)).reshape(-1)
    return x / max(float(np.sqrt(x @ x)), 1e-6)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation of two views (see ``_normalised``)."""
    return float(_normalised(x) @ _normalised(y))


def _best_crop(a: Signature, b: Signature) -> tuple[float, float, Box | None]:
    """The best correlation of ``a``'s whole view with a box of ``b`` of ``a``'s aspect, its
    gain (``_best_gain``) and the box; (-1, 1, None) when no such box of at least MIN_SCALE
    fits: ``a`` is not a small crop of ``b``."""
    W, H = b.thumb.size
    # The largest box of a's aspect in b; the boxes tried are it at a scale from ``low`` (where
    # it covers MIN_SCALE^2 of b) to 1, placed anywhere in b.
    bw, bh = (W, W / a.aspect) if W / a.aspect <= H else (H * a.aspect, H)
    low = MIN_SCALE * np.sqrt(W * H / (bw * bh))
    if low > 1:
        return -1.0, 1.0, None

    def box(z: float, fx: float, fy: float) -> Box:
        w, h = bw * z, bh * z
        x, y = (W - w) * fx, (H - h) * fy
        return x, y, x + w, y + h

    whole = _normalised(a.full)

    def score(p: tuple[float, float, float]) -> float:
        return float(whole @ _normalised(_view(b.thumb, box(*p))))

    scales = [z for z in GRID_SCALES if z >= low]
    best, at = max((score((z, 0.5, 0.5)), (z, 0.5, 0.5)) for z in scales)  # centred crops
    if best < GLANCE:
        return best, 1.0, box(*at)
    best, at = max([(best, at)] + [(score(p), p) for p in itertools.product(
        scales, GRID_PLACES, GRID_PLACES) if p[1:] != (0.5, 0.5)])
    if best < REFINE_FROM:
        return best, 1.0, box(*at)
    steps = STEPS
    for _ in range(REFINES):
        moved = True
        while moved:
            moved = False
            for d, step in ((0, steps[0]), (1, steps[1]), (2, steps[1])):
                for sign in (-1, 1):
                    p = list(at)
                    p[d] += sign * step
                    if not (low <= p[0] <= 1 and 0 <= p[1] <= 1 and 0 <= p[2] <= 1):
                        continue
                    s = score(tuple(p))
                    if s > best:
                        best, at, moved = s, tuple(p), True
        steps = (steps[0] / 2, steps[1] / 2)
    return (*_best_gain(a.full, _view(b.thumb, box(*at)), best), box(*at))


def _best_gain(x: np.ndarray, y: np.ndarray, plain: float) -> tuple[float, float]:
    """A brightened copy lost what clipped at white: the best correlation of two views with
    either brightened as much and clipped, and its gain (>1: ``x`` brightened, <1: ``y``;
    1 and ``plain``, their plain correlation, when that is best)."""
    best, gain = plain, 1.0
    for g in GAINS:
        for s, which in ((_correlation(np.minimum(x * g, 255), y), g),
                         (_correlation(x, np.minimum(y * g, 255)), 1 / g)):
            if s > best:
                best, gain = s, which
    return best, gain


def _difference(a: Signature, b: Signature, box: Box, gain: float) -> float:
    """The worst DIFF_BLOCK square of ``a``'s whole view against ``box`` of ``b``, either
    brightened by ``gain`` (``_best_gain``), each way round (``_beyond``)."""
    x, y = _view(a.thumb, size=DIFF_SIZE), _view(b.thumb, box, DIFF_SIZE)
    if gain > 1:
        x = np.minimum(x * gain, 255)
    elif gain < 1:
        y = np.minimum(y / gain, 255)
    n = DIFF_SIZE // DIFF_BLOCK
    beyond = np.maximum(_beyond(x, y), _beyond(y, x))
    return float(beyond.reshape(n, DIFF_BLOCK, n, DIFF_BLOCK).mean(axis=(1, 3)).max())


def _beyond(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """How far each pixel of ``y`` falls outside the range of ``x`` around it (3 x 3, so that
    resampling and a pixel's misplacement do not count), once each channel of ``x`` is fitted
    to ``y`` (least squares), over the standard deviation of ``y``; (h, w)."""
    mx, my = x.mean(axis=(0, 1)), y.mean(axis=(0, 1))
    slope = (((x - mx) * (y - my)).sum(axis=(0, 1))
             / np.maximum(((x - mx) ** 2).sum(axis=(0, 1)), 1e-6))
    h, w = y.shape[:2]
    fitted = np.pad((x - mx) * slope + my, ((1, 1), (1, 1), (0, 0)), mode="edge")
    around = np.stack([fitted[i:i + h, j:j + w] for i in range(3) for j in range(3)])
    out = np.maximum(0, np.maximum(y - around.max(axis=0), around.min(axis=0) - y))
    return out.mean(axis=2) / max(float(y.std()), 1.0)
