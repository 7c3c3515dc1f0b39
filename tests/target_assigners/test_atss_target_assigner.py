"""Tests for ATSSTargetAssigner (hand-computed golden assignments).

Planted anchors in a 64 x 64 image (boxes written in pixels, normalized by
64). Most anchors share the groundtruth's rows y in [0, 10], so an IoU is
the 1-d IoU of the x intervals: an anchor [x0, x1] inside the box
[0, 20] has IoU (x1 - x0) / 20.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_list
from od_meta.core import target_assigner as ta
from od_meta.target_assigners import atss_target_assigner

ATSSTargetAssigner = atss_target_assigner.ATSSTargetAssigner
SIZE = 64.0

# Groundtruth [0, 0, 10, 20], center (5, 10). Two levels of 4 anchors,
# all rows [0, 10]; x interval, IoU, squared center distance to (5, 10):
THRESHOLD_ANCHORS = [
    [0, 3, 10, 18],    # 0: [3, 18]  150/200 = 0.75   d2 = 0.25
    [0, 12, 10, 15],   # 1: [12, 15]  30/200 = 0.15   d2 = 12.25
    [0, 1, 10, 2],     # 2: [1, 2]    10/200 = 0.05   d2 = 72.25
    [0, 40, 10, 50],   # 3: far, IoU 0                d2 = 1225
    [0, 4, 10, 16],    # 4: [4, 16]  120/200 = 0.6    d2 = 0
    [0, 14, 10, 20],   # 5: [14, 20]  60/200 = 0.3    d2 = 49
    [0, 17, 10, 19],   # 6: [17, 19]  20/200 = 0.1    d2 = 64
    [0, 50, 10, 60],   # 7: far, IoU 0                d2 = 2025
]
TWO_LEVELS = [ta.AnchorLevel(8, 4), ta.AnchorLevel(16, 4)]


def _boxes(pixel_boxes):
  return box_list.BoxList(tf.constant(
      np.array(pixel_boxes, np.float32).reshape(-1, 4) / SIZE))


def _assigner(top_k=3, box_coder=None, **kwargs):
  return ATSSTargetAssigner(
      box_coder or ltrb_distance_box_coder.LtrbDistanceBoxCoder(),
      top_k=top_k, **kwargs)


def _assign(assigner, anchors, gt, levels=TWO_LEVELS, **kwargs):
  return assigner.assign(_boxes(anchors), _boxes(gt), levels=levels,
                         image_shape=(64, 64), **kwargs)


def _std(values, ddof):
  mean = sum(values) / len(values)
  return math.sqrt(sum((v - mean)**2 for v in values) / (len(values) - ddof))


def test_threshold_is_mean_plus_unbiased_std():
  # top_k = 3: candidates are the 3 nearest per level, anchors 0, 1, 2
  # and 4, 5, 6 (the far anchors 3 and 7 are left out). IoUs 0.75, 0.15,
  # 0.05, 0.6, 0.3, 0.1: mean = 1.95 / 6 = 0.325; squared deviations
  # 0.180625, 0.030625, 0.075625, 0.075625, 0.000625, 0.050625, sum
  # 0.41375; unbiased std = sqrt(0.41375 / 5) = 0.287663 -> t_g = 0.612663:
  # only anchor 0 (0.75) is positive. (The biased std sqrt(0.41375 / 6) =
  # 0.262599 would give t_g = 0.587599 and admit anchor 4 (0.6).)
  ious = [0.75, 0.15, 0.05, 0.6, 0.3, 0.1]
  assert 0.325 + _std(ious, 1) == pytest.approx(0.612663, abs=1e-6)
  assert 0.325 + _std(ious, 0) == pytest.approx(0.587599, abs=1e-6)
  assigner = _assigner(top_k=3, negative_class_weight=0.5)
  assert assigner.requires_levels
  result = _assign(assigner, THRESHOLD_ANCHORS, [[0, 0, 10, 20]],
                   groundtruth_labels=tf.constant([[0., 1.]]))
  np.testing.assert_array_equal(result.matches.numpy(),
                                [0, -1, -1, -1, -1, -1, -1, -1])
  np.testing.assert_allclose(result.reg_weights.numpy(),
                             [1, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(result.cls_weights.numpy()[:, 0],
                             [1, .5, .5, .5, .5, .5, .5, .5])
  np.testing.assert_allclose(result.cls_targets.numpy()[0], [0., 1.])
  # Ltrb [t, l, b, r] of [0, 0, 10, 20] from anchor 0's center (5, 10.5),
  # normalized by 64: [5, 10.5, 5, 9.5] / 64.
  np.testing.assert_allclose(result.reg_targets.numpy()[0],
                             np.array([5, 10.5, 5, 9.5]) / 64., rtol=1e-6)


def test_candidates_are_the_nearest_per_level():
  # top_k = 4 takes every anchor: IoUs above plus two zeros: mean = 1.95 /
  # 8 = 0.24375; sum of squares 1.0475 - 8 * 0.24375^2 = 0.572188;
  # std = sqrt(0.572188 / 7) = 0.285904 -> t_g = 0.529654: anchors 0
  # (0.75) and 4 (0.6) are positive. With top_k = 3 the far anchors are
  # not candidates and anchor 4 was negative.
  ious = [0.75, 0.15, 0.05, 0.0, 0.6, 0.3, 0.1, 0.0]
  assert 0.24375 + _std(ious, 1) == pytest.approx(0.529654, abs=1e-6)
  result = _assign(_assigner(top_k=4), THRESHOLD_ANCHORS, [[0, 0, 10, 20]])
  np.testing.assert_array_equal(result.matches.numpy(),
                                [0, -1, -1, -1, 0, -1, -1, -1])


def test_center_must_be_inside_the_box():
  # Groundtruth [0, 0, 10, 20]; levels of 3 anchors, top_k = 3 (all are
  # candidates): anchor 0, x [1, 40], center x 20.5 (outside the box):
  # IoU 190 / (200 + 390 - 190) = 0.475; anchor 1, x [0, 10]: 100 / 200 =
  # 0.5; four far anchors: 0. mean = 0.975 / 6 = 0.1625, sum of squares
  # 0.475625 - 6 * 0.1625^2 = 0.3171875, std = sqrt(0.0634375) = 0.251868
  # -> t_g = 0.414368: both pass the IoU test but anchor 0's center is
  # outside -> only anchor 1.
  anchors = [[0, 1, 10, 40], [0, 0, 10, 10], [40, 40, 50, 50],
             [40, 0, 50, 10], [50, 50, 60, 60], [30, 30, 40, 40]]
  assert 0.1625 + _std([0.475, 0.5, 0, 0, 0, 0], 1) == pytest.approx(
      0.414368, abs=1e-6)
  levels = [ta.AnchorLevel(8, 3), ta.AnchorLevel(16, 3)]
  result = _assign(_assigner(top_k=3), anchors, [[0, 0, 10, 20]], levels)
  np.testing.assert_array_equal(result.matches.numpy(),
                                [-1, 0, -1, -1, -1, -1])


def test_anchor_claimed_twice_goes_to_highest_iou():
  # gt0 [0, 0, 10, 12] (area 120), gt1 [0, 0, 10, 14] (area 140); anchor 0
  # = [0, 0, 10, 14] (center (5, 7), inside both): IoU 120 / 140 = 0.857143
  # with gt0, 1.0 with gt1; every other anchor has IoU 0 with both.
  # gt0: mean 0.142857, std = sqrt((0.734694 - 6 * 0.142857^2) / 5) =
  # 0.349927 -> t = 0.492784; gt1: mean 1/6, std = sqrt((1 - 6 / 36) / 5)
  # = 0.408248 -> t = 0.574915: anchor 0 is positive for both and goes to
  # gt1 (higher IoU, although larger and a later row).
  anchors = [[0, 0, 10, 14], [40, 40, 50, 50], [50, 50, 60, 60],
             [40, 0, 50, 10], [0, 40, 10, 50], [30, 30, 40, 40]]
  levels = [ta.AnchorLevel(8, 3), ta.AnchorLevel(16, 3)]
  result = _assign(_assigner(top_k=3), anchors,
                   [[0, 0, 10, 12], [0, 0, 10, 14]], levels)
  np.testing.assert_array_equal(result.matches.numpy(),
                                [1, -1, -1, -1, -1, -1])
  # With gt1 invalid (weight 0), gt0 keeps it.
  result = _assign(_assigner(top_k=3), anchors,
                   [[0, 0, 10, 12], [0, 0, 10, 14]], levels,
                   groundtruth_weights=tf.constant([1., 0.]))
  np.testing.assert_array_equal(result.matches.numpy(),
                                [0, -1, -1, -1, -1, -1])


def test_anchor_scale_scales_the_iou_anchors_only():
  # Groundtruth [0, 0, 10, 10]; one level: A = [4, 4, 6, 6] (side 2),
  # B = [2, 2, 8, 8] (side 6), both centered at (5, 5), C far.
  # anchor_scale 1: IoUs 0.04, 0.36, 0: mean 0.133333, std =
  # sqrt(0.077867 / 2) = 0.197315 -> t = 0.330648: B.
  # anchor_scale 5: A -> side 10 (IoU 1), B -> side 30 (100 / 900 =
  # 0.111111), C -> [20, 20, 70, 70] (0): mean 0.370370, std =
  # sqrt(0.600823 / 2) = 0.548098 -> t = 0.918468: A.
  anchors = [[4, 4, 6, 6], [2, 2, 8, 8], [40, 40, 50, 50]]
  levels = [ta.AnchorLevel(8, 3)]
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder()
  result = _assign(_assigner(top_k=3, box_coder=coder), anchors,
                   [[0, 0, 10, 10]], levels)
  np.testing.assert_array_equal(result.matches.numpy(), [-1, 0, -1])
  result = _assign(_assigner(top_k=3, box_coder=coder, anchor_scale=5.0),
                   anchors, [[0, 0, 10, 10]], levels)
  np.testing.assert_array_equal(result.matches.numpy(), [0, -1, -1])
  # The regression target is encoded against the anchor as given (side 2):
  # [0, 0, log(10 / 2), log(10 / 2)].
  np.testing.assert_allclose(result.reg_targets.numpy()[0],
                             [0, 0, math.log(5), math.log(5)], atol=1e-5)


def test_top_k_larger_than_a_static_level_raises():
  assigner = _assigner(top_k=9)
  levels = [ta.AnchorLevel(8, 4), ta.AnchorLevel(16, 4)]
  with pytest.raises(ValueError, match=(
      r'atss top_k \(9\) is larger than the 4 anchors of levels\[0\] '
      r'\(stride 8\); lower top_k or drop the level')):
    _assign(assigner, THRESHOLD_ANCHORS, [[0, 0, 10, 20]], levels)
  with pytest.raises(ValueError, match='top_k'):
    ATSSTargetAssigner(ltrb_distance_box_coder.LtrbDistanceBoxCoder(),
                       top_k=0)
  with pytest.raises(ValueError, match='anchor_scale'):
    ATSSTargetAssigner(ltrb_distance_box_coder.LtrbDistanceBoxCoder(),
                       anchor_scale=0.0)
  with pytest.raises(ValueError, match='image_shape'):
    assigner.assign(_boxes(THRESHOLD_ANCHORS), _boxes([[0, 0, 10, 20]]),
                    levels=[ta.AnchorLevel(8, 8)])


def test_dynamic_level_counts_clamp_top_k_under_tf_function():
  # Level counts known only at run time: top_k = 9 clamps to the 4 anchors
  # of each level, i.e. the top_k = 4 result (anchors 0 and 4).
  assigner = _assigner(top_k=9)

  @tf.function(input_signature=[tf.TensorSpec([None, 4]),
                                tf.TensorSpec([None, 4])])
  def run(anchors, gt):
    half = tf.shape(anchors)[0] // 2
    levels = [ta.AnchorLevel(8, half), ta.AnchorLevel(16, half)]
    return assigner.assign(box_list.BoxList(anchors), box_list.BoxList(gt),
                           levels=levels, image_shape=(64, 64))

  result = run(_boxes(THRESHOLD_ANCHORS).get(), _boxes([[0, 0, 10, 20]]).get())
  np.testing.assert_array_equal(result.matches.numpy(),
                                [0, -1, -1, -1, 0, -1, -1, -1])
  empty = run(_boxes(THRESHOLD_ANCHORS).get(), tf.zeros([0, 4]))
  np.testing.assert_array_equal(empty.matches.numpy(), -np.ones([8]))


def test_tf_function_equals_eager():
  assigner = _assigner(top_k=3)
  gt = _boxes([[0, 0, 10, 20], [0, 0, 10, 12]]).get()

  def run(gt):
    return assigner.assign(_boxes(THRESHOLD_ANCHORS), box_list.BoxList(gt),
                           levels=TWO_LEVELS, image_shape=(64, 64))

  eager = run(gt)
  traced = tf.function(run, input_signature=[tf.TensorSpec([None, 4])])(gt)
  for a, b in zip(eager, traced):
    np.testing.assert_allclose(a.numpy(), b.numpy())


def test_empty_groundtruth():
  result = _assign(_assigner(top_k=3, negative_class_weight=0.25),
                   THRESHOLD_ANCHORS, np.zeros([0, 4]),
                   groundtruth_labels=tf.zeros([0, 2]))
  np.testing.assert_array_equal(result.matches.numpy(), -np.ones([8]))
  np.testing.assert_array_equal(result.reg_weights.numpy(), np.zeros([8]))
  np.testing.assert_array_equal(result.reg_targets.numpy(), np.zeros([8, 4]))
  np.testing.assert_allclose(result.cls_weights.numpy(),
                             np.full([8, 2], 0.25))


def test_grid_point_anchors():
  # 32 x 32 image, location anchors of side = stride (level 0, stride 8:
  # anchor 4 i + j centered at (4 + 8 i, 4 + 8 j); level 1, stride 16:
  # anchor 16 + 2 i + j at (8 + 16 i, 8 + 16 j)), anchor_scale 1, top_k 2.
  # Box [0, 0, 16, 24], area 384, center (8, 12). Nearest per level (d2):
  # level 0: anchors 1 (4, 12) and 5 (12, 12), 16 each (next: 80);
  # level 1: anchors 16 (8, 8), 16, and 17 (8, 24), 144.
  # IoUs: anchor 1 [0, 8, 8, 16] and 5 [8, 8, 16, 16] lie in the box:
  # 64 / 384 = 1/6; 16 [0, 0, 16, 16]: 256 / 384 = 2/3; 17 [0, 16, 16,
  # 32]: 128 / (384 + 256 - 128) = 0.25. mean = 1.25 / 4 = 0.3125; squared
  # deviations 2 * 0.145833^2 + 0.354167^2 + 0.0625^2 = 0.171875; std =
  # sqrt(0.171875 / 3) = 0.239357 -> t = 0.551857: anchor 16 only (17's
  # center x = 24 is on the box border, not inside, anyway).
  assert 0.3125 + _std([1 / 6, 1 / 6, 2 / 3, 0.25], 1) == pytest.approx(
      0.551857, abs=1e-6)
  centers0 = ta.coordinates_grid(4, 4, 8).numpy().reshape(-1, 2)
  centers1 = ta.coordinates_grid(2, 2, 16).numpy().reshape(-1, 2)
  anchors = np.concatenate([
      np.concatenate([centers0 - 4, centers0 + 4], 1),
      np.concatenate([centers1 - 8, centers1 + 8], 1)]) / 32.
  result = _assigner(top_k=2).assign(
      box_list.BoxList(tf.constant(anchors, tf.float32)),
      box_list.BoxList(tf.constant([[0., 0., 16., 24.]]) / 32.),
      levels=[ta.AnchorLevel(8, 16), ta.AnchorLevel(16, 4)],
      image_shape=(32, 32))
  expected = -np.ones([20], np.int32)
  expected[16] = 0
  np.testing.assert_array_equal(result.matches.numpy(), expected)


def test_batch_assign_targets():
  result = ta.batch_assign_targets(
      _assigner(top_k=3), _boxes(THRESHOLD_ANCHORS),
      [_boxes([[0, 0, 10, 20]]), box_list.BoxList(tf.zeros([0, 4]))],
      [tf.constant([[1.]]), tf.zeros([0, 1])], levels=TWO_LEVELS,
      image_shape=(64, 64))
  np.testing.assert_array_equal(
      result.matches.numpy(),
      [[0, -1, -1, -1, -1, -1, -1, -1], -np.ones([8])])
  np.testing.assert_allclose(result.cls_targets.numpy()[0, :, 0],
                             [1, 0, 0, 0, 0, 0, 0, 0])
  assert result.reg_targets.shape == (2, 8, 4)
