"""Tests for FCOSTargetAssigner (hand-computed golden assignments).

Setup used throughout: a 32 x 32 image, two levels of location anchors
(squares of side = stride centered on `coordinates_grid` locations):

  level 0, stride 8, 4 x 4: anchor i * 4 + j, center (4 + 8 i, 4 + 8 j);
  level 1, stride 16, 2 x 2: anchor 16 + i * 2 + j, center (8 + 16 i,
  8 + 16 j).

Boxes are written in pixels and normalized by 32. Size-range convention:
level i keeps max(l, t, r, b) in (m_i, m_{i+1}].
"""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_list
from od_meta.core import target_assigner as ta
from od_meta.target_assigners import fcos_target_assigner

FCOSTargetAssigner = fcos_target_assigner.FCOSTargetAssigner
SIZE = 32.0


def _point_anchors(size=32, strides=(8, 16)):
  boxes, levels = [], []
  for stride in strides:
    n = size // stride
    centers = ta.coordinates_grid(n, n, stride).numpy().reshape(-1, 2)
    boxes.append(np.concatenate([centers - stride / 2.0,
                                 centers + stride / 2.0], axis=1))
    levels.append(ta.AnchorLevel(stride, n * n))
  return (box_list.BoxList(tf.constant(np.concatenate(boxes) / size,
                                       tf.float32)), levels)


def _gt(pixel_boxes):
  return box_list.BoxList(tf.constant(
      np.array(pixel_boxes, np.float32).reshape(-1, 4) / SIZE))


def _assigner(size_ranges=(0, 12, -1), **kwargs):
  return FCOSTargetAssigner(ltrb_distance_box_coder.LtrbDistanceBoxCoder(),
                            list(size_ranges), **kwargs)


def _matches(pixel_boxes, assigner=None, weights=None):
  anchors, levels = _point_anchors()
  result = (assigner or _assigner()).assign(
      anchors, _gt(pixel_boxes), groundtruth_weights=weights, levels=levels,
      image_shape=(32, 32))
  return result.matches.numpy()


def _expected(assignments, num_anchors=20):
  out = -np.ones([num_anchors], np.int32)
  for row, ids in assignments.items():
    out[list(ids)] = row
  return out


def test_level_assignment_by_size_range():
  # size_ranges [0, 12, -1]: level 0 keeps (0, 12], level 1 (12, inf).
  # A = [0, 0, 16, 16]: level-0 centers strictly inside are y, x in {4, 12}
  # (anchors 0, 1, 4, 5); at (4, 4) (l, t, r, b) = (4, 4, 12, 12), max 12;
  # at (4, 12) (12, 4, 4, 12), max 12: all four have max exactly 12, the
  # closed upper end -> level 0. Level-1 (8, 8): max 8 <= 12 -> negative.
  # B = [0, 0, 32, 32]: level-0 maxima are >= 20 (at (12, 12)) -> none;
  # level 1 (8, 8): max 24 -> anchors 16..19. Level-0 (4, 4) is inside both
  # A and B but only in A's range.
  anchors, levels = _point_anchors()
  labels = tf.constant([[0., 1., 0.], [0., 0., 1.]])
  assigner = _assigner(negative_class_weight=0.25)
  assert assigner.requires_levels
  result = assigner.assign(anchors, _gt([[0, 0, 16, 16], [0, 0, 32, 32]]),
                           labels, levels=levels, image_shape=(32, 32))
  expected = _expected({0: [0, 1, 4, 5], 1: range(16, 20)})
  np.testing.assert_array_equal(result.matches.numpy(), expected)
  positive = expected >= 0
  np.testing.assert_allclose(result.reg_weights.numpy(),
                             positive.astype(np.float32))
  np.testing.assert_allclose(
      result.cls_weights.numpy(),
      np.tile(np.where(positive, 1.0, 0.25)[:, None], [1, 3]))
  np.testing.assert_allclose(result.cls_targets.numpy()[0], [0, 1, 0])
  np.testing.assert_allclose(result.cls_targets.numpy()[16], [0, 0, 1])
  np.testing.assert_allclose(result.cls_targets.numpy()[2], [0, 0, 0])
  # Ltrb codes [t, l, b, r] in the normalized frame (scale 1): anchor 0
  # (center 4 / 32 = 0.125) in A = [0, 0, 0.5, 0.5]: [0.125, 0.125, 0.375,
  # 0.375]; anchor 5 (0.375, 0.375): [0.375, 0.375, 0.125, 0.125]; anchor 16
  # (0.25, 0.25) in B = [0, 0, 1, 1]: [0.25, 0.25, 0.75, 0.75].
  reg = result.reg_targets.numpy()
  np.testing.assert_allclose(reg[0], [0.125, 0.125, 0.375, 0.375])
  np.testing.assert_allclose(reg[5], [0.375, 0.375, 0.125, 0.125])
  np.testing.assert_allclose(reg[16], [0.25, 0.25, 0.75, 0.75])
  assert not reg[~positive].any()


