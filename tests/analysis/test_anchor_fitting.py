"""Tests for od_meta.analysis.anchor_fitting (hand-computed golden values)."""

import math

import numpy as np
import pytest

from od_meta.analysis import anchor_fitting as af

# Three planted shape clusters (height, width), listed by increasing area.
PLANTED = np.array([[10.0, 5.0], [20.0, 20.0], [40.0, 80.0]])


def _jittered_clusters(copies=30, jitter=0.05, seed=1):
  """`copies` shapes around each planted shape, each side scaled by a factor
  in [1 - jitter, 1 + jitter]; returned shuffled."""
  rng = np.random.default_rng(seed)
  shapes = np.concatenate([
      shape * rng.uniform(1 - jitter, 1 + jitter, size=(copies, 2))
      for shape in PLANTED])
  return shapes[rng.permutation(len(shapes))]


# ----------------------------------------------------------------------------
# shape_iou / mean_best_iou / aspect_ratios_from_shapes


def test_shape_iou_hand_computed_pairs():
  # (2, 2) inside (4, 4): 4 / 16. (2, 4) vs (4, 2): intersection 2 x 2 = 4,
  # union 8 + 8 - 4 = 12. (3, 5) vs (3, 5): identical.
  np.testing.assert_allclose(af.shape_iou([[2, 2]], [[4, 4]]), [[0.25]])
  np.testing.assert_allclose(af.shape_iou([[2, 4]], [[4, 2]]), [[4 / 12]])
  np.testing.assert_allclose(af.shape_iou([[3, 5]], [[3, 5]]), [[1.0]])
  # (1, 8) vs (4, 2): intersection 1 x 2 = 2, union 8 + 8 - 2 = 14.
  np.testing.assert_allclose(af.shape_iou([[1, 8]], [[4, 2]]), [[2 / 14]])


def test_shape_iou_is_n_by_k_and_symmetric():
  shapes = [[2, 2], [2, 4], [1, 8]]
  centroids = [[4, 4], [4, 2]]
  iou = af.shape_iou(shapes, centroids)
  assert iou.shape == (3, 2) and iou.dtype == np.float64
  expected = [[4 / 16, 4 / 8],      # (2,2)/(4,4); (2,2)/(4,2): 4 / (4+8-4)
              [8 / 16, 4 / 12],     # (2,4)/(4,4): 8 / 16; (2,4)/(4,2)
              [4 / 20, 2 / 14]]     # (1,8)/(4,4): 1*4 / (8+16-4); (1,8)/(4,2)
  np.testing.assert_allclose(iou, expected)
  np.testing.assert_allclose(af.shape_iou(centroids, shapes), iou.T)
  # Scale invariance: IoU of shapes does not depend on the unit.
  np.testing.assert_allclose(
      af.shape_iou(np.multiply(shapes, 7.5), np.multiply(centroids, 7.5)),
      iou)


def test_mean_best_iou_hand_value():
  shapes = [[2, 2], [4, 4], [2, 4]]
  # One centroid (2, 2): IoUs 1, 4/16, 4/8 -> mean (1 + 0.25 + 0.5) / 3.
  assert af.mean_best_iou(shapes, [[2, 2]]) == pytest.approx(1.75 / 3)
  # Adding (4, 4): best IoUs 1, 1, max(4/8, 8/16) = 0.5 -> 2.5 / 3.
  assert af.mean_best_iou(shapes, [[2, 2], [4, 4]]) == pytest.approx(2.5 / 3)
  # Every shape its own centroid: 1.
  assert af.mean_best_iou(shapes, shapes) == pytest.approx(1.0)
  assert isinstance(af.mean_best_iou(shapes, [[2, 2]]), float)


def test_aspect_ratios_from_shapes_are_width_over_height_sorted_distinct():
  # (height, width): widths / heights = 0.5, 1, 2, 2 (duplicate), 1/3.
  centroids = [[40, 80], [10, 5], [20, 20], [30, 60], [3, 1]]
  assert af.aspect_ratios_from_shapes(centroids) == [0.33, 0.5, 1.0, 2.0]
  assert af.aspect_ratios_from_shapes(centroids, decimals=3) == [
      0.333, 0.5, 1.0, 2.0]
  # Values that only differ beyond the rounding merge: 1.001 and 0.999 -> 1.
  assert af.aspect_ratios_from_shapes([[1000, 1001], [1000, 999]]) == [1.0]
  ratios = af.aspect_ratios_from_shapes(centroids)
  assert all(type(r) is float for r in ratios)  # pylint: disable=unidiomatic-typecheck


# ----------------------------------------------------------------------------
# iou_kmeans


def test_iou_kmeans_recovers_planted_clusters_sorted_by_area():
  shapes = _jittered_clusters()
  centroids = af.iou_kmeans(shapes, 3)
  assert centroids.shape == (3, 2) and centroids.dtype == np.float64
  # Each centroid is the mean of its planted cluster, within the jitter.
  np.testing.assert_allclose(centroids, PLANTED, rtol=0.03)
  areas = np.prod(centroids, axis=1)
  assert np.all(np.diff(areas) > 0)
  # The centroids are exactly the member means of the planted clusters.
  labels = np.argmax(af.shape_iou(shapes, PLANTED), axis=1)
  expected = np.stack([shapes[labels == j].mean(axis=0) for j in range(3)])
  np.testing.assert_allclose(centroids, expected, rtol=1e-12)
  assert af.mean_best_iou(shapes, centroids) > 0.9


