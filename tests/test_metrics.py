"""Retrieval metrics: hand-computed cases, and sklearn as an independent implementation."""

import subprocess
import sys

import numpy as np
import pytest
from indexes.evaluation.metrics import (RankingMetrics, average_precision, average_precisions, drop_self,
                             mean_average_precision, per_class, precision_at_k,
                             precision_recall_curve, ranking_metrics, read_ground_truth,
                             recall_at_k, recall_at_k_vs_exact, relevance_from_labels,
                             relevance_from_pairs, top1_accuracy)
from retrieval.errors import RetrieveError


def sklearn_metrics():
    """sklearn.metrics, the independent implementation (a dev dependency), or skip."""
    return pytest.importorskip("sklearn.metrics")


def test_average_precision_by_hand():
    # relevant at ranks 1 and 3: precisions 1/1 and 2/3
    assert average_precision([1, 0, 1, 0], 2) == pytest.approx((1 + 2 / 3) / 2)
    # the same ranking cut short of two more relevant items: they count as never found
    assert average_precision([1, 0, 1, 0], 4) == pytest.approx((1 + 2 / 3) / 4)
    assert average_precision([0, 0, 0, 1], 1) == pytest.approx(1 / 4)
    assert average_precision([1, 1, 1], 3) == 1.0
    assert average_precision([0, 0], 0) == 0.0  # no relevant item anywhere
    assert average_precision([], 2) == 0.0


def test_ties_are_taken_as_ranked_unlike_sklearn():
    # two results at the same distance: the order FAISS returned them in decides
    assert average_precision([1, 0], 1) == 1.0
    assert average_precision([0, 1], 1) == 0.5


def test_sklearn_averages_over_tied_scores_instead():
    skm, tied = sklearn_metrics(), np.array([-1.0, -1.0])
    assert skm.average_precision_score([1, 0], tied) == 0.5
    assert skm.average_precision_score([0, 1], tied) == 0.5


def test_queries_without_relevant_items_are_left_out_of_every_mean():
    rel = [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    n_relevant = [1, 2, 0]  # the third query's class is not in the index
    assert mean_average_precision(rel, n_relevant) == pytest.approx((1 + 0.5 / 2) / 2)
    assert precision_at_k(rel, n_relevant, 2) == pytest.approx((0.5 + 0.5) / 2)
    assert recall_at_k(rel, n_relevant, 2) == pytest.approx((1 + 0.5) / 2)
    assert top1_accuracy(rel, n_relevant) == 0.5
    m = ranking_metrics(rel, n_relevant, k=2)
    assert (m.queries, m.scored, m.k) == (3, 2, 2)
    assert m.recall_at_1 == 0.5 and m.recall_at_k == pytest.approx(0.75)
    assert np.isnan(mean_average_precision([[0, 0]], [0]))  # nothing to average


def test_k_larger_than_the_ranking_counts_missing_results_as_misses():
    rel, n_relevant = [[1, 1]], [3]
    assert precision_at_k(rel, n_relevant, 5) == pytest.approx(2 / 5)
    assert recall_at_k(rel, n_relevant, 5) == pytest.approx(2 / 3)
    assert recall_at_k(rel, n_relevant, 1) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        precision_at_k(rel, n_relevant, 0)


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ValueError, match="more relevant results than its n_relevant"):
        average_precision([1, 1, 0], 1)
    with pytest.raises(ValueError, match="must be"):
        mean_average_precision([[1, 0]], [1, 1])


def test_average_precision_equals_sklearn_on_full_rankings():
    skm = sklearn_metrics()
    rng = np.random.default_rng(42)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        y_true = rng.random(n) < rng.uniform(0.05, 0.9)
        if not y_true.any():
            y_true[rng.integers(n)] = True
        scores = -np.arange(n, dtype=np.float64)  # rank order, no ties
        want = skm.average_precision_score(y_true, scores)
        assert abs(average_precision(y_true, int(y_true.sum())) - want) < 1e-9


