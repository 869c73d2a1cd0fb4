"""Tests for fatviz.metrics: hand-computed retrieval, sklearn cross-checks, clustering."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from fatviz.errors import FatvizError
from fatviz.metrics import (
    classification_accuracy,
    clustering_metrics,
    evaluate_embeddings,
    rank_lists,
    retrieval_metrics,
)


def col(*values: float) -> np.ndarray:
    """1-D positions as an (n, 1) embedding matrix."""
    return np.array(values, dtype=np.float64)[:, None]


def test_query_gallery_by_hand():
    # Gallery on a line: 1 (A), 2 (B), 3 (A), 4 (B); both queries sit at 0.
    # Query A: ranking A B A B -> relevant at ranks 1, 3 -> AP = (1 + 2/3) / 2 = 5/6.
    # Query B: ranking A B A B -> relevant at ranks 2, 4 -> AP = (1/2 + 2/4) / 2 = 1/2.
    # mAP = (5/6 + 1/2) / 2 = 2/3; precision@1 = 1/2; first hits at 1 and 2.
    # Hardest matches at ranks 3 and 4: INP = 2/3 and 2/4, mINP = 7/12.
    # R-precision (G = 2 matches each): one match in the first two for both, so 1/2.
    out = retrieval_metrics(col(0, 0), ["A", "B"], col(1, 2, 3, 4), ["A", "B", "A", "B"],
                            ranks=(1, 2, 5))
    assert out["map"] == pytest.approx(2 / 3)
    assert out["minp"] == pytest.approx(7 / 12)
    assert out["precision_at_1"] == pytest.approx(0.5)
    assert out["cmc_1"] == pytest.approx(0.5)
    assert out["cmc_2"] == pytest.approx(1.0)
    assert out["cmc_5"] == pytest.approx(1.0)
    assert out["r_precision"] == pytest.approx(0.5)
    assert out["num_valid_queries"] == 2.0
    assert set(out) == {
        "precision_at_1", "r_precision", "map", "minp", "cmc_1", "cmc_2", "cmc_5", "num_valid_queries"
    }


def test_known_imperfect_and_perfect_ranking():
    # Relevant at ranks 1 and 3 of 3 -> AP = (1 + 2/3) / 2.
    out = retrieval_metrics(col(0), [0], col(1, 2, 3), [0, 1, 0])
    assert out["map"] == pytest.approx((1 + 2 / 3) / 2)
    # Both relevant items ranked first -> AP = 1.
    out = retrieval_metrics(col(0), [0], col(1, 2, 3), [0, 0, 1])
    assert out["map"] == 1.0
    assert out["precision_at_1"] == 1.0


def test_leave_one_out_by_hand():
    # Points 0, 1, 5, 6, 20 with labels 0, 0, 1, 1, 0; each point's own entry is excluded.
    # x=0:  others 1(R) 5 6 20(R)   -> AP = (1 + 2/4) / 2 = 3/4, first hit 1
    # x=1:  others 0(R) 5 6 20(R)   -> AP = 3/4, first hit 1
    # x=5:  others 6(R) 1 0 20      -> AP = 1, first hit 1
    # x=6:  others 5(R) 1 0 20      -> AP = 1, first hit 1
    # x=20: others 6 5 1(R) 0(R)    -> AP = (1/3 + 2/4) / 2 = 5/12, first hit 3
    # mAP = (3/4 + 3/4 + 1 + 1 + 5/12) / 5 = 47/60; precision@1 = 4/5; cmc_5 = 1.
    out = retrieval_metrics(col(0, 1, 5, 6, 20), [0, 0, 1, 1, 0])
    assert out["map"] == pytest.approx(47 / 60)
    assert out["precision_at_1"] == pytest.approx(0.8)
    assert out["cmc_5"] == 1.0
    assert out["cmc_10"] == 1.0
    assert out["num_valid_queries"] == 5.0


def test_same_camera_match_removed_and_query_without_match_skipped():
    # Gallery: 0.5 (A, cam 1), 1 (B, cam 2), 2 (A, cam 2), 3 (C, cam 1); queries at 0.
    # Query A, cam 1: the nearest A shares its camera and is removed -> ranking B A C,
    #   first hit at rank 2 (not 3: removed entries take no rank), AP = 1/2.
    # Query C, cam 1: its only match shares its camera -> no valid match, skipped.
    gallery, g_lab, g_cam = col(0.5, 1, 2, 3), ["A", "B", "A", "C"], [1, 2, 2, 1]
    out = retrieval_metrics(col(0, 0), ["A", "C"], gallery, g_lab,
                            query_cams=[1, 1], gallery_cams=g_cam)
    assert out["num_valid_queries"] == 1.0
    assert out["map"] == pytest.approx(0.5)
    assert out["precision_at_1"] == 0.0
    assert out["cmc_5"] == 1.0
    # Without cameras nothing is removed: A hits at 1 and 3 (AP 5/6), C at 4 (AP 1/4).
    out = retrieval_metrics(col(0, 0), ["A", "C"], gallery, g_lab)
    assert out["num_valid_queries"] == 2.0
    assert out["map"] == pytest.approx((5 / 6 + 1 / 4) / 2)
    assert out["precision_at_1"] == pytest.approx(0.5)


def test_no_valid_query_gives_zeros_not_nan():
    out = retrieval_metrics(col(0), ["A"], col(1, 2), ["B", "B"])
    assert out == {"precision_at_1": 0.0, "r_precision": 0.0, "map": 0.0, "minp": 0.0, "cmc_1": 0.0, "cmc_5": 0.0,
                   "cmc_10": 0.0, "num_valid_queries": 0.0}


def test_ties_broken_by_gallery_index():
    # Both gallery entries lie at distance 1 (exact in float): the lower index ranks first.
    assert retrieval_metrics(col(0), [0], col(1, -1), [1, 0])["precision_at_1"] == 0.0
    assert retrieval_metrics(col(0), [0], col(-1, 1), [0, 1])["precision_at_1"] == 1.0
    # Gallery at 2, 1, 2, 1, ...: the 30 entries at distance 1 are indices 1, 3, ..., 59,
    # and the only match is the last of them, so a stable order ranks it 30th.
    labels = [1] * 59 + [0]
    out = retrieval_metrics(col(0), [0], col(*[2, 1] * 30), labels, ranks=(29, 30))
    assert out["map"] == pytest.approx(1 / 30)
    assert (out["cmc_29"], out["cmc_30"]) == (0.0, 1.0)


def reference(q, q_lab, g, g_lab, q_cam=None, g_cam=None):
    """Per-query loop: sklearn AP on negated distances, first-hit rank for CMC."""
    aps, firsts = [], []
    for i in range(len(q)):
        keep = np.ones(len(g), dtype=bool)
        if q_cam is not None:
            keep = ~((g_lab == q_lab[i]) & (g_cam == q_cam[i]))
        d = np.linalg.norm(g[keep] - q[i], axis=1)
        rel = g_lab[keep] == q_lab[i]
        if not rel.any():
            continue
        aps.append(average_precision_score(rel, -d))
        firsts.append(1 + np.flatnonzero(rel[np.argsort(d)])[0])
    firsts = np.array(firsts)
    return np.mean(aps), {k: np.mean(firsts <= k) for k in (1, 5, 10)}, len(aps)


@pytest.mark.parametrize("use_cams", [False, True])
def test_matches_sklearn_average_precision(use_cams):
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(30, 6)), rng.normal(size=(80, 6))
    q_lab, g_lab = rng.integers(0, 5, 30), rng.integers(0, 5, 80)
    q_cam = rng.integers(0, 3, 30) if use_cams else None
    g_cam = rng.integers(0, 3, 80) if use_cams else None
    expected_map, expected_cmc, expected_valid = reference(q, q_lab, g, g_lab, q_cam, g_cam)
    out = retrieval_metrics(q, q_lab, g, g_lab, query_cams=q_cam, gallery_cams=g_cam)
    assert out["map"] == pytest.approx(expected_map, abs=1e-9)
    assert out["num_valid_queries"] == expected_valid
    for k, value in expected_cmc.items():
        assert out[f"cmc_{k}"] == pytest.approx(value)
    assert out["precision_at_1"] == out["cmc_1"]


def test_leave_one_out_matches_reference_without_self():
    rng = np.random.default_rng(1)
    x, lab = rng.normal(size=(40, 4)), rng.integers(0, 4, 40)
    aps = []
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        aps.append(average_precision_score(lab[others] == lab[i],
                                           -np.linalg.norm(x[others] - x[i], axis=1)))
    assert retrieval_metrics(x, lab)["map"] == pytest.approx(np.mean(aps), abs=1e-9)


@pytest.mark.parametrize("chunk_size", [1, 3, 7])
def test_chunking_matches_single_chunk(chunk_size):
    rng = np.random.default_rng(2)
    q = rng.normal(size=(23, 5)).astype(np.float32)
    g = rng.normal(size=(31, 5)).astype(np.float32)
    q_lab, g_lab = rng.integers(0, 4, 23), rng.integers(0, 4, 31)
    q_cam, g_cam = rng.integers(0, 2, 23), rng.integers(0, 2, 31)
    kwargs = {"query_cams": q_cam, "gallery_cams": g_cam}
    whole = retrieval_metrics(q, q_lab, g, g_lab, chunk_size=1000, **kwargs)
    assert retrieval_metrics(q, q_lab, g, g_lab, chunk_size=chunk_size, **kwargs) == whole
    # Leave-one-out shifts the excluded diagonal entry with each chunk's offset.
    assert retrieval_metrics(q, q_lab, chunk_size=chunk_size) == retrieval_metrics(q, q_lab)


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, lab = rng.normal(size=(20, 3)).astype(np.float32), rng.integers(0, 3, 20)
    as_tensors = retrieval_metrics(torch.tensor(x, requires_grad=True), torch.tensor(lab))
    assert as_tensors == retrieval_metrics(x, lab)


def test_user_mistakes_raise_fatviz_error():
    with pytest.raises(FatvizError):
        retrieval_metrics(col(0, 1), [0])
    with pytest.raises(FatvizError):
        retrieval_metrics(col(0, np.nan), [0, 1])
    with pytest.raises(FatvizError):
        retrieval_metrics(col(0), [0], col(1), [0], query_cams=[1])
    with pytest.raises(FatvizError):
        retrieval_metrics(np.zeros(3), [0, 1, 2])
    with pytest.raises(FatvizError):
        evaluate_embeddings(col(0, 1), [0, 1], is_query=np.array([1, 0]))


def blobs(n_per_class, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    centres = 50.0 * np.eye(n_classes, 8)
    x = np.concatenate([c + rng.normal(size=(n_per_class, 8)) for c in centres])
    return x, np.repeat(np.arange(n_classes), n_per_class)


def test_clustering_separated_blobs():
    x, lab = blobs(30, 3)
    out = clustering_metrics(x, lab)
    assert out["nmi"] == pytest.approx(1.0)
    assert out["silhouette"] > 0.9
    # Shuffled labels: neither metric may still look good.
    shuffled = clustering_metrics(x, np.random.default_rng(0).permutation(lab))
    assert shuffled["nmi"] < 0.3
    assert shuffled["silhouette"] < 0.1


def test_clustering_degenerate_inputs_are_finite():
    x, _ = blobs(10, 2)
    single = clustering_metrics(x, np.zeros(len(x), dtype=int))
    assert np.isfinite(single["nmi"])
    assert single["silhouette"] == 0.0
    two = clustering_metrics(col(0, 1), [0, 1])
    assert np.isfinite(two["nmi"])
    assert two["silhouette"] == 0.0


def test_silhouette_subsample_is_seeded():
    x, lab = blobs(100, 3)
    a = clustering_metrics(x, lab, max_silhouette_points=40, seed=5)
    b = clustering_metrics(x, lab, max_silhouette_points=40, seed=5)
    assert a == b
    assert a["silhouette"] > 0.9


def test_classification_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [1.0, 2.0]])
    assert classification_accuracy(logits, [0, 1, 1, 1]) == pytest.approx(0.75)
    assert classification_accuracy(np.array([0, 1, 1]), [0, 1, 0]) == pytest.approx(2 / 3)


def test_evaluate_embeddings_reid_split():
    x, lab = blobs(6, 3)
    cams = np.tile([0, 1, 2], 6)
    is_query = np.zeros(len(x), dtype=bool)
    is_query[::6] = True
    logits = np.eye(3)[lab]
    logits[0] = [0.0, 1.0, 0.0]  # one wrong prediction of 18
    out = evaluate_embeddings(x, lab, logits=logits, cams=cams, is_query=is_query)
    expected = retrieval_metrics(x[is_query], lab[is_query], x[~is_query], lab[~is_query],
                                 query_cams=cams[is_query], gallery_cams=cams[~is_query])
    expected.update(clustering_metrics(x[~is_query], lab[~is_query]))
    expected["accuracy"] = 17 / 18
    assert out == pytest.approx(expected)
    assert out["precision_at_1"] == 1.0
    assert all(type(v) is float for v in out.values())


def test_evaluate_embeddings_leave_one_out():
    x, lab = blobs(5, 2)
    out = evaluate_embeddings(x, lab)
    assert out["map"] == 1.0
    assert out["num_valid_queries"] == 10.0
    assert "accuracy" not in out
    assert all(type(v) is float for v in out.values())


def test_own_silhouette_matches_sklearn_including_singleton_clusters():
    from sklearn.metrics import silhouette_score

    from fatviz.metrics import _silhouette

    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.normal(size=(120, 5))
        y = rng.integers(0, 4, size=120)
        y[0] = 9  # a cluster of one member scores 0, as in sklearn
        assert abs(_silhouette(x, y) - silhouette_score(x, y)) < 1e-9


def test_own_nmi_matches_sklearn_on_random_labelings():
    from sklearn.metrics import normalized_mutual_info_score

    from fatviz.metrics import _nmi

    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        a = rng.integers(0, int(rng.integers(1, 6)), n)
        b = rng.integers(0, int(rng.integers(1, 6)), n)
        assert abs(_nmi(a, b) - normalized_mutual_info_score(a, b)) < 1e-12


def test_own_kmeans_ends_at_a_lloyd_fixed_point_and_clusters_as_well_as_sklearn():
    from sklearn.cluster import KMeans

    from fatviz.metrics import _kmeans

    rng = np.random.default_rng(12)
    centres = rng.normal(scale=4.0, size=(8, 6))
    x = np.concatenate([c + rng.normal(size=(40, 6)) for c in centres])

    def inertia(lab):
        return sum(((x[lab == c] - x[lab == c].mean(0)) ** 2).sum() for c in np.unique(lab))

    ours, theirs = [], []
    for seed in range(40):  # one start can land in a poor optimum: compare the average start
        lab = _kmeans(x, 8, seed)
        assert np.array_equal(lab, _kmeans(x, 8, seed))  # seeded
        assert len(np.unique(lab)) == 8  # no cluster left empty
        means = np.stack([x[lab == c].mean(0) for c in range(8)])
        nearest = ((x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        assert (nearest == lab).mean() > 0.99  # each point sits with its nearest mean
        ours.append(inertia(lab))
        theirs.append(inertia(KMeans(n_clusters=8, n_init=1, random_state=seed).fit_predict(x)))
    assert np.mean(ours) <= 1.05 * np.mean(theirs)


def test_own_kmeans_with_fewer_distinct_points_than_clusters():
    from fatviz.metrics import _kmeans

    x = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)
    lab = _kmeans(x, 4, seed=0)
    assert lab.shape == (20,)
    assert len(np.unique(lab[:10])) == 1 and len(np.unique(lab[10:])) == 1
    assert lab[0] != lab[10]


def test_quicksort_with_tie_repair_equals_stable_argsort():
    from fatviz.metrics import _stable_argsort

    rng = np.random.default_rng(4)
    d = rng.integers(0, 5, size=(40, 60)).astype(np.float64)  # many ties
    d[::3] = rng.random((14, 60))  # and some rows without ties
    assert (_stable_argsort(d) == np.argsort(d, axis=1, kind="stable")).all()


# -- mINP and rank lists (ReID protocol) ------------------------------------------------------


def test_reid_protocol_by_hand_with_minp():
    # Gallery at positions 1..6 on a line, all queries at 0, so the distance order is the index order:
    #   g0 A cam0, g1 B cam1, g2 A cam1, g3 A cam0, g4 B cam0, g5 A cam1.
    # Query A cam0: g0 and g3 are removed (same identity, same camera). Kept order g1 g2 g4 g5 ->
    #   B A B A: matches at ranks 2 and 4. AP = (1/2 + 2/4) / 2 = 1/2; first 2; INP = 2/4 = 1/2.
    # Query B cam0: g4 removed. Kept order g0 g1 g2 g3 g5 -> A B A A A: match at rank 2 only.
    #   AP = 1/2; first 2; INP = 1/2.
    # Query A cam1: g2 and g5 removed. Kept order g0 g1 g3 g4 -> A B A B: matches at ranks 1, 3.
    #   AP = (1 + 2/3) / 2 = 5/6; first 1; INP = 2/3.
    # Query C cam0: no match anywhere -> skipped.
    g = col(1, 2, 3, 4, 5, 6)
    g_lab, g_cam = ["A", "B", "A", "A", "B", "A"], [0, 1, 1, 0, 0, 1]
    q = col(0, 0, 0, 0)
    q_lab, q_cam = ["A", "B", "A", "C"], [0, 0, 1, 0]
    out = retrieval_metrics(q, q_lab, g, g_lab, query_cams=q_cam, gallery_cams=g_cam)
    assert out["num_valid_queries"] == 3.0
    assert out["map"] == pytest.approx((1 / 2 + 1 / 2 + 5 / 6) / 3)
    assert out["minp"] == pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3)
    assert out["cmc_1"] == pytest.approx(1 / 3)
    assert out["cmc_5"] == pytest.approx(1.0)

    lists = rank_lists(q, q_lab, g, g_lab, query_cams=q_cam, gallery_cams=g_cam, k=3)
    # Worst AP first; queries 0 and 1 tie on AP and INP, so the lower index comes first.
    assert lists.query.tolist() == [0, 1, 2]
    assert lists.top.tolist() == [[1, 2, 4], [0, 1, 2], [0, 1, 3]]
    assert lists.top_match.tolist() == [[False, True, False], [False, True, False], [True, False, True]]
    assert lists.hardest.tolist() == [5, 1, 3]
    assert lists.hardest_rank.tolist() == [4, 2, 3]
    assert lists.first_rank.tolist() == [2, 2, 1]
    assert lists.num_matches.tolist() == [2, 1, 2]
    np.testing.assert_allclose(lists.ap, [1 / 2, 1 / 2, 5 / 6])
    np.testing.assert_allclose(lists.inp, [1 / 2, 1 / 2, 2 / 3])


def brute_force(q, q_lab, q_cam, g, g_lab, g_cam):
    """Plain loops over queries and gallery entries: ranks, AP, INP and the top ten per query."""
    rows = []
    for i in range(len(q)):
        dists = [float(np.sum((g[j] - q[i]) ** 2)) for j in range(len(g))]
        order = sorted(range(len(g)), key=lambda j: (dists[j], j))
        ranked = [j for j in order if not (g_lab[j] == q_lab[i] and g_cam[j] == q_cam[i])]
        match_ranks = [r + 1 for r, j in enumerate(ranked) if g_lab[j] == q_lab[i]]
        if not match_ranks:
            continue
        ap = sum((n + 1) / r for n, r in enumerate(match_ranks)) / len(match_ranks)
        inp = len(match_ranks) / match_ranks[-1]
        rows.append({"query": i, "first": match_ranks[0], "ap": ap, "inp": inp, "top": ranked[:10],
                     "hardest": ranked[match_ranks[-1] - 1], "hardest_rank": match_ranks[-1]})
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reid_metrics_and_rank_lists_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(25, 4)), rng.normal(size=(70, 4))
    q_lab, g_lab = rng.integers(0, 6, 25), rng.integers(0, 6, 70)
    q_cam, g_cam = rng.integers(0, 3, 25), rng.integers(0, 3, 70)
    rows = brute_force(q, q_lab, q_cam, g, g_lab, g_cam)
    out = retrieval_metrics(q, q_lab, g, g_lab, query_cams=q_cam, gallery_cams=g_cam)
    assert out["num_valid_queries"] == len(rows)
    assert out["map"] == pytest.approx(np.mean([r["ap"] for r in rows]), abs=1e-12)
    assert out["minp"] == pytest.approx(np.mean([r["inp"] for r in rows]), abs=1e-12)
    for k in (1, 5, 10):
        assert out[f"cmc_{k}"] == pytest.approx(np.mean([r["first"] <= k for r in rows]))
    lists = rank_lists(q, q_lab, g, g_lab, query_cams=q_cam, gallery_cams=g_cam, chunk_size=4)
    by_query = {r["query"]: r for r in rows}
    assert sorted(lists.query.tolist()) == sorted(by_query)
    assert np.all(np.diff(lists.ap) >= 0)  # worst AP first
    for i, query in enumerate(lists.query):
        r = by_query[int(query)]
        assert lists.top[i].tolist() == r["top"]
        assert lists.top_match[i].tolist() == [bool(g_lab[j] == q_lab[query]) for j in r["top"]]
        assert (lists.hardest[i], lists.hardest_rank[i], lists.first_rank[i]) == (
            r["hardest"], r["hardest_rank"], r["first"])
        assert lists.ap[i] == pytest.approx(r["ap"])
        assert lists.inp[i] == pytest.approx(r["inp"])


def test_minp_is_one_only_when_every_match_comes_first():
    # Matches at ranks 1, 2: INP = 1. Matches at ranks 1, 3: AP = 5/6 but INP = 2/3, the hidden hard positive.
    assert retrieval_metrics(col(0), [0], col(1, 2, 3), [0, 0, 1])["minp"] == 1.0
    assert retrieval_metrics(col(0), [0], col(1, 2, 3), [0, 1, 0])["minp"] == pytest.approx(2 / 3)


def test_rank_lists_pad_a_short_gallery_and_check_k():
    lists = rank_lists(col(0), [0], col(1, 2), [0, 1], k=4)
    assert lists.top.tolist() == [[0, 1, -1, -1]]
    assert lists.top_match.tolist() == [[True, False, False, False]]
    with pytest.raises(FatvizError, match="k"):
        rank_lists(col(0), [0], col(1), [0], k=0)


# -- the ranking without a full argsort, against plain loops ----------------------------------


def reference_scores(q, q_lab, g, g_lab, q_cam=None, g_cam=None, leave_one_out=False):
    """Plain loops: each query's gallery sorted by (distance, index), removed entries dropped, then
    every retrieval score averaged over the queries that keep a match."""
    rows = []
    for i in range(len(q)):
        dists = [float(np.sum((np.asarray(g[j], dtype=np.float64) - q[i]) ** 2)) for j in range(len(g))]
        ranked = [j for j in sorted(range(len(g)), key=lambda j: (dists[j], j))
                  if not (leave_one_out and j == i)
                  and not (q_cam is not None and g_lab[j] == q_lab[i] and g_cam[j] == q_cam[i])]
        hits = [r + 1 for r, j in enumerate(ranked) if g_lab[j] == q_lab[i]]
        if hits:
            n = len(hits)
            rows.append((hits[0], sum((k + 1) / r for k, r in enumerate(hits)) / n, n / hits[-1],
                         sum(r <= n for r in hits) / n))
    first, ap, inp, r_precision = (np.array(c) for c in zip(*rows, strict=True))
    out = {"precision_at_1": np.mean(first == 1), "r_precision": np.mean(r_precision), "map": np.mean(ap),
           "minp": np.mean(inp)}
    out.update({f"cmc_{k}": np.mean(first <= k) for k in (1, 5, 10)})
    out["num_valid_queries"] = float(len(rows))
    return out


def tied_points(rng, n, dtype):
    """Points on a coarse integer grid: squared distances are small whole numbers, exact in float32,
    so nearly every query's matches tie with other entries."""
    return rng.integers(0, 3, size=(n, 3)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties_to_sort", [0, 10**9])  # every tied row by the stable sort, or every one counted
@pytest.mark.parametrize("seed", [0, 1])
def test_ranks_with_ties_match_plain_loops(monkeypatch, dtype, ties_to_sort, seed):
    import fatviz.metrics

    monkeypatch.setattr(fatviz.metrics, "_TIES_PER_ROW_TO_SORT", ties_to_sort)
    rng = np.random.default_rng(seed)
    q, g = tied_points(rng, 30, dtype), tied_points(rng, 90, dtype)
    q_lab, g_lab = rng.integers(0, 5, 30), rng.integers(0, 5, 90)
    q_lab[0] = 7  # no match anywhere in the gallery
    q_cam, g_cam = rng.integers(0, 3, 30), rng.integers(0, 3, 90)
    q_lab[1], q_cam[1] = 8, 0
    g_lab[:2], g_cam[:2] = 8, 0  # query 1's only matches share its camera: removed, so it has none
    for cams in (False, True):
        expected = reference_scores(q, q_lab, g, g_lab, q_cam if cams else None, g_cam if cams else None)
        kwargs = {"query_cams": q_cam, "gallery_cams": g_cam} if cams else {}
        assert expected["num_valid_queries"] == 29 - cams
        for chunk_size in (None, 4):
            out = retrieval_metrics(q, q_lab, g, g_lab, chunk_size=chunk_size, **kwargs)
            assert out == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("ties_to_sort", [0, 10**9])
def test_leave_one_out_with_ties_matches_plain_loops(monkeypatch, ties_to_sort):
    import fatviz.metrics

    monkeypatch.setattr(fatviz.metrics, "_TIES_PER_ROW_TO_SORT", ties_to_sort)
    rng = np.random.default_rng(5)
    x, lab = tied_points(rng, 60, np.float32), rng.integers(0, 4, 60)
    lab[7] = 9  # the only sample of its label: no match once itself is left out
    cams = rng.integers(0, 2, 60)
    assert retrieval_metrics(x, lab, chunk_size=7) == pytest.approx(
        reference_scores(x, lab, x, lab, leave_one_out=True), abs=1e-12)
    assert retrieval_metrics(x, lab, query_cams=cams, chunk_size=7) == pytest.approx(
        reference_scores(x, lab, x, lab, cams, cams, leave_one_out=True), abs=1e-12)


def test_one_thread_and_several_give_the_same_scores():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x, lab = rng.normal(size=(120, 4)).astype(np.float32), rng.integers(0, 5, 120)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = retrieval_metrics(x, lab, chunk_size=16)
        torch.set_num_threads(2)
        assert retrieval_metrics(x, lab, chunk_size=16) == alone
        assert torch.get_num_threads() == 2  # the ranking gives back the threads it borrowed
    finally:
        torch.set_num_threads(before)


def test_clustering_of_a_large_set_uses_a_seeded_sample_and_says_so():
    x, lab = blobs(100, 3)
    whole = clustering_metrics(x, lab)
    assert whole["nmi_points"] == 300.0
    sampled = clustering_metrics(x, lab, max_cluster_points=120, seed=2)
    assert sampled["nmi_points"] == 120.0
    assert sampled == clustering_metrics(x, lab, max_cluster_points=120, seed=2)
    assert sampled["nmi"] == pytest.approx(1.0)
