"""Retrieval quality of an index: labelled queries in, mAP / precision@k / top-1 out (no torch).

Labels follow the ImageFolder convention: an image's label is the name of its parent folder,
for the indexed images and for the queries alike. The vectors come from callables (``embed``
for fc7, ``pixels`` for the raw-pixel baseline of section 6.1 of Krizhevsky et al. 2012) that
take a list of paths and return (float32 (n_ok, d) vectors, positions that decoded, errors),
so this module never imports the network.

Ranking depth: mAP over the whole ranking means searching k = the index's image count for
every query; memory and time grow as queries x indexed images (searches are cut into chunks
of ``MAX_RESULTS`` results). ``map_at`` bounds the depth to the first N results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.errors import RetrieveError

from indexes.store import faiss_ops

from indexes.config import EvalConfig
from indexes.evaluation import metrics
from indexes.store.store import IndexStore

MAX_RESULTS = 1 << 24  # ids per search call (128 MiB of int64 + distances): queries are chunked

# paths -> (float32 (n_ok, d), positions of the paths that decoded, [(path, reason)])
Vectors = Callable[[Sequence[str]], tuple[np.ndarray, list[int], list[tuple[str, str]]]]


class NoQueries(RetrieveError):
    """Nothing to evaluate: no query image decoded, or no query has a relevant indexed image."""


@dataclass
class Scores:
    """One method's figures (fc7 or pixels) over the same queries."""

    metrics: metrics.RankingMetrics
    recall_levels: np.ndarray  # (levels,) 0 .. 1
    precision: np.ndarray  # (levels,) mean interpolated precision
    classes: dict = field(default_factory=dict)  # label -> RankingMetrics, with per_class


@dataclass
class Report:
    """Everything ``retrieve evaluate`` prints: ``methods`` is {"fc7": Scores, "pixels": ...}."""

    mode: str  # "labels" or "ground-truth"
    queries: int
    indexed: int
    classes: int
    config: EvalConfig
    methods: dict[str, Scores]
    factory: str = "Flat"
    exact: bool = True  # the index searches exactly; otherwise recall_vs_exact says how well
    recall_vs_exact: float | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    absent_labels: list[str] = field(default_factory=list)  # query labels not in the index


