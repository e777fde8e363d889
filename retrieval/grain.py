"""The fine texture of a picture that shows next to nothing at a thumbnail's scale (paper, a
wall, a plain background): a window of it at the decoded resolution, and whether two such
windows show one texture.

Two papers of one colour are told apart by their grain alone, which a thumbnail averages
away. A copy keeps the grain (recompressed, it keeps at least part of it) or loses it (a
small copy, a heavy JPEG: nothing left to contradict the original); another paper has a
grain of its own that the first one's does not explain anywhere (template matching, every
place of the window tried, so that an uncertain crop does not matter), or that runs other
ways where it explains it in part (a grid paper's lines and a ruled one's).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .evidence import MAX_GAIN

# The window: WINDOW pixels a side from the middle of the picture brought to SIDE pixels on
# its shorter side (or as it is, when smaller); its middle TEMPLATE pixels are looked for
# anywhere in the other's window: a crop of up to a fifth of the picture moves the middle
# by less than (WINDOW - TEMPLATE) / 2 pixels. The larger the template, the less another
# texture of the same kind (two papers of horizontal fibres) correlates with it by chance
# at the best of some 10^5 places and scales: 0.35 with 48 pixels, under 0.3 with 96.
SIDE = 768
WINDOW = 256
TEMPLATE = 96
SMOOTH = 2  # radius of the box blur taken off: the grain is what varies within 5 pixels
# Grain weaker than FLOOR grey levels (standard deviation) is within what copying leaves:
# no evidence either way. Two windows of one texture correlate MATCH or more at their best
# place once brought to one scale (the benchmark's copies: 0.45 and more after JPEG at
# quality 50; different papers: 0.1 or less, of one kind of fibre up to 0.3; grid papers of
# other spacings 0.6 to 0.8, sharing their lines: the grain does not tell those apart).
FLOOR = 1.5
MATCH = 0.4
# A grain this strong (8 FLOOR) outlives any copy at its scale but for clipping: the copy keeps
# KEPT of it or more (JPEG at quality 50 kept 0.65 of mypaint's canvas, brought to one scale).
# A picture with next to none of the grain the other's tone change predicts is another one.
STRONG = 12.0
KEPT = 0.25
# A fainter grain, down to GRAIN grey levels (twice FLOOR), keeps a tenth of itself or more (the
# benchmark's copies kept 0.19 and more, the least a 60% copy at JPEG quality 50 of a mypaint
# paper): a flat colour has none of it.
GRAIN, KEPT_FAINT = 3.0, 0.1
# A grain from half FLOOR up that is no noise (``_structured``: its detail correlates
# STRUCTURED or more with itself moved by up to LAG pixels some way; white noise on a plain
# colour, at JPEG quality 90: 0.10 to 0.15; 44 of the kinds set's 51 papers 0.2 to 1.0, the
# others 0.09 to 0.19) is not taken away by a copy at JPEG quality 75 or better (its file's
# noise at most KEEPS_GRAIN: a paper of 1.6 grey levels kept 0.74 of it at 75, 0.34 at 50
# and none at 20; one of 0.97, 0.79 at 75), nor added by one: a picture with next to none of
# it (KEPT_FAINT) is another, a plain colour one of a faint paper's colour or one that
# brightening turns as white (a picture's grain grows with its gain, MAX_GAIN at most, and
# clipping gives it none). Half FLOOR, as the gain fitted between a paper and a brighter
# plain colour takes the paper's grain down as far as a copy's contrast may go (0.73: 1.86
# grey levels to 1.36).
STRUCTURED, LAG, KEEPS_GRAIN = 0.2, 3, 0.6
# A copy is at most MAX_GAIN brighter: the pixels of a window that clipping turned white were
# at least 254 / MAX_GAIN in the original, nearly all of them (WHITE_SHARE: every one, in each
# of the benchmark's 143 true pairs with such a window): a canvas with dark threads does not
# turn all white, nor does a small copy of it, whose threads are averaged; a light paper does.
WHITE_SHARE = 0.98
# Of a window at black or white: clipped this much, the views do not tell how much brighter it
# was made, and so how much of the grain clipping took.
CLIPPED = 0.5
# But where it is white, the darkest of its original's grain is what is left of it: the other
# window brightened by the gain that turns as large a share of it white leaves the same
# residue, correlating with it at its best place (the kinds set's light papers cropped and
# brightened by a tenth against their originals: 0.35 to 0.71), and another paper's does not
# (0.14 at most; a plain colour leaves none). Where neither file's JPEG took its grain
# (KEEPS_GRAIN), a residue of RESIDUE grey levels of detail or more against one under
# KEPT_FAINT of it, or two such residues correlating under MATCH / 2, are two pictures'. Not
# where the darker is SPARSE white itself (a page's few lines, which one window may hold and
# its copy's, moved, not); not correlated where either is GRAIN or more (a page's text: the
# grains' own comparison tells), nor where the pictures were decoded at widths more than
# RESIDUE_SCALE apart (an average of clipped pixels is not the clipping of their average: a
# 40% copy against the cropped and brightened one, 0.19; a copy cropped 5% a side, 1.11).
RESIDUE, SPARSE, RESIDUE_SCALE = 0.25, 0.9, 1.25
# A copy's grain runs the ways its original's does: the fine detail's gradients (a structure
# tensor, ``_directions``) of the template and of the place it matched best point alike. The
# kinds set's copies with the still other copies, turned back, bars cut off, the weaker grain
# FLOOR or more: 0.34 apart at most (JPEG quality 20's blocks); a ruled paper against a grid
# paper, whose grains correlate 0.44 to 0.55 (the lines they share), 0.68 and more. Nor does a
# copy turn a grain a little: it takes away or adds detail every way alike, JPEG's blocks both
# across and down.
DIRECTIONS_APART = 0.5
# Fine detail under NONE grey levels is none at all: a plain colour's JPEG (0 to 0.02 on the
# kinds set, where every other picture with a grain shows 0.146 or more: a gradient's JPEG).
NONE = 0.1
SCALE_STEP = 1.03  # how well the pictures' box gives their scale where it has a hold
# Scales tried this far apart, each stage about the best of the one before, those finer than
# the spread the scale is known within: a texture's correlation peak is a percent wide (a
# copy cropped 5% a side: 0.52 at its scale, 0.31 and 0.15 one and two percent off), too
# narrow for steps of 3% to land on but by chance.
SCALE_STEPS = (SCALE_STEP ** 2, SCALE_STEP, 1.01)
# Where the pictures' bars or sizes say their grains' scales differ, the scale they say is known
# within a line of each picture (bars found a line off: 0.7% on a 300-line picture); the quick
# look at how a grain was turned tries SCALE_NEAR apart across it (a window's pixel, or half).
SCALE_NEAR = 1.005


@dataclass(frozen=True)
class Grain:
    """A window of a picture at its decoded resolution, grey, float32."""

    window: np.ndarray  # (WINDOW, WINDOW) or smaller for a small picture
    width: int  # decoded pixels across the whole picture

    @functools.cached_property
    def strength(self) -> float:
        """How strong the grain is: the standard deviation of the window's fine detail
        (``_high_pass``), in grey levels; kept, as a picture's grain meets many others'."""
        return float(_high_pass(self.window).std())

    @property
    def plain(self) -> bool:
        """Whether the window has no fine detail at all (under NONE grey levels)."""
        return self.strength < NONE


def grain(img: Image.Image) -> Grain:
    """The window in the middle of ``img``, brought to SIDE pixels on its shorter side."""
    if min(img.size) > SIDE:
        f = SIDE / min(img.size)
        box = ((img.width - WINDOW / f) / 2, (img.height - WINDOW / f) / 2)
        box = (*box, box[0] + WINDOW / f, box[1] + WINDOW / f)
        window = img.convert("L").resize((WINDOW, WINDOW), Image.Resampling.BOX, box=box)
        return Grain(np.asarray(window, dtype=np.float32), round(img.width * f))
    w, h = img.size
    n = min(WINDOW, w, h)
    left, top = (w - n) // 2, (h - n) // 2
    window = np.asarray(img.convert("L").crop((left, top, left + n, top + n)), dtype=np.float32)
    return Grain(window, w)


def stretched(g: Grain, factor: float) -> Grain:
    """``g`` with its window ``factor`` times as tall (a copy stretched to another shape
    stretched its grain with it: brought back, it is one scale again)."""
    h, w = g.window.shape
    window = Image.fromarray(g.window, "F").resize((w, max(1, round(h * factor))),
                                                   Image.Resampling.BILINEAR)
    return Grain(np.asarray(window), g.width)


def turned_agreements(x: Grain, y: Grain, turns: Sequence[Callable[[np.ndarray], np.ndarray]],
                      scales: Sequence[float] = (1.0,)) -> list[float]:
    """How well the middle of ``x``'s window correlates at its best place with ``y``'s turned
    each of ``turns`` (functions turning a square array: flips, quarter turns), at the best of
    ``scales``, ``y``'s pixels per pixel of ``x``'s, the finer brought to the coarser's (for
    which way of turning ``y`` is its original's: a quick look). The fine detail is taken once
    a scale, and turned with the sums of its squares, as the blur and the boxes are
    symmetric."""
    out = [0.0] * len(turns)
    as_it_is = _high_pass(_square(x.window))  # x is the coarser at every scale of 1 or more
    for scale in scales:
        a, b = _one_scale(x.window, y.window, scale)
        a = _high_pass(_square(a)) if scale < 1 else as_it_is
        b = _high_pass(_square(b))
        m = min(TEMPLATE, *a.shape, *b.shape)
        if m < TEMPLATE // 2:
            continue
        top = (a.shape[0] - m) // 2
        template = a[top:top + m, top:top + m]
        parts = _Window(b).parts(m)
        for n, turn in enumerate(turns):
            window = _Window(np.ascontiguousarray(turn(b)))
            window._parts[m] = tuple(np.ascontiguousarray(turn(p)) for p in parts)
            out[n] = max(out[n], _best_place(template, window)[0])
    return out


def _square(window: np.ndarray) -> np.ndarray:
    """The largest square in the middle of ``window``."""
    h, w = window.shape
    n = min(h, w)
    return window[(h - n) // 2:(h - n) // 2 + n, (w - n) // 2:(w - n) // 2 + n]


def difference(x: Grain, y: Grain, scale: float, spread: float = 1.0,
               tone: tuple[float, float, bool] | None = None,
               noise: tuple[float, float] = (0.0, 0.0)) -> float:
    """How much ``x``'s grain and ``y``'s disagree, in [0, 1]: 0 when they match or when
    either has next to no grain, 1 when one has a STRONG grain the other lacks or both have
    one (FLOOR) that runs other ways where they match best (DIRECTIONS_APART). ``scale`` is
    ``y``'s decoded pixels per pixel of ``x``'s, known within a factor ``spread`` either way
    (scales tried across it); ``tone``: (gain, offset, x is the darker) of the change that
    brings the darker picture's grey levels to the brighter's (clipping them); ``noise``: the
    grey levels each file's JPEG may have moved its pixels by (``copies._noise``)."""
    best, weak, parts, told = -1.0, 0.0, None, scale
    as_they_are = _high_pass(x.window), _Window(_high_pass(y.window))  # one is, at each scale
    tried: set[float] = set()  # each stage's middle, the best of the one before, is known
    for step in [s for s in SCALE_STEPS if s < spread] or SCALE_STEPS[-1:]:
        steps = int(np.ceil(np.log(spread) / np.log(step) - 1e-9))
        for k in scale * step ** np.arange(-steps, steps + 1):
            if float(k) in tried:
                continue
            rho, e, matched = _agreement(x.window, y.window, k, as_they_are)
            tried.add(float(k))
            if rho > best:
                best, weak, at, parts = rho, e, k, matched
        scale, spread = at, step
    alike = abs(np.log(y.width / x.width)) <= np.log(RESIDUE_SCALE)  # decoded as finely
    # A window with no detail at all (a plain colour's JPEG) matches nothing: the scale found
    # is chance, and the other window brought to it loses what it shows (averaged, a half
    # white one is not clipped any more). What one lacks is then measured at the scale the
    # pictures' boxes say, the same whichever is first.
    if tone is not None and _lost(x.window, y.window, told if x.plain or y.plain else at,
                                  *tone, noise, alike):
        return 1.0
    if weak >= FLOOR and parts is not None and float(np.linalg.norm(
            _directions(parts[0]) - _directions(parts[1]))) > DIRECTIONS_APART:
        return 1.0
    if weak <= FLOOR / 2:
        return 0.0
    return max(0.0, 1 - best / MATCH) * weak ** 2 / (weak ** 2 + FLOOR ** 2)


