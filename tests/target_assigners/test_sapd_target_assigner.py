"""Tests for SAPDTargetAssigner (hand-computed golden assignments).

32 x 32 image, location anchors (squares of side = stride centered on
`coordinates_grid` locations), levels concatenated in order:

  level 0, stride 8, 4 x 4: anchor i * 4 + j, center (4 + 8 i, 4 + 8 j);
  level 1, stride 16, 2 x 2: anchor 16 + i * 2 + j, center (8 + 16 i,
  8 + 16 j);
  level 2 (when used), stride 32, 1 x 1: anchor 20, center (16, 16).

Boxes in pixels, normalized by 32. Box scale s = max(h, w) / 2; size-range
convention: level i holds s in (m_i, m_{i+1}].
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_list
from od_meta.core import target_assigner as ta
from od_meta.target_assigners import sapd_target_assigner

SAPDTargetAssigner = sapd_target_assigner.SAPDTargetAssigner
SIZE = 32.0


def _point_anchors(strides=(8, 16)):
  boxes, levels = [], []
  for stride in strides:
    n = int(SIZE) // stride
    centers = ta.coordinates_grid(n, n, stride).numpy().reshape(-1, 2)
    boxes.append(np.concatenate([centers - stride / 2.0,
                                 centers + stride / 2.0], axis=1))
    levels.append(ta.AnchorLevel(stride, n * n))
  return (box_list.BoxList(tf.constant(np.concatenate(boxes) / SIZE,
                                       tf.float32)), levels)


def _gt(pixel_boxes):
  return box_list.BoxList(tf.constant(
      np.array(pixel_boxes, np.float32).reshape(-1, 4) / SIZE))


def _assigner(size_ranges=(0, 16, -1), **kwargs):
  return SAPDTargetAssigner(ltrb_distance_box_coder.LtrbDistanceBoxCoder(),
                            list(size_ranges), **kwargs)


def _assign(pixel_boxes, assigner, strides=(8, 16), **kwargs):
  anchors, levels = _point_anchors(strides)
  return assigner.assign(anchors, _gt(pixel_boxes), levels=levels,
                         image_shape=(32, 32), **kwargs)


def _expected(assignments, num_anchors=20):
  out = -np.ones([num_anchors], np.int32)
  for row, ids in assignments.items():
    out[list(ids)] = row
  return out


def _weights(values, num_anchors=20):
  out = np.zeros([num_anchors], np.float32)
  for index, value in values.items():
    out[index] = value
  return out


@pytest.mark.parametrize('eta, weight', [(1.0, 1 / 3), (2.0, 1 / 9),
                                         (0.0, 1.0)])
def test_soft_weight_of_a_planted_location(eta, weight):
  # Box [8, 10, 16, 18] (h = w = 8, center (12, 14)), shrink 0.6: region
  # y [12 - 2.4, 12 + 2.4], x [14 - 2.4, 14 + 2.4] -> the only center is
  # (12, 12), anchor 5. Its distances: l = 12 - 10 = 2, r = 18 - 12 = 6,
  # t = 12 - 8 = 4, b = 16 - 12 = 4: w = (2 * 4) / (6 * 4) = 1/3,
  # ** eta: eta 2 -> 1/9, eta 0 -> 1. s = 4 in (0, 16] -> level 0, the
  # only level with num_levels_per_box 1.
  result = _assign([[8, 10, 16, 18]],
                   _assigner(shrink_factor=0.6, eta=eta,
                             num_levels_per_box=1, negative_class_weight=0.5),
                   groundtruth_labels=tf.constant([[0., 1.]]))
  np.testing.assert_array_equal(result.matches.numpy(), _expected({0: [5]}))
  np.testing.assert_allclose(result.reg_weights.numpy(),
                             _weights({5: weight}), rtol=1e-6)
  cls_weights = np.full([20], 0.5, np.float32)
  cls_weights[5] = weight
  np.testing.assert_allclose(result.cls_weights.numpy(),
                             np.tile(cls_weights[:, None], [1, 2]), rtol=1e-6)
  np.testing.assert_allclose(result.cls_targets.numpy()[5], [0., 1.])
  # Ltrb [t, l, b, r] from (12, 12), normalized: [4, 2, 4, 6] / 32.
  np.testing.assert_allclose(result.reg_targets.numpy()[5],
                             np.array([4., 2., 4., 6.]) / 32., rtol=1e-6)


def test_shrink_factor_sets_the_positive_region():
  # Box [0, 0, 32, 32], s = 16 -> level 0 (num_levels_per_box 1).
  # shrink 0.5: region [8, 24]^2 -> centers 12, 20: anchors 5, 6, 9, 10;
  # at (12, 12): l = t = 12, r = b = 20 -> (12 * 12) / (20 * 20) = 0.36,
  # the same at the other three by symmetry.
  result = _assign([[0, 0, 32, 32]],
                   _assigner(shrink_factor=0.5, num_levels_per_box=1))
  np.testing.assert_array_equal(result.matches.numpy(),
                                _expected({0: [5, 6, 9, 10]}))
  np.testing.assert_allclose(result.reg_weights.numpy(),
                             _weights({5: .36, 6: .36, 9: .36, 10: .36}),
                             rtol=1e-6)
  # shrink 1.0: the whole box, closed: all 16 level-0 locations; the
  # corner (4, 4): l = t = 4, r = b = 28 -> 16 / 784; (4, 12): l = 12,
  # t = 4, r = 20, b = 28 -> 48 / 560.
  result = _assign([[0, 0, 32, 32]],
                   _assigner(shrink_factor=1.0, num_levels_per_box=1))
  np.testing.assert_array_equal(result.matches.numpy(),
                                _expected({0: range(16)}))
  weights = result.reg_weights.numpy()
  assert weights[0] == pytest.approx(16 / 784, rel=1e-5)
  assert weights[1] == pytest.approx(48 / 560, rel=1e-5)
  assert weights[5] == pytest.approx(0.36, rel=1e-5)


def test_fallback_location_for_a_small_box():
  # Box [13, 13, 19, 19], s = 3 -> level 0. shrink 0.2: region
  # [15.4, 16.6]^2 holds no center -> the location whose cell holds the
  # center (16, 16): the cell [16, 24)^2 of (20, 20), anchor 10 (the four
  # nearest centers tie at distance^2 32; the highest index wins). (20, 20)
  # is outside the box (r = 19 - 20 < 0): its formula weight would be 0,
  # the fallback weight is 1.
  assigner = _assigner(num_levels_per_box=1)
  result = _assign([[13, 13, 19, 19]], assigner)
  np.testing.assert_array_equal(result.matches.numpy(), _expected({0: [10]}))
  np.testing.assert_allclose(result.reg_weights.numpy(), _weights({10: 1.}))
  # Box [1, 1, 5, 7], center (3, 4): region y [2.6, 3.4] holds no center
  # -> nearest center (4, 4), anchor 0, weight 1 (its formula weight would
  # be (3 * 1) / (3 * 3) = 1/3).
  result = _assign([[1, 1, 5, 7]], assigner)
  np.testing.assert_array_equal(result.matches.numpy(), _expected({0: [0]}))
  np.testing.assert_allclose(result.reg_weights.numpy(), _weights({0: 1.}))
  # Both in one image: each keeps its own location.
  result = _assign([[13, 13, 19, 19], [1, 1, 5, 7]], assigner)
  np.testing.assert_array_equal(result.matches.numpy(),
                                _expected({0: [10], 1: [0]}))


_THREE_LEVEL_RANGES = (0, 8, 16, -1)


@pytest.mark.parametrize('num_levels, expected, weights', [
    (1, {0: [19]}, {19: 1.}),
    (2, {0: [5, 6, 9, 10, 19]},
     {5: 36 / 196, 6: 36 / 196, 9: 36 / 196, 10: 36 / 196, 19: 1.}),
    (0, {0: [5, 6, 9, 10, 19, 20]},
     {5: 36 / 196, 6: 36 / 196, 9: 36 / 196, 10: 36 / 196, 19: 1.,
      20: 1.}),
])
def test_level_selection(num_levels, expected, weights):
  # Three levels (strides 8, 16, 32), size_ranges [0, 8, 16, -1]: level
  # ranges (0, 8], (8, 16], (16, inf), read for the centers as [4, 8],
  # [8, 16], [16, 32]: c = 5.657, 11.314, 22.627 (log2 2.5, 3.5, 4.5).
  # Box [6, 6, 26, 26]: s = 10 (log2 3.321928) -> home level 1; distances
  # to levels 0 / 2: 0.821928 / 1.178072 -> k = 2 adds level 0.
  # shrink 0.5: region [11, 21]^2. Level 0: centers 12, 20 -> anchors 5,
  # 6, 9, 10, e.g. (12, 12): l = t = 6, r = b = 14 -> 36 / 196. Level 1:
  # no center (8, 24) -> fallback (24, 24), anchor 19 (the 4 centers tie;
  # highest index), weight 1. Level 2: (16, 16), anchor 20, l = r = t = b
  # = 10 -> 1.
  result = _assign([[6, 6, 26, 26]],
                   _assigner(_THREE_LEVEL_RANGES, shrink_factor=0.5,
                             num_levels_per_box=num_levels),
                   strides=(8, 16, 32))
  np.testing.assert_array_equal(result.matches.numpy(),
                                _expected(expected, 21))
  np.testing.assert_allclose(result.reg_weights.numpy(),
                             _weights(weights, 21), rtol=1e-5)


def test_second_level_is_the_nearest_in_log_scale():
  # Box [4, 4, 28, 28]: s = 12 (log2 3.584963), home level 1; distances to
  # levels 0 / 2: 1.084963 / 0.915037 -> k = 2 adds level 2 (not 0).
  # shrink 0.5: region [10, 22]^2; level 1 fallback anchor 19, level 2
  # anchor 20; level-0 centers 12, 20 are in the region but not selected.
  assert abs(math.log2(12) - 2.5) == pytest.approx(1.084963, abs=1e-6)
  assert abs(math.log2(12) - 4.5) == pytest.approx(0.915037, abs=1e-6)
  result = _assign([[4, 4, 28, 28]],
                   _assigner(_THREE_LEVEL_RANGES, shrink_factor=0.5,
                             num_levels_per_box=2),
                   strides=(8, 16, 32))
  np.testing.assert_array_equal(result.matches.numpy(),
                                _expected({0: [19, 20]}, 21))


def test_smallest_box_takes_the_location():
  # shrink 0.75, level 0 only (k = 1; s = 16 and 8 are both in (0, 16]).
  # P = [0, 0, 32, 32] (area 1024): region [4, 28]^2, closed -> all 16.
  # Q = [8, 8, 24, 24] (area 256): region [10, 22]^2 -> anchors 5, 6, 9,
  # 10, which go to the smaller Q (row 1). Weights: Q at (12, 12): l = t =
  # 4, r = b = 12 -> 16 / 144; P at (4, 4): 16 / 784.
  result = _assign([[0, 0, 32, 32], [8, 8, 24, 24]],
                   _assigner(shrink_factor=0.75, num_levels_per_box=1))
  np.testing.assert_array_equal(
      result.matches.numpy(),
      _expected({0: [0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 14, 15],
                 1: [5, 6, 9, 10]}))
  weights = result.reg_weights.numpy()
  assert weights[5] == pytest.approx(16 / 144, rel=1e-5)
  assert weights[0] == pytest.approx(16 / 784, rel=1e-5)
  # With Q invalid (weight 0), P takes them back: (12, 12) in P: l = t =
  # 12, r = b = 20 -> 0.36.
  result = _assign([[0, 0, 32, 32], [8, 8, 24, 24]],
                   _assigner(shrink_factor=0.75, num_levels_per_box=1),
                   groundtruth_weights=tf.constant([1., 0.]))
  np.testing.assert_array_equal(result.matches.numpy(),
                                _expected({0: range(16)}))
  assert result.reg_weights.numpy()[5] == pytest.approx(0.36, rel=1e-5)


def test_empty_groundtruth():
  result = _assign(np.zeros([0, 4]), _assigner(negative_class_weight=0.5),
                   groundtruth_labels=tf.zeros([0, 3]))
  np.testing.assert_array_equal(result.matches.numpy(), -np.ones([20]))
  np.testing.assert_array_equal(result.reg_weights.numpy(), np.zeros([20]))
  np.testing.assert_array_equal(result.reg_targets.numpy(), np.zeros([20, 4]))
  np.testing.assert_allclose(result.cls_weights.numpy(),
                             np.full([20, 3], 0.5))


def test_argument_errors():
  coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder()
  with pytest.raises(ValueError, match='size_ranges'):
    SAPDTargetAssigner(coder, [0, 16, 8])
  with pytest.raises(ValueError, match='shrink_factor'):
    SAPDTargetAssigner(coder, [0, 16, -1], shrink_factor=0.0)
  with pytest.raises(ValueError, match='eta'):
    SAPDTargetAssigner(coder, [0, 16, -1], eta=-1.0)
  with pytest.raises(ValueError, match='num_levels_per_box'):
    SAPDTargetAssigner(coder, [0, 16, -1], num_levels_per_box=-1)
  with pytest.raises(ValueError, match=(
      'size_ranges has 4 boundaries but the model has 2 levels; it needs 3')):
    _assign([[0, 0, 16, 16]], _assigner(_THREE_LEVEL_RANGES))
  with pytest.raises(ValueError, match='num_levels_per_box'):
    _assign([[0, 0, 16, 16]], _assigner(num_levels_per_box=3))
  anchors, levels = _point_anchors()
  with pytest.raises(ValueError, match='image_shape'):
    _assigner().assign(anchors, _gt([[0, 0, 16, 16]]), levels=levels)


def test_tf_function_equals_eager():
  anchors, levels = _point_anchors()
  assigner = _assigner(shrink_factor=0.5, num_levels_per_box=2)
  boxes = _gt([[0, 0, 32, 32], [8, 8, 24, 24], [13, 13, 19, 19]]).get()
  weights = tf.constant([1., 1., 0.5])

  def run(boxes, weights):
    return assigner.assign(anchors, box_list.BoxList(boxes),
                           groundtruth_weights=weights, levels=levels,
                           image_shape=(32, 32))

  graph = tf.function(run, input_signature=[tf.TensorSpec([None, 4]),
                                            tf.TensorSpec([None])])
  eager = run(boxes, weights)
  traced = graph(boxes, weights)
  for a, b in zip(eager, traced):
    np.testing.assert_allclose(a.numpy(), b.numpy())
  assert (eager.matches.numpy() >= 0).any()
  empty = graph(tf.zeros([0, 4]), tf.zeros([0]))
  np.testing.assert_array_equal(empty.matches.numpy(), -np.ones([20]))


def test_batch_assign_targets():
  # Image 0: the planted box of the soft-weight test (anchor 5, weight
  # 1/3) times its groundtruth weight 0.5; image 1: no boxes.
  anchors, levels = _point_anchors()
  result = ta.batch_assign_targets(
      _assigner(shrink_factor=0.6, num_levels_per_box=1), anchors,
      [_gt([[8, 10, 16, 18]]), box_list.BoxList(tf.zeros([0, 4]))],
      [tf.constant([[1.]]), tf.zeros([0, 1])],
      gt_weights_batch=[tf.constant([0.5]), tf.zeros([0])],
      levels=levels, image_shape=(32, 32))
  np.testing.assert_array_equal(result.matches.numpy(),
                                [_expected({0: [5]}), -np.ones([20])])
  np.testing.assert_allclose(result.reg_weights.numpy(),
                             [_weights({5: 0.5 / 3}), np.zeros([20])],
                             rtol=1e-6)
  assert result.cls_weights.numpy()[0, 5, 0] == pytest.approx(0.5 / 3)
