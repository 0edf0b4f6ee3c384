"""``merge.loop: official`` against a line-by-line port of the reference's ``scripts/gen_adaspx.py``."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import scipy.ndimage
from scipy.spatial.distance import jensenshannon

from adaspx.merge import adaptive_merge, region_stats_and_merge
from adaspx.official_merge import dense_index, neighbour_lists


def reference_graph(R: np.ndarray) -> nx.Graph:
    """``build_region_graph``'s graph: nodes in id order with the first pixel of each region, edges as scanned."""
    G = nx.Graph()
    G.add_nodes_from([(i, {"center": tuple(int(a[0]) for a in np.where(R == i))}) for i in np.unique(R)])
    for y, x in zip(*np.where(R[:, :-1] != R[:, 1:]), strict=True):
        u, v = R[y, x], R[y, x + 1]
        if (u, v) not in G.edges():
            G.add_edge(u, v)
    for y, x in zip(*np.where(R[:-1, :] != R[1:, :]), strict=True):
        u, v = R[y, x], R[y + 1, x]
        if (u, v) not in G.edges():
            G.add_edge(u, v)
    return G


def reference_merge(feature: np.ndarray, R: np.ndarray, eps: float, cap: float = math.inf) -> np.ndarray:
    """``build_region_graph`` then ``merge_graph_from_uncert_complexity`` with ``8192 * 0.1`` replaced by ``cap``
    (with ``cap = inf`` it is ``merge_graph_from_uncert``): float32 NumPy means, scipy's distance, networkx order."""
    feature_sorted = np.sort(feature, axis=2)
    uncertainty = feature_sorted[:, :, -2] / feature_sorted[:, :, -1]
    region_feature = {}
    for index in np.unique(R):
        y, x = np.where(R == index)
        region_feature[index] = (np.mean(feature[y, x], axis=0), len(y), np.mean(uncertainty[y, x]))
    G = reference_graph(R)
    unc = {u: region_feature[u][2] for u in G.nodes()}
    order = [k for k, _ in sorted(unc.items(), key=lambda item: -item[1])]
    merged_arr: list = []
    for u in order:
        if u in merged_arr:
            continue
        merged_arr.append(u)
        if len(merged_arr) >= cap:
            break
        adj_arr = []
        for v in G.neighbors(u):
            if v not in merged_arr:
                org_idx, merged_idx = R[G.nodes[u]["center"]], R[G.nodes[v]["center"]]
                if org_idx != merged_idx and jensenshannon(region_feature[u][0], region_feature[v][0]) < eps:
                    R = np.where(R == merged_idx, org_idx, R)
                    region_feature[v] = region_feature[u]
                    merged_arr.append(v)
                    if len(merged_arr) >= cap:
                        break
                    adj_arr.append(v)
        while adj_arr:
            adj = adj_arr.pop()
            for v in G.neighbors(adj):
                if v not in merged_arr:
                    org_idx, merged_idx = R[G.nodes[adj]["center"]], R[G.nodes[v]["center"]]
                    if org_idx != merged_idx and jensenshannon(region_feature[adj][0], region_feature[v][0]) < eps:
                        R = np.where(R == merged_idx, org_idx, R)
                        region_feature[v] = region_feature[adj]
                        merged_arr.append(v)
                        if len(merged_arr) >= cap:
                            break
                        adj_arr.append(v)
    return R