def _agreement(a: np.ndarray, b: np.ndarray, scale: float,
               as_they_are: tuple[np.ndarray, "_Window"]
               ) -> tuple[float, float, tuple[np.ndarray, np.ndarray] | None]:
    """(the best correlation of the middle of ``a`` with a place of ``b``, the weaker grain's
    standard deviation there, and that middle and that place, high-passed) once both are at
    the coarser one's scale; (1, 0, None) when too small to tell. ``as_they_are``: ``a``
    and ``b`` high-passed (``b`` to be searched)."""
    a, b = _one_scale(a, b, scale)
    if min(a.shape) < TEMPLATE // 2 or min(b.shape) < TEMPLATE // 2:
        return 1.0, 0.0, None
    a = _high_pass(a) if scale < 1 else as_they_are[0]
    window = _Window(_high_pass(b)) if scale > 1 else as_they_are[1]
    m = min(TEMPLATE, *a.shape, *b.shape)
    top, left = (a.shape[0] - m) // 2, (a.shape[1] - m) // 2
    template = a[top:top + m, left:left + m]
    rho, found, part = _best_place(template, window)
    return rho, min(float(template.std()), found), (template, part)


def _lost(a: np.ndarray, b: np.ndarray, scale: float, gain: float, offset: float,
          a_darker: bool, noise: tuple[float, float] = (0.0, 0.0), alike: bool = False) -> bool:
    """Whether, at the coarser one's scale, either window lacks a STRONG grain the other has,
    or nearly all of a fainter one (GRAIN; the darker's with its tone changed as the
    brighter's was, clipped where it clips), or of one from half FLOOR up that is no noise
    where its file kept what it had (STRUCTURED, KEEPS_GRAIN); when the brighter is mostly
    clipped, whether it is whiter than the darker brightened as much as a copy is (MAX_GAIN),
    or has a grain that no brightening of the darker gives it, or, clipped white, another
    picture's residue (``_other_residue``; ``alike``: the two decoded about as finely)."""
    a, b = _one_scale(a, b, scale)
    darker, brighter = (a, b) if a_darker else (b, a)
    noisy = noise if a_darker else noise[::-1]  # the darker's file's, the brighter's
    white = float((brighter >= 254).mean())
    if white >= CLIPPED and (darker >= 254 / MAX_GAIN).mean() < WHITE_SHARE * white:
        return True  # more of it white than any brightening of the darker makes
    seen = _high_pass(brighter)
    if white + float((brighter <= 1).mean()) >= CLIPPED:  # the gain is not known, but no gain
        most = MAX_GAIN * float(_high_pass(darker).std())  # gives a grain to one that has none
        return _lacks(most, float(seen.std()), noisy[0], seen) or (
            white >= CLIPPED and _other_residue(darker, brighter, white, noisy, alike))
    changed = _high_pass(np.clip(gain * darker + offset, 0, 255))
    predicted, shown = float(changed.std()), float(seen.std())
    if predicted < shown:
        return _lacks(predicted, shown, noisy[0], seen)
    return _lacks(shown, predicted, noisy[1], changed)