def test_smallest_box_takes_the_location():
  # D = [0, 0, 16, 16] (area 256) as above: anchors 0, 1, 4, 5.
  # E = [0, 0, 8, 16] (area 128): centers y = 4, x in {4, 12}; at (4, 12)
  # (l, t, r, b) = (12, 4, 4, 4), max 12 -> anchors 0, 1. Anchors 0 and 1
  # are in both: the smaller E (row 1) wins them.
  np.testing.assert_array_equal(
      _matches([[0, 0, 16, 16], [0, 0, 8, 16]]),
      _expected({1: [0, 1], 0: [4, 5]}))


def test_equal_areas_go_to_the_lowest_row():
  np.testing.assert_array_equal(
      _matches([[0, 0, 16, 16], [0, 0, 16, 16]]),
      _expected({0: [0, 1, 4, 5]}))


def test_center_sampling_shrinks_the_positive_set():
  # size_ranges [0, 64, -1]: every level-0 location in range.
  # G = [2, 2, 26, 26]: without sampling, centers in (2, 26) are 4, 12, 20
  # -> 9 anchors. Radius 1 (half-side 1 * 8 = 8) around (14, 14): region
  # (6, 22) -> 12, 20 -> anchors 5, 6, 9, 10. Level 1 is (64, inf): none.
  wide = (0, 64, -1)
  np.testing.assert_array_equal(
      _matches([[2, 2, 26, 26]], _assigner(wide)),
      _expected({0: [0, 1, 2, 4, 5, 6, 8, 9, 10]}))
  np.testing.assert_array_equal(
      _matches([[2, 2, 26, 26]], _assigner(wide, center_sampling_radius=1.0)),
      _expected({0: [5, 6, 9, 10]}))


def test_center_region_is_clipped_to_the_box():
  # H = [0, 0, 10, 30], center (5, 15), radius 1 (half-side 8): the region
  # y [-3, 13] is clipped to the box's [0, 10] -> only y = 4 (unclipped,
  # y = 12 < 13 would be inside: anchors 5, 6); x [7, 23] -> 12, 20.
  # Positives: anchors 1 (4, 12) and 2 (4, 20). Without sampling: y = 4,
  # x in {4, 12, 20, 28} -> anchors 0..3.
  wide = (0, 64, -1)
  np.testing.assert_array_equal(_matches([[0, 0, 10, 30]], _assigner(wide)),
                                _expected({0: [0, 1, 2, 3]}))
  np.testing.assert_array_equal(
      _matches([[0, 0, 10, 30]], _assigner(wide, center_sampling_radius=1.0)),
      _expected({0: [1, 2]}))


def test_center_sampling_uses_the_level_stride_and_strict_inside():
  # B = [0, 0, 32, 32] on level 1 (stride 16), center (16, 16). Radius 0.5:
  # half-side 8 -> region (8, 24); the level-1 centers 8 and 24 lie on its
  # border, not strictly inside -> no positive. Radius 0.6: half-side 9.6
  # -> (6.4, 25.6) holds all four. (With stride 8 the half-sides would be 4
  # and 4.8 and neither would hold them.)
  assert (_matches([[0, 0, 32, 32]], _assigner(center_sampling_radius=0.5))
          == -1).all()
  np.testing.assert_array_equal(
      _matches([[0, 0, 32, 32]], _assigner(center_sampling_radius=0.6)),
      _expected({0: range(16, 20)}))


