"""Near-duplicates the tool makes itself, and a cheap check that two files show one picture.

``copies`` turns an image into the copies a photo collection gathers (resized by a
messenger, recompressed, cropped, brightened, a PNG of a JPEG): `retrieve duplicates`
calibrates its fc7 threshold on them. ``compare`` checks two images by their pixels,
tolerating exactly what copying does, so that a pair fc7 finds close can be verified before
it is called a duplicate: a similar scene is not a copy, and neither is the same scene a
moment later (a burst shot, a frame of a video) or an edited photo.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from . import evidence
from . import grain as grains
from .errors import NotAnImage
from .images import load_image
from .registration import MIN_SIDE, Box, locate, polish

COPY_KINDS = ("resized", "recompressed", "cropped", "brightened", "png of a jpeg")
RESIZE = 0.5  # a messenger's downscale
JPEG_QUALITY = 60  # a hard recompression
CROP = 0.04  # of each side
BRIGHTEN = 1.2
CHECK = 8  # the pixel check's version: `duplicates` redoes similarities saved by another
THUMB = 128  # pixels on the longer side of the picture the views are cut from (never enlarged)
SIGNATURE = 32  # pixels a side of the views the similarity is measured on
DIFF_SIZE = 96  # pixels a side of the views ``difference`` is measured on, at most
# A difference this large at ROUGH pixels a side (3 to a square) is not measured finer: the
# fine one was as large or larger on every pair of Fashion-MNIST's garments fc7 offered.
ROUGH, CLEARLY_DIFFERENT = 36, 0.75
# A whole-view match this close (and its difference this small) needs no search for a crop.
SAME_PICTURE, PLAINLY_ALIKE = 0.98, 0.1
SEARCH_FROM = 0.6  # alignments whose coarse views are less alike are not measured
POLISH_BELOW = 1.5  # a box whose difference is larger is not a misplaced copy's (at most 1.1)
RIVAL = 0.02  # the other alignment is measured too when it is this close (a page of text)
# Of the boxes the profiles suggest, those whose views correlate best are fitted a tone and
# compared (a tone's fit is most of a box's time; a copy's box correlates best as it is).
RANKED = 2
FAINT = 12.0  # grey levels (standard deviation at SIGNATURE pixels): a picture this faint
# or fainter is compared by its grain as well
# A copy turned a little (straightened, scanned askew) and cropped to its upright middle: a
# pair alike as a whole whose difference is this small but not plain is compared again with
# one picture turned by each of TURNS degrees (a turn misplaces a corner by a pixel or two at
# DIFF_SIZE pixels: the difference's tolerance is one).
TURNS = (1.5, -1.5, 0.75, -0.75)
TURNED_LIKE, TURN_BELOW = 0.9, 0.45
TURNED_FROM = 48  # pixels on the shorter side: a smaller picture's corner moves under one
# Such a pair is compared again with one picture's tone curved (x -> 255 (x / 255)^gamma for
# each of CURVES, the tone's gain and offset fitted on top): a copy's levels, curves, gamma or
# contrast changed bend the tone where the gain and offset are straight (gamma 0.8 leaves 0.24).
CURVES = (0.8, 1.25)
# A picture BLANK white (or black), each channel within a level of it, shows nothing of any
# picture but a blank one: clipping turns every light paper white. It is a copy only of a
# picture at least NEARLY_BLANK white (black) itself, a margin for JPEG and resampling.
BLANK, NEARLY_BLANK = 0.95, 0.9
# Two pictures flat at SIGNATURE pixels (evidence.SIMILARITY_FLOOR) show little but their
# colour: one is a copy of the other only if its mean grey level is at most FLAT_GAIN times the
# other's, or its distance from white is (a copy brightened by a quarter, or its gamma or
# contrast changed; no brighter: a plain grey half as bright again is another grey).
FLAT_GAIN = 1.3
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


@dataclass(frozen=True)
class Signature:
    """What ``compare`` compares of one image."""

    thumb: Image.Image  # RGB, at most THUMB pixels on the longer side, at least 1 on each
    aspect: float  # the file's own width / height
    full: np.ndarray  # (SIGNATURE, SIGNATURE, 3) float32 view of the whole picture
    size: tuple[int, int]  # width and height as decoded (a JPEG's shorter side: 256 at least)
    grain: grains.Grain | None = None  # of a picture that shows little at THUMB pixels
    extremes: tuple[float, float] = (0.0, 0.0)  # its thumbnail's shares of white and of black


def signature(source: str | os.PathLike | Image.Image) -> Signature:
    """An image decoded small (draft mode), for ``compare``; one that shows next to nothing
    at that size is decoded again larger for its grain."""
    img = (source if isinstance(source, Image.Image)
           else load_image(source, draft_size=2 * THUMB)).convert("RGB")
    w, h = img.size
    thumb = _thumbnail(img, THUMB)  # a small picture is not enlarged: no detail to add
    full = _view(thumb)
    grain, detailed = None, thumb
    if max(w, h) > 2 * THUMB and evidence.contrast(full) < FAINT ** 2:
        if not isinstance(source, Image.Image):
            img = load_image(source, draft_size=grains.SIDE).convert("RGB")
        grain, detailed = grains.grain(img), img
    return Signature(thumb, w / h, full, (w, h), grain, _extremes(detailed))


def _extremes(img: Image.Image) -> tuple[float, float]:
    """The shares of ``img``'s pixels white and black (each channel within a level of it), at
    the resolution it has: a thumbnail averages away the grain that keeps a paper from
    clipping."""
    pixels = np.asarray(img)
    step = max(1, min(img.size) // 512)  # a sample is enough
    pixels = pixels[::step, ::step]
    return float((pixels >= 254).all(axis=2).mean()), float((pixels <= 1).all(axis=2).mean())


@dataclass(frozen=True)
class Match:
    """How two images compare, by ``compare``."""

    similarity: float  # in [0, 1]: the pictures look the same (1), brightness and contrast aside
    difference: float  # 0 and up: how different the most different part of them is


@dataclass(frozen=True)
class _Aligned:
    """``x``'s whole picture taken as ``box`` of ``y``, and how alike the coarse views are
    once the tone is matched (``evidence``)."""

    x: Signature
    y: Signature
    box: Box
    similarity: float
    tone: evidence.Tone
    swapped: bool  # the tone brings y's view to x's (x's is the brighter)


def compare(a: Signature, b: Signature) -> Match:
    """Whether two images show one picture, and what is left over where they do (``upright``),
    one of them with its tone curved (CURVES) or turned a little (TURNS) where that may be why
    they differ: not for faint pictures (FAINT) nor small ones (TURNED_FROM), where a turn
    misplaces next to nothing and a curve is a gain. A blank picture (BLANK) is another one
    than a picture that is not nearly as blank, and a flat picture another than a flat one of
    another brightness (FLAT_GAIN)."""
    if _apart(a, b):
        return Match(0.0, float("inf"))
    m = upright(a, b)
    if (m.similarity >= TURNED_LIKE and PLAINLY_ALIKE < m.difference < TURN_BELOW
            and min(*a.size, *b.size) >= TURNED_FROM
            and min(evidence.contrast(a.full), evidence.contrast(b.full)) >= FAINT ** 2):
        others = itertools.chain((_curved(a, gamma) for gamma in CURVES),
                                 (_turned(a, degrees) for degrees in TURNS))
        for other in others:
            m = min(m, upright(other, b), key=lambda m: m.difference)
            if m.difference <= PLAINLY_ALIKE:
                break
    return m


def _apart(a: Signature, b: Signature) -> bool:
    """Whether one picture is blank and the other not nearly, or both are flat and their
    brightness is further apart than a copy's (FLAT_GAIN)."""
    if any(max(x, y) >= BLANK and min(x, y) < NEARLY_BLANK
           for x, y in zip(a.extremes, b.extremes)):
        return True
    floor = evidence.SIMILARITY_FLOOR ** 2
    if max(evidence.contrast(a.full), evidence.contrast(b.full)) >= floor:
        return False
    darker, brighter = sorted((float(a.full.mean()), float(b.full.mean())))
    return min(brighter / max(darker, 1.0), (255 - darker) / max(255 - brighter, 1.0)) > FLAT_GAIN