def _scene(seed: int, h: int = 8, w: int = 10):
    """A half-resolution float32 softmax and a full-resolution map of small irregular regions. The regions' vectors
    come from three prototypes, each repeated with one-ulp changes: many pairs are nearly equal, so that scipy's
    float32 distance is often NaN, and many are within eps."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(0, 14, size=(h, w)), 2, axis=0), 2, axis=1)  # ids with pieces
    protos = rng.dirichlet(np.ones(5), size=3).astype(np.float32)
    vec = protos[rng.integers(0, 3, size=(h, w))]
    nudge = rng.integers(-1, 2, size=vec.shape)  # -1, 0 or +1 ulp
    vec = np.where(nudge > 0, np.nextafter(vec, np.float32(1)), np.where(nudge < 0, np.nextafter(vec, 0), vec))
    return labels.astype(np.int32), vec.astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cap", [math.inf, 4, 9])
def test_official_loop_equals_the_reference_port_at_half_resolution(seed, cap):
    labels, half = _scene(seed)
    feature = scipy.ndimage.zoom(half, (2, 2, 1), order=0)  # the reference's x2 nearest upsampling
    expected = reference_merge(feature, labels.copy(), eps=0.1, cap=cap)
    got = adaptive_merge(labels, half, 0.1, max_visited=None if cap == math.inf else cap, loop="official")
    np.testing.assert_array_equal(got, expected)


def test_the_scenes_exercise_nan_distances_and_differ_from_the_compiled_merge():
    # what makes the port comparison above meaningful: NaN distances occur between neighbours, and they (or the
    # order) change merged maps against the float64 merge
    differ = nans = 0
    with np.errstate(invalid="ignore"):
        for seed in range(6):
            labels, half = _scene(seed)
            feature = half.repeat(2, 0).repeat(2, 1)
            means = {i: np.mean(feature[labels == i], axis=0) for i in np.unique(labels)}
            graph = reference_graph(labels)
            nans += sum(np.isnan(jensenshannon(means[u], means[v])) for u, v in graph.edges())
            official = adaptive_merge(labels, half, 0.1, loop="official")
            differ += not np.array_equal(official, adaptive_merge(labels, half, 0.1))
    assert nans > 0 and differ > 0


def test_a_nan_distance_never_merges():
    # two regions, left and right; their vectors one ulp apart: float32 rounding makes scipy's divergence negative
    p = np.array([0.43491408, 0.17773835, 0.2165117, 0.17083585], dtype=np.float32)
    q = p.copy()
    q[0] = np.nextafter(q[0], np.float32(1))
    with np.errstate(invalid="ignore"):
        assert np.isnan(jensenshannon(p, q))  # the reference's own distance
    assert jensenshannon(p.astype(np.float64), q.astype(np.float64)) < 1e-6
    labels = np.array([[0, 0, 1, 1]] * 2, dtype=np.int32)
    probs = np.stack([p, p, q, q])[None].repeat(2, axis=0)  # (2, 4, C), one vector per pixel
    assert adaptive_merge(labels, probs, 0.1).tolist() == [[0, 0, 0, 0]] * 2  # float64, clamped: merged
    assert adaptive_merge(labels, probs, 0.1, loop="official").tolist() == labels.tolist()  # NaN: apart


def test_the_cap_overshoots_as_the_reference_does():
    # one row of five regions, ids 0..4 from left to right, all with the same vector; region 2 is the most
    # uncertain seed. Cap 3: the seed (1 visit) absorbs 1 (2 visits, pushed) and 3 (3 visits: the break leaves
    # the neighbour loop, 3 is not pushed); popping 1, it absorbs 0 (4 visits, break); the next seed stops all.
    # Regions 0-3 carry id 2, region 4 keeps its own. The compiled merge stops at 3 visits: regions 1-3.
    labels = np.array([[0, 1, 2, 3, 4]], dtype=np.int32)
    confident = np.array([0.9, 0.1], dtype=np.float32)
    unsure = np.array([0.6, 0.4], dtype=np.float32)
    probs = np.stack([confident, confident, unsure, confident, confident])[None]
    eps = 0.5  # every pair is close
    assert adaptive_merge(labels, probs, eps, max_visited=3, loop="official").tolist() == [[2, 2, 2, 2, 4]]
    assert adaptive_merge(labels, probs, eps, max_visited=3).tolist() == [[0, 2, 2, 2, 4]]
    expected = reference_merge(probs.astype(np.float32), labels.copy(), eps, cap=3)
    assert expected.tolist() == [[2, 2, 2, 2, 4]]


def test_neighbours_in_networkx_order():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 9, size=(7, 9))
    index, n = dense_index(labels)
    got = neighbour_lists(index, n)
    graph = reference_graph(index)
    for node in range(n):
        assert got[node].tolist() == list(graph.neighbors(node))


def test_without_nan_or_cap_the_official_loop_merges_as_the_kernel():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 30, size=(24, 32)).astype(np.int32)
    probs = rng.dirichlet(np.full(6, 0.3), size=(12, 16)).astype(np.float32)  # far apart: no NaN distances
    kernel, k_stats = region_stats_and_merge(labels, probs, 0.4, threads=1)
    official, o_stats = region_stats_and_merge(labels, probs, 0.4, threads=1, loop="official")
    np.testing.assert_array_equal(official, kernel)
    assert len(np.unique(kernel)) < len(np.unique(labels))  # something merged
    np.testing.assert_array_equal(o_stats.counts, k_stats.counts)


def test_an_unknown_loop_is_refused():
    with pytest.raises(ValueError, match="merge loop 'fast' unknown"):
        adaptive_merge(np.zeros((2, 2), np.int32), np.full((2, 2, 2), 0.5, np.float32), loop="fast")