def test_box_smaller_than_a_stride():
  # [13, 13, 19, 19] holds no location center (level 0: 12, 20; level 1:
  # 8, 24) -> no positive (FCOS: points must be inside the box).
  assert (_matches([[13, 13, 19, 19]]) == -1).all()
  # [10, 10, 14, 14] holds (12, 12): (l, t, r, b) = (2, 2, 2, 2), max 2 in
  # (0, 12] -> anchor 5.
  np.testing.assert_array_equal(_matches([[10, 10, 14, 14]]),
                                _expected({0: [5]}))


def test_empty_groundtruth():
  anchors, levels = _point_anchors()
  assigner = _assigner(negative_class_weight=0.5)
  result = assigner.assign(anchors, box_list.BoxList(tf.zeros([0, 4])),
                           tf.zeros([0, 3]), levels=levels,
                           image_shape=(32, 32))
  np.testing.assert_array_equal(result.matches.numpy(), -np.ones([20]))
  np.testing.assert_array_equal(result.reg_weights.numpy(), np.zeros([20]))
  np.testing.assert_array_equal(result.reg_targets.numpy(),
                                np.zeros([20, 4]))
  np.testing.assert_array_equal(result.cls_targets.numpy(), np.zeros([20, 3]))
  np.testing.assert_allclose(result.cls_weights.numpy(),
                             np.full([20, 3], 0.5))


def test_invalid_rows_match_nothing():
  # Weight 0 on B: anchors 16..19 stay negative.
  np.testing.assert_array_equal(
      _matches([[0, 0, 16, 16], [0, 0, 32, 32]],
               weights=tf.constant([1., 0.])),
      _expected({0: [0, 1, 4, 5]}))
  # An invalid smaller box does not take locations from a valid one: with
  # E = [0, 0, 8, 16] invalid, D keeps anchors 0, 1.
  np.testing.assert_array_equal(
      _matches([[0, 0, 16, 16], [0, 0, 8, 16]],
               weights=tf.constant([1., 0.])),
      _expected({0: [0, 1, 4, 5]}))


def test_size_ranges_errors():
  coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder()
  with pytest.raises(ValueError, match='size_ranges'):
    FCOSTargetAssigner(coder, [64])
  with pytest.raises(ValueError, match='size_ranges'):
    FCOSTargetAssigner(coder, [0, 64, 32, -1])
  with pytest.raises(ValueError, match='size_ranges'):
    FCOSTargetAssigner(coder, [0, -1, 64])
  with pytest.raises(ValueError, match='size_ranges'):
    FCOSTargetAssigner(coder, [-5, 64])
  with pytest.raises(ValueError, match='center_sampling_radius'):
    FCOSTargetAssigner(coder, [0, 64], center_sampling_radius=-1.0)
  # -1 first (the reference code's P3 lower bound) reads as 0, -1 or inf
  # last as no upper limit.
  assert FCOSTargetAssigner(coder, [-1, 64, -1]).size_ranges == [
      0.0, 64.0, float('inf')]
  assert FCOSTargetAssigner(coder, [0, 64, float('inf')]).size_ranges == [
      0.0, 64.0, float('inf')]

  anchors, _ = _point_anchors()
  four_levels = [ta.AnchorLevel(8, 5), ta.AnchorLevel(16, 5),
                 ta.AnchorLevel(32, 5), ta.AnchorLevel(64, 5)]
  assigner = FCOSTargetAssigner(coder, [0, 64, 128, 256, 512, -1])
  with pytest.raises(ValueError, match=(
      r'size_ranges has 6 boundaries but the model has 4 levels; it needs '
      r'5')):
    assigner.assign(anchors, _gt([[0, 0, 16, 16]]), levels=four_levels,
                    image_shape=(32, 32))