def _curved(s: Signature, gamma: float) -> Signature:
    """``s`` with its tone curved: each level x to 255 (x / 255)^gamma."""
    lut = [round(255 * (v / 255) ** gamma) for v in range(256)]
    thumb = s.thumb.point(lut * len(s.thumb.getbands()))
    return dataclasses.replace(s, thumb=thumb, full=_view(thumb))


def _turned(s: Signature, degrees: float) -> Signature:
    """``s`` turned by ``degrees`` and cropped to the largest upright box of its aspect that
    leaves out the corners, at its size."""
    w, h = s.thumb.size
    t = abs(np.tan(np.radians(degrees)))
    dx, dy = h * t / 2 + 0.5, w * t / 2 + 0.5
    thumb = s.thumb.rotate(degrees, Image.Resampling.BICUBIC).resize(
        (w, h), Image.Resampling.BICUBIC, box=(dx, dy, w - dx, h - dy))
    return dataclasses.replace(s, thumb=thumb, full=_view(thumb))


def upright(a: Signature, b: Signature) -> Match:
    """Whether two images show one picture, and what is left over where they do.

    One image is taken as the whole picture and the other as a box of it (a crop of any
    aspect, found by ``registration``), either way round. Once a copy's change of tone is
    undone, ``similarity`` says how much of the picture's variation at SIGNATURE pixels the
    other explains, a floor of what copying leaves counted in (a flat picture is alike to a
    copy of it, not to another colour), and ``difference`` is the worst of 12 x 12 squares
    of what differs beyond a pixel's misplacement, at the finer resolution both files have
    (at most DIFF_SIZE pixels), and, for faint pictures, in their grain (``grain``). A copy
    is alike everywhere; a photo with something painted in or moved is not, even when it
    looks the same as a whole."""
    same_shape = abs(np.log(a.aspect / b.aspect)) < 0.01
    results = []
    if same_shape:  # first the whole pictures
        whole = _aligned(a, b, (0, 0, *b.thumb.size))
        results.append((_measure(whole), whole))
    m = results[0][0] if results else None
    # Then the crops, unless plainly one picture, or a crop would have changed the size.
    if not (same_shape and (m.similarity >= SAME_PICTURE and m.difference <= PLAINLY_ALIKE
                            or a.size == b.size)):
        results += _crops(a, b, same_shape)
    # The alignment that leaves least over, among those that look alike at all.
    m, t = min(results, key=lambda r: (r[0].similarity < SEARCH_FROM, r[0].difference,
                                        -r[0].similarity))
    return _with_grain(m, t)


