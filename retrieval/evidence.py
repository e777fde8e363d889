"""How alike two aligned views of pictures are once a copy's change of tone is undone, measured
against the floor of what copying leaves behind (the pixel check's two figures).

Views are float32 (h, w, 3) arrays in grey levels 0-255 of one picture and the box of another
it was aligned with. A copy changes the tone of a picture as a whole (brighter, more contrast,
clipped, a colour profile): ``fit`` finds such a change from the coarse views and ``Tone``
applies it to views of any size. ``similarity`` and ``difference`` then say what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# What copying leaves behind when nothing else differs, in grey levels: rounding, JPEG's
# quantisation (near white it clips as well), a tone curve's departure from a straight line.
# Differences are measured against the picture's contrast and this floor together, so that a
# picture with no contrast (a white page, a sky) is judged by how far its pixels are apart,
# not in units of a contrast close to nothing. The benchmark's copies of flat pictures: 2.2
# levels (root mean square) at most, after brightening until they clip and JPEG.
SIMILARITY_FLOOR = 6.0  # at the coarse views (32 pixels)
DIFFERENCE_FLOOR = 8.0  # at the fine views (96 pixels), where JPEG's noise is averaged less
MAX_GAIN = 1.7  # a copy is at most this much brighter or darker
GAINS = (1.1, 1.2, 1.3, 1.4, 1.6)  # brightened until it clips: tried as they are
FIT_VALUES = 4096  # values a tone is fitted on at most (a coarser sample of larger views)
SOFT = (10.0, 25.0, 50.0)  # spreads of the file's pixels under a view's pixel tried
LOGISTIC = 1.702  # the logistic that is closest to the normal's distribution function
# A contrast change pivots about a grey level: in the picture (0 to 255), or outside it where
# the views average pixels of which some clipped (text on a white page brightened).
PIVOT = (-255.0, 510.0)
SATURATED = (2.0, 253.0)  # values outside this range may be clipped: the fit skips them
CHANNEL_GAIN = 1.5  # one channel's contrast may change this much more than the others'
MIXED = 0.3  # of another channel's values: the most a channel takes (a colour profile: 0.2)
CAST = 0.25  # of the contrast: how far one channel's mean may move on its own
BLOCKS = 12  # squares a side ``difference`` looks at (each 1/12 of the picture's side)
# A difference between these is measured again on views softened by SOFTENED pixels (it
# takes away a half to two thirds of what a resampling's phase leaves: 0.30 -> 0.10).
SOFTEN_ABOVE, SOFTEN_BELOW, SOFTENED = 0.1, 0.6, 0.7
# A mark put on a copy (a photographer's name, a logo, a date stamp) lies along a side: where
# asked, the squares that differ more than MARKED all within a band along one side, MARK_DEPTH
# squares deep and MARK_SPAN long at most (a sixth and a half of the side), are left out.
# A mark outweighs a faint picture (a page, a paper, a screenshot's blank window): the tone
# fitted to it leaves every square different. Where more than MARKED is left, the squares
# that differ most, as many as such a band holds (``mark``), are taken for the mark, and the
# tone is fitted again without them (``copies._measure``); the mark must stand out then
# (``stands_out``: its squares' median MARK_APART times any other square's difference),
# where two faint papers differ alike everywhere. The kinds set's papers, flat colours, pages
# and screenshots with a name in a corner: the mark's median 0.62 to 4.5, every other square
# 0.04 at most; the pairs of different papers whose difference such a band and tone brought
# under 0.2: the band's median no more than the worst other square.
MARKED, MARK_DEPTH, MARK_SPAN, MARK_APART = 0.1, 2, 6, 2.0


@dataclass(frozen=True)
class Tone:
    """A copy's change of tone: ``x`` -> gain x + offset for every channel, clipped at white
    (``_clipped``: softly where a view's pixel averages the file's pixels of which some
    clipped), then the channels' values about ``centre`` mixed by ``mix`` (each channel's
    contrast, and a colour profile's or a saturation change's mixing of the channels) and
    their means moved by ``shift``."""

    gain: float
    offset: float
    soft: float  # grey levels: how spread the file's pixels under a view's pixel are
    centre: np.ndarray  # (3,) the channels' means after the first step, on the fitted views
    mix: np.ndarray  # (3, 3): channel i of the result from the channels j: mix[i, j]
    shift: np.ndarray  # (3,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        f = _clipped(self.gain * x + self.offset, self.soft)
        f = f @ self.mix.T.astype(np.float32)  # mix (f - centre) + centre + shift
        f += self.centre + self.shift - self.mix @ self.centre
        return np.clip(f, 0, 255, out=f)


def _clipped(v: np.ndarray, soft: float) -> np.ndarray:
    """``v`` clipped to 0-255; with ``soft`` > 0, the mean of min(V, 255) for V spread about
    ``v`` by ``soft`` (a logistic for the normal: softplus), as a view of a clipped file shows."""
    if soft > 0:
        k = LOGISTIC / soft
        v = v - np.logaddexp(0, k * (v - 255)) / k
    return np.clip(v, 0, 255).astype(np.float32)


def refitted(tone: Tone, x: np.ndarray, y: np.ndarray) -> Tone:
    """``tone``, or the tone fitted again on these views (of another size) where the
    brighter comes near white and the refit leaves less: a view's pixel averages more of
    the file's the coarser it is, and clipping shows differently at every size."""
    if y.max() < SATURATED[1] - 20:
        return tone
    return min((tone, fit(x, y, mixing=False)), key=lambda t: float(((t(x) - y) ** 2).sum()))


