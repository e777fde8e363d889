"""The pixel check of `retrieve duplicates`' candidate pairs, and the groups it makes: stars
around the file to keep, each member a verified copy of the kept file itself."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retrieval.copies import Match, compare_files
from retrieval.errors import NotAnImage
from retrieval.images import image_size

from indexes.config import DuplicatesConfig
from indexes.duplicates.progress import Progress
from indexes.store import faiss_ops
from indexes.store.store import IndexStore

if TYPE_CHECKING:
    from indexes.duplicates.find import State

VERIFY_BATCH = 256  # pairs verified per saved step
# A file whose difference from another is this much smaller than from a star's kept file (half
# the default --max-difference) goes with that other file: a copy's difference from its own
# original and from another copy of it are often a few hundredths apart either way.
CLEARLY_CLOSER = 0.1
# Differences within this of a member's least from the kept files of stars are as close: of
# those stars, it goes to the one whose kept file's brightness is nearest its own
# (``_closest_stars``). A plain or faint copy differs as little from another picture of its
# colour a little brighter or darker as from its own original (a plain colour's copy at JPEG
# quality 20: 0.005 from its own letterboxed copy, 0.004 from a light paper's, 1.8 and 25.8
# grey levels from its brightness; a light paper's 60% JPEG-50 copy: 0.017 from its own
# original and 0.009 from another paper's, 0.1 and 0.6 grey levels from its brightness).
# 0.005 to 0.015 gave the kinds sets nearly the same groups (72 or 73 false pairs in the kinds
# set, 222 or 223 with the still other copies); 0.02 and 0.03 took members by brightness from
# stars they differ clearly less from (80 and 96 in the kinds set). Members with shapes are
# left to their differences: by brightness, a similar scene's copy cropped and brightened went
# to the next scene's group (0.992, 0.993 down to 0.983, 0.985).
AS_CLOSE = 0.01
# Pairs to verify before worker processes pay for themselves: each starts Python, imports
# Pillow and numpy and decodes its files again (~0.3 s of CPU), and a pair costs 1.5-5 ms; at
# 285 pairs two workers took 2.24-2.44 CPU-s and the same wall time as this process alone
# (1.73-1.91 CPU-s).
POOL_FROM = 1024
# Files of a group tried as its kept file for a file left in no group (``_gathered``): each one
# that lacks pairs with the group's files costs a pixel comparison or more.
CENTRES_TRIED = 3


@dataclass
class Member:
    id: int  # in the index
    path: str
    distance: float  # fc7 distance to the kept file (0 for itself and exact copies)
    similarity: float | None  # pixel similarity with the kept file (None: not compared)
    difference: float | None  # of its most different part from the kept file (retrieval.copies)
    width: int
    height: int
    bytes: int
    same_bytes_as: str | None = None  # in a near group: the member whose bytes it has


@dataclass
class Group:
    tier: str  # "exact" (the same bytes) or "near"
    members: list[Member]  # the file to keep first


class PixelCheck:
    """Pairs' pixels compared (``retrieval.copies.compare``), each batch saved as it is done
    by the two files' ids (``files``: item id -> ``State.file_ids``), in ``config.workers``
    processes when there are POOL_FROM pairs or more to do. A pair compared before, its files
    unchanged, is not compared again, whatever the run (another threshold, k, or files added
    to the index)."""

    def __init__(self, items: dict[int, str], files: dict[int, int], config: DuplicatesConfig,
                 state: State) -> None:
        self.items, self.files, self.config, self.state = items, files, config, state
        self.compared = 0  # pairs compared by this check (not saved before)
        item = {f: i for i, f in files.items()}
        self.known = {}
        for fa, fb, s, d in state.db.execute("SELECT a, b, similarity, difference FROM checked"):
            a, b = item.get(fa), item.get(fb)
            if a is not None and b is not None and a < b:  # compared as (a, b) again
                self.known[a, b] = Match(s, d)

    def matches(self, pairs: list[tuple[int, int]], progress: Progress | None = None
                ) -> dict[tuple[int, int], Match]:
        """(a, b) -> their Match, for each of ``pairs`` (a < b)."""
        todo = [pair for pair in pairs if pair not in self.known]
        self.compared += len(todo)
        batches = [todo[start:start + VERIFY_BATCH] for start in range(0, len(todo), VERIFY_BATCH)]
        files = ([(self.items[a], self.items[b]) for a, b in batch] for batch in batches)
        with (progress or Progress()).stage("verifying", len(pairs), "pairs") as advance, \
                mapping(self.config.workers if len(todo) >= POOL_FROM else 0) as mapped:
            advance(len(pairs) - len(todo))  # saved by an earlier run
            for batch, found in zip(batches, mapped(compare_files, files)):
                self.known.update(zip(batch, found))
                with self.state.transaction():  # saved a batch at a time
                    self.state.db.executemany(
                        "INSERT OR REPLACE INTO checked VALUES (?, ?, ?, ?)",
                        [(self.files[a], self.files[b], m.similarity, m.difference)
                         for (a, b), m in zip(batch, found)
                         if a in self.files and b in self.files])  # not a file gone
                advance(len(batch))
        return {pair: self.known[pair] for pair in pairs}

    def accepts(self, match: Match) -> bool:
        return (match.similarity >= self.config.min_similarity
                and match.difference <= self.config.max_difference)


@contextmanager
def mapping(workers: int) -> Iterator[Callable]:
    """``map``, in this process (0) or in ``workers`` processes (results in order)."""
    if workers == 0:
        yield map
        return
    # spawn: the children need only Pillow and numpy, not this process's threads (torch,
    # FAISS); Ctrl-C is this process's to handle: the children finish their batch and go.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        yield pool.map
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def verified(pairs: dict[tuple[int, int], float], check: PixelCheck | None,
             progress: Progress) -> dict[tuple[int, int], Match | None]:
    """The candidate pairs whose pixels match (all of them, unchecked, without a check):
    (a, b) -> their ``Match``."""
    if check is None:
        return {pair: None for pair in pairs}
    return {pair: m for pair, m in check.matches(sorted(pairs), progress).items()
            if check.accepts(m)}


# A member found only through another member: (kept, m) -> (fc7 distance, Match) when the
# pixels of m match those of the kept file, else None.
SecondLook = Callable[[int, int], tuple[float, Match] | None]


def second_look(store: IndexStore, check: PixelCheck) -> SecondLook:
    """Pairs fc7 did not offer, compared by their pixels (and their fc7 distance measured)."""
    index = functools.cache(lambda: faiss_ops.inner_space(store.load_index(mmap=True)))

    def look(kept: int, m: int) -> tuple[float, Match] | None:
        pair = (min(kept, m), max(kept, m))
        match = check.matches([pair])[pair]
        if not check.accepts(match):
            return None
        return fc7_distances(index(), [pair])[pair], match

    return look


PAIRS_BATCH = 1024  # pairs whose vectors are read at a time


def fc7_distances(index, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """(a, b) -> the fc7 distance of each of ``pairs``, from the vectors ``index`` holds (the
    store's, in its inner space: ``faiss_ops.inner_space``)."""
    ab = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = {}
    for start in range(0, len(ab), PAIRS_BATCH):
        chunk = ab[start:start + PAIRS_BATCH]
        x = faiss_ops.stored_vectors(index, chunk.reshape(-1)).reshape(len(chunk), 2, -1)
        d = np.linalg.norm(x[:, 0] - x[:, 1], axis=1)
        out.update(((int(a), int(b)), float(dist)) for (a, b), dist in zip(chunk, d))
    return out


def _pixels(match: Match | None) -> tuple[float | None, float | None]:
    return (None, None) if match is None else (match.similarity, match.difference)


def _facts(path: str) -> tuple[int, int, int]:
    """(width, height, bytes) of a file; zeros where it cannot be read."""
    try:
        return (*image_size(path), os.path.getsize(path))  # HEIC and RAW files too
    except (OSError, NotAnImage):
        return 0, 0, 0


def _keep_order(ids: Iterable[int], items: dict[int, str], facts: dict) -> list[int]:
    """The largest resolution first, then the largest file, then by path."""
    for i in ids:
        if i not in facts:
            facts[i] = _facts(items[i])
    return sorted(ids, key=lambda i: (-facts[i][0] * facts[i][1], -facts[i][2], items[i]))


def exact_group(ids: list[int], items: dict[int, str]) -> Group:
    facts: dict = {}
    order = _keep_order(ids, items, facts)
    return Group("exact", [Member(i, items[i], 0.0, 1.0, 0.0, *facts[i]) for i in order])


def folded(exact: list[Group], near: list[Group]) -> list[Group]:
    """The exact copies of a file that is in a near group join that group, right after it
    (with its distance and pixels): a file in two groups would be planned twice."""
    near_of = {m.id: g for g in near for m in g.members}
    alone = []
    for g in exact:
        found = next((m for m in g.members if m.id in near_of), None)  # the one searched
        if found is None:
            alone.append(g)
            continue
        members = near_of[found.id].members
        at = next(n for n, m in enumerate(members) if m.id == found.id)
        members[at + 1:at + 1] = [
            Member(m.id, m.path, members[at].distance, members[at].similarity,
                   members[at].difference, m.width, m.height, m.bytes, found.path)
            for m in g.members if m is not found]
    return alone + near


def near_groups(accepted: dict[tuple[int, int], Match | None],
                 pairs: dict[tuple[int, int], float], items: dict[int, str],
                 second_look: SecondLook | None = None,
                 shapes: Callable[[int], bool] | None = None,
                 brightness: Callable[[int], float | None] | None = None) -> list[Group]:
    """Stars around the files to keep: each member an accepted pair with its kept file.

    A file is not taken into a star when it matches a file outside that star clearly better
    than the star's kept file (CLEARLY_CLOSER: a wallpaper and its copy, though the wallpaper
    passes for a light paper too): it goes with what it matches best. When the kept file
    matches that file too, the file is taken only if it matches, as closely, a member taken
    on its own merits (two grid papers' copies, every one matched with the other paper
    at 0.17-0.19, each other within 0.05). A member accepted with
    the kept files of several stars goes to the one it differs least from (a cropped copy of
    one video frame also matches the frame before, of which it is a crop too); one without
    ``shapes``, of those it differs from as little (AS_CLOSE), to the one whose kept file's
    ``brightness`` is nearest its own (a plain grey's copy matches another plain grey 20%
    brighter as closely). A file whose
    partners all went to other stars first takes those of them that differ less from it than
    from any file of their star they were accepted with, as a star of its own (a heavy JPEG of
    a paper passes, a little less well, for another paper kept first), but not a faint one
    (no ``shapes``) from a star whose kept file is larger and was refused with it; else it is
    compared (``second_look``) with the kept files of those stars, and joins the first that
    matches: fc7 may put a copy past the threshold from one copy and within it from another.
    Last, a star joins a larger one that a file of it was accepted with where the larger one's
    kept file matches every file of it (``second_look``) and both kept files have ``shapes`` (a
    faint picture's match is no evidence to join on): a letterboxed copy, kept first for its size,
    gathers copies the original's star lacks; or, where it does not match them all, the two
    stars are one around the first file of them (in keep order) that was accepted with every
    other file of both and has ``shapes`` (a letterboxed screenshot kept first and a
    watermarked copy of it, refused together, whose own star took the grey copy: the
    original matches all of them).
    """
    partners: dict[int, set[int]] = defaultdict(set)
    for a, b in accepted:
        partners[a].add(b)
        partners[b].add(a)
    best = {f: min(ps, key=lambda p: (_how_far(accepted, pairs, f, p), p))
            for f, ps in partners.items()}

    facts: dict = {}
    stars: dict[int, dict[int, tuple[float, Match | None]]] = {}  # kept -> member -> (d, match)
    star_of: dict[int, int] = {}
    left = []

    def reached(kept: int) -> list[int]:
        """``kept``'s partners in no star yet, but those that match a file in no star yet
        clearly better than ``kept`` (by CLEARLY_CLOSER). One of those is taken after all when
        ``kept`` matches that file too and it matches a partner taken on its own merits no less
        closely (a copy that differs from a brightened kept file as much as from its other
        copies, not the copy of another picture that its own copies match far better)."""
        free = [m for m in partners[kept] if m not in star_of]
        bar = {m: _how_far(accepted, pairs, m, best[m]) + CLEARLY_CLOSER for m in free}
        core = [m for m in free
                if best[m] in star_of or _how_far(accepted, pairs, m, kept) <= bar[m]]
        return core + [m for m in free if m not in core and best[m] in partners[kept] and any(
            (min(m, c), max(m, c)) in accepted and _how_far(accepted, pairs, m, c) <= bar[m]
            for c in core)]

    for kept in _keep_order(partners, items, facts):
        if kept in star_of:
            continue
        members = reached(kept)
        if not members:
            left.append(kept)
            continue
        pair = {m: (min(kept, m), max(kept, m)) for m in members}
        stars[kept] = {m: (pairs[pair[m]], accepted[pair[m]]) for m in members}
        star_of.update({kept: kept, **{m: kept for m in members}})
    _closest_stars(stars, star_of, partners, accepted, pairs, brightness, shapes)
    left = _reclaimed(left, partners, stars, star_of, accepted, pairs, items, facts, shapes)
    for m in left if second_look is not None else []:
        for kept in dict.fromkeys(star_of[p] for p in sorted(partners[m]) if p in star_of):
            found = second_look(kept, m)
            if found is not None:
                stars[kept][m] = found
                break
    if second_look is not None and shapes is not None:
        _joined_stars(stars, star_of, accepted, pairs, second_look, shapes,
                      lambda ids: _keep_order(ids, items, facts))
    _gathered(stars, partners, best, accepted, pairs, second_look, shapes,
              lambda ids: _keep_order(ids, items, facts))
    groups = []
    for kept, members in stars.items():
        if not members:
            continue
        order = sorted(_keep_order(members, items, facts), key=lambda m: members[m][0])
        groups.append(Group("near", [Member(kept, items[kept], 0.0, 1.0, 0.0, *facts[kept])] + [
            Member(m, items[m], members[m][0], *_pixels(members[m][1]), *facts[m])
            for m in order]))  # nearest to the kept file first
    return sorted(groups, key=lambda g: g.members[0].path)


def _gathered(stars: dict, partners: dict[int, set[int]], best: dict[int, int],
              accepted: dict[tuple[int, int], Match | None],
              pairs: dict[tuple[int, int], float], second_look: SecondLook | None,
              shapes: Callable[[int], bool] | None, order: Callable[[list[int]], list[int]]
              ) -> None:
    """Each file with ``shapes`` still in no star (a faint picture's match is little evidence:
    it was left out for a reason) joins the star of the file it matches best, where it
    matches that star's kept file, or else a file of the star with ``shapes`` that matches
    every other file of it (accepted with it, or else compared with it by ``second_look``),
    which then keeps the star; within CLEARLY_CLOSER of that best match. Of such files, the
    one accepted with the most files of the star, then the one the file differs least from,
    then the first in ``order`` (CENTRES_TRIED of them at most). A file larger than its
    original keeps its star first and may show more than a crop of the original does: a
    photo framed, or set in a 9:16 story, is refused with a crop of the photo that the photo
    and its other copies match."""
    if shapes is None:
        return
    star_of = {f: kept for kept, members in stars.items() for f in (kept, *members)}
    for m in sorted(set(partners) - set(star_of)):
        kept = star_of.get(best[m])
        if kept is None or not shapes(m):
            continue
        bar = _how_far(accepted, pairs, m, best[m]) + CLEARLY_CLOSER
        near = {k: d for k in partners[m] if (d := _how_far(accepted, pairs, k, m)) <= bar}
        files = order([kept, *stars[kept]])
        lacking = {c: [f for f in files if f != c and (min(c, f), max(c, f)) not in accepted]
                   for c in files if c in near and shapes(c)}
        ranked = sorted(lacking, key=lambda c: (len(lacking[c]), near[c], files.index(c)))
        for centre in ranked[:CENTRES_TRIED]:
            if lacking[centre] and second_look is None:
                break
            found = {}
            for f in lacking[centre]:
                found[f] = second_look(centre, f)
                if found[f] is None:
                    break
            else:
                members = stars.pop(kept)
                stars[centre] = {f: found.get(f) or (pairs[min(centre, f), max(centre, f)],
                                                     accepted[min(centre, f), max(centre, f)])
                                 for f in [kept, *members, m] if f != centre}
                star_of.update(dict.fromkeys([centre, *stars[centre]], centre))
                break


def _joined_stars(stars: dict, star_of: dict[int, int],
                  accepted: dict[tuple[int, int], Match | None],
                  pairs: dict[tuple[int, int], float], second_look: SecondLook,
                  shapes: Callable[[int], bool], order: Callable[[list[int]], list[int]]
                  ) -> None:
    """Each star, the smallest first, joined to the largest star that one of its files was
    accepted with, of those at least as large whose kept file matches every file of it
    (``second_look``), or that has, with it, a file accepted with every other file of both
    that has ``shapes`` (the first such in ``order`` kept), where both kept files have
    ``shapes``."""
    links: dict[int, set[int]] = defaultdict(set)  # kept -> kept files of stars accepted with
    for a, b in accepted:
        if a in star_of and b in star_of and star_of[a] != star_of[b]:
            links[star_of[a]].add(star_of[b])
            links[star_of[b]].add(star_of[a])
    for small in sorted(links, key=lambda k: (len(stars[k]), k)):
        if small not in stars or not shapes(small):  # joined to another already
            continue
        for big in sorted(links[small], key=lambda k: (-len(stars[k]), k)):
            if len(stars[big]) < len(stars[small]) or not shapes(big):
                continue
            found = {}
            for m in [small, *stars[small]]:
                found[m] = second_look(big, m)
                if found[m] is None:
                    break
            else:
                stars[big].update(found)
                star_of.update(dict.fromkeys(found, big))
                _relinked(links, small, big)
                del stars[small]
                break
            files = [big, *stars[big], small, *stars[small]]
            centre = next((c for c in order(files) if shapes(c) and all(
                (min(c, m), max(c, m)) in accepted for m in files if m != c)), None)
            if centre is not None:
                del stars[small], stars[big]
                stars[centre] = {m: (pairs[min(centre, m), max(centre, m)],
                                     accepted[min(centre, m), max(centre, m)])
                                 for m in files if m != centre}
                star_of.update(dict.fromkeys(files, centre))
                _relinked(links, small, centre)
                if big != centre:
                    _relinked(links, big, centre)
                break


def _relinked(links: dict[int, set[int]], old: int, new: int) -> None:
    """The links of the star kept by ``old`` made ``new``'s (joined to it, or kept anew)."""
    for k in links.pop(old, set()):
        links[k].discard(old)
        if k != new:
            links[k].add(new)
            links[new].add(k)


def _reclaimed(left: list[int], partners: dict[int, set[int]], stars: dict,
               star_of: dict[int, int], accepted: dict[tuple[int, int], Match | None],
               pairs: dict[tuple[int, int], float], items: dict[int, str],
               facts: dict, shapes: Callable[[int], bool] | None) -> list[int]:
    """Each file in no star takes, as a star of its own, the members of other stars that it
    differs less from than from any file of their own star they were accepted with
    (``_how_far``): a copy that another picture's kept file reached first goes back to its
    original, which had no partner left. But not a member without ``shapes`` from a star
    whose kept file has more pixels and more bytes than the file and was compared with it and
    refused: a faint copy's closer match with a smaller, lighter file is no evidence against
    the larger one (a light paper's copy brightened until nearly all white differs 0.006 from
    a 60% copy at JPEG quality 50 of another light paper, its grain gone, and 0.04 from its
    own original, which refuses that copy at 0.49). The star's kept file is the first of them in
    ``_keep_order`` where that was accepted with each of the others, else the file itself.
    Returns the files still in no star, and the kept files of stars so emptied."""
    alone = []
    for f in left:
        taken = []
        for m in sorted(partners[f]):
            kept = star_of.get(m)
            if kept is None or kept == m:  # kept files stay
                continue
            pair = (min(f, kept), max(f, kept))
            if pair in pairs and pair not in accepted and _larger(kept, f, facts) and (
                    shapes is not None and not shapes(m)):  # the file is read last
                continue
            own = min(_how_far(accepted, pairs, m, s) for s in partners[m]
                      if star_of.get(s) == kept)  # the kept file among them
            if _how_far(accepted, pairs, m, f) < own:
                taken.append(m)
        if not taken:
            alone.append(f)
            continue
        for m in taken:
            del stars[star_of[m]][m]
        first = _keep_order([f, *taken], items, facts)[0]
        if any((min(first, m), max(first, m)) not in accepted for m in taken if m != first):
            first = f  # the larger copy was accepted with f alone
        members = [m for m in [f, *taken] if m != first]
        stars[first] = {m: (pairs[min(first, m), max(first, m)],
                            accepted[min(first, m), max(first, m)]) for m in members}
        star_of.update(dict.fromkeys([first, *members], first))
    emptied = [k for k, members in stars.items() if not members]
    for k in emptied:
        del stars[k], star_of[k]
    return alone + emptied


def _gains(m: int, kept: list[int], brightness: Callable[[int], float | None] | None,
           shapes: Callable[[int], bool] | None) -> dict[int, float]:
    """How far each of ``kept`` is from file ``m`` in ``brightness`` (|log| of the gain, a
    level added to each: black is no gain away from nothing), where there are two or more to
    choose from, ``m`` has no ``shapes`` and each is known."""
    if brightness is None or shapes is None or len(kept) < 2 or shapes(m):
        return {}
    levels = {f: brightness(f) for f in [m, *kept]}
    if any(level is None for level in levels.values()):
        return {}
    return {k: abs(float(np.log((levels[k] + 1) / (levels[m] + 1)))) for k in kept}


def _larger(a: int, b: int, facts: dict) -> bool:
    """Whether file ``a`` has more pixels and more bytes than file ``b`` (``_facts``)."""
    (wa, ha, bytes_a), (wb, hb, bytes_b) = facts[a], facts[b]
    return wa * ha > wb * hb and bytes_a > bytes_b


def _how_far(accepted: dict[tuple[int, int], Match | None], pairs: dict[tuple[int, int], float],
             a: int, b: int) -> float:
    """How different an accepted pair is: its pixels' difference, else its fc7 distance."""
    match = accepted[min(a, b), max(a, b)]
    return pairs[min(a, b), max(a, b)] if match is None else match.difference


def _closest_stars(stars: dict, star_of: dict[int, int], partners: dict[int, set[int]],
                   accepted: dict[tuple[int, int], Match | None],
                   pairs: dict[tuple[int, int], float],
                   brightness: Callable[[int], float | None] | None,
                   shapes: Callable[[int], bool] | None) -> None:
    """Each member moved to the star, of those whose kept file it was accepted with, that it
    differs least from (``_how_far``; of two as close, its own, else the first made). A member
    without ``shapes``, of those it differs from as little (within AS_CLOSE), to the one whose
    kept file's ``brightness`` is nearest its own (as a gain): most copies keep their
    original's brightness, and a plain or faint picture's copy differs as little from another
    picture of its colour a little brighter. Not one with shapes, whose differences tell (a
    similar scene's copy cropped and brightened went by its brightness to the next scene)."""
    made = {kept: n for n, kept in enumerate(stars)}
    for kept, members in list(stars.items()):
        for m in list(members):
            far = {k: _how_far(accepted, pairs, k, m)
                   for k in partners[m] if k in stars}  # its partners, not every star
            close = min(far.values()) + AS_CLOSE
            gain = _gains(m, [k for k in far if far[k] <= close], brightness, shapes)
            if gain:  # as close: the nearest brightness first
                best = min(far, key=lambda k: (max(far[k], close), gain.get(k, 0.0), far[k],
                                               k != kept, made[k]))
            else:
                best = min(far, key=lambda k: (far[k], k != kept, made[k]))
            if best != kept:
                pair = (min(best, m), max(best, m))
                stars[best][m] = (pairs[pair], accepted[pair])
                del members[m]
                star_of[m] = best