def _crops(a: Signature, b: Signature, same_shape: bool) -> list[tuple[Match, _Aligned]]:
    """Either picture as a box of the other, the box whose coarse views are most alike of
    those the profiles suggest; measured (polished first where that may help) when it is
    the better of the two or about as good (a page of text, alike shifted by a line)."""
    tried = []
    for x, y in ((a, b), (b, a)):
        boxes = [box for box in locate(np.asarray(x.thumb), np.asarray(y.thumb))
                 if not (same_shape and _whole(box, y))]  # the whole was measured
        if boxes:
            tried.append(max((_aligned(x, y, box, view) for box, view in _likeliest(x, y, boxes)),
                             key=lambda t: t.similarity))
    top = max([t.similarity for t in tried], default=0.0)
    out = []
    for t in tried:
        if t.similarity < max(SEARCH_FROM, top - RIVAL):
            out.append((Match(t.similarity, float("inf")), t))  # not alike: not measured
            continue
        m = _measure(t)
        if PLAINLY_ALIKE < m.difference < POLISH_BELOW and evidence.contrast(
                t.x.full) >= FAINT ** 2 / 4:  # worth moving the box a little
            t = _aligned(t.x, t.y, _polished(t))
            m = _measure(t)
        out.append((m, t))
    return out


def _likeliest(x: Signature, y: Signature, boxes: list[Box]) -> list[tuple[Box, np.ndarray]]:
    """The RANKED of ``boxes`` of ``y`` whose views correlate best with ``x``'s whole view,
    with their views."""
    views = [_view(y.thumb, box) for box in boxes]
    if len(boxes) <= RANKED:
        return list(zip(boxes, views))
    target = _normalised(x.full)
    best = np.argsort([-float(target @ _normalised(v)) for v in views])[:RANKED]
    return [(boxes[k], views[k]) for k in best]