def test_mean_average_precision_equals_mean_of_sklearn_aps():
    skm = sklearn_metrics()
    rng = np.random.default_rng(7)
    rel = rng.random((50, 30)) < 0.3
    rel[:, 0] |= ~rel.any(axis=1)  # every query has a relevant item in its full ranking
    want = np.mean([skm.average_precision_score(r, -np.arange(30.0)) for r in rel])
    assert abs(mean_average_precision(rel, rel.sum(axis=1)) - want) < 1e-9
    np.testing.assert_allclose(average_precisions(rel, rel.sum(axis=1)),
                               [average_precision(r, r.sum()) for r in rel], atol=1e-12)


def test_precision_recall_curve_by_hand():
    # ranks 1..4: precision 1, 1/2, 2/3, 1/2; recall 1/2, 1/2, 1, 1
    levels, p = precision_recall_curve([[1, 0, 1, 0]], [2])
    np.testing.assert_allclose(levels, np.linspace(0, 1, 11))
    np.testing.assert_allclose(p, [1] * 6 + [2 / 3] * 5)
    # a third relevant item never retrieved: recall stops at 2/3, precision 0 above it
    _, p = precision_recall_curve([[1, 0, 1, 0]], [3])
    np.testing.assert_allclose(p, [1] * 4 + [2 / 3] * 3 + [0] * 4)
    levels, p = precision_recall_curve([[1, 0, 1, 0], [0, 0, 0, 0]], [2, 0], levels=101)
    assert len(levels) == len(p) == 101 and p[0] == 1 and p[-1] == pytest.approx(2 / 3)


def test_precision_recall_curve_matches_sklearn_interpolated():
    skm = sklearn_metrics()
    rng = np.random.default_rng(3)
    rel = rng.random((20, 40)) < 0.25
    rel[:, -1] |= ~rel.any(axis=1)
    levels, ours = precision_recall_curve(rel, rel.sum(axis=1), levels=101)
    want = []
    for r in rel:
        precision, recall, _ = skm.precision_recall_curve(r, -np.arange(40.0))
        precision, recall = precision[:-1], recall[:-1]  # drop sklearn's made-up (r=0, p=1)
        want.append([precision[recall >= level - 1e-12].max() for level in levels])
    np.testing.assert_allclose(ours, np.mean(want, axis=0), atol=1e-12)


def test_recall_against_exact_search():
    I_exact = np.array([[0, 1, 2], [3, 4, 5], [6, -1, -1]])
    I_approx = np.array([[2, 9, 0], [5, 4, 3], [-1, 6, 7]])
    assert recall_at_k_vs_exact(I_approx, I_exact, 3) == pytest.approx((2 + 3 + 1) / 7)
    assert recall_at_k_vs_exact(I_approx, I_exact, 1) == pytest.approx(0 / 3)
    rng = np.random.default_rng(0)
    I_exact = np.stack([rng.permutation(100)[:10] for _ in range(300)])
    I_approx = np.stack([rng.permutation(100)[:10] for _ in range(300)])
    want = sum(len(set(a[:5]) & set(e[:5])) for a, e in zip(I_approx, I_exact)) / (300 * 5)
    assert recall_at_k_vs_exact(I_approx, I_exact, 5) == pytest.approx(want)
    with pytest.raises(ValueError, match="k=11"):
        recall_at_k_vs_exact(I_approx, I_exact, 11)


def test_each_query_is_left_out_of_its_own_ranking_and_relevant_count():
    item_labels = np.array(["cat", "cat", "dog", "dog", "cat"])
    # query 0 is item 0 (found first); query 1 is item 2 (missed by an approximate index);
    # query 2 is not indexed (-1); query 3's class has no item at all.
    self_ids = [0, 2, -1, -1]
    ranked = drop_self([[0, 1, 2], [3, 0, 4], [4, -1, 1], [2, 3, 0]], self_ids)
    np.testing.assert_array_equal(ranked, [[1, 2], [3, 0], [4, -1], [2, 3]])
    rel, n_relevant = relevance_from_labels(["cat", "dog", "cat", "bird"], ranked,
                                            item_labels, self_ids=self_ids)
    np.testing.assert_array_equal(rel, [[1, 0], [1, 0], [1, 0], [0, 0]])
    np.testing.assert_array_equal(n_relevant, [2, 1, 3, 0])  # own item not counted
    m = ranking_metrics(rel, n_relevant, k=2)
    assert (m.queries, m.scored, m.top1) == (4, 3, 1.0)
    assert m.mean_ap == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)


