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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, ImageEnhance

from . import evidence
from . import grain as grains
from .errors import NotAnImage
from .images import load_image
from .registration import MIN_SIDE, WHOLE_SIDE_BELOW, Box, locate, polish

T = TypeVar("T")  # what a cache of files gives
COPY_KINDS = ("resized", "recompressed", "cropped", "brightened", "png of a jpeg")
RESIZE = 0.5  # a messenger's downscale
JPEG_QUALITY = 60  # a hard recompression
CROP = 0.04  # of each side
BRIGHTEN = 1.2
CHECK = 33  # the pixel check's version: `duplicates` redoes similarities saved by another
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
# A faint picture whose fine detail (grain.Grain.strength) is this strong shows text (the kinds
# set's pages 31 to 41 grey levels, a page of 22-pixel letters at 150 dpi 38, of 15-pixel
# letters at 100 dpi 28: kept for review): its copies are told by it. A weaker one's are not
# for certain (``shows_next_to_nothing``): of the files grouped with another picture's kept
# file, every pair in the kinds set has a side of 0.9 or less, and in the kinds set with the
# still other copies six pairs of letterboxed, bordered and greyed papers of 13 to 40 have a
# side of 23 or less.
TEXT_DETAIL = 30.0
# A copy stretched to another shape (resized without its aspect kept) stretches its grain: a
# texture's correlation peak is a percent wide in scale (``grain``), and the benchmark's faint
# papers squeezed to 85% of their height correlated 0.12 to 0.15 with their originals' grain
# at one scale. Where the whole pictures' shapes say their scales across and down differ by
# this much (log), the grain is compared brought back to one shape as well.
STRETCHED = 0.02
# A grain turned back a way that says its picture was stretched more than this (across / down)
# is no copy's: a 4:3 picture turned by a quarter is 1.78 so, a 16:9 copy of a 4:3 one 1.33.
STRETCHED_MOST = 1.4
# A copy turned a little (straightened, scanned askew) and cropped to its upright middle: a
# pair alike as a whole whose difference is this small but not plain is compared again with
# one picture turned by each of TURNS degrees (a turn misplaces a corner by a pixel or two at
# DIFF_SIZE pixels: the difference's tolerance is one). Photos straightened by 3 degrees are
# 0.4 to 0.98 from their originals, and so are neighbouring frames of a turning camera: turns
# of 3 degrees up to 1.0 apart found 28 of the 74 such photos more, and accepted 31 pairs of
# the similar scenes' frames.
TURNS = (1.5, -1.5, 0.75, -0.75)
TURNED_LIKE, TURN_BELOW = 0.9, 0.45
TURNED_FROM = 48  # pixels on the shorter side: a smaller picture's corner moves under one
# Such a pair is compared again with either picture's tone curved (x -> 255 (x / 255)^gamma for
# each of CURVES, the tone's gain and offset fitted on top): a copy's levels, curves, gamma or
# contrast changed bend the tone where the gain and offset are straight (gamma 0.8 leaves 0.24).
CURVES = (0.8, 1.25)
# A picture BLANK white (or black), each channel within a level of it, shows nothing of any
# picture but a blank one: clipping turns every light paper white. It is a copy only of a
# picture at least NEARLY_BLANK white (black) itself, a margin for JPEG and resampling.
BLANK, NEARLY_BLANK = 0.95, 0.9
# Nor of one that keeps what a blank picture lacks: pixels that no brightening a flat picture's
# copy is given (FLAT_GAIN, the levels' distance from white taken as far for black) takes to
# white, a ruled page's lines (131 grey levels at 1,024 pixels, 0.3% of its middle; its
# thumbnail averages them to 245, which a gain of 1.1 clips). A BLANK picture is another than
# one that, brought to the resolution its white was measured at, keeps at least MARKS of its
# middle (``_middle``: a crop may cut the rest off) so, and more than twice its own share not
# white.
MARKS = 0.001
# Two pictures flat at SIGNATURE pixels (evidence.SIMILARITY_FLOOR) show little but their
# colour: one is a copy of the other only if its mean grey level is at most FLAT_GAIN times the
# other's, or its distance from white is (a copy brightened by a quarter, or its gamma or
# contrast changed; no brighter: a plain grey half as bright again is another grey).
FLAT_GAIN = 1.3
# A copy brightened until its background went white (a screenshot, a scan's paper): where a
# view's pixel averages text and background, the background clipped and the text did not,
# and no tone of the views fits (0.19 to 0.23 for a screenshot brightened by a quarter, 0.4
# and up cropped as well, where the registration goes astray too). A pair alike as a whole
# but not plainly, of which one picture is at least WHITE_FROM white at its thumbnail and the
# other less so, is compared again with the darker brightened as such a copy was, at its own
# pixels (decoded with WHITENED_DECODE pixels on the shorter side at least, twice that on the
# longer at most): by the gain that takes as large a share of its pixels to white as is white
# of the other at its own pixels, within the box they share (0.03 and 0.13 to 0.17 on those
# screenshots).
WHITE_FROM, WHITENED_BELOW = 0.2, 1.0
WHITENED_DECODE = 1024
WHITENABLE = 8  # files a process keeps decoded so (12 MB each at most): a picture's pairs come
# together
WHITE_MARGIN = 0.05  # of the pixels: a JPEG's ringing about text keeps some of its background
# A JPEG moves the mean of each of its 8 x 8 blocks by up to half the step its DC coefficient
# (8 times the mean) is quantized by: a file's ``noise``, the largest first value of its
# tables over 16 grey levels (2.7 at quality 20, 1.1 at 50, 0.13 at 95), all of the error
# where its blocks are plain (a colour, a paper, a sky: a flat colour at quality 20 differed
# from its original by 0.2 and more). A pixel of one file's views may fall outside the range
# of the other's around it by the two files' noise together (a PNG's, a WebP's or an image's
# in memory: 0), and a file's white and black are as much darker and brighter (a white page
# at quality 20 is 253).
# Text, a screenshot's or a page's, is a pixel or less at the views: two screenshots of one
# window with other text in it are alike there (0.16 to 0.20 where a copy brightened and
# cropped is 0.13 to 0.17), and so are papers whose grain differs in its finest lines. A pair
# alike as a whole and not clearly different (FINE_BELOW), even plainly alike, whose pictures
# have FINE_DETAIL of their contrast in detail a thumbnail does not show (``_detail``:
# screenshots 0.27, pages 0.46, most faint textures; 3 of the benchmark's 71 photos, 0.20 to
# 0.35) is measured again on views FINE times finer, from thumbnails FINE times larger, as it
# was changed (whitened or curved), its box found again there or the coarse one, whichever
# leaves less, and turned there (TURNS) when it then differs more than it did coarse: a turn
# misplaces FINE times more there (a pair that was turned coarse keeps that figure). The
# screenshots' copies: 0.01 to 0.14, the other screenshots 0.24 to 0.36.
FINE, FINE_BELOW, FINE_DETAIL = 3, 0.45, 0.2
# A copy converted to a wider colour space and shown without its profile (a photo exported as
# Adobe RGB or Display P3, read as sRGB) has duller colours, each channel bent its own way:
# no tone of the views fits a colourful picture (0.2 to 0.7, similarity down to 0.7 for
# saturated greens). A pair whose views are alike at all (SEARCH_FROM) and differ more than
# plainly but not clearly (CLEARLY_DIFFERENT: the pairs of other pictures that cost the most),
# of which either is COLOURFUL (grey levels between its channels on average: a grey
# picture's conversion is a tone curve), is compared again with either picture converted
# from sRGB to each of PROFILES (from the primaries to XYZ, and the encoding's exponent; None:
# sRGB's own curve).
PROFILES = {
    "Adobe RGB (1998)": (((0.5767, 0.1856, 0.1882), (0.2974, 0.6273, 0.0753),
                          (0.0270, 0.0707, 0.9911)), 563 / 256),
    "Display P3": (((0.4866, 0.2657, 0.1982), (0.2290, 0.6917, 0.0793),
                    (0.0000, 0.0451, 1.0439)), None),
}
SRGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
COLOURFUL = 24.0
# A grey copy of a colour picture (a black-and-white filter, a grey print scanned, a fax) has
# none of its colour, and no tone of the views fits it (0.35 to 1.1 on photos). A pair of which
# one picture is GREY (grey levels between its channels on average: JPEG's colour noise) and
# the other is not is compared in grey (unless either is faint, or the colour one small: a grey
# copy is told by its picture's shapes), the colour picture's finer views and decodes as well:
# its channels mixed as the grey one's levels say they were (least squares on the coarse views
# aligned in LUMA, ITU-R 601's mix, Pillow's and libjpeg's), for editors mix them their own
# ways (a photo greyed by the channels' mean, Rec. 709's mix or a desaturation is 0.2 to 1.1
# from its 601 luma).
GREY = 2.0
# So is a toned one (sepia, a duotone, a tinted black-and-white filter: each channel a curve of
# one grey level) that shows SHAPED grey levels beyond a smooth surface, of a pair neither of
# which is faint (FAINT) and whose other picture is not toned: its colours are those curves',
# not its picture's (a gradient between two colours is toned too, and its shapes are noise; a
# product photographed in red and in blue on white is two toned pictures, whose colours tell
# them apart). Toned: each channel of its coarse view within TONED grey levels (root mean
# square) of a quadratic in its 601 luma (sepia copies of photos 0.2 to 0.6; their originals
# 1.15 and up but for the two grey ones).
TONED = 1.0
# A faint pair (FAINT) is compared in grey only where both show SHAPED grey levels or more
# beyond a smooth surface (``_shaped``, in grey): the kinds set's dark scenes 4.1 to 7.8 and
# pages 6.4 to 7.9, but gradients 2.5 at most (another gradient greyed is the same grey
# ramp: compared in grey wherever not flat, the dark scenes' and gradients' grey copies took
# 12 pairs of other gradients, for 92 true ones more), papers and flat colours 3.6 at most
# but one. (Compared in grey where both have a grain instead, 45 of the kinds set's 68 papers'
# grey copies matched their originals, 24 before; but a grey grid paper took a tinted ruled
# one, whose grains share their lines: 118 false pairs in the kinds set, for 4 more grey
# copies found in the kinds set with the still other copies.)
# A fainter one is, where both show FAINTLY_SHAPED grey levels or more beyond a smooth surface
# and those shapes, placed as the pictures lie in each other, are one picture's: their
# ``_shapes`` correlate SHAPES_ALIKE or more (the kinds set's faint pictures with the still
# other copies, their grey copies against their other files greyed: 79 true pairs of 1.5 to 4
# grey levels so, drawn papers and shaded colours; of 1,458 false pairs offered, none from
# 1.5 up at 0.9 or more: a gradient's detail is noise, and another paper's shapes are its own).
SHAPED = 4.0
FAINTLY_SHAPED, SHAPES_ALIKE = 1.5, 0.95
LUMA = (0.299, 0.587, 0.114)
# Or its lightness (the brightest and darkest channels' mean: a desaturation's, Photoshop's
# and GIMP's), where that fits the grey levels better than any mix.
LIGHTNESS = "lightness"
Mix = tuple[float, float, float] | str
# MIXES fitted, each aligned in the one before; a weight below -NEGATIVE of their sum: no mix.
MIXES, NEGATIVE = 2, 0.1
# A copy shaded (a vignette, a filter's or an editor's darkened corners, a lens's fall-off
# corrected or added, light graduated across a sky) has its pixels multiplied by a smooth
# field, which no tone of the whole fits (0.27 to 0.97 where corners are darkened to 0.55;
# six of the fresh copies' 74 vignettes are 0.59 to 0.92 alike and 1.03 to 1.73 apart).
# A pair alike at all (SEARCH_FROM) but not plainly, neither faint (FAINT), both pictures
# showing SHAPED grey levels or more beyond a smooth surface (a field changes how bright shapes
# are, not where they lie: a gradient, whose shapes are noise, is another gradient so shaded),
# is compared again with one picture multiplied by the field, a quadratic in x and y (a
# vignette's fall-off is one), that brings its coarse view closest to the other's where it
# lies in it (least squares), where that field is within SHADED times its mean everywhere and
# leaves at most EXPLAINED of what the tone of the whole left at the coarse views (the fresh
# copies' vignetted photos: 0.001 to 0.29, one 0.95; the similar scenes' pairs of frames: 0.64
# and up, 0.98 on average); either picture, where one is all of the other (the copy's dark
# corners brightened back keep less than the original's darkened: 0.39 apart for corners at
# 0.35, 0.03 the other way).
SHADED, EXPLAINED = 2.5, 0.5
# A copy given bars or a frame (letterboxed or pillarboxed to another shape, a border added,
# matted for a print): lines of one flat colour at a side (98% of each line's pixels within
# FLAT_LINE grey levels of its first line's colour) carry nothing of the picture. A pair whose
# margins so found differ by BARS of a side or more on some side is compared with either
# picture's margins of BARS or more cut off, or both's, where they leave at least half of each
# side (a flat picture is not all margin) and the picture is not faint (its grain compared), at
# their thumbnails (no finer views nor decodes of them), where that brings their shapes closer
# (bars change a picture's shape) or, neither faint, takes them OTHER_SHAPES apart or more (log:
# a crop may keep a whole side of the other, a 4:5 portrait of a photo in a print's frame),
# whichever of these and the pair as it is leaves the least difference (none for pictures under
# TURNED_FROM pixels).
BARS, FLAT_LINE = 0.03, 8.0
OTHER_SHAPES = -float(np.log(WHOLE_SIDE_BELOW))
BARS_SIDE = 400  # pixels on the longer side, about, that ``inside_bars`` looks at (a line: 0.25%)
# A picture faint inside its margins whose contrast inside is under OUTWEIGHED of its whole
# contrast (standard deviations) is compared without them only: the bars outweigh it.
OUTWEIGHED = 0.5
# A copy mirrored or turned by quarters (a selfie's mirror undone, a photo turned upright in a
# viewer or a scan fed in sideways: every way of ORIENTATIONS, EXIF's eight but the upright) is
# no copy upright, but its whole view so turned back is its original's. Its shapes are: the
# view's grey levels' detail beyond a smooth surface (``_shapes``: what a quadratic in x and y
# does not explain) correlates at 0.994 and up with its original's, so turned, on photos; best
# turned, at 0.52 at most for other photos, 0.55 for dark scenes, 0.34 for drawn shapes, and
# 0.09 for gradients (a gradient turned is another gradient; its detail is noise), as they are
# or with their margins cut off (``_trimmed``: bars have no shapes). A pair that is not plainly alike
# as it is is compared again with the second picture turned the way whose shapes correlate
# best with the first's, where that is alike at all (SEARCH_FROM) and more than upright; not
# for small pictures (TURNED_FROM). A faint picture's shapes are faint but its own (a page's
# lines of text; a paper's shading: the kinds set's papers' copies turned by a quarter, 0.56 to
# 1.00 turned back; other papers best turned 0.81 at most, and under 0.6 for 5,684 of 5,700
# ordered pairs of papers and flat colours; a flat colour's are noise, and no turn is alike),
# and a paper's grain is turned with it (``_oriented``).
_T = Image.Transpose
ORIENTATIONS: dict[Image.Transpose, Callable[[np.ndarray], np.ndarray]] = {  # and a view so
    _T.FLIP_LEFT_RIGHT: lambda v: v[:, ::-1], _T.FLIP_TOP_BOTTOM: lambda v: v[::-1],
    _T.ROTATE_90: lambda v: np.rot90(v, 1), _T.ROTATE_180: lambda v: v[::-1, ::-1],
    _T.ROTATE_270: lambda v: np.rot90(v, 3), _T.TRANSPOSE: lambda v: np.swapaxes(v, 0, 1),
    _T.TRANSVERSE: lambda v: np.swapaxes(np.rot90(v, 2), 0, 1)}