def _other_residue(darker: np.ndarray, brighter: np.ndarray, white: float,
                   noise: tuple[float, float], alike: bool) -> bool:
    """Whether ``brighter``, ``white`` of it clipped white, keeps where it is not another
    picture's darkest grain than ``darker``'s brightened by the gain that turns as much of it
    white (RESIDUE, both under GRAIN, of pictures decoded ``alike``), or either of them a
    residue where the other has next to none (KEPT_FAINT): of files that kept their grain
    (KEEPS_GRAIN), ``darker`` not SPARSE white itself."""
    if max(noise) > KEEPS_GRAIN or float((darker >= 254).mean()) >= SPARSE:
        return False
    levels = np.sort(darker, axis=None)
    n = int(np.ceil((1 - white) * len(levels)))  # the darkest, that stay off white
    above = levels[levels > levels[n - 1]] if n else levels  # none of a level half turned
    level = float(above[0]) if len(above) else 255.0
    changed = np.clip(min(max(254.5 / max(level, 1.0), 1.0), MAX_GAIN) * darker, 0, 255)
    detail = _high_pass(changed), _high_pass(brighter)
    weaker, stronger = sorted((float(detail[0].std()), float(detail[1].std())))
    if stronger < RESIDUE or weaker < KEPT_FAINT * stronger:  # a residue on one alone
        return stronger >= RESIDUE
    if not RESIDUE <= weaker < GRAIN or not alike:  # a text's: the grains' comparison tells
        return False
    rho = max(_agreement(changed, brighter, 1.0, (detail[0], _Window(detail[1])))[0],
              _agreement(brighter, changed, 1.0, (detail[1], _Window(detail[0])))[0])
    return rho < MATCH / 2


