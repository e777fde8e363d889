"""Where one picture lies in another (image registration): the box of a crop, any aspect and
any place, from the pictures' row and column profiles, polished on their views.

A copy is the whole picture or a crop of it, resized (not necessarily keeping the aspect):
the box of the original it shows. The columns of a crop average to a stretch of the
original's column profile, and its rows to a stretch of the row profile, so the box is found
one axis at a time by matching profiles (cheap: a few hundred candidates on 1-d arrays), then
polished on the 2-d views by a short pattern search. Views are area averages computed from a
summed-area table, many boxes at once.
"""

from __future__ import annotations

import itertools

import numpy as np

Box = tuple[float, float, float, float]  # left, top, right, bottom, in a picture's pixels
MIN_SIDE = 0.75  # the shortest box side tried, as a share of the picture's side: 25% cropped
# A crop to another shape that keeps one whole side (a square or a portrait cut from a wide
# photo, a 16:9 band of a 4:3 one) keeps less of the other: its box is tried too, keeping
# KEPT or more of that side (a square of a 16:9 picture keeps 0.56, a 9:16 one 0.32).
KEPT = 0.3
PROFILE = 48  # samples of a profile matched
STEP = 0.01  # of a side: the profile search's grid
# Less of a side than this, a crop keeping the pixels' shape is not searched, and the box
# keeping a whole side is (KEPT).
WHOLE_SIDE_BELOW = MIN_SIDE - STEP
TIE = 0.01  # a larger box wins unless a smaller one matches this much better
CHOICES, SEPARATE = 3, 0.03  # stretches kept of each axis, at least this far apart
POLISH = (0.005, 0.002)  # the 2-d pattern search's steps, as a share of each side


def profiles(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean brightness of each column and of each row: (w,), (h,)."""
    grey = pixels.astype(np.float32).mean(axis=2)
    return grey.mean(axis=0), grey.mean(axis=1)


def _stretches(length: int) -> np.ndarray:
    """Candidate (start, end) stretches of a side as shares of it, each at least MIN_SIDE."""
    grid = np.arange(0.0, 1.0 + STEP / 2, STEP)
    s, e = np.meshgrid(grid, grid, indexing="ij")
    keep = e - s >= MIN_SIDE - 1e-9
    return np.stack([s[keep], e[keep]], axis=1)


def _sample(profile: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``profile`` (of pixel centres) read at ``at`` (shares of its side), linearly."""
    n = len(profile)
    return np.interp(at * n - 0.5, np.arange(n), profile)


def _ncc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's correlation of ``x`` (L,) with each row of ``y`` (K, L)."""
    x = x - x.mean()
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x @ x) * (y * y).sum(axis=1))
    return np.where(den > 1e-6, (y @ x) / np.maximum(den, 1e-12), 0.0)


def stretches(part: np.ndarray, whole: np.ndarray, n: int = CHOICES) -> list[tuple[float, float]]:
    """The ``n`` stretches of ``whole``'s profile that ``part``'s profile matches best, at
    least SEPARATE apart, best first: (start, end) as shares of the side; a tie goes to the
    larger stretch (by TIE); only the whole side when there is nothing to align on."""
    u = (np.arange(PROFILE) + 0.5) / PROFILE
    ends = _stretches(len(whole))
    mine = _sample(part, u)
    if mine.std() < 1e-3:  # nothing to align on: every stretch alike
        return [(0.0, 1.0)]
    score = _ncc(mine, _sample(whole, ends[:, :1] + (ends[:, 1:] - ends[:, :1]) * u))
    score = score + TIE * (ends[:, 1] - ends[:, 0])
    out: list[tuple[float, float]] = []
    for k in np.argsort(-score):
        s, e = ends[k]
        if all(max(abs(s - s2), abs(e - e2)) >= SEPARATE for s2, e2 in out):
            out.append((float(s), float(e)))
            if len(out) == n:
                break
    return out