def test_iou_kmeans_is_deterministic_and_order_independent():
  shapes = _jittered_clusters()
  first = af.iou_kmeans(shapes, 3)
  second = af.iou_kmeans(shapes, 3)
  np.testing.assert_array_equal(first, second)
  # Same seed, shuffled input: same centroids (up to float summation order).
  shuffled = shapes[np.random.default_rng(7).permutation(len(shapes))]
  np.testing.assert_allclose(af.iou_kmeans(shuffled, 3), first, rtol=1e-12)


def test_iou_kmeans_k1_gives_mean_shape():
  shapes = [[10, 20], [30, 40], [20, 60]]
  np.testing.assert_allclose(af.iou_kmeans(shapes, 1), [[20.0, 40.0]])


def test_iou_kmeans_k_equals_number_of_shapes_returns_the_shapes():
  shapes = [[40, 80], [10, 5], [20, 20]]
  np.testing.assert_allclose(af.iou_kmeans(shapes, 3), PLANTED)


def test_iou_kmeans_identical_shapes_fill_every_centroid():
  # Fewer distinct shapes than k: empty clusters take an existing shape.
  centroids = af.iou_kmeans([[8, 4]] * 5, 3)
  np.testing.assert_allclose(centroids, [[8, 4]] * 3)


def test_iou_kmeans_accepts_flat_pairs():
  np.testing.assert_allclose(af.iou_kmeans([10, 20, 30, 40], 1), [[20, 30]])


@pytest.mark.parametrize('shapes,k,match', [
    ([[1, 1], [2, 2]], 0, 'k must be >= 1'),
    ([[1, 1], [2, 2]], -1, 'k must be >= 1'),
    ([[1, 1], [2, 2]], 3, 'at least k=3'),
    (np.zeros([0, 2]), 1, 'at least k=1'),
    ([[1, 1], [0, 2]], 1, '> 0'),
    ([[1, 1], [2, -2]], 1, '> 0'),
    ([[1, 1], [2, float('nan')]], 1, '> 0'),
])
def test_iou_kmeans_rejects_bad_arguments(shapes, k, match):
  with pytest.raises(ValueError, match=match):
    af.iou_kmeans(shapes, k)


# ----------------------------------------------------------------------------
# propose_input_scale / round_up_to_multiple


def test_propose_input_scale_lifts_small_objects_to_target():
  # 10th percentile of all-4-px boxes is 4; target 2 x stride 8 = 16 -> x4.
  proposal = af.propose_input_scale([4.0] * 20, 8, min_size_in_strides=2)
  assert isinstance(proposal, af.InputScaleProposal)
  assert proposal.scale == pytest.approx(4.0)
  assert proposal.small_object_size == pytest.approx(4.0)
  assert proposal.target_size == pytest.approx(16.0)
  assert proposal.limited_by_source is False


def test_propose_input_scale_capped_by_max_scale():
  proposal = af.propose_input_scale([4.0] * 20, 8, min_size_in_strides=2,
                                    max_scale=2)
  assert proposal.scale == pytest.approx(2.0)
  assert proposal.target_size == pytest.approx(16.0)
  assert proposal.limited_by_source is True
  # A cap above what is wanted does not limit.
  proposal = af.propose_input_scale([4.0] * 20, 8, min_size_in_strides=2,
                                    max_scale=10)
  assert proposal.scale == pytest.approx(4.0)
  assert proposal.limited_by_source is False


def test_propose_input_scale_is_one_for_large_objects():
  # Objects of 40 px >= 2 x 8: nothing to change, never shrinks.
  proposal = af.propose_input_scale([40.0, 50.0, 60.0], 8,
                                    min_size_in_strides=2)
  assert proposal.scale == 1.0
  assert proposal.small_object_size == pytest.approx(42.0)  # p10 of 40..60
  assert proposal.limited_by_source is False
  # A max_scale below 1 (source smaller than the input) is clamped to 1.
  proposal = af.propose_input_scale([40.0], 8, max_scale=0.5)
  assert proposal.scale == 1.0 and proposal.limited_by_source is False


def test_propose_input_scale_uses_the_percentile():
  sizes = np.arange(1.0, 12.0)  # 1 .. 11: p10 = 2, p50 = 6.
  proposal = af.propose_input_scale(sizes, 4)  # min_size_in_strides 1.
  assert proposal.small_object_size == pytest.approx(2.0)
  assert proposal.scale == pytest.approx(2.0)
  proposal = af.propose_input_scale(sizes, 4, percentile=50,
                                    min_size_in_strides=3)
  assert proposal.small_object_size == pytest.approx(6.0)
  assert proposal.scale == pytest.approx(2.0)  # 12 / 6