def _lacks(weaker: float, stronger: float, noise: float, detail: np.ndarray) -> bool:
    """Whether a grain ``weaker`` (standard deviation) is none of one ``stronger``, whose
    ``detail`` it is (high-passed): a STRONG one lost but for KEPT of it, a fainter one (GRAIN)
    but for KEPT_FAINT, or one from half FLOOR up that is no noise (STRUCTURED), where the
    weaker's file would have kept it (``noise``, KEEPS_GRAIN)."""
    if stronger >= STRONG and weaker < KEPT * stronger:
        return True
    if weaker >= KEPT_FAINT * stronger:
        return False
    return stronger >= GRAIN or (stronger >= FLOOR / 2 and noise <= KEEPS_GRAIN
                                 and _structured(detail))


def _structured(detail: np.ndarray) -> bool:
    """Whether high-passed ``detail`` is no noise: it correlates STRUCTURED or more with
    itself moved by up to LAG pixels some way (circularly); not where it is too small to
    move so (a window brought far down to a thumbnail's scale)."""
    if min(detail.shape) <= 2 * LAG:
        return False
    d = detail - detail.mean()
    spectrum = np.fft.rfft2(d)
    ac = np.fft.irfft2(spectrum * np.conj(spectrum), d.shape)
    if ac[0, 0] <= 1e-6:
        return False
    lags = np.arange(-LAG, LAG + 1)
    near = np.abs(ac[np.ix_(lags % d.shape[0], lags % d.shape[1])]) / ac[0, 0]
    near[LAG, LAG] = 0.0  # itself, unmoved
    return float(near.max()) >= STRUCTURED


