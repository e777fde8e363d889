"""The settings of the index side, FAISS-free so that click shows their defaults without
importing FAISS: how build-index makes an index, and what evaluate measures."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_FACTORY = "Flat"  # exact search
# Files extracted, then committed as one generation, at a time: staging holds at most this
# many vectors (0.8 GB of float16 at 4096-d), and a killed build loses at most this much work.
COMMIT_EVERY = 100_000
# Inverted lists an IVF query visits unless told (FAISS's own default is 1): recall@10 of
# IVF1024 indexes levels off near 8 on 100k fc7 vectors (benchmarks/search.py).
DEFAULT_NPROBE = 8
DEFAULT_K = 10


@dataclass
class BuildConfig:
    """How build-index makes an index. ``None``: what the index was built with (a re-run
    keeps it), else the default (``DEFAULT_FACTORY``, no normalisation)."""

    factory: str | None = None  # a FAISS factory string: Flat, IVF1024,PQ64, HNSW32
    normalize: bool | None = None  # L2-normalise vectors (and queries) before indexing
    on_disk: bool | None = None  # IVF: inverted lists in a memory-mapped file, grown in place
    # Which files the walk took (retrieval.walk.Selection), recorded so that a re-run and
    # --watch keep them: the --exclude patterns, and which of a RAW+JPEG pair (--raw).
    exclude: tuple[str, ...] | None = None
    raw: str | None = None
    commit_every: int = COMMIT_EVERY  # files per round (not recorded: any run may change it)


DUPLICATE_K = 16  # neighbours of each image that `duplicates` considers
# The pixel check's bars (retrieval.copies.compare), the same for every kind of picture:
# measured on the benchmark's copies (benchmarks/RESULTS.md), every copy of the photos and
# similar scenes is 0.97 alike or more and differs 0.19 at most; among 3,000 Fashion-MNIST
# garments fc7 offered (33,241 pairs), two different ones differ 0.223 at least, and a copy of
# one (JPEG 75, shown four times larger) 0.16 at most; the tests' edited photos, 0.35 and more.
MIN_SIMILARITY = 0.90
MAX_DIFFERENCE = 0.20
VERIFY_WORKERS = min(8, os.cpu_count() or 1)  # `retrieve duplicates --workers`


@dataclass
class DuplicatesConfig:
    """What `retrieve duplicates` looks for; the CLI options map onto these fields."""

    threshold: float | None = None  # fc7 distance; None: calibrated on copies (duplicates.py)
    verify: bool = True  # compare the pixels of every candidate pair
    min_similarity: float = MIN_SIMILARITY
    max_difference: float = MAX_DIFFERENCE
    workers: int = 0  # processes comparing pixels (0: this one; the CLI: VERIFY_WORKERS)
    k: int = DUPLICATE_K
    nprobe: int | None = None


@dataclass
class EvalConfig:
    """What ``evaluate`` measures; the CLI options map onto these fields."""

    k: int = DEFAULT_K
    map_at: int | None = None  # None: mAP over the whole ranking of the index
    per_class: bool = False
    nprobe: int | None = None  # None: the index's own (DEFAULT_NPROBE unless changed)