def ordered(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The darker view first (brightening clips: the brighter is the one to predict), and
    whether they were swapped."""
    return (x, y, False) if x.mean() <= y.mean() else (y, x, True)


def contrast(view: np.ndarray) -> float:
    """The variance of a view's values about each channel's mean."""
    values = view.reshape(-1, view.shape[-1])
    centred = values - values.mean(axis=0)
    return float(np.einsum("ij,ij->", centred, centred, dtype=np.float64)) / centred.size


def fit(x: np.ndarray, y: np.ndarray, softly: bool = True, mixing: bool = True) -> Tone:
    """The change of tone that brings ``x`` closest to ``y`` (the brighter): one gain g and
    one offset o for every channel (a copy's colours change together), g within MAX_GAIN
    either way and pulled towards 1 by the floor (a flat picture shows no gain), o what a
    contrast change about a grey level gives ((1 - g) p, p within PIVOT), or ``x``
    brightened and clipped (GAINS, and the gain where nothing clips); then each channel's
    gain and mean as ``y``'s where the picture has the contrast to show them (CHANNEL_GAIN,
    CAST: clipping in part of a pixel, a colour profile; a flat picture keeps its colour).
    ``softly``: the views' pixels average several of the files' (clipping may be soft)."""
    step = max(1, int(np.sqrt(x.size / FIT_VALUES)))  # the candidates tried on a sample
    xs, ys = x[::step, ::step], y[::step, ::step]

    def residual(c: tuple[float, float, float]) -> float:
        return float(((_clipped(c[0] * xs + c[1], c[2]) - ys) ** 2).sum())

    candidates = _candidates(xs, ys)  # none clips softly: all measured at once
    g, o = (np.array([c[k] for c in candidates], np.float32)[:, None, None, None] for k in (0, 1))
    fitted = np.clip(g * xs + o, 0, 255) - ys  # (candidates, h, w, 3)
    gain, offset, soft = candidates[int(np.argmin(np.einsum("cijk,cijk->c", fitted, fitted)))]
    if softly and offset == 0 and ys.max() >= SATURATED[1] - 20:  # brightened near white
        gain, offset, soft = min([(gain, 0.0, s) for s in (0.0, *SOFT)], key=residual)
    f = _clipped(gain * x + offset, soft)
    fm, ym = f.mean(axis=(0, 1)), y.mean(axis=(0, 1))  # (3,)
    cast = CAST * np.sqrt(contrast(y))
    mix = _mix(f - fm, y - ym, MIXED if mixing else 0.0)
    return Tone(gain, offset, soft, fm, mix, np.clip(ym - fm, -cast, cast))


def _mix(df: np.ndarray, dy: np.ndarray, mixed: float) -> np.ndarray:
    """The 3 x 3 mix of the channels of ``df`` that comes closest to ``dy`` (both centred),
    pulled towards leaving each channel as it is by SIMILARITY_FLOOR (a picture with little
    contrast shows no mixing, a flat one keeps its colour); each channel's own gain within
    CHANNEL_GAIN either way and what it takes from the others within ``mixed``."""
    f, y = df.reshape(-1, 3).astype(np.float64), dy.reshape(-1, 3).astype(np.float64)
    floor = SIMILARITY_FLOOR ** 2
    if mixed > 0:
        mix = np.linalg.solve(f.T @ f / len(f) + floor * np.eye(3),
                              f.T @ y / len(f) + floor * np.eye(3)).T
    else:  # each channel on its own
        mix = np.diag(((f * y).mean(axis=0) + floor) / ((f * f).mean(axis=0) + floor))
    diagonal = np.clip(np.diag(mix), 1 / CHANNEL_GAIN, CHANNEL_GAIN)
    mix = np.clip(mix, -mixed, mixed)
    np.fill_diagonal(mix, diagonal)
    return mix


def _candidates(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float, float]]:
    """(gain, offset, soft): fitted freely, about black and about white where allowed, and
    brightenings that clip (``fit`` then tries them clipping softly, SOFT)."""
    xs, ys = x.reshape(-1), y.reshape(-1)
    keep = (xs > SATURATED[0]) & (xs < SATURATED[1]) & (ys > SATURATED[0]) & (ys < SATURATED[1])
    xk, yk = (xs[keep], ys[keep]) if keep.sum() >= 0.05 * len(xs) else (xs, ys)
    floor = SIMILARITY_FLOOR ** 2
    out = []
    for grey in (None, 0.0, 255.0):  # free, then about black (a gain alone) and about white
        cx = float(xk.mean()) if grey is None else grey
        cy = float(yk.mean()) if grey is None else grey
        dx, dy = xk - cx, yk - cy
        gain = float(np.clip((dx @ dy / len(dx) + floor) / (dx @ dx / len(dx) + floor),
                             1 / MAX_GAIN, MAX_GAIN))
        offset = cy - gain * cx
        if abs(offset) <= 1e-6 or PIVOT[0] <= offset / (1 - gain + 1e-12) <= PIVOT[1]:
            out.append((gain, offset, 0.0))
    below = ys < SATURATED[1] - 10  # surely not clipped: where a brightening shows its gain
    gains = list(GAINS)
    if below.sum() >= 0.05 * len(ys):
        gains.append(float(np.clip(xs[below] @ ys[below] / max(float(xs[below] @ xs[below]), 1e-6),
                                   1, MAX_GAIN)))
    return out + [(g, 0.0, 0.0) for g in gains]


def similarity(fitted: np.ndarray, y: np.ndarray) -> float:
    """How much of ``y``'s variation ``fitted`` (the other view, its tone matched) explains,
    the variation counted with SIMILARITY_FLOOR^2 added: in [0, 1], about Pearson's
    correlation for pictures of some contrast, 1 for two views of one flat colour."""
    residual = float(((fitted - y) ** 2).mean())
    return float(np.sqrt(max(0.0, 1 - residual / (contrast(y) + SIMILARITY_FLOOR ** 2))))


def difference(fitted: np.ndarray, y: np.ndarray, marks: bool = False,
               slack: float = 0.0) -> float:
    """The worst of BLOCKS^2 squares of two views of one size (a multiple of BLOCKS): how far
    each pixel of either falls outside the range of the other around it (3 x 3, so that
    resampling and a pixel's misplacement do not count), less ``slack`` grey levels (what
    the files' encoding may have moved them), over ``y``'s contrast and
    DIFFERENCE_FLOOR together; with ``marks``, of those outside a mark (``_unmarked``). Where
    that is between SOFTEN_ABOVE and SOFTEN_BELOW, the views softened by SOFTENED pixels are
    measured as well and the smaller counts: detail as fine as the views' pixels (a
    screenshot's text) is drawn differently by a resampling at another phase, as a crop's is."""
    worst = _unmarked(_squares(fitted, y, slack), marks)
    if SOFTEN_ABOVE < worst < SOFTEN_BELOW:
        worst = min(worst, _unmarked(_squares(_softened(fitted), _softened(y), slack), marks))
    return worst


def _squares(fitted: np.ndarray, y: np.ndarray, slack: float = 0.0) -> np.ndarray:
    """``difference`` of each of the BLOCKS x BLOCKS squares."""
    a, b = np.rint(fitted).astype(np.uint8), np.rint(y).astype(np.uint8)  # to the grey level
    out = np.maximum(_beyond(a, b, slack), _beyond(b, a, slack))
    k = y.shape[0] // BLOCKS
    squares = out.reshape(BLOCKS, k, BLOCKS, k).mean(axis=(1, 3)) / a.shape[2]
    return squares / np.sqrt(contrast(y) + DIFFERENCE_FLOOR ** 2)


def _unmarked(squares: np.ndarray, marks: bool) -> float:
    """The worst of ``squares``; with ``marks``, where those over MARKED all lie in a band
    along a side (``_band``), the worst of the others."""
    if marks and _band(squares, MARKED) is not None:
        return float(squares[squares <= MARKED].max(initial=0.0))
    return float(squares.max())


def _band(squares: np.ndarray, level: float) -> np.ndarray | None:
    """The band along a side (MARK_DEPTH, MARK_SPAN) that holds every one of ``squares`` over
    ``level``, as a mask of the squares; None where there is none, or none is over."""
    rows, cols = np.nonzero(squares > level)
    if not len(rows):
        return None
    last = BLOCKS - 1
    r, c = np.mgrid[0:BLOCKS, 0:BLOCKS]
    across = (cols.min() <= c) & (c <= cols.max())
    down = (rows.min() <= r) & (r <= rows.max())
    for depth, span, band in ((rows.max() + 1, np.ptp(cols), (r <= rows.max()) & across),  # top
                              (last - rows.min() + 1, np.ptp(cols), (r >= rows.min()) & across),
                              (cols.max() + 1, np.ptp(rows), (c <= cols.max()) & down),  # left
                              (last - cols.min() + 1, np.ptp(rows), (c >= cols.min()) & down)):
        if depth <= MARK_DEPTH and span + 1 <= MARK_SPAN:
            return band
    return None


def mark(fitted: np.ndarray, y: np.ndarray, slack: float = 0.0) -> np.ndarray | None:
    """The band along a side (MARK_DEPTH, MARK_SPAN) of the squares (BLOCKS x BLOCKS) of two
    views that differ most, as many of them as one holds; None where the most different is
    not along a side, or none differs more than MARKED."""
    squares = _squares(fitted, y, slack)
    band = None
    for level in [*np.sort(squares[squares > MARKED])[::-1][1:], MARKED]:  # one square more
        if (wider := _band(squares, level)) is None:
            break
        band = wider
    return band


def stands_out(fitted: np.ndarray, y: np.ndarray, band: np.ndarray, slack: float = 0.0) -> bool:
    """Whether the squares of ``band`` (a mark: ``mark``) differ, at their median, more than
    MARK_APART times as much as any other square of the two views."""
    squares = _squares(fitted, y, slack)
    return float(np.median(squares[band])) > MARK_APART * float(squares[~band].max())


def _softened(view: np.ndarray) -> np.ndarray:
    """``view`` blurred by a Gaussian of SOFTENED pixels (3 x 3), its edges repeated."""
    w = np.exp(-1 / (2 * SOFTENED ** 2))
    k = np.array([w, 1, w], np.float32) / (1 + 2 * w)
    p = np.pad(view, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = k[0] * p[:-2] + k[1] * p[1:-1] + k[2] * p[2:]
    return k[0] * rows[:, :-2] + k[1] * rows[:, 1:-1] + k[2] * rows[:, 2:]


def _beyond(x: np.ndarray, y: np.ndarray, slack: float = 0.0) -> np.ndarray:
    """How far each pixel of ``y`` falls outside the range of ``x`` around it, less ``slack``,
    summed over the channels: (h, w); both uint8 (h, w, c)."""
    h, w, c = x.shape
    p = np.empty((h + 2, w + 2, c), x.dtype)  # x with its edge repeated around it
    p[1:-1, 1:-1] = x
    p[0], p[-1] = p[1], p[-2]
    p[:, 0], p[:, -1] = p[:, 1], p[:, -2]
    hi = np.maximum(np.maximum(p[:-2], p[1:-1]), p[2:])  # over 3 rows, then 3 columns
    lo = np.minimum(np.minimum(p[:-2], p[1:-1]), p[2:])
    hi = np.maximum(np.maximum(hi[:, :-2], hi[:, 1:-1]), hi[:, 2:]).astype(np.int16)
    lo = np.minimum(np.minimum(lo[:, :-2], lo[:, 1:-1]), lo[:, 2:]).astype(np.int16)
    y = y.astype(np.int16)
    return np.maximum(np.maximum(y - hi, lo - y) - np.float32(slack), 0).sum(axis=2)