def _one_scale(a: np.ndarray, b: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``a`` and ``b``, ``b`` at ``scale`` pixels per pixel of ``a``'s, at the coarser
    one's scale: the finer brought down to it (the other as it is)."""
    if scale < 1:  # b is the coarser
        return _resized(a, scale), b
    if scale > 1:
        return a, _resized(b, 1 / scale)
    return a, b


def _resized(window: np.ndarray, factor: float) -> np.ndarray:
    h, w = window.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(window, "F").resize(size, Image.Resampling.BOX))


def _high_pass(window: np.ndarray) -> np.ndarray:
    """What varies within 2 SMOOTH + 1 pixels: the window less its box blur."""
    k = 2 * SMOOTH + 1
    blurred = _box_sums(np.pad(window, SMOOTH, mode="edge"), k) / (k * k)
    return (window - blurred).astype(np.float32)


class _Window:
    """A high-passed window that templates are looked for in, with what every search of it
    needs made once: its Fourier transform, and the sums and sums of squares of its m x m
    parts."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.shape = tuple(_fast_length(n) for n in pixels.shape)  # zeros past its sides
        self.spectrum = np.fft.rfft2(pixels, self.shape)
        self._parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def parts(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        if m not in self._parts:
            self._parts[m] = _box_sums(self.pixels, m), _box_sums(self.pixels ** 2, m)
        return self._parts[m]


def _fast_length(n: int) -> int:
    """The least length from ``n`` up of no prime factor but 2, 3 and 5: an FFT's fastest
    (a window of 241 pixels a side transforms at 243 in a third of the time or less)."""
    while True:
        k = n
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return n
        n += 1


def _best_place(template: np.ndarray, window: _Window) -> tuple[float, float, np.ndarray]:
    """The best normalised correlation of ``template`` (m, m) with an m x m part of
    ``window``, every place tried (FFT), the standard deviation of that part, and the part."""
    m = template.shape[0]
    h, w = window.pixels.shape
    t = template - template.mean()
    t_norm = float(np.sqrt((t * t).sum()))
    if t_norm < 1e-6:
        return 0.0, 0.0, template
    # Circular at the window's padded size: a placement wholly inside it wraps nowhere.
    corr = np.fft.irfft2(window.spectrum * np.conj(np.fft.rfft2(t, window.shape)),
                         window.shape)
    corr = corr[:h - m + 1, :w - m + 1]  # placements wholly inside the window
    sums, squares = window.parts(m)
    var = np.maximum(squares - sums ** 2 / (m * m), 1e-6)  # m^2 x the part's variance
    ncc = corr / (t_norm * np.sqrt(var))
    i = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    return (float(ncc[i]), float(np.sqrt(var[i] / (m * m))),
            window.pixels[i[0]:i[0] + m, i[1]:i[1] + m])


def _directions(detail: np.ndarray) -> np.ndarray:
    """Which ways ``detail`` (high-passed) runs: its gradients' structure tensor (Jxx, Jyy,
    Jxy) as ((Jxx - Jyy), 2 Jxy) / (Jxx + Jyy), nought every way alike and of length 1 all
    one way (a ruled paper's lines: (-1, 0) across, (1, 0) down); central differences, in
    which noise runs no way."""
    gx = detail[1:-1, 2:] - detail[1:-1, :-2]
    gy = detail[2:, 1:-1] - detail[:-2, 1:-1]
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    return np.array([jxx - jyy, 2 * jxy]) / max(jxx + jyy, 1e-6)


def _box_sums(a: np.ndarray, m: int) -> np.ndarray:
    """The sums of every m x m part of ``a``: (h - m + 1, w - m + 1)."""
    h, w = a.shape
    c = np.zeros((h + 1, w + 1))  # the sums of a[:i, :j], in place
    np.cumsum(a, axis=0, dtype=np.float64, out=c[1:, 1:])
    np.cumsum(c[1:, 1:], axis=1, out=c[1:, 1:])
    return c[m:, m:] - c[:-m, m:] - c[m:, :-m] + c[:-m, :-m]