def test_relevance_from_labels_without_self_exclusion():
    rel, n_relevant = relevance_from_labels([1, 2], [[2, 0, -1], [1, 2, 0]], [1, 2, 1])
    np.testing.assert_array_equal(rel, [[1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(n_relevant, [2, 1])
    with pytest.raises(ValueError, match="beyond the 3 item labels"):
        relevance_from_labels([1], [[3]], [1, 2, 1])


def test_drop_self_keeps_every_ranking_the_same_length():
    out = drop_self(np.array([[5, 6, 7], [6, 7, 8], [1, -1, 3]]), [6, 8, -1])
    np.testing.assert_array_equal(out, [[5, 7], [6, 7], [1, -1]])  # -1 is not a query's id
    # a ranking of the whole index (no extra result to search): the query's place becomes -1
    whole = drop_self([[2, 0, 1], [0, 1, 2]], [0, -1], depth=3)
    np.testing.assert_array_equal(whole, [[2, 1, -1], [0, 1, 2]])


def test_per_class_breakdown():
    rel = [[1, 0], [0, 1], [1, 1], [0, 0]]
    n_relevant = [1, 2, 2, 0]
    out = per_class(rel, n_relevant, [0, 0, 1, 2], k=2)
    assert list(out) == [0, 1, 2]
    assert out[0] == RankingMetrics(k=2, queries=2, scored=2, mean_ap=(1 + 0.25) / 2,
                                    precision_at_k=0.5, recall_at_1=0.5, recall_at_k=0.75,
                                    top1=0.5)
    assert out[1].mean_ap == 1.0 and out[1].precision_at_k == 1.0
    assert out[2].queries == 1 and out[2].scored == 0 and np.isnan(out[2].mean_ap)


def test_near_duplicate_ground_truth(tmp_path):
    csv = tmp_path / "gt.csv"
    csv.write_text("query,relevant\na.jpg,a_crop.jpg\na.jpg,a_small.jpg\nb.jpg,b_jpeg.jpg\n"
                   "c.jpg,c_gone.jpg\n")
    truth = read_ground_truth(csv)
    assert truth == {"a.jpg": {"a_crop.jpg", "a_small.jpg"}, "b.jpg": {"b_jpeg.jpg"},
                     "c.jpg": {"c_gone.jpg"}}
    results = [["x.jpg", "a_small.jpg", "a_crop.jpg"],  # each query's own file left out
               ["b_jpeg.jpg", "x.jpg", None],
               ["x.jpg", "a.jpg", "b.jpg"]]
    indexed = {"a.jpg", "a_crop.jpg", "a_small.jpg", "b.jpg", "b_jpeg.jpg", "c.jpg", "x.jpg"}
    truth["b.jpg"].add("b.jpg")  # a query is never relevant to itself
    rel, n_relevant = relevance_from_pairs(["a.jpg", "b.jpg", "c.jpg"], results, truth,
                                           indexed_keys=indexed)
    np.testing.assert_array_equal(rel, [[0, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(n_relevant, [2, 1, 0])  # c_gone.jpg was never indexed
    assert recall_at_k(rel, n_relevant, 1) == 0.5
    assert recall_at_k(rel, n_relevant, 3) == 1.0


@pytest.mark.parametrize("text, message", [
    ("a.jpg\n", "gt.csv:1: expected two paths"),
    ("a.jpg,b.jpg\nc.jpg,,\n", "gt.csv:2: expected two paths"),
    ("query,relevant\n", "no query,relevant pairs"),
])
def test_malformed_ground_truth_is_refused(tmp_path, text, message):
    (tmp_path / "gt.csv").write_text(text)
    with pytest.raises(RetrieveError, match=message):
        read_ground_truth(tmp_path / "gt.csv")


def test_metrics_do_not_import_torch():
    code = "import sys, indexes.evaluation.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