def folder_labels(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The name of each path's parent folder (its class, as torchvision's ImageFolder), (n,) str."""
    return np.array([os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths],
                    dtype=str)


def _same_file_key(path: str) -> str:
    return os.path.realpath(path)


@dataclass
class Items:
    """The indexed images in FAISS-id order: ``ids`` (n,), ``paths``, ``labels`` (n,)."""

    ids: np.ndarray
    paths: list[str]
    labels: np.ndarray

    @classmethod
    def of(cls, store: IndexStore) -> "Items":
        rows = sorted((item.id, os.fsdecode(p)) for p, item in store.items().items())
        ids = np.array([i for i, _ in rows], dtype=np.int64)
        paths = [p for _, p in rows]
        return cls(ids, paths, folder_labels(paths))

    def positions(self, I: np.ndarray) -> np.ndarray:
        """FAISS ids -> positions in ``paths`` (-1 stays -1)."""
        pos = np.searchsorted(self.ids, I)
        pos = np.minimum(pos, len(self.ids) - 1)
        return np.where((I >= 0) & (self.ids[pos] == I), pos, -1)

    def self_positions(self, query_paths: Sequence[str]) -> np.ndarray:
        """For each query, its own position among the items (the same file), or -1."""
        where = {_same_file_key(p): n for n, p in enumerate(self.paths)}
        return np.array([where.get(_same_file_key(q), -1) for q in query_paths], dtype=np.int64)


def _chunked_search(search: Callable, xq: np.ndarray, depth: int) -> np.ndarray:
    """I (nq, depth) from ``search(xq_chunk, depth) -> (D, I)``, -1 padded, in chunks of queries."""
    step = max(1, MAX_RESULTS // max(depth, 1))
    out = np.full((len(xq), depth), -1, dtype=np.int64)
    for start in range(0, len(xq), step):
        _, I = search(xq[start:start + step], depth)
        out[start:start + step, :I.shape[1]] = I
    return out


def exact_ranking(xb: np.ndarray, xq: np.ndarray, depth: int) -> np.ndarray:
    """Positions (nq, depth) of the ``depth`` nearest rows of ``xb`` to each query (brute force)."""
    index = faiss_ops.exact_index(xb)
    return _chunked_search(lambda q, d: faiss_ops.search(index, q, d), faiss_ops.as_float32(xq),
                           min(depth, len(xb)))


def _depth(config: EvalConfig, n_items: int) -> int:
    """Results scored per query: the whole index, or max(k, map_at), at most the index."""
    wanted = n_items if config.map_at is None else max(config.k, config.map_at)
    return min(wanted, n_items)


def score(ranked: np.ndarray, self_pos: np.ndarray, query_labels: np.ndarray,
          item_labels: np.ndarray, config: EvalConfig,
          relevant: Mapping[str, set[str]] | None = None,
          query_keys: Sequence[str] = (), item_keys: Sequence[str] = ()) -> Scores:
    """Scores of one ranking: ``ranked`` (nq, depth) item positions, nearest first, -1 none,
    the queries' own positions already removed (``metrics.drop_self``).

    ``self_pos`` (nq,): each query's own position among the items (-1: not indexed), left out
    of its relevant count. With ``relevant`` ({query key: its relevant item keys}; keys are
    real paths), relevance comes from that ground truth instead of the labels.
    """
    if relevant is None:
        rel, n_rel = metrics.relevance_from_labels(query_labels, ranked, item_labels,
                                                   self_ids=self_pos)
    else:
        keys = np.array(list(item_keys) + [None], dtype=object)  # -1 -> None
        results = keys[np.where(ranked >= 0, ranked, len(item_keys))]
        rel, n_rel = metrics.relevance_from_pairs(query_keys, results, relevant,
                                                  indexed_keys=item_keys)
    ap_rel = rel if config.map_at is None else rel[:, :config.map_at]
    m = metrics.ranking_metrics(rel, n_rel, config.k)
    m.mean_ap = metrics.mean_average_precision(ap_rel, n_rel)
    levels, precision = metrics.precision_recall_curve(ap_rel, n_rel)
    classes = metrics.per_class(rel, n_rel, query_labels, config.k) if config.per_class else {}
    for label, cm in classes.items():
        chosen = query_labels == label
        cm.mean_ap = metrics.mean_average_precision(ap_rel[chosen], n_rel[chosen])
    return Scores(m, levels, precision, classes)


def load_ground_truth(path: str | os.PathLike) -> dict[str, set[str]]:
    """``metrics.read_ground_truth`` with every path made real (relative ones are taken from
    the CSV file's folder), so that they compare equal to the index's and the queries' paths."""
    base = os.path.dirname(os.path.abspath(path))
    real = lambda p: os.path.realpath(os.path.join(base, p))  # noqa: E731
    return {real(q): {real(r) for r in rs} for q, rs in metrics.read_ground_truth(path).items()}


def _decoded(query_paths: Sequence[str], embed: Vectors, pixels: Vectors | None):
    """Query vectors for the queries that decoded for every method: (keep, xq, pq, skipped)."""
    xq, ok, skipped = embed(query_paths)
    keep = list(ok)
    pq = None
    if pixels is not None:
        pq, pok, perr = pixels(query_paths)
        keep = sorted(set(ok) & set(pok))
        known = {p for p, _ in skipped}
        skipped += [e for e in perr if e[0] not in known]
        pq = pq[np.searchsorted(pok, keep)]
    xq = xq[np.searchsorted(ok, keep)]
    if not keep:
        raise NoQueries("none of the query images could be read")
    return keep, xq, pq, skipped


def _exact_recall(store: IndexStore, items: Items, embed: Vectors, xq: np.ndarray,
                  ranked: np.ndarray, self_pos: np.ndarray, k: int) -> float | None:
    """recall@k of an approximate index against brute force over the same fc7 vectors.

    The index does not keep the original vectors (PQ codes cannot give them back), so the
    indexed images are embedded again: as costly as a build. None when one fails to decode.
    """
    xb, ok, _ = embed(items.paths)
    if len(ok) != len(items.paths):
        return None
    if store.settings.get("normalize"):
        xb, xq = faiss_ops.l2_normalize(xb), faiss_ops.l2_normalize(xq)
    depth = min(k, len(xb))
    exact = metrics.drop_self(exact_ranking(xb, xq, depth + 1), self_pos, depth)
    return metrics.recall_at_k_vs_exact(ranked[:, :depth], exact, depth)


def _pixel_ranking(items: Items, pixels: Vectors, pq: np.ndarray, self_pos: np.ndarray,
                   depth: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The baseline: exact Euclidean ranking over the indexed images' raw pixels."""
    xb, ok, errors = pixels(items.paths)
    if not ok:
        raise NoQueries("none of the indexed images can be read for the pixel baseline")
    ok = np.asarray(ok, dtype=np.int64)
    I = exact_ranking(xb, pq, min(depth + 1, len(ok)))
    return metrics.drop_self(np.where(I >= 0, ok[np.maximum(I, 0)], -1), self_pos, depth), errors


def evaluate(store: IndexStore, query_paths: Sequence[str], embed: Vectors,
             config: EvalConfig, pixels: Vectors | None = None,
             ground_truth: Mapping[str, set[str]] | None = None) -> Report:
    """Search the index with every query and score the rankings (see the module docstring).

    ``embed`` gives the queries' fc7 vectors; ``pixels``, when given, adds the raw-pixel
    baseline over the same queries. ``ground_truth`` ({real query path: real relevant
    paths}, ``load_ground_truth``) scores near-duplicate retrieval instead of labels.
    Raises NoQueries when no query decodes or none has a relevant indexed image.
    """
    items = Items.of(store)
    keep, xq, pq, skipped = _decoded(list(map(str, query_paths)), embed, pixels)
    qpaths = [str(query_paths[i]) for i in keep]
    qlabels, self_pos = folder_labels(qpaths), items.self_positions(qpaths)
    depth = _depth(config, len(items.paths))
    I = _chunked_search(lambda q, d: store.search(q, d, config.nprobe), xq,
                        min(depth + 1, len(items.paths)))
    ranked = metrics.drop_self(items.positions(I), self_pos, depth)
    keys = dict(relevant=ground_truth, query_keys=[_same_file_key(p) for p in qpaths],
                item_keys=[_same_file_key(p) for p in items.paths])
    methods = {"fc7": score(ranked, self_pos, qlabels, items.labels, config, **keys)}
    if methods["fc7"].metrics.scored == 0:
        raise NoQueries(
            "no query has a relevant indexed image: " + (
                "none of the queries is in the ground truth" if ground_truth is not None else
                f"the query labels ({', '.join(sorted(set(qlabels))[:5])}) are not folder "
                "names of the indexed images"))
    if pixels is not None:
        ranked_px, errors = _pixel_ranking(items, pixels, pq, self_pos, depth)
        skipped += errors
        methods["pixels"] = score(ranked_px, self_pos, qlabels, items.labels, config, **keys)
    exact = faiss_ops.is_exact(store.load_index(mmap=True))
    recall = None if exact else _exact_recall(store, items, embed, xq, ranked, self_pos, config.k)
    return Report(
        mode="labels" if ground_truth is None else "ground-truth", queries=len(qpaths),
        indexed=len(items.paths), classes=len(set(items.labels)), config=config, methods=methods,
        factory=store.settings.get("factory", "Flat"), exact=exact, recall_vs_exact=recall,
        skipped=skipped, absent_labels=[] if ground_truth is not None else sorted(set(qlabels) - set(items.labels)))