def _whole(box: Box, y: Signature) -> bool:
    """Whether ``box`` is all of ``y``'s thumbnail, to half a pixel."""
    w, h = y.thumb.size
    return max(abs(box[0]), abs(box[1]), abs(box[2] - w), abs(box[3] - h)) < 0.5


def _aligned(x: Signature, y: Signature, box: Box, view: np.ndarray | None = None) -> _Aligned:
    view = _view(y.thumb, box) if view is None else view
    darker, brighter, swapped = evidence.ordered(x.full, view)
    tone = evidence.fit(darker, brighter, softly=min(*x.size, *y.size) > 2 * SIGNATURE)
    return _Aligned(x, y, box, evidence.similarity(tone(darker), brighter), tone, swapped)


def _measure(t: _Aligned) -> Match:
    """The Match of an alignment: its similarity, and its difference at the finer
    resolution both files have (at ROUGH pixels only, when it is plain there), a tone near
    white fitted again on the views it is measured on when they average the files' pixels
    (the coarser, the more: clipping shows differently)."""
    box = t.box
    scale = min((box[2] - box[0]) / t.y.thumb.width, (box[3] - box[1]) / t.y.thumb.height)
    detail = max(1, min(min(t.x.size), round(min(t.y.size) * scale)))  # what the coarser shows
    for size in (ROUGH, DIFF_SIZE):
        x, y = _detailed(t.x.thumb, None, detail, size), _detailed(t.y.thumb, box, detail, size)
        darker, brighter = (y, x) if t.swapped else (x, y)
        tone = evidence.refitted(t.tone, darker, brighter) if detail > size else t.tone
        difference = evidence.difference(tone(darker), brighter)
        if difference > CLEARLY_DIFFERENT:
            break
    return Match(t.similarity, difference)


def _thumbnail(img: Image.Image, longer: int) -> Image.Image:
    """``img`` with at most ``longer`` pixels on its longer side (never enlarged)."""
    w, h = img.size
    scale = min(1.0, longer / max(w, h))
    if scale == 1:
        return img
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                      Image.Resampling.LANCZOS, reducing_gap=2.0)


def _polished(t: _Aligned) -> Box:
    """``t``'s box moved a little where the coarse views correlate better."""
    target = _normalised(t.x.full)
    _, box = polish(lambda boxes: np.array([target @ _normalised(_view(t.y.thumb, tuple(b)))
                                            for b in boxes]),
                    t.box, t.y.thumb.size, float(target @ _normalised(_view(t.y.thumb, t.box))))
    return box


def _with_grain(m: Match, t: _Aligned) -> Match:
    """``m``, its difference raised to how much the grain of the pictures disagrees where
    both have a grain to compare (``grain``)."""
    x, y, box = t.x, t.y, t.box
    if x.grain is None or y.grain is None or not np.isfinite(m.difference):
        return m
    scale = (box[2] - box[0]) / y.thumb.width * y.grain.width / x.grain.width
    # A picture with no contrast gives the box no hold: its scale is known within a crop's.
    flat = min(evidence.contrast(x.full), evidence.contrast(y.full)) < evidence.SIMILARITY_FLOOR ** 2
    spread = 1 / MIN_SIDE if flat else grains.SCALE_STEP
    tone = (t.tone.gain, t.tone.offset, not t.swapped)  # x's levels to y's, or y's to x's
    return Match(m.similarity, max(m.difference, grains.difference(x.grain, y.grain, scale, spread,
                                                                   tone)))


def _normalised(view: np.ndarray) -> np.ndarray:
    """A view as a unit vector, each channel's mean taken off (for Pearson's correlation)."""
    v = (view - view.reshape(-1, 3).mean(axis=0)).reshape(-1)
    return v / max(float(np.sqrt(v @ v)), 1e-6)


def _detailed(img: Image.Image, box: Box | None, detail: int, size: int) -> np.ndarray:
    """``box`` of ``img`` at ``size`` pixels a side with no more than ``detail`` pixels'
    worth of detail (a picture with less is compared with the other's at its own)."""
    if detail >= size:
        return _view(img, box, size)
    small = img.resize((detail, detail), Image.Resampling.BOX, box=box)
    return _view(small, None, size)


UNREADABLE = Match(0.0, float("inf"))  # a pair of which one file cannot be decoded


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
