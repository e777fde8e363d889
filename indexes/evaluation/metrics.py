"""Retrieval metrics over ranked result lists: AP, mAP, precision/recall@k, PR curves (numpy only).

Every metric takes a boolean relevance matrix ``rel`` (nq, n_ranked), row i saying which of
query i's results, in ranked order, are relevant, and ``n_relevant`` (nq,), how many relevant
items query i has in the whole collection: a ranking cut at k cannot tell that by itself.

Queries with ``n_relevant == 0`` (their class is absent from the index, no ground truth) have
no defined AP or recall. Every mean over queries leaves them out and ``RankingMetrics``
counts them (``queries - scored``); a mean over no scored query is NaN. Ties in distance are
taken as ranked: the order of the result list is the ranking (unlike sklearn, which averages
over tied scores).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.errors import RetrieveError

PR_LEVELS = 11  # the 11-point interpolated precision of PASCAL VOC; 101 for COCO-style curves
MAX_COMPARE = 1 << 24  # booleans per chunk when comparing id lists (16 MiB)


@dataclass
class RankingMetrics:
    """Means over the ``scored`` queries, those with at least one relevant item."""

    k: int
    queries: int
    scored: int
    mean_ap: float
    precision_at_k: float
    recall_at_1: float
    recall_at_k: float
    top1: float


def _check(rel, n_relevant) -> tuple[np.ndarray, np.ndarray]:
    """rel as bool (nq, n_ranked) and n_relevant as int64 (nq,), or ValueError."""
    rel = np.asarray(rel, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    if rel.ndim != 2 or n_relevant.shape != rel.shape[:1]:
        raise ValueError(f"rel must be (nq, n_ranked) and n_relevant (nq,), got "
                         f"{rel.shape} and {n_relevant.shape}")
    if (rel.sum(axis=1) > n_relevant).any():
        raise ValueError("a ranking holds more relevant results than its n_relevant")
    return rel, n_relevant


def _mean_scored(values: np.ndarray, n_relevant: np.ndarray) -> float:
    """Mean of per-query ``values`` over queries with relevant items; NaN if there are none."""
    scored = n_relevant > 0
    return float(values[scored].mean()) if scored.any() else float("nan")


def _hits_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return rel[:, :k].sum(axis=1)  # a ranking shorter than k: missing results are misses


def average_precisions(rel, n_relevant) -> np.ndarray:
    """Per-query AP (nq,) float64: sum of precision@i at each relevant rank i, / n_relevant.

    Relevant items missing from a cut ranking count as found at no precision (the standard,
    TREC, definition): AP is lower than over the full ranking. AP is 0 where n_relevant is 0.
    """
    rel, n_relevant = _check(rel, n_relevant)
    precision = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)  # (nq, n_ranked)
    return (precision * rel).sum(axis=1) / np.maximum(n_relevant, 1)


def average_precision(rel_row, n_relevant: int) -> float:
    """AP of one ranking ``rel_row`` (n_ranked,) bool, out of ``n_relevant`` relevant items."""
    return float(average_precisions(np.asarray(rel_row)[None], [n_relevant])[0])


def mean_average_precision(rel, n_relevant) -> float:
    """mAP: mean AP over queries with at least one relevant item (NaN if none has)."""
    rel, n_relevant = _check(rel, n_relevant)
    return _mean_scored(average_precisions(rel, n_relevant), n_relevant)


def precision_at_k(rel, n_relevant, k: int) -> float:
    """Mean fraction of relevant items among the first k results (always divided by k)."""
    rel, n_relevant = _check(rel, n_relevant)
    return _mean_scored(_hits_at_k(rel, k) / k, n_relevant)


def recall_at_k(rel, n_relevant, k: int) -> float:
    """Mean fraction of each query's relevant items found among its first k results.

    With one relevant item per query (near-duplicate search) it is the hit rate at k.
    """
    rel, n_relevant = _check(rel, n_relevant)
    return _mean_scored(_hits_at_k(rel, k) / np.maximum(n_relevant, 1), n_relevant)


def top1_accuracy(rel, n_relevant) -> float:
    """Fraction of queries whose nearest neighbour is relevant (with labels: has its label)."""
    rel, n_relevant = _check(rel, n_relevant)
    return _mean_scored(_hits_at_k(rel, 1).astype(np.float64), n_relevant)


def ranking_metrics(rel, n_relevant, k: int) -> RankingMetrics:
    """All the means at once, for a report or ``--json``."""
    rel, n_relevant = _check(rel, n_relevant)
    return RankingMetrics(
        k=k, queries=len(n_relevant), scored=int((n_relevant > 0).sum()),
        mean_ap=mean_average_precision(rel, n_relevant),
        precision_at_k=precision_at_k(rel, n_relevant, k),
        recall_at_1=recall_at_k(rel, n_relevant, 1),
        recall_at_k=recall_at_k(rel, n_relevant, k),
        top1=top1_accuracy(rel, n_relevant))


def per_class(rel, n_relevant, query_labels, k: int) -> dict:
    """``ranking_metrics`` of the queries of each label: {label: RankingMetrics}, sorted."""
    rel, n_relevant = _check(rel, n_relevant)
    query_labels = np.asarray(query_labels)
    if query_labels.shape != n_relevant.shape:
        raise ValueError(f"{len(query_labels)} query labels for {len(n_relevant)} queries")
    return {label.item() if hasattr(label, "item") else label:
            ranking_metrics(rel[query_labels == label], n_relevant[query_labels == label], k)
            for label in np.unique(query_labels)}


def precision_recall_curve(rel, n_relevant, levels: int = PR_LEVELS
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Mean interpolated precision at ``levels`` recall levels 0, ..., 1 (11 or 101), for plots.

    A query's interpolated precision at recall r is its highest precision at any rank where
    its recall is at least r, and 0 where its ranking never reaches r (a cut ranking). Returns
    (recall levels, precision), both float64 (levels,), averaged over the scored queries.
    """
    rel, n_relevant = _check(rel, n_relevant)
    if levels < 2:
        raise ValueError(f"levels must be at least 2, not {levels}")
    recall_levels = np.linspace(0.0, 1.0, levels)
    hits = np.cumsum(rel[n_relevant > 0], axis=1)  # (nq scored, n_ranked)
    if hits.shape[0] == 0:
        return recall_levels, np.full(levels, np.nan)
    precision = hits / np.arange(1, rel.shape[1] + 1)
    recall = hits / n_relevant[n_relevant > 0, None]  # non-decreasing along each row
    # best precision from each rank on, then 0 past the end for levels never reached
    best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    best_after = np.concatenate([best_after, np.zeros((len(hits), 1))], axis=1)
    interpolated = np.empty((len(hits), levels))
    for j, r in enumerate(recall_levels):
        # first rank reaching r; the tolerance makes 7 / 10 reach the level 0.7 of linspace
        first = (recall < r - 1e-12).sum(axis=1)
        interpolated[:, j] = best_after[np.arange(len(hits)), first]
    return recall_levels, interpolated.mean(axis=0)