@pytest.mark.parametrize('sizes,stride,match', [
    ([], 8, 'no box sizes'),
    (np.zeros([0]), 8, 'no box sizes'),
    ([4.0], 0, 'finest_stride must be > 0'),
    ([4.0], -8, 'finest_stride must be > 0'),
])
def test_propose_input_scale_rejects_bad_arguments(sizes, stride, match):
  with pytest.raises(ValueError, match=match):
    af.propose_input_scale(sizes, stride)


@pytest.mark.parametrize('value,multiple,expected', [
    (300, 32, 320),
    (320, 32, 320),
    (321, 32, 352),
    (319.5, 32, 320),
    (1, 32, 32),
    (0, 32, 0),
    (600 * 1.5, 64, 960),
    (320 + 1e-9, 32, 320),   # float noise above a multiple is forgiven
    (7, 1, 7),
])
def test_round_up_to_multiple(value, multiple, expected):
  result = af.round_up_to_multiple(value, multiple)
  assert result == expected and isinstance(result, int)


# ----------------------------------------------------------------------------
# CoverageScore / grid_search / candidates


def test_coverage_score_key_higher_matched_share_wins():
  better_share = af.CoverageScore(0.95, 0.50, 1000)
  better_iou = af.CoverageScore(0.90, 0.90, 10)
  assert better_share.key() > better_iou.key()


def test_coverage_score_key_equal_share_within_tolerance_then_iou():
  # 0.900 and 0.902 round to the same 0.005 bucket (180 x 0.005).
  low_iou = af.CoverageScore(0.902, 0.60, 10)
  high_iou = af.CoverageScore(0.900, 0.70, 10)
  assert high_iou.key() > low_iou.key()
  # With a finer tolerance the share decides again.
  assert low_iou.key(share_tolerance=0.001) > high_iou.key(
      share_tolerance=0.001)


def test_coverage_score_key_then_fewer_anchors():
  many = af.CoverageScore(0.9, 0.7, 2000)
  few = af.CoverageScore(0.9, 0.7, 500)
  assert few.key() > many.key()
  # IoUs equal to 3 decimals count as equal: anchors decide.
  assert (af.CoverageScore(0.9, 0.7001, 500).key() >
          af.CoverageScore(0.9, 0.7004, 2000).key())


def test_coverage_score_key_nan_iou_ranks_last():
  no_anchors = af.CoverageScore(0.9, float('nan'), 0)
  some = af.CoverageScore(0.9, 0.0, 100)
  assert some.key() > no_anchors.key()
  assert no_anchors.key()[1] == -1.0


def test_grid_search_returns_best_and_all_scored():
  scores = {
      'a': af.CoverageScore(0.80, 0.90, 10),
      'b': af.CoverageScore(0.95, 0.60, 100),   # best: highest share
      'c': af.CoverageScore(0.95, 0.60, 200),   # same, more anchors
      'd': af.CoverageScore(0.90, 0.95, 10),
  }
  lines = []
  best, best_score, scored = af.grid_search(
      (c for c in 'abcd'), scores.__getitem__, log_fn=lines.append)
  assert best == 'b' and best_score == scores['b']
  assert scored == [(c, scores[c]) for c in 'abcd']
  assert len(lines) == 4
  assert lines[1] == '  b: matched 0.950, mean best IoU 0.600, 100 anchors'


def test_grid_search_ties_keep_first_candidate():
  score = af.CoverageScore(0.5, 0.5, 10)
  best, _, scored = af.grid_search([3, 1, 2], lambda c: score)
  assert best == 3 and [c for c, _ in scored] == [3, 1, 2]


def test_grid_search_raises_without_candidates():
  with pytest.raises(ValueError, match='no candidates'):
    af.grid_search([], lambda c: af.CoverageScore(1.0, 1.0, 1))


def test_linspace_candidates():
  assert af.linspace_candidates(0.5, 2.0, 4) == [0.5, 1.0, 1.5, 2.0]
  # Non-positive values are dropped.
  assert af.linspace_candidates(0.0, 1.0, 3) == [0.5, 1.0]
  assert af.linspace_candidates(-1.0, 1.0, 5) == [0.5, 1.0]
  # Rounding merges duplicates: 1, 1.0005, 1.001 -> 1.0 at 2 decimals.
  assert af.linspace_candidates(1.0, 1.001, 3, decimals=2) == [1.0]
  # 1/3 steps rounded to 3 decimals.
  assert af.linspace_candidates(0.0, 1.0, 4) == [0.333, 0.667, 1.0]
  assert all(type(v) is float for v in af.linspace_candidates(1, 3, 3))  # pylint: disable=unidiomatic-typecheck


def test_geometric_candidates():
  assert af.geometric_candidates(100.0, [2.0, 0.5, 1.0]) == [
      50.0, 100.0, 200.0]
  assert af.geometric_candidates(0.1, [1, 3]) == [0.1, 0.3]
  # Duplicates merge; non-positive products are dropped.
  assert af.geometric_candidates(10.0, [1.0, 1.0, 0.0, -1.0]) == [10.0]
  assert af.geometric_candidates(1.0, [1 / 3], decimals=2) == [0.33]
  assert math.isclose(af.geometric_candidates(32, [2 ** 0.5])[0], 45.255)