def placed(part: np.ndarray, whole: np.ndarray, length: float, least: float = MIN_SIDE
           ) -> tuple[float, float] | None:
    """The stretch of ``whole``'s profile of ``length`` (a share of its side) that ``part``'s
    profile matches best, its start on a grid of STEP / 2; None when there is nothing to
    align on or no such stretch (``length`` under ``least`` or over the side)."""
    if not least - STEP <= length <= 1 + STEP:
        return None
    length = min(length, 1.0)
    u = (np.arange(PROFILE) + 0.5) / PROFILE
    mine = _sample(part, u)
    if mine.std() < 1e-3:
        return None
    starts = np.arange(0.0, 1 - length + 1e-9, STEP / 2)
    score = _ncc(mine, _sample(whole, starts[:, None] + length * u))
    start = float(starts[int(np.argmax(score))])
    return start, start + length


def locate(part: np.ndarray, whole: np.ndarray, kept: bool = False) -> list[Box]:
    """Boxes of ``whole`` (h, w, c pixels) that ``part`` (h', w', c) may show, from their
    profiles, in ``whole``'s pixels, the likeliest first: each axis's CHOICES best stretches
    combined (a profile with one strong edge, a screenshot's side bar, leaves its scale
    open: the 2-d views decide); then, for each of them, the stretch of the other axis that
    a crop keeping the pixels' shape has (its length from the pictures' aspects), placed
    where it matches best: a profile with nothing but lines of text (a page, a screenshot
    whose side bar a brightening clipped away) says where a stretch lies better than how
    long it is. With ``kept``, also the box of a crop to ``part``'s shape that keeps one whole
    side of ``whole`` (KEPT), placed along the other where it matches best."""
    (pc, pr), (wc, wr) = profiles(part), profiles(whole)
    h, w = whole.shape[:2]
    cols, rows = stretches(pc, wc), stretches(pr, wr)
    pairs = list(itertools.product(cols, rows))
    across = part.shape[1] / part.shape[0] / (w / h)  # a box's width / height, as shares
    for x0, x1 in cols:
        if (y := placed(pr, wr, (x1 - x0) / across)) is not None:
            pairs.append(((x0, x1), y))
    for y0, y1 in rows:
        if (x := placed(pc, wc, (y1 - y0) * across)) is not None:
            pairs.append((x, (y0, y1)))
    if kept and across < WHOLE_SIDE_BELOW and (x := placed(pc, wc, across, KEPT)) is not None:
        pairs.append((x, (0.0, 1.0)))  # narrower: the whole height kept
    if kept and 1 / across < WHOLE_SIDE_BELOW and (
            y := placed(pr, wr, 1 / across, KEPT)) is not None:
        pairs.append(((0.0, 1.0), y))  # wider: the whole width kept
    out: list[Box] = []
    for (x0, x1), (y0, y1) in pairs:
        box = (x0 * w, y0 * h, x1 * w, y1 * h)
        if box not in out:
            out.append(box)
    return out


def polish(score, box: Box, size: tuple[int, int], best: float) -> tuple[float, Box]:
    """A pattern search from ``box`` over its four sides, ``score(boxes (B, 4)) -> (B,)``
    (higher is better) of boxes that stay inside a picture of ``size`` (w, h) and keep at
    least MIN_SIDE of each side, or as much as ``box`` keeps where less (KEPT): (best score,
    its box)."""
    w, h = size
    at = np.array(box, dtype=np.float64)
    least_w, least_h = (MIN_SIDE * side if length >= MIN_SIDE * side - 1e-6
                        else length - 2 * POLISH[0] * side
                        for length, side in ((at[2] - at[0], w), (at[3] - at[1], h)))
    for step in POLISH:
        delta = np.array([w, h, w, h]) * step
        moved = True
        while moved:
            tries = np.repeat(at[None], 8, axis=0)
            tries[np.arange(8), np.arange(8) // 2] += np.tile([-1, 1], 4) * delta[np.arange(8) // 2]
            ok = ((tries[:, 0] >= 0) & (tries[:, 1] >= 0) & (tries[:, 2] <= w) & (tries[:, 3] <= h)
                  & (tries[:, 2] - tries[:, 0] >= least_w - 1e-6)
                  & (tries[:, 3] - tries[:, 1] >= least_h - 1e-6))
            moved = False
            if ok.any():
                scores = score(tries[ok])
                k = int(np.argmax(scores))
                if scores[k] > best + 1e-6:
                    best, at, moved = float(scores[k]), tries[ok][k], True
    return best, tuple(float(v) for v in at)