def recall_at_k_vs_exact(I_approx, I_exact, k: int) -> float:
    """Fraction of the exact top-k ids that a compressed index's top-k also returned.

    ``I_approx`` and ``I_exact`` are (nq, >= k) FAISS id arrays; -1 (no result) is ignored.
    Pooled over queries, as faiss's knn_intersection_measure: sum |A_k & E_k| / sum |E_k|.
    """
    I_approx, I_exact = np.asarray(I_approx), np.asarray(I_exact)
    if I_approx.ndim != 2 or I_approx.shape[0] != I_exact.shape[0] or I_exact.ndim != 2:
        raise ValueError(f"I_approx {I_approx.shape} and I_exact {I_exact.shape} must be "
                         "(nq, k) arrays for the same queries")
    if not 1 <= k <= min(I_approx.shape[1], I_exact.shape[1]):
        raise ValueError(f"k={k} must be between 1 and the number of results per query")
    approx, exact = I_approx[:, :k], I_exact[:, :k]
    found = 0
    step = max(1, MAX_COMPARE // (k * k))
    for start in range(0, len(exact), step):  # (chunk, k, k) comparisons at a time
        e, a = exact[start:start + step], approx[start:start + step]
        found += int(((e[:, :, None] == a[:, None, :]).any(axis=2) & (e >= 0)).sum())
    total = int((exact >= 0).sum())
    return found / total if total else float("nan")


def drop_self(ranked, self_ids, depth: int | None = None) -> np.ndarray:
    """Each query's own item removed from its ranking, so that it is never its own hit.

    ``ranked`` (nq, n) ids, nearest first, -1 for no result; ``self_ids`` (nq,) the query's
    own id, -1 when the query is not indexed. The results after it move up, -1 fills the
    end, and every ranking is cut to ``depth`` (default n - 1): search depth + 1 neighbours
    to score depth.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    self_ids = np.asarray(self_ids, dtype=np.int64)
    if ranked.ndim != 2 or self_ids.shape != ranked.shape[:1]:
        raise ValueError(f"need (nq, n) rankings and (nq,) self ids, got {ranked.shape} and "
                         f"{self_ids.shape}")
    hit = (ranked == self_ids[:, None]) & (self_ids[:, None] >= 0)
    order = np.argsort(hit, axis=1, kind="stable")  # the query itself moves to the end
    out = np.take_along_axis(ranked, order, axis=1)
    out[np.take_along_axis(hit, order, axis=1)] = -1
    return out[:, :ranked.shape[1] - 1 if depth is None else depth]


def relevance_from_labels(query_labels, result_ids, item_labels, self_ids=None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(rel, n_relevant) for class labels: a result is relevant if it has the query's label.

    ``result_ids`` (nq, n) are ids into ``item_labels`` (nb,), -1 for no result. For queries
    that are themselves indexed, ``self_ids`` (nq,) gives the query's own id (-1: not
    indexed): it is left out of the query's relevant count, and must already be out of its
    ranking (``drop_self``).
    """
    query_labels, item_labels = np.asarray(query_labels), np.asarray(item_labels)
    ids = np.asarray(result_ids, dtype=np.int64)
    if ids.ndim != 2 or query_labels.shape != ids.shape[:1]:
        raise ValueError(f"{query_labels.shape} query labels for results {ids.shape}")
    if (ids >= len(item_labels)).any():
        raise ValueError(f"result ids beyond the {len(item_labels)} item labels")
    valid = ids >= 0
    rel = valid & (item_labels[np.where(valid, ids, 0)] == query_labels[:, None])
    labels, counts = np.unique(item_labels, return_counts=True)
    pos = np.minimum(np.searchsorted(labels, query_labels), len(labels) - 1)
    n_relevant = np.where(labels[pos] == query_labels, counts[pos], 0) if len(labels) else \
        np.zeros(len(query_labels), dtype=np.int64)
    if self_ids is not None:
        self_ids = np.asarray(self_ids, dtype=np.int64)
        indexed = self_ids >= 0
        own = np.zeros(len(self_ids), dtype=bool)
        own[indexed] = item_labels[self_ids[indexed]] == query_labels[indexed]
        n_relevant = n_relevant - own
    return rel, n_relevant.astype(np.int64)


def relevance_from_pairs(query_keys: Sequence, result_keys, relevant: Mapping,
                         indexed_keys: Collection | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rel, n_relevant) for near-duplicate ground truth: {query key: its relevant keys}.

    Keys are whatever names the items (resolved paths). ``result_keys`` (nq, n) holds the keys
    of each query's results, None for no result. A query is never relevant to itself.
    ``indexed_keys``, when given, limits the relevant count to items that are in the index
    (the others can never be found).
    """
    results = np.empty((len(query_keys), np.shape(result_keys)[1]), dtype=object)
    results[:] = result_keys
    rel = np.zeros(results.shape, dtype=bool)
    n_relevant = np.zeros(len(query_keys), dtype=np.int64)
    indexed = None if indexed_keys is None else set(indexed_keys)
    for i, q in enumerate(query_keys):
        wanted = set(relevant.get(q, ())) - {q}
        if indexed is not None:
            wanted &= indexed
        rel[i] = [key in wanted for key in results[i]]
        n_relevant[i] = len(wanted)
    return rel, n_relevant


def read_ground_truth(path: str | os.PathLike) -> dict[str, set[str]]:
    """Read a near-duplicate CSV of ``query path,relevant path`` rows (one pair a row).

    A first row ``query,relevant`` is a header. Paths are returned as written; a query with
    several relevant images has several rows. Raises RetrieveError for a malformed file.
    """
    pairs: dict[str, set[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if not row or (line == 1 and [c.strip().lower() for c in row]
                               == ["query", "relevant"]):
                    continue
                if len(row) != 2 or not row[0].strip() or not row[1].strip():
                    raise RetrieveError(f"{path}:{line}: expected two paths, query,relevant")
                pairs.setdefault(row[0].strip(), set()).add(row[1].strip())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RetrieveError(f"{path}: cannot read ground truth ({e})") from None
    if not pairs:
        raise RetrieveError(f"{path}: no query,relevant pairs in the ground truth file")
    return pairs