ACROSS = frozenset({_T.ROTATE_90, _T.ROTATE_270, _T.TRANSPOSE, _T.TRANSVERSE})  # width <-> height
SIGNATURES = 4096  # decoded images a process keeps for the pairs to come (about 50 KB each)
FINE_SIGNATURES = 256  # those decoded for finer views (FINE^2 as large)


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


# A picture inside its bars: its thumbnail, the shares of its file's width and height, and
# its shares of white and black (``_extremes``, at the decode's resolution).
Inner = tuple[Image.Image, tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Signature:
    """What ``compare`` compares of one image."""

    thumb: Image.Image  # RGB, at most THUMB pixels on the longer side, at least 1 on each
    aspect: float  # the file's own width / height
    full: np.ndarray  # (SIGNATURE, SIGNATURE, 3) float32 view of the whole picture
    size: tuple[int, int]  # width and height as decoded (a JPEG's shorter side: 256 at least)
    grain: grains.Grain | None = None  # of a picture that shows little at THUMB pixels
    extremes: tuple[float, float] = (0.0, 0.0)  # its thumbnail's shares of white and of black
    source: str | None = None  # the file it was decoded from (None: an image in memory)
    side: int = THUMB  # the longer side its thumbnail was made at most (FINE: finer views)
    grey: Mix | None = None  # how it was made grey (``_greying``)
    margins: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # ``_margins`` of its thumbnail
    turn: Image.Transpose | None = None  # how it was mirrored or turned (``_oriented``)
    noise: float = 0.0  # grey levels its file's JPEG may have moved a plain block's pixels
    inner: Inner | None = None  # its picture inside its margins, where they are bars (``_inner``)
    measured: int = 0  # pixels on the longer side of what its extremes were measured on (0: ?)

    @functools.cached_property
    def contrast(self) -> float:
        """``evidence.contrast`` of its view ``full``, worked out once (a pair asks for it up to
        nine times)."""
        return evidence.contrast(self.full)


def signature(source: str | os.PathLike | Image.Image, side: int = THUMB) -> Signature:
    """An image decoded small (draft mode), for ``compare``, its thumbnail at most ``side``
    pixels on the longer side; one that shows next to nothing at that size (inside its bars or
    frame, where it has them, or but for a band along its sides where a mark may be:
    ``_middle``) is decoded again larger for its grain; one under twice that size but larger
    than its thumbnail takes it from its own pixels, in that middle, where the grain's
    template fits there (a faint paper's thumbnail of 256 pixels keeps its coarser grain).
    A file's JPEG ``noise`` is read from its header."""
    img = (source if isinstance(source, Image.Image)
           else load_image(source, draft_size=2 * side)).convert("RGB")
    noise = 0.0 if isinstance(source, Image.Image) else _noise(source)
    w, h = img.size
    thumb = _thumbnail(img, side)  # a small picture is not enlarged: no detail to add
    full = _view(thumb)
    margins = _margins(thumb) if side == THUMB else (0.0, 0.0, 0.0, 0.0)
    inner = _inner(img, thumb.size, margins, side, noise)
    inside = _inside(thumb.size, margins) or (0, 0, *thumb.size)  # inside bars or a frame
    grain, detailed = None, thumb
    middle = _middle((0, 0, *thumb.size))  # a faint picture's margins are its own flat lines
    small = side == THUMB and max(w, h) > side and min(
        _scaled(middle, thumb.size, (w, h))[2:]) >= grains.TEMPLATE
    if (max(w, h) > 2 * side or small) and min(evidence.contrast(_view(thumb, box)) for box in (
            inside, _middle(inside))) < FAINT ** 2:  # a mark along a side outweighs it too
        if max(w, h) > 2 * side and not isinstance(source, Image.Image):
            img = load_image(source, draft_size=grains.SIDE).convert("RGB")
        grain, detailed = _grain(img, _scaled(middle, thumb.size, img.size)), img
    return Signature(thumb, w / h, full, (w, h), grain, _extremes(detailed, noise),
                     None if isinstance(source, Image.Image) else os.fspath(source), side,
                     margins=margins, noise=noise, inner=inner, measured=max(detailed.size))


def _scaled(box: Box, thumb: tuple[int, int], size: tuple[int, int]
            ) -> tuple[int, int, int, int]:
    """``box`` of a thumbnail of ``thumb`` pixels as (left, top, width, height) of its
    picture of ``size`` (each side scaled on its own: a strip's thumbnail is a pixel high,
    whatever its height)."""
    kx, ky = size[0] / thumb[0], size[1] / thumb[1]
    left, top = round(box[0] * kx), round(box[1] * ky)
    return left, top, round(box[2] * kx) - left, round(box[3] * ky) - top


def _grain(img: Image.Image, middle: tuple[int, int, int, int]) -> grains.Grain:
    """``img``'s grain: from the middle of it brought to grains.SIDE, or, where it is not
    larger, from its ``middle`` (without a band along its sides as deep as a mark or bars
    may be: a window as large as the picture would hold them)."""
    if min(img.size) > grains.SIDE:
        return grains.grain(img)
    left, top, width, height = middle
    return grains.Grain(grains.grain(img.crop((left, top, left + width, top + height))).window,
                        img.width)


def _noise(path: str | os.PathLike) -> float:
    """The ``noise`` of the file at ``path``: half the largest DC step of its JPEG quantization
    tables, in grey levels (0 for another format, or a file whose header cannot be read)."""
    try:
        with Image.open(path) as img:
            tables = getattr(img, "quantization", None) or {}
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 0.0
    return max((table[0] for table in tables.values()), default=0) / 16  # DC: 8 x the mean


def _extremes(img: Image.Image, noise: float = 0.0) -> tuple[float, float]:
    """The shares of ``img``'s pixels white and black (each channel within a level of it, and
    its file's ``noise``), at the resolution it has: a thumbnail averages away the grain that
    keeps a paper from clipping."""
    pixels = np.asarray(img)
    step = max(1, min(img.size) // 512)  # a sample is enough
    pixels = pixels[::step, ::step]
    return (float(_every_channel(pixels, lambda c: c >= 254 - noise).mean()),
            float(_every_channel(pixels, lambda c: c <= 1 + noise).mean()))


def _every_channel(pixels: np.ndarray, test: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Where ``test`` holds for every channel of ``pixels`` (h, w, channels): channel by
    channel, as numpy reduces across a short last axis several times slower."""
    out = test(pixels[..., 0])
    for c in range(1, pixels.shape[-1]):
        out &= test(pixels[..., c])
    return out


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
    the darker brightened at its own pixels until as much of it is white as of the other
    (WHITE_FROM), one of them converted between colour spaces (PROFILES), its tone curved
    (CURVES), turned a little (TURNS) or shaded (SHADED), where that may be why they differ,
    with bars or a frame cut off where one of them has such margins (BARS), and in grey where
    one of them is grey (GREY) or toned (TONED), the other's channels mixed as they say: not
    for small pictures (TURNED_FROM), nor, but for the colour spaces, for faint ones (FAINT),
    where a turn misplaces next to nothing and a curve is a gain; and, for pictures of files
    with detail a thumbnail does not show (text), on finer views (FINE). A blank picture
    (BLANK) is another one than a picture that is not nearly as blank, and a flat picture
    another than a flat one of another brightness (FLAT_GAIN). Where they are not plainly
    alike, all of this again with the second mirrored or turned by quarters, where its picture
    is more like the first's so (ORIENTATIONS), or, where both have a grain and neither
    has shapes to tell, whose grain is (``_grain_orientation``)."""
    if _apart(a, b) and _inside(a.thumb.size, a.margins) is None and _inside(
            b.thumb.size, b.margins) is None:  # else as compared, inside them (``_compare``)
        return Match(0.0, float("inf"))
    m = _compare(a, b)
    turn = _orientation(a, b) if m.difference > PLAINLY_ALIKE else None
    if turn is None and m.difference > PLAINLY_ALIKE and m.similarity >= SEARCH_FROM:
        turn = _grain_orientation(a, b)
    if turn is not None:
        turned = _compare(a, _oriented(b, turn))
        if _ranked(turned) < _ranked(m):
            m = turned
    return m


def _ranked(m: Match) -> tuple[bool, float, float]:
    """How a Match ranks among others of one pair (the least first): alike at all, then the
    least difference, then the most alike."""
    return m.similarity < SEARCH_FROM, m.difference, -m.similarity


def _compare(a: Signature, b: Signature) -> Match:
    """``compare`` as the pair is oriented."""
    a, b = _prepared(a, b)
    if _apart(a, b):  # a blank or flat picture inside bars or a frame: it shows no more
        return Match(0.0, float("inf"))
    m, change, t, x = _compared(a, b)
    turned = isinstance(change, functools.partial) and change.func is _turning
    if m.similarity >= TURNED_LIKE and m.difference < FINE_BELOW and not turned:
        fine = [_fine(s) for s in (a, b)]
        if all(s is not None for s in fine):
            pair = change(*fine) if change else fine
            if pair is not None:  # the box found again, or the coarse one: the better
                finer = min(upright(*pair).difference, _finer(t, pair[x], pair[1 - x]).difference)
                if finer > max(m.difference, PLAINLY_ALIKE) and min(
                        s.contrast for s in pair) >= FAINT ** 2:
                    for degrees in TURNS:  # a turn misplaces FINE times more there
                        finer = min(finer, upright(_turned(pair[0], degrees), pair[1]).difference)
                        if finer <= PLAINLY_ALIKE:
                            break
                m = Match(m.similarity, finer)  # alike as a whole: seen as well coarse
    return m


def _finer(t: _Aligned, x: Signature, y: Signature) -> Match:
    """The Match of ``t``'s alignment with its pictures' finer signatures ``x`` and ``y`` in
    their place (the box found coarse: a faint texture's profiles say less at fine scale)."""
    kx, ky = y.thumb.width / t.y.thumb.width, y.thumb.height / t.y.thumb.height
    b = t.box
    fine = _aligned(x, y, (b[0] * kx, b[1] * ky, b[2] * kx, b[3] * ky))
    return _with_grain(_measure(fine), fine)


# One of a pair's pictures changed as a copy of the other may have been: the pair, or None.
Change = Callable[[Signature, Signature], "tuple[Signature, Signature] | None"]


def _compared(a: Signature, b: Signature) -> tuple[Match, Change | None, _Aligned, int]:
    """``compare``'s Match at the pictures' views; the change of one of them that gave it
    (converted, whitened, curved, turned or shaded; None: as they are); its alignment, and
    which of the pair (0: ``a`` or what it was changed to) is the alignment's whole picture
    (``x``)."""
    m, t = _upright(a, b)
    x = 0 if t.x is a else 1
    changed = _changed(a, b, m, t, x)
    if (PLAINLY_ALIKE < changed[0].difference and m.difference < CLEARLY_DIFFERENT
            and m.similarity >= SEARCH_FROM
            and max(_chroma(a), _chroma(b)) >= COLOURFUL and min(*a.size, *b.size) >= TURNED_FROM):
        for other in (functools.partial(_converting, space=space, first=first)
                      for space in PROFILES for first in (True, False)):
            pair = other(a, b)
            o, aligned = _upright(*pair)
            if o.difference < changed[0].difference:
                changed = o, other, aligned, 0 if aligned.x is pair[0] else 1
    return changed


def _changed(a: Signature, b: Signature, m: Match, t: _Aligned,
             x: int) -> tuple[Match, Change | None, _Aligned, int]:
    """``_compared`` but for the colour spaces: ``m``, or what the whitening, a curve, a
    turn or a shading (``_field``) leaves where less, from the alignment ``t`` of the pair as
    it is."""
    if not (m.similarity >= SEARCH_FROM and PLAINLY_ALIKE < m.difference
            and min(*a.size, *b.size) >= TURNED_FROM):
        return m, None, t, x
    change, as_they_are = None, t
    faint = sorted((a.contrast, b.contrast))
    near = m.similarity >= TURNED_LIKE and m.difference < WHITENED_BELOW  # alike as a whole
    if near and faint[1] >= FAINT ** 2 and (whitened := _whitened(t)) is not None:
        w, gain, aligned = whitened
        if w.difference < m.difference:
            dark, bright = (t.x, t.y) if t.x.extremes[0] < t.y.extremes[0] else (t.y, t.x)
            first = dark is a  # the pair is (whitened a, b) or (a, whitened b)
            x = int(first) if aligned.x is bright else int(not first)
            m, change, t = w, functools.partial(_whitening, gain=gain, first=first), aligned
    if near and change is None and PLAINLY_ALIKE < m.difference < TURN_BELOW and (
            faint[0] >= FAINT ** 2):
        changes = itertools.chain((functools.partial(_curving, gamma=g, first=first)
                                   for g in CURVES for first in (True, False)),
                                  (functools.partial(_turning, degrees=d) for d in TURNS))
        m, change, t, x = _least(a, b, (m, change, t, x), changes)
    if PLAINLY_ALIKE < m.difference and faint[0] >= FAINT ** 2 and min(
            _shaped(a), _shaped(b)) >= SHAPED:
        ways = [as_they_are]  # and the other way round, where one is all of the other
        if _whole(as_they_are.box, as_they_are.y):
            ways.append(_aligned(as_they_are.y, as_they_are.x, (0, 0, *as_they_are.x.thumb.size)))
        # a copy's dark corners brightened back keep less than it lost; fitted one at a time
        shadings = (functools.partial(_shading, field=field, first=way.x is a)
                    for way in ways if (field := _field(way)) is not None)
        m, change, t, x = _least(a, b, (m, change, t, x), shadings)
    return m, change, t, x


def _least(a: Signature, b: Signature, best: tuple[Match, Change | None, _Aligned, int],
           changes: Iterable[Change]) -> tuple[Match, Change | None, _Aligned, int]:
    """``best`` (``_changed``'s four), or what one of ``changes`` leaves where less, tried in
    turn until one leaves the pair plainly alike (PLAINLY_ALIKE)."""
    for other in changes:
        pair = other(a, b)
        o, aligned = _upright(*pair)
        if o.difference < best[0].difference:
            best = o, other, aligned, 0 if aligned.x is pair[0] else 1
        if best[0].difference <= PLAINLY_ALIKE:
            break
    return best


def _field(t: _Aligned) -> tuple[float, ...] | None:
    """The smooth field (SHADED: the coefficients of a quadratic in x and y, each from 0 to 1
    across the picture) that ``t``'s whole picture's coarse view is multiplied by to come
    closest to the other's in its box, where neither clips; None where it has no hold,
    leaves the mean SHADED times or more, or explains too little (EXPLAINED)."""
    x, y = t.x.full, _view(t.y.thumb, t.box)
    terms = _terms(SIGNATURE, SIGNATURE)
    pixels = (terms[:, :, None, :] * x[..., None]).reshape(-1, 6)  # each channel's pixel
    keep = ((x > evidence.SATURATED[0]) & (x < evidence.SATURATED[1])
            & (y > evidence.SATURATED[0]) & (y < evidence.SATURATED[1])).reshape(-1)
    if keep.sum() < 0.5 * keep.size:
        return None
    coefficients = _least_squares(pixels[keep], y.reshape(-1)[keep])
    if coefficients is None:
        return None
    field = terms @ coefficients
    mean = float(field.mean())
    if mean <= 0 or field.min() < mean / SHADED or field.max() > mean * SHADED:
        return None
    darker, brighter, _ = evidence.ordered(x, y)
    before = float(((t.tone(darker) - brighter) ** 2).mean())
    darker, brighter, _ = evidence.ordered(x * (field / mean)[..., None], y)
    after = float(((evidence.fit(darker, brighter)(darker) - brighter) ** 2).mean())
    return tuple(float(c) / mean for c in coefficients) if after <= EXPLAINED * before else None


def _least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The ``x`` that brings ``a @ x`` closest to ``b`` (its normal equations, summed without
    BLAS, whose threads would fight a worker's neighbours for the cores); None where ``a``'s
    columns do not tell it."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    normal = np.einsum("ij,ik->jk", a, a)
    if np.linalg.cond(normal) > 1e12:
        return None
    return np.linalg.solve(normal, np.einsum("ij,i...->j...", a, b))


def _terms(w: int, h: int) -> np.ndarray:
    """1, x, y, x^2, xy, y^2 at the middle of each of ``h`` x ``w`` pixels (x, y from 0 to 1
    across): (h, w, 6)."""
    u, v = np.meshgrid((np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def _shading(a: Signature, b: Signature, field: tuple[float, ...],
             first: bool) -> tuple[Signature, Signature]:
    """``a`` (``first``) or ``b`` multiplied by ``field`` (``_field``)."""
    return (_shaded(a, field), b) if first else (a, _shaded(b, field))


def _shaded(s: Signature, field: tuple[float, ...]) -> Signature:
    """``s`` with its thumbnail multiplied by ``field`` (``_field``), clipped."""
    w, h = s.thumb.size
    gains = _terms(w, h) @ np.array(field)
    thumb = Image.fromarray(np.clip(np.round(np.asarray(s.thumb, np.float32) * gains[..., None]),
                                    0, 255).astype(np.uint8))
    return dataclasses.replace(s, thumb=thumb, full=_view(thumb))


def _prepared(a: Signature, b: Signature) -> tuple[Signature, Signature]:
    """The pair, where their margins differ (BARS) with either's or both's cut off where
    that brings their shapes closer (bars change a picture's shape: cut off, a copy has its
    original's) or, where neither is faint, so far apart that one may be a crop of the
    other keeping a whole side (a print's frame cut off a photo, and a 4:5 portrait of it;
    ``locate``'s boxes of a faint picture keep 75% of each side), as they are or so cut,
    whichever leaves the least difference (a picture's
    own flat sky is a margin too, of another colour than the bars its copy was given; a
    frame's dark surround, cropped, changes the shape as well), but a picture faint inside its
    own, which carry most of its contrast, always cut off (``_cut``); where their margins are
    alike and one of them is faint inside its own, both cut off (the bars' contrast outweighs
    a faint picture's: two papers letterboxed alike are alike as a whole); and in grey where
    one of them is (``_greying``)."""
    if min(*a.size, *b.size) < TURNED_FROM:
        return _greying(a, b)
    if all(abs(x - y) < BARS for x, y in zip(a.margins, b.margins)):
        if a.grain is None and b.grain is None:  # nothing faint inside bars: as they are
            return _greying(a, b)
        inner = _trimmed(a), _trimmed(b)
        if any(t is not s and t.grain is not None and t.contrast < FAINT ** 2
               for t, s in zip(inner, (a, b))):
            return _greying(*inner)
        return _greying(a, b)

    def apart(pair: tuple[Signature, Signature]) -> float:  # in shape
        return abs(np.log(pair[0].aspect / pair[1].aspect))

    firsts, seconds = _cut(a), _cut(b)
    base = firsts[0], seconds[0]  # as they are, but a picture faint inside its margins
    options = [base] + [(x, y) for x in firsts for y in seconds
                        if (x is not base[0] or y is not base[1])
                        and (apart((x, y)) < apart(base) or apart((x, y)) > OTHER_SHAPES
                             and min(x.contrast, y.contrast) >= FAINT ** 2)]
    greyed = [_greying(*pair) for pair in options]
    return greyed[0] if len(greyed) == 1 else min(
        greyed, key=lambda pair: _placed(*pair)[0].difference)


def _cut(s: Signature) -> list[Signature]:
    """``s`` as it is and without its margins (``_trimmed``), or the latter alone where it is
    faint inside them (FAINT, with a grain) and they carry most of its contrast (OUTWEIGHED)
    and it is not faint as a whole: a paper in a white frame is alike to any other paper
    placed in one (a gradient's own flat end is a margin too, and no more contrasted than the
    rest; a page's own margins carry most of its contrast at SIGNATURE pixels, and a copy's
    mark along a side breaks them)."""
    t = _trimmed(s)
    if t is s:
        return [s]
    inside, whole = t.contrast, s.contrast
    faint = t.grain is not None and inside < FAINT ** 2
    return [t] if faint and OUTWEIGHED ** 2 * whole > inside and whole >= FAINT ** 2 else [s, t]


def _orientation(a: Signature, b: Signature) -> Image.Transpose | None:
    """The way of ORIENTATIONS of turning ``b`` whose shapes (``_shapes``) correlate best with
    ``a``'s, as they are or either's margins cut off (``_cut``: bars have no shapes to turn,
    and a picture's own flat sky is a margin too), where that is alike (SEARCH_FROM) and
    more than upright; None for pictures under TURNED_FROM."""
    if min(*a.size, *b.size) < TURNED_FROM:
        return None
    firsts, seconds = _cut(a), _cut(b)
    best, most = None, SEARCH_FROM
    for x, y in itertools.product(firsts, seconds):
        target = _shapes(x.full)
        upright = float(target @ _shapes(y.full))
        for turn, view in ORIENTATIONS.items():
            alike = float(target @ _shapes(view(y.full)))
            if alike >= most and alike > upright:
                best, most = turn, alike
    return best


def _grain_orientation(a: Signature, b: Signature) -> Image.Transpose | None:
    """The way of ORIENTATIONS of turning ``b`` whose grain correlates with ``a``'s as a
    copy's does (grain.MATCH; ``grain.turned_agreements``), where both have a grain
    (``_grained``), and it alone does, upright included: a paper of repeated tiles has no
    shading to turn it back by (the kinds set's papers turned or mirrored: 0.01 from their
    originals turned back by their grain, 0.23 and more turned any other way, and other papers
    0.78 and more every way), and a ruled or grid paper's lines are alike turned several ways
    (with the best way taken, 23 of the 4,556 ordered pairs of the set's papers' and plain
    colours' originals found a turn, all among such papers; none so). Each way is tried at
    the scale the pictures inside their bars or frames say (``_trimmed``: a letterboxed
    copy's grain is at the scale of its taller picture, a thumbnail's at its own), ``b``'s
    grain brought back to ``a``'s shape where the ways say it was stretched (STRETCHED, up to
    STRETCHED_MOST: more is a way that turns the picture's shape, not a copy's)."""
    if not (_grained(a) and _grained(b)):
        return None
    x, y = _trimmed(a), _trimmed(b)  # the windows are from the middle: bars move the scale
    ways, rhos = [], []
    upright = x.grain.width, x.grain.width / x.aspect  # x's width and height, in its grain's
    for across in (False, True):
        turns = [t for t in (None, *ORIENTATIONS) if (t in ACROSS) == across]
        width, height = upright[::-1] if across else upright
        along, down = y.grain.width / width, y.grain.width / y.aspect / height  # y's per x's
        stretch = abs(np.log(down / along))
        if stretch > np.log(STRETCHED_MOST):
            continue
        grain = y.grain if stretch <= STRETCHED else grains.stretched(y.grain, along / down)
        scales = ([along * grains.SCALE_NEAR ** k for k in range(-2, 3)]
                  if abs(np.log(along)) >= np.log(grains.SCALE_STEP) else [1.0])
        ways += turns
        rhos += grains.turned_agreements(x.grain, grain, [
            (lambda v: v) if t is None else ORIENTATIONS[t] for t in turns], scales)
    alike = [t for t, rho in zip(ways, rhos) if rho >= grains.MATCH]
    return alike[0] if len(alike) == 1 else None  # one way only: lines are alike every way


def _smooth_part() -> np.ndarray:
    """An orthonormal basis of the quadratics in x and y over a view's pixels (SIGNATURE^2 of
    a channel): (SIGNATURE^2, 6)."""
    y, x = (np.mgrid[0:SIGNATURE, 0:SIGNATURE] / (SIGNATURE - 1) - 0.5).reshape(2, -1)
    return np.linalg.qr(np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1))[0].astype(
        np.float32)


_SMOOTH = _smooth_part()


def _beyond_smooth(view: np.ndarray) -> np.ndarray:
    """A whole view's (SIGNATURE pixels a side) grey levels' detail beyond a smooth surface
    (their quadratic in x and y taken off): (SIGNATURE^2,)."""
    levels = view.reshape(-1, 3).mean(axis=1)
    return levels - _SMOOTH @ (_SMOOTH.T @ levels)


def _shapes(view: np.ndarray) -> np.ndarray:
    """``_beyond_smooth`` as a unit vector: the same for a grey copy."""
    v = _beyond_smooth(view)
    return v / max(float(np.sqrt(v @ v)), 1e-6)


def _oriented(s: Signature, turn: Image.Transpose) -> Signature:
    """``s`` turned or mirrored (``Image.Transpose``); its grain, finer views and decodes
    too."""
    thumb = s.thumb.transpose(turn)
    across = turn in ACROSS
    grain = None if s.grain is None else grains.Grain(  # a square from the middle: in place
        np.asarray(Image.fromarray(s.grain.window).transpose(turn)),
        round(s.grain.width / s.aspect) if across else s.grain.width)
    inner = None if s.inner is None else (
        s.inner[0].transpose(turn), s.inner[1][::-1] if across else s.inner[1], s.inner[2])
    return dataclasses.replace(
        s, thumb=thumb, full=_view(thumb), aspect=1 / s.aspect if across else s.aspect,
        size=s.size[::-1] if across else s.size, grain=grain,
        margins=_margins(thumb) if s.side == THUMB else s.margins, turn=turn, inner=inner)


def _margins(thumb: Image.Image, deepest: float = 0.5) -> tuple[float, ...]:
    """The shares of ``thumb``'s side in flat lines (FLAT_LINE) at its left, top, right
    and bottom (up to ``deepest`` of it and a line: more is not cut off)."""
    pixels = np.asarray(thumb)
    columns = pixels.transpose(1, 0, 2)
    out = []
    for lines in (columns, pixels, columns[::-1], pixels[::-1]):
        n = len(lines)
        lines = lines[:int(n * deepest) + 1].astype(np.int16)
        colour = np.median(lines[0], axis=0).astype(np.int16)
        close = _every_channel(np.abs(lines - colour), lambda c: c <= FLAT_LINE)
        flat = close.mean(axis=1) >= 0.98
        out.append((len(flat) if flat.all() else int(np.argmin(flat))) / n)
    return tuple(out)


def _inside(size: tuple[int, int], margins: tuple[float, ...]) -> Box | None:
    """The box of a thumbnail of ``size`` inside its ``margins`` of BARS or more, each with
    the line after it (where the thumbnail's resampling blended bars and picture: left on, a
    dark edge that outweighs the picture's shapes); None where there are none, or they leave
    less than half a side."""
    bars = _bars(margins)
    if bars is None:
        return None
    left, top, right, bottom = bars
    w, h = size
    edge = [round(m * n) + (m > 0) for m, n in ((left, w), (top, h), (right, w), (bottom, h))]
    return edge[0], edge[1], w - edge[2], h - edge[3]


def _bars(margins: tuple[float, ...]) -> tuple[float, ...] | None:
    """``margins`` of BARS or more (the others nought); None where there are none, or they
    leave less than half a side."""
    bars = tuple(m if m >= BARS else 0.0 for m in margins)
    if bars[0] + bars[2] > 0.5 or bars[1] + bars[3] > 0.5 or not any(bars):
        return None
    return bars


def inside_bars(img: Image.Image) -> Box | None:
    """The box of ``img`` inside its bars or frame (``_margins`` of BARS or more, found at its
    own pixels, or at BARS_SIDE on the longer side where it has more), None where it has none
    or they leave less than half a side: what a copy letterboxed or given a border shows of
    its original."""
    small = img.reduce(max(1, max(img.size) // BARS_SIDE))
    if max(_margins(small, BARS)) < BARS:  # a look at the lines a bar would take: most have none
        return None
    bars = _bars(_margins(small))
    if bars is None:
        return None
    w, h = img.size
    left, top, right, bottom = (round(m * n) for m, n in zip(bars, (w, h, w, h)))
    return left, top, w - right, h - bottom


def _inner(img: Image.Image, size: tuple[int, int], margins: tuple[float, ...],
           side: int, noise: float) -> Inner | None:
    """The picture inside the bars or frame that ``img``'s thumbnail of ``size`` shows
    (``_inside``): its thumbnail of ``side`` pixels made from ``img`` cut where its own lines
    say the bars end, and one line more (a JPEG's ringing), and the shares of ``img``'s width
    and height it keeps; None where there are no such bars. The thumbnail itself cut so keeps
    the lines its resampling blended with the bars (a paper's first line under black bars 12
    grey levels darker, the next 3 lighter: a faint picture's difference counts in units of
    its own little contrast)."""
    if side != THUMB or _inside(size, margins) is None:
        return None
    w, h = img.size
    own = _margins(img)
    edge = [round(max(m, o) * n) + 1 if m >= BARS else 0
            for m, o, n in zip(margins, own, (w, h, w, h))]
    box = (edge[0], edge[1], w - edge[2], h - edge[3])
    if box[2] - box[0] < w / 2 or box[3] - box[1] < h / 2:
        return None
    inside = img.crop(box)
    return (_thumbnail(inside, side), ((box[2] - box[0]) / w, (box[3] - box[1]) / h),
            _extremes(inside, noise))


def _middle(box: Box) -> Box:
    """``box`` less a band along each side as deep as a mark may be (evidence.MARK_DEPTH
    squares of evidence.BLOCKS)."""
    d = evidence.MARK_DEPTH / evidence.BLOCKS
    w, h = box[2] - box[0], box[3] - box[1]
    return box[0] + d * w, box[1] + d * h, box[2] - d * w, box[3] - d * h


def _trimmed(s: Signature) -> Signature:
    """``s`` without its margins (``_inside``), unless ``s`` is faint as a whole (FAINT: its
    margins are its faint picture, and its grain the evidence) and they do not carry most of
    its contrast (OUTWEIGHED: a light plain colour in a white frame is faint as a whole, and
    the frame is all it shows); a picture faint inside its bars keeps its grain (from the
    middle, which they do not reach)."""
    box = _inside(s.thumb.size, s.margins)
    if box is None:
        return s
    whole = s.contrast
    if s.grain is not None and whole < FAINT ** 2:
        inside = s.inner[0] if s.inner is not None else s.thumb.crop(box)
        if evidence.contrast(_view(inside)) >= OUTWEIGHED ** 2 * whole:
            return s
    if s.inner is not None:
        thumb, kept, extremes = s.inner
    else:
        thumb = s.thumb.crop(box)
        kept = thumb.width / s.thumb.width, thumb.height / s.thumb.height
        extremes = _extremes(thumb, s.noise)
    grain = None if s.grain is None else dataclasses.replace(
        s.grain, width=max(1, round(s.grain.width * kept[0])))
    return dataclasses.replace(
        s, thumb=thumb, full=_view(thumb), aspect=s.aspect * kept[0] / kept[1],
        size=(max(1, round(s.size[0] * kept[0])), max(1, round(s.size[1] * kept[1]))),
        grain=grain, extremes=extremes, source=None, margins=(0.0, 0.0, 0.0, 0.0), inner=None,
        measured=0)


def _greying(a: Signature, b: Signature) -> tuple[Signature, Signature]:
    """The pair, the colour picture made grey where the other is grey (GREY) or toned
    (TONED, the toned one made grey by LUMA first, where the colour one is not): its channels
    mixed as the other's levels say (``_mix``), or by LUMA where they say no mix. Not where
    the colour one is small (TURNED_FROM), nor where either is faint (FAINT) unless both show
    shapes in grey (SHAPED), or fainter ones (FAINTLY_SHAPED) that are one picture's
    (SHAPES_ALIKE): a grey copy is told by its picture's shapes, and a flat grey is no copy of
    a gradient from red to a green as bright (flat in grey), nor a tinted paper's shading in
    grey a grey gradient."""
    ca, cb = _chroma(a), _chroma(b)
    if min(ca, cb) > GREY and min(a.contrast, b.contrast) >= FAINT ** 2:
        toned = [_shaped(s) >= SHAPED and _toned(s) for s in (a, b)]
        if toned[0] != toned[1]:  # two toned pictures are compared in their colours
            a, b = (_greyed(s, LUMA) if t else s for s, t in zip((a, b), toned))
            ca, cb = _chroma(a), _chroma(b)
    if min(ca, cb) > GREY or max(ca, cb) <= GREY:
        return a, b
    first = ca > cb
    colour, grey = (a, b) if first else (b, a)
    faint = min(colour.contrast, grey.contrast) < FAINT ** 2
    shaped = _shaped(grey) if faint else SHAPED
    if min(colour.size) < TURNED_FROM or shaped < FAINTLY_SHAPED:
        return a, b
    greyed = _greyed(colour, LUMA)
    for _ in range(MIXES):  # aligned in the mix found last
        t = _placed(greyed, grey)[1]  # where it lies: the grain does not move it
        mix = _mix(*((_view(colour.thumb), _view(grey.thumb, t.box)) if t.x is greyed
                     else (_view(colour.thumb, t.box), _view(grey.thumb))))
        if mix is None or mix == greyed.grey:
            break
        greyed = _greyed(colour, mix)
    shaped = min(shaped, _shaped(greyed)) if faint else SHAPED
    if shaped < SHAPED and (shaped < FAINTLY_SHAPED or _shapes_alike(
            t if greyed is t.x or greyed is t.y else _placed(greyed, grey)[1]) < SHAPES_ALIKE):
        return a, b
    return (greyed, b) if first else (a, greyed)


def _shapes_alike(t: _Aligned) -> float:
    """How alike the shapes (``_shapes``) of an alignment's two pictures are where one lies
    in the other: their correlation."""
    return float(_shapes(t.x.full) @ _shapes(_view(t.y.thumb, t.box)))


def _grained(s: Signature) -> bool:
    """Whether ``s`` has a grain that says whether another picture's is the same (FLOOR)."""
    return s.grain is not None and s.grain.strength >= grains.FLOOR


def _shaped(s: Signature) -> float:
    """How much a picture shows beyond a smooth surface: the root mean square of its grey
    levels' detail (``_beyond_smooth``) at SIGNATURE pixels."""
    return float(np.sqrt(np.mean(_beyond_smooth(s.full) ** 2)))


def _mix(colour: np.ndarray, grey: np.ndarray) -> Mix | None:
    """How the channels of the view ``colour`` were made the grey view ``grey``: the
    weights, summing to one, whose mix (and an offset) is most like it (least squares), or
    LIGHTNESS where that, with a gain and an offset, is more like it; None where the weights
    sum to nought or one is below -NEGATIVE of their sum: no mix of channels (others are
    taken as nought)."""
    levels = grey[..., 0].reshape(-1)
    ones = np.ones_like(levels)
    rows = np.c_[colour.reshape(-1, 3), ones]
    weights, residual = np.linalg.lstsq(rows, levels, rcond=None)[:2]
    lightness = np.c_[_lightness(colour).reshape(-1), ones]
    if np.linalg.lstsq(lightness, levels, rcond=None)[1].sum() < residual.sum():
        return LIGHTNESS
    weights = weights[:3]
    total = float(weights.sum())
    if total <= 1e-6 or weights.min() < -NEGATIVE * total:
        return None
    weights = np.clip(weights, 0, None)
    return tuple(round(float(w), 2) for w in weights / weights.sum())  # a view's precision


def _lightness(pixels: np.ndarray) -> np.ndarray:
    return (pixels.max(axis=2).astype(np.float32) + pixels.min(axis=2)) / 2


def _greyed(s: Signature, mix: Mix) -> Signature:
    thumb = _grey(s.thumb, mix)
    return dataclasses.replace(s, thumb=thumb, full=_view(thumb), grey=mix)


def _grey(img: Image.Image, mix: Mix) -> Image.Image:
    if mix == LIGHTNESS:
        return Image.fromarray(np.round(_lightness(np.asarray(img))).astype(np.uint8)).convert(
            "RGB")
    return img.convert("L", (*mix, 0.0)).convert("RGB")


def _toned(s: Signature) -> bool:
    """Whether each channel of ``s``'s coarse view is a curve of its grey level (TONED)."""
    pixels = s.full.reshape(-1, 3).astype(np.float64)
    levels = pixels @ np.array(LUMA) / 255
    curves = np.c_[np.ones_like(levels), levels, levels ** 2]
    weights = _least_squares(curves, pixels)
    if weights is None:  # one grey level: a flat colour's curves are any
        return False
    return float(np.sqrt(np.mean((curves @ weights - pixels) ** 2))) < TONED


def _chroma(s: Signature) -> float:
    """How colourful ``s`` is: grey levels between its brightest and darkest channel, on
    average over its coarse view."""
    return float((s.full.max(axis=2) - s.full.min(axis=2)).mean())


# Made once: each profile's matrix from linear sRGB to its linear values, and sRGB's levels
# in linear light (Pillow's ImageCms builds sRGB only; Adobe RGB and Display P3 would need
# their ICC files).
_CONVERSIONS = {space: (np.linalg.solve(np.array(primaries), np.array(SRGB_TO_XYZ))
                        .astype(np.float32), exponent)
                for space, (primaries, exponent) in PROFILES.items()}
_LEVELS = np.arange(256, dtype=np.float32) / 255
_SRGB_LINEAR = np.where(_LEVELS <= 0.04045, _LEVELS / 12.92, ((_LEVELS + 0.055) / 1.055) ** 2.4)


def _converting(a: Signature, b: Signature, space: str,
                first: bool) -> tuple[Signature, Signature]:
    """``a`` (``first``) or ``b`` converted from sRGB to ``space`` and read as sRGB."""
    return (_converted(a, space), b) if first else (a, _converted(b, space))


def _converted(s: Signature, space: str) -> Signature:
    """``s`` with its thumbnail's sRGB values converted to ``space``'s (PROFILES), as a file
    so converted shows where its profile is ignored."""
    matrix, exponent = _CONVERSIONS[space]
    out = np.clip(_SRGB_LINEAR[np.asarray(s.thumb.convert("RGB"))] @ matrix.T, 0, 1)
    out = (out ** (1 / exponent) if exponent else
           np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055))
    thumb = Image.fromarray(np.round(out * 255).astype(np.uint8))
    return dataclasses.replace(s, thumb=thumb, full=_view(thumb))


def _curving(a: Signature, b: Signature, gamma: float,
             first: bool) -> tuple[Signature, Signature]:
    """``a`` (``first``) or ``b`` with its tone curved: either may be the copy (the fit that
    follows goes from the darker view to the brighter, and a colour profile read without it
    bends each channel its own way: one photo's such copy is 0.12 from its original with the
    original curved by 1.25, 0.29 to 0.51 the other three ways)."""
    return (_curved(a, gamma), b) if first else (a, _curved(b, gamma))


def _turning(a: Signature, b: Signature, degrees: float) -> tuple[Signature, Signature]:
    return _turned(a, degrees), b


def _whitening(a: Signature, b: Signature, gain: float,
               first: bool) -> tuple[Signature, Signature] | None:
    """``a`` (``first``) or ``b`` brightened by ``gain`` at its own pixels (``_whitened``)."""
    s = a if first else b
    decoded = _whitenable(s)
    if decoded is None:
        return None
    w = _brightened(decoded[0], gain, s.side, s.noise)
    return (w, b) if first else (a, w)


def _apart(a: Signature, b: Signature) -> bool:
    """Whether one picture is blank and the other not nearly, or keeps what no copy's
    brightening takes to white or black (``_unmarked``), or both are flat and their
    brightness is further apart than a copy's (FLAT_GAIN)."""
    return any(max(x, y) >= BLANK and min(x, y) < NEARLY_BLANK
               for x, y in zip(a.extremes, b.extremes)) or _flat_apart(a, b) or _unmarked(
        a, b) or _unmarked(b, a)


def _unmarked(blank: Signature, other: Signature) -> bool:
    """Whether ``blank`` is BLANK white or black and ``other``, a file, keeps MARKS of its
    middle off it under any gain a copy is given, at ``blank``'s resolution, and more than
    twice ``blank``'s share that is not."""
    ends = [n for n in (0, 1) if blank.extremes[n] >= BLANK] if blank.measured else []
    if not ends or other.source is None:
        return False
    limit = (254 - blank.noise) / FLAT_GAIN  # brighter, every channel turns white
    shares = _as_it_is(lambda *file: _marks(*file, other.grey, other.turn, blank.measured,
                                            limit), other.source)
    return shares is not None and any(
        shares[n] >= MARKS and 1 - blank.extremes[n] < shares[n] / 2 for n in ends)


# ``_apart`` asks for a pair as given, then as prepared and turned: one file's shares each time
@functools.lru_cache(maxsize=SIGNATURES)
def _marks(path: str, size: int, mtime_ns: int, grey: Mix | None,
           turn: Image.Transpose | None, longer: int, limit: float
           ) -> tuple[float, float] | None:
    """The shares of a file's middle, made grey and turned as given, at ``longer`` pixels at
    most (never enlarged), that stay off white (every channel under ``limit``) and off black
    (over 255 - ``limit``); None when it is no image."""
    decoded = _decoded(path, size, mtime_ns)
    if decoded is None:
        return None
    img = _thumbnail(_as_seen(decoded[0], grey, turn), max(1, longer))
    pixels = np.asarray(img.crop(tuple(round(v) for v in _middle((0, 0, *img.size)))))
    if not pixels.size:
        return 0.0, 0.0
    return (float(_every_channel(pixels, lambda c: c < limit).mean()),
            float(_every_channel(pixels, lambda c: c > 255 - limit).mean()))


def _flat_apart(a: Signature, b: Signature) -> bool:
    """Whether both pictures are flat and their brightness is further apart than a copy's
    (FLAT_GAIN)."""
    floor = evidence.SIMILARITY_FLOOR ** 2
    if max(a.contrast, b.contrast) >= floor:
        return False
    darker, brighter = sorted((float(a.full.mean()), float(b.full.mean())))
    return min(brighter / max(darker, 1.0), (255 - darker) / max(255 - brighter, 1.0)) > FLAT_GAIN


def _fine(s: Signature) -> Signature | None:
    """``s`` with finer views (FINE), from its file; None when it has no more detail to show
    (its file is not larger than its thumbnail by that much, or has less than FINE_DETAIL of
    its contrast in detail the thumbnail does not show) or is gone."""
    if s.source is None or min(s.size) < FINE * min(s.thumb.size):
        return None
    fine = _as_it_is(_fine_signature_of, s.source)
    if fine is None:
        return None
    fine = _greyed(fine, s.grey) if s.grey else fine
    return _oriented(fine, s.turn) if s.turn is not None else fine


@functools.lru_cache(maxsize=FINE_SIGNATURES)
def _fine_signature_of(path: str, size: int, mtime_ns: int) -> Signature | None:
    try:
        fine = signature(path, FINE * THUMB)
    except NotAnImage:
        return None
    return fine if _detail(fine) >= FINE_DETAIL else None


def _detail(s: Signature) -> float:
    """The share of the contrast of ``s``'s thumbnail (a finer one, ``_fine``) in detail that
    a thumbnail FINE times smaller does not show."""
    thumb = np.asarray(s.thumb, np.float32)
    w, h = s.thumb.size
    coarse = s.thumb.resize((max(1, w // FINE), max(1, h // FINE)), Image.Resampling.BOX)
    coarse = np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), np.float32)
    return float(((thumb - coarse) ** 2).mean() / max(evidence.contrast(thumb), 1e-6))


def _whitened(t: _Aligned) -> tuple[Match, float, _Aligned] | None:
    """How the darker of ``t``'s pictures compares with the brighter once it is brightened at
    its own pixels until as large a share of them is white as the brighter has white (at its
    own pixels) in the box they share (that box found again on the brightened picture, and
    tried with a margin, WHITE_MARGIN), by what gain, and its alignment. None unless the
    brighter is WHITE_FROM white and the darker less, both from files."""
    bright, dark = (t.x, t.y) if t.x.extremes[0] >= t.y.extremes[0] else (t.y, t.x)
    if bright.extremes[0] < WHITE_FROM or dark.extremes[0] >= bright.extremes[0]:
        return None
    brighter, darker = _whitenable(bright), _whitenable(dark)
    if brighter is None or darker is None:
        return None
    white, img = brighter[1], darker[0]
    best, box, tried = None, t.box if dark is t.y else None, []
    for margin in (0.0, 0.0, WHITE_MARGIN):  # the box found again after the first
        shared = img if box is None else img.crop(
            tuple(round(v * img.width / dark.thumb.width) for v in box))
        pixels = np.asarray(shared)
        step = max(1, min(shared.size) // 512)  # a sample is enough
        level = float(np.quantile(pixels[::step, ::step].min(axis=2),
                                  min(1.0, 1 - white + margin)))
        gain = min(254.5 / max(level, 1.0), evidence.MAX_GAIN)
        if gain <= 1.0 or gain in tried:
            continue
        tried.append(gain)
        whitened = _brightened(img, gain, dark.side, dark.noise)
        m, aligned = _upright(whitened, bright)
        if best is None:
            box = aligned.box if aligned.y is whitened else None
        if best is None or m.difference < best[0].difference:
            best = m, gain, aligned
        if m.difference <= PLAINLY_ALIKE:
            break
    return best


def _brightened(img: Image.Image, gain: float, side: int, noise: float) -> Signature:
    """The signature of ``img`` (of a file of ``noise``) brightened by ``gain``, clipping at
    white."""
    brightened = signature(img.point([min(255, round(v * gain)) for v in range(256)] * 3), side)
    return dataclasses.replace(brightened, noise=noise * gain)


def _whitenable(s: Signature) -> tuple[Image.Image, float] | None:
    """``s``'s file decoded for ``_whitened`` (WHITENED_DECODE on the shorter side at least,
    twice that on the longer at most) and its share of white there; None when it is not a
    file, or gone."""
    decoded = None if s.source is None else _as_it_is(_decoded, s.source)
    return None if decoded is None else (_as_seen(decoded[0], s.grey, s.turn), decoded[1])


def _as_seen(img: Image.Image, grey: Mix | None, turn: Image.Transpose | None) -> Image.Image:
    """A file's decoded ``img`` made grey and turned as its signature was."""
    img = _grey(img, grey) if grey else img
    return img.transpose(turn) if turn is not None else img


@functools.lru_cache(maxsize=WHITENABLE)
def _decoded(path: str, size: int, mtime_ns: int) -> tuple[Image.Image, float] | None:
    try:
        img = load_image(path, draft_size=WHITENED_DECODE).convert("RGB")
    except NotAnImage:
        return None
    img = _thumbnail(img, 2 * WHITENED_DECODE)  # a PNG has no draft mode
    return img, _extremes(img)[0]


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
    """Whether two images show one picture, and what is left over where they do
    (``_upright``)."""
    return _upright(a, b)[0]


def _upright(a: Signature, b: Signature) -> tuple[Match, _Aligned]:
    """Whether two images show one picture, and what is left over where they do; with the
    alignment that leaves least.

    One image is taken as the whole picture and the other as a box of it (a crop of any
    aspect, found by ``registration``), either way round. Once a copy's change of tone is
    undone, ``similarity`` says how much of the picture's variation at SIGNATURE pixels the
    other explains, a floor of what copying leaves counted in (a flat picture is alike to a
    copy of it, not to another colour), and ``difference`` is the worst of 12 x 12 squares
    of what differs beyond a pixel's misplacement, at the finer resolution both files have
    (at most DIFF_SIZE pixels), and, for faint pictures, in their grain (``grain``). A copy
    is alike everywhere but for a mark put on it along a side (a name, a logo, a date stamp:
    ``evidence.difference``'s marks, the tone fitted without it and the similarity the
    rest's where it outweighs a faint picture, on pictures not under TURNED_FROM pixels);
    a photo with something painted in or moved is not, even when it looks the same as a
    whole."""
    m, t = _placed(a, b)
    return _with_grain(m, t), t


def _placed(a: Signature, b: Signature) -> tuple[Match, _Aligned]:
    """``_upright`` but for the grain: where one picture lies in the other, and how they
    compare there by their views alone."""
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
    return min(results, key=lambda r: _ranked(r[0]))


def _crops(a: Signature, b: Signature, same_shape: bool) -> list[tuple[Match, _Aligned]]:
    """Either picture as a box of the other, the box whose coarse views are most alike of
    those the profiles suggest; measured (polished first where that may help) when it is
    the better of the two or about as good (a page of text, alike shifted by a line)."""
    tried = []
    kept = min(a.contrast, b.contrast) >= FAINT ** 2  # a faint picture's profiles place little
    for x, y in ((a, b), (b, a)):
        boxes = [box for box in locate(np.asarray(x.thumb), np.asarray(y.thumb), kept)
                 if not (same_shape and _whole(box, y))  # the whole was measured
                 and _shows(box, y)]
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
        if PLAINLY_ALIKE < m.difference < POLISH_BELOW and (
                t.x.contrast >= FAINT ** 2 / 4):  # worth moving the box a little
            t = _aligned(t.x, t.y, _polished(t))
            m = _measure(t)
        out.append((m, t))
    return out


def _shows(box: Box, y: Signature) -> bool:
    """Whether ``box`` of ``y`` keeps MIN_SIDE of each side, or shows more than a faint
    picture (FAINT) where it keeps less (a crop to another shape: a dark sky beside the moon
    is no crop of a dark picture)."""
    least = WHOLE_SIDE_BELOW - 1e-6  # ``locate``'s boxes of a crop keeping the pixels' shape
    return (min((box[2] - box[0]) / y.thumb.width, (box[3] - box[1]) / y.thumb.height) >= least
            or evidence.contrast(_view(y.thumb, box)) >= FAINT ** 2)


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
    (the coarser, the more: clipping shows differently); a mark along a side left out where
    neither picture is under TURNED_FROM pixels: the squares over evidence.MARKED where a
    band holds them all, on pictures not faint (FAINT); on any, the squares that differ most,
    where a band along a side holds them (``evidence.mark``), with the tone fitted again
    without them and the similarity the rest's, where that leaves less and they stand out
    from the rest (``evidence.stands_out``: two faint papers differ a little everywhere)."""
    box = t.box
    scale = min((box[2] - box[0]) / t.y.thumb.width, (box[3] - box[1]) / t.y.thumb.height)
    detail = max(1, min(min(t.x.size), round(min(t.y.size) * scale)))  # what the coarser shows
    marks = min(*t.x.size, *t.y.size) >= TURNED_FROM  # a mark shows on a picture's shapes
    faint = min(t.x.contrast, t.y.contrast) < FAINT ** 2
    slack = t.x.noise + t.y.noise
    for size in (ROUGH, DIFF_SIZE * min(t.x.side, t.y.side) // THUMB):
        similarity = t.similarity  # or, where a mark is left out, that of the rest
        x, y = _detailed(t.x.thumb, None, detail, size), _detailed(t.y.thumb, box, detail, size)
        darker, brighter = (y, x) if t.swapped else (x, y)
        tone = evidence.refitted(t.tone, darker, brighter) if detail > size else t.tone
        fitted = tone(darker)
        difference = evidence.difference(fitted, brighter, marks and not faint, slack)
        if marks and difference > evidence.MARKED and (
                band := evidence.mark(fitted, brighter, slack)) is not None:
            keep = ~_pixels(band, size)  # the tone fitted without the mark, which may outweigh
            retoned = evidence.fit(darker[keep][:, None], brighter[keep][:, None],
                                   softly=False)(darker)
            unmarked = evidence.difference(retoned, brighter, True, slack)
            if unmarked < difference and evidence.stands_out(retoned, brighter, band, slack):
                difference, similarity = unmarked, _unmarked_similarity(t, band)
        if difference > CLEARLY_DIFFERENT:
            break
    return Match(similarity, difference)


def _pixels(band: np.ndarray, size: int) -> np.ndarray:
    """The pixels of a view ``size`` pixels a side that lie in ``band``'s squares (in part)."""
    first = (np.arange(size) * evidence.BLOCKS) // size
    last = ((np.arange(size) + 1) * evidence.BLOCKS - 1) // size
    return (band[first][:, first] | band[last][:, last] | band[first][:, last]
            | band[last][:, first])


def _unmarked_similarity(t: _Aligned, band: np.ndarray) -> float:
    """``t``'s similarity outside ``band`` (squares of a mark, ``evidence.mark``), its tone
    fitted there: a mark outweighs a faint picture as a whole."""
    keep = ~_pixels(band, SIGNATURE)
    x, y = t.x.full[keep][:, None], _view(t.y.thumb, t.box)[keep][:, None]
    darker, brighter = (y, x) if t.swapped else (x, y)
    return evidence.similarity(evidence.fit(darker, brighter, softly=False)(darker), brighter)


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
    both have a grain to compare (``grain``): at one scale across and down, and where the
    whole pictures' shapes say the second is stretched (STRETCHED), with its grain brought
    back to the first's shape as well, whichever disagrees least. The alignment's box is not
    asked about the shape: a faint picture's box has little hold, and two papers of one
    shape given a second, chance, scale let another paper's grain pass."""
    x, y, box = t.x, t.y, t.box
    if x.grain is None or y.grain is None or not np.isfinite(m.difference):
        return m
    scale = (box[2] - box[0]) / y.thumb.width * y.grain.width / x.grain.width
    # A picture with no contrast gives the box no hold: its scale is known within a crop's.
    flat = min(x.contrast, y.contrast) < evidence.SIMILARITY_FLOOR ** 2
    spread = 1 / MIN_SIDE if flat else grains.SCALE_STEP
    tone = (t.tone.gain, t.tone.offset, not t.swapped)  # x's levels to y's, or y's to x's
    noise = (x.noise, y.noise)
    grain = grains.difference(x.grain, y.grain, scale, spread, tone, noise)
    across = y.grain.width / x.grain.width  # y's pixels per x's, across and down
    down = (y.grain.width / y.aspect) / (x.grain.width / x.aspect)
    # A plain colour has no grain to stretch, and the other's stretched is only blurred (a
    # half white window less white).
    plain = x.grain.plain or y.grain.plain
    if grain > 0 and abs(np.log(down / across)) > STRETCHED and not plain:
        grain = min(grain, grains.difference(
            x.grain, grains.stretched(y.grain, across / down), across, spread, tone, noise))
    return Match(m.similarity, max(m.difference, grain))


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


def shows_shapes(path: str) -> bool:
    """Whether a file's picture has shapes for ``compare`` to match (it is not FAINT at its
    views): a faint picture matches whatever does not contradict it, a copy of it or another
    paper of its colour alike, so that its matches are no evidence to build on."""
    s = _file_signature(path)
    return s is not None and s.contrast >= FAINT ** 2


def brightness(path: str) -> float | None:
    """A file's picture's mean grey level (ITU-R 601 luma, Pillow's) at its thumbnail,
    inside its bars or frame where it has them (``_inside``); None where it cannot be read.
    What a copy brightened or darkened changes and most copies keep."""
    s = _file_signature(path)
    if s is None:
        return None
    box = _inside(s.thumb.size, s.margins)
    return float(np.mean(np.asarray((s.thumb if box is None else s.thumb.crop(box)).convert("L"))))


def shows_next_to_nothing(path: str) -> bool:
    """Whether a file's picture, inside its bars or frame where it has them (``_trimmed``),
    is FAINT and has no fine detail as strong as text's at its own resolution either
    (TEXT_DETAIL): a plain colour, a smooth gradient, a faint paper match any picture of
    their colour that does not contradict them, so that a copy is not told for certain from
    another such picture. A file that cannot be read is one."""
    s = _file_signature(path)
    if s is None:
        return True
    if _trimmed(s).contrast >= FAINT ** 2:
        return False
    return s.grain is None or s.grain.strength < TEXT_DETAIL


def faint_files(paths: Sequence[str]) -> list[bool]:
    """``shows_next_to_nothing`` of each of ``paths`` (a worker's batch)."""
    return [shows_next_to_nothing(path) for path in paths]


def _file_signature(path: str) -> Signature | None:
    return _as_it_is(_signature_of, path)


def _as_it_is(cached: Callable[[str, int, int], T], path: str) -> T | None:
    """``cached(path, size, mtime_ns)`` of the file as it is now (a cache keyed so serves a
    changed file anew); None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return cached(path, st.st_size, st.st_mtime_ns)


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