def test_levels_and_image_shape_required():
  anchors, levels = _point_anchors()
  with pytest.raises(ValueError, match='levels'):
    _assigner().assign(anchors, _gt([[0, 0, 16, 16]]), image_shape=(32, 32))
  with pytest.raises(ValueError, match='image_shape'):
    _assigner().assign(anchors, _gt([[0, 0, 16, 16]]), levels=levels)


def test_non_square_image_uses_pixels():
  # A 32 (high) x 64 (wide) image, level stride 16: 2 x 4 locations with
  # centers y in {8, 24}, x in {8, 24, 40, 56}. Box [0, 0, 16, 32] px:
  # centers strictly inside are (8, 8) (l, t, r, b) = (8, 8, 24, 8) and
  # (8, 24) (24, 8, 8, 8); max 24 in (16, 32] -> both. Computed in the
  # normalized frame the extents would be < 1 and nothing would match.
  centers = ta.coordinates_grid(2, 4, 16).numpy().reshape(-1, 2)
  anchors = np.concatenate([centers - 8.0, centers + 8.0], axis=1)
  anchors = box_list.BoxList(tf.constant(anchors / [32., 64., 32., 64.],
                                         tf.float32))
  gt = box_list.BoxList(tf.constant([[0., 0., 0.5, 0.5]]))
  result = FCOSTargetAssigner(
      ltrb_distance_box_coder.LtrbDistanceBoxCoder(), [16, 32]).assign(
          anchors, gt, levels=[ta.AnchorLevel(16, 8)],
          image_shape=(tf.constant(32), tf.constant(64)))
  np.testing.assert_array_equal(result.matches.numpy(),
                                [0, 0, -1, -1, -1, -1, -1, -1])


def test_tf_function_equals_eager():
  anchors, levels = _point_anchors()
  assigner = _assigner(center_sampling_radius=1.5)
  pixel_boxes = [[0, 0, 16, 16], [0, 0, 32, 32], [0, 0, 8, 16],
                 [10, 10, 14, 14]]
  labels = tf.one_hot([0, 1, 2, 0], 3)
  weights = tf.constant([1., 1., 1., 0.])

  def run(boxes, labels, weights):
    return assigner.assign(anchors, box_list.BoxList(boxes), labels,
                           groundtruth_weights=weights, levels=levels,
                           image_shape=(32, 32))

  graph = tf.function(run, input_signature=[
      tf.TensorSpec([None, 4]), tf.TensorSpec([None, 3]),
      tf.TensorSpec([None])])
  boxes = _gt(pixel_boxes).get()
  eager = run(boxes, labels, weights)
  traced = graph(boxes, labels, weights)
  for a, b in zip(eager, traced):
    np.testing.assert_allclose(a.numpy(), b.numpy())
  assert (eager.matches.numpy() >= 0).any()
  empty = graph(tf.zeros([0, 4]), tf.zeros([0, 3]), tf.zeros([0]))
  np.testing.assert_array_equal(empty.matches.numpy(), -np.ones([20]))


def test_batch_assign_targets():
  anchors, levels = _point_anchors()
  result = ta.batch_assign_targets(
      _assigner(), anchors, [_gt([[0, 0, 16, 16], [0, 0, 32, 32]]),
                             box_list.BoxList(tf.zeros([0, 4]))],
      [tf.constant([[1., 0.], [0., 1.]]), tf.zeros([0, 2])],
      levels=levels, image_shape=(32, 32))
  np.testing.assert_array_equal(
      result.matches.numpy(),
      [_expected({0: [0, 1, 4, 5], 1: range(16, 20)}), -np.ones([20])])
  assert result.cls_targets.shape == (2, 20, 2)
  assert result.reg_targets.shape == (2, 20, 4)
  np.testing.assert_allclose(result.cls_targets.numpy()[0, 17], [0., 1.])
  np.testing.assert_allclose(result.reg_weights.numpy()[1], np.zeros([20]))
