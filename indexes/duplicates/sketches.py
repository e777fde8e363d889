"""`retrieve duplicates`' second source of candidate pairs: each image's sketch
(``retrieval.sketch``), its nearest sketches offered to the pixel check beside fc7's pairs, and
the nearest to its inner sketch (what a crop of it sketches like) and to its framed sketch
(inside its bars or frame, where it has them: what its original sketches like).

fc7 misses copies that its weights were not trained to see as one picture (with random weights,
a brightened paper), or crowds them out of the k nearest among many pictures alike (papers,
garments); the sketch keeps what a copy keeps whatever the network makes of it. Sketches are
saved in DIR/duplicates.sqlite by path, size and modification time: a rerun decodes only new
and changed files (the first run decodes every file once, at 256 pixels).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import faiss
import numpy as np

from retrieval.errors import NotAnImage
from retrieval.images import load_image
from retrieval.sketch import DIMENSION, PATTERN, SKETCH, framed_sketch, inner_sketch, sketch

from indexes.duplicates.groups import mapping
from indexes.duplicates.progress import Progress

if TYPE_CHECKING:
    from indexes.duplicates.find import State

DECODE = 256  # pixels at least on the shorter side a file is decoded at (JPEG's draft mode)
# Sketches whose patterns correlate less than about 0.95 (unit patterns this far apart) are
# not offered: unrelated pictures are about 1.4 apart.
RADIUS = 0.3
BATCH = 256  # files sketched per saved step
POOL_FROM = 512  # files to decode before worker processes pay for themselves (~20 ms a file)
FLAT_UP_TO = 100_000  # sketches searched exactly; more, through inverted lists (IVF)
# A copy whose colours were changed (greyed, toned sepia, warmed, saturated) keeps the pattern of
# its original but not its colour: a sketch with a pattern at least SHAPED long (the floor's:
# next to flat, which every flat picture's pattern is near) is searched among the patterns
# alone too (the fresh copies' sepia ones: 18 of 74 offered with none of their picture's files
# by fc7 nor their whole sketches, all of them by their patterns), unless every sketch is a
# grey picture's (its colour this near grey: each channel within about 1% of the grey mean).
GREY, SHAPED = 0.03, 0.5
# A sketch with a pattern (SHAPED) is also searched for mirrored and turned by quarters (its
# squares moved so: a copy mirrored or turned sketches as its original would so moved), each
# way that moves it more than RADIUS (a symmetric picture's are its own neighbours).
NPROBE = 16
ROW = 3 * DIMENSION  # a file's sketch, inner sketch and framed sketch (NaN: no bars nor frame)


def sketch_files(paths: Sequence[str]) -> list[np.ndarray | None]:
    """The sketch, inner sketch and framed sketch (NaN where it has no bars nor frame) of each
    file, one after the other (None where it cannot be decoded)."""
    out = []
    for path in paths:
        try:
            img = load_image(path, draft_size=DECODE).convert("RGB")
        except NotAnImage:
            out.append(None)
            continue
        framed = framed_sketch(img)
        out.append(np.concatenate([sketch(img), inner_sketch(img),
                                   np.full(DIMENSION, np.nan) if framed is None else framed]))
    return out


def sketches(items: dict[int, str], state: State, progress: Progress, workers: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n,), sketches (n, ROW) float32: sketch, inner sketch, framed sketch) of the readable
    ``items``, saved in the state's sketches table as they are made, in ``workers`` processes
    when there are POOL_FROM files or more to decode."""
    known = {}
    for path, size, mtime_ns, blob in state.db.execute(
            "SELECT path, size, mtime_ns, vector FROM sketches"):
        known[path] = (size, mtime_ns, blob)
    ids, rows, todo = [], [], []
    for i, path in items.items():
        try:
            st = os.stat(path)
        except OSError:
            continue
        key = os.fsencode(path)
        saved = known.get(key)
        if saved is not None and saved[:2] == (st.st_size, st.st_mtime_ns) and (
                saved[2] is None or len(saved[2]) == ROW * 4):  # not an older kind
            if saved[2] is not None:
                ids.append(i)
                rows.append(np.frombuffer(saved[2], np.float32))
        else:
            todo.append((i, path, st))
    batches = [todo[s:s + BATCH] for s in range(0, len(todo), BATCH)]
    with progress.stage("sketching", len(items), "files") as advance, \
            mapping(workers if len(todo) >= POOL_FROM else 0) as mapped:
        advance(len(items) - len(todo))
        files = ([path for _, path, _ in batch] for batch in batches)
        for batch, made in zip(batches, mapped(sketch_files, files)):
            with state.transaction():  # saved a batch at a time
                state.db.executemany(
                    "INSERT OR REPLACE INTO sketches VALUES (?, ?, ?, ?)",
                    [(os.fsencode(path), st.st_size, st.st_mtime_ns,
                      None if v is None else v.astype(np.float32).tobytes())
                     for (_, path, st), v in zip(batch, made)])
            for (i, _, _), v in zip(batch, made):
                if v is not None:
                    ids.append(i)
                    rows.append(v)
            advance(len(batch))
    xb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, ROW), np.float32)
    return np.asarray(ids, dtype=np.int64), np.ascontiguousarray(xb)


def near_pairs(ids: np.ndarray, xb: np.ndarray, k: int) -> set[tuple[int, int]]:
    """(a, b), a < b, of each sketch's ``k`` nearest others within RADIUS, of each inner
    sketch's (a row's second part, where there is one) ``k`` nearest sketches, of each framed
    sketch's (its third part, where not NaN) with a pattern (SHAPED: a faint picture's is near
    every paper of its colour) ``k`` nearest sketches and framed sketches, of a
    pattern's ``k`` nearest patterns (SHAPED; unless all are grey, GREY), and of a pattern's
    mirrored and turned ones' ``k`` nearest sketches (``_turned``)."""
    if len(ids) < 2:
        return set()
    sketches = np.ascontiguousarray(xb[:, :DIMENSION])
    searches = [(_index(sketches), ids, sketches)]
    if xb.shape[1] > DIMENSION:
        searches.append((searches[0][0], ids, xb[:, DIMENSION:2 * DIMENSION]))
    if xb.shape[1] > 2 * DIMENSION:
        inside = xb[:, 2 * DIMENSION:]
        framed = ~np.isnan(inside).any(axis=1)
        framed[framed] = np.linalg.norm(inside[framed, :PATTERN], axis=1) >= SHAPED
        if framed.any():  # a copy given bars or a frame, its original, or both given them
            inside = np.ascontiguousarray(inside[framed])
            searches += [(searches[0][0], ids[framed], inside),
                         (_index(inside), ids[framed], inside, ids[framed])]
    grey = np.linalg.norm(sketches[:, PATTERN:], axis=1) <= GREY
    shaped = np.linalg.norm(sketches[:, :PATTERN], axis=1) >= SHAPED
    if shaped.any() and not grey.all():  # among the patterns alone: a copy's colours changed
        patterns = np.ascontiguousarray(sketches[:, :PATTERN])
        searches.append((_index(patterns), ids[shaped], patterns[shaped]))
    for turned in _turned(sketches):
        moved = shaped & (np.linalg.norm(turned - sketches, axis=1) > RADIUS)
        if moved.any():
            searches.append((searches[0][0], ids[moved], turned[moved]))
    out = set()
    for index, queried, queries, *among in searches:
        found = among[0] if among else ids  # the ids of the index's rows
        D, I = index.search(np.ascontiguousarray(queries), min(k + 1, len(found)))
        for a, d_row, i_row in zip(queried.tolist(), D, I):
            for d, j in zip(d_row.tolist(), i_row.tolist()):
                if j >= 0 and d <= RADIUS ** 2 and found[j] != a:
                    b = int(found[j])
                    out.add((min(a, b), max(a, b)))
    return out


def _turned(sketches: np.ndarray) -> list[np.ndarray]:
    """The sketches of each picture mirrored or turned by quarters, every way but upright
    (their patterns' squares moved so, their colours as they are)."""
    n = len(sketches)
    grid = sketches[:, :PATTERN].reshape(n, SKETCH, SKETCH)
    out = []
    for quarters in range(4):
        for mirrored in (False, True):
            if quarters or mirrored:
                moved = np.rot90(grid, quarters, axes=(1, 2))
                moved = moved.transpose(0, 2, 1) if mirrored else moved
                out.append(np.ascontiguousarray(np.concatenate(
                    [moved.reshape(n, PATTERN), sketches[:, PATTERN:]], axis=1)))
    return out


def _index(xb: np.ndarray) -> faiss.Index:
    """Exact search up to FLAT_UP_TO sketches; beyond, IVF with about 4 sqrt(n) lists."""
    if len(xb) <= FLAT_UP_TO:
        index = faiss.IndexFlatL2(xb.shape[1])
    else:
        index = faiss.index_factory(xb.shape[1], f"IVF{int(4 * np.sqrt(len(xb)))},Flat")
        sample = np.random.default_rng(0).permutation(len(xb))[:100 * index.nlist]
        index.train(xb[np.sort(sample)])
        index.nprobe = NPROBE
    index.add(xb)
    return index
