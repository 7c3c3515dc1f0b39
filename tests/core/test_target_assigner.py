"""Tests for od_meta.core.target_assigner (hand-computed targets)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.core import box_list
from od_meta.core import standard_fields
from od_meta.core import region_similarity_calculator
from od_meta.core import target_assigner as ta
from od_meta.matchers import argmax_matcher

ANCHORS = np.array([[0.0, 0.0, 0.5, 0.5],
                    [0.5, 0.5, 1.0, 0.8],
                    [0.0, 0.25, 0.5, 0.75],
                    [0.75, 0.0, 1.0, 0.25]], np.float32)
GT = np.array([[0.0, 0.0, 0.5, 0.5],
               [0.5, 0.5, 0.9, 0.9]], np.float32)
# One-hot with background column 0: gt0 is class 0, gt1 class 1.
LABELS = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
BACKGROUND = np.array([1, 0, 0], np.float32)
# IoUs (rows gt, cols anchors):
#   gt0/a0 = 1; gt1/a1 = 0.12 / (0.15 + 0.16 - 0.12) = 0.6316;
#   gt0/a2 = 0.125 / 0.375 = 1/3 (between 0.3 and 0.5: ignored); a3: 0.
# So matches are [0, 1, -2, -1] with thresholds 0.5 / 0.3.
# Faster R-CNN encoding (Ren et al. 2015 eq. 2; Huang et al. 2017 scales
# [10, 10, 5, 5]) of gt1 against a1: anchor center (0.75, 0.65), h 0.5,
# w 0.3; gt center (0.7, 0.7), h 0.4, w 0.4:
#   ty = 10 * (0.7 - 0.75) / 0.5 = -1.0 ; tx = 10 * (0.7 - 0.65) / 0.3 = 5/3
#   th = 5 * ln(0.4 / 0.5) = -1.115718 ; tw = 5 * ln(0.4 / 0.3) = 1.438410
A1_CODE = [-1.0, 5 / 3, 5 * math.log(0.8), 5 * math.log(4 / 3)]


def _assigner(negative_class_weight=1.0):
  return ta.TargetAssigner(
      region_similarity_calculator.IouSimilarity(),
      argmax_matcher.ArgMaxMatcher(matched_threshold=0.5,
                                   unmatched_threshold=0.3),
      faster_rcnn_box_coder.FasterRcnnBoxCoder(
          scale_factors=[10.0, 10.0, 5.0, 5.0]),
      negative_class_weight=negative_class_weight)


def _assign(assigner=None, gt=GT, labels=LABELS, weights=None,
            unmatched=BACKGROUND):
  assigner = assigner or _assigner()
  return assigner.assign(box_list.BoxList(ANCHORS), box_list.BoxList(gt),
                         labels, unmatched, weights)


def test_assign_two_gt_four_anchors():
  cls_t, cls_w, reg_t, reg_w, match = _assign()
  np.testing.assert_array_equal(match.numpy(), [0, 1, -2, -1])
  np.testing.assert_allclose(cls_t.numpy(),
                             [[0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]])
  # Ignored anchor 2 gets class weight 0; unmatched anchor 3 weight 1.
  np.testing.assert_allclose(cls_w.numpy(), np.array([[1], [1], [0], [1]]) *
                             np.ones([4, 3]))
  np.testing.assert_allclose(reg_w.numpy(), [1, 1, 0, 0])
  np.testing.assert_allclose(reg_t.numpy(),
                             [[0, 0, 0, 0], A1_CODE, [0] * 4, [0] * 4],
                             rtol=1e-5, atol=1e-5)
  assert reg_t.shape == (4, 4) and cls_t.shape == (4, 3)


def test_weights_and_negative_class_weight():
  # gt weight 0.5 on gt0 -> anchor 0 has class and regression weight 0.5;
  # negative_class_weight 0.3 on the unmatched anchor 3.
  _, cls_w, _, reg_w, _ = _assign(assigner=_assigner(0.3),
                                  weights=np.array([0.5, 1.0], np.float32))
  np.testing.assert_allclose(cls_w.numpy()[:, 0], [0.5, 1, 0, 0.3])
  np.testing.assert_allclose(reg_w.numpy(), [0.5, 1, 0, 0])
  # Weight 0 invalidates gt0: anchors 0 and 2 become unmatched negatives.
  cls_t, cls_w, reg_t, reg_w, match = _assign(
      weights=np.array([0.0, 1.0], np.float32))
  np.testing.assert_array_equal(match.numpy(), [-1, 1, -1, -1])
  np.testing.assert_allclose(cls_t.numpy()[0], BACKGROUND)
  np.testing.assert_allclose(cls_w.numpy()[:, 0], [1, 1, 1, 1])
  np.testing.assert_allclose(reg_w.numpy(), [0, 1, 0, 0])
  np.testing.assert_allclose(reg_t.numpy()[0], [0, 0, 0, 0])


def test_default_labels_objectness():
  cls_t, cls_w, _, _, _ = _assigner().assign(box_list.BoxList(ANCHORS),
                                             box_list.BoxList(GT))
  np.testing.assert_allclose(cls_t.numpy(), [[1], [1], [0], [0]])
  np.testing.assert_allclose(cls_w.numpy(), [[1], [1], [0], [1]])


def test_empty_groundtruth():
  cls_t, cls_w, reg_t, reg_w, match = _assign(
      gt=np.zeros([0, 4], np.float32), labels=np.zeros([0, 3], np.float32))
  np.testing.assert_array_equal(match.numpy(), [-1] * 4)
  np.testing.assert_allclose(cls_t.numpy(), np.tile(BACKGROUND, [4, 1]))
  np.testing.assert_allclose(cls_w.numpy(), np.ones([4, 3]))
  np.testing.assert_array_equal(reg_t.numpy(), np.zeros([4, 4]))
  np.testing.assert_array_equal(reg_w.numpy(), np.zeros([4]))


def test_round_trip_decode_matched_targets():
  _, _, reg_t, _, _ = _assign()
  decoded = faster_rcnn_box_coder.FasterRcnnBoxCoder(
      scale_factors=[10.0, 10.0, 5.0, 5.0]).decode(
          reg_t[:2], box_list.BoxList(ANCHORS[:2]))
  np.testing.assert_allclose(decoded.get().numpy(), GT, atol=1e-5)


def test_batch_assign_under_tf_function():
  assigner = _assigner()

  @tf.function(input_signature=[tf.TensorSpec([None, 4]),
                                tf.TensorSpec([None, 3]),
                                tf.TensorSpec([None, 4]),
                                tf.TensorSpec([None, 3])])
  def fn(gt1, labels1, gt2, labels2):
    cls_t, cls_w, reg_t, reg_w, matches = ta.batch_assign_targets(
        assigner, box_list.BoxList(tf.constant(ANCHORS)),
        [box_list.BoxList(gt1), box_list.BoxList(gt2)], [labels1, labels2],
        unmatched_class_label=tf.constant(BACKGROUND))
    return cls_t, cls_w, reg_t, reg_w, matches

  cls_t, cls_w, reg_t, reg_w, matches = fn(
      GT, LABELS, np.zeros([0, 4], np.float32), np.zeros([0, 3], np.float32))
  assert cls_t.shape == (2, 4, 3) and reg_t.shape == (2, 4, 4)
  np.testing.assert_array_equal(matches.numpy(),
                                [[0, 1, -2, -1], [-1, -1, -1, -1]])
  np.testing.assert_allclose(reg_t.numpy()[0, 1], A1_CODE, rtol=1e-5)
  np.testing.assert_allclose(reg_w.numpy(), [[1, 1, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_allclose(cls_w.numpy()[:, :, 0],
                             [[1, 1, 0, 1], [1, 1, 1, 1]])


def test_bad_inputs():
  with pytest.raises(ValueError, match='unmatched_class_label'):
    _assign(unmatched=np.zeros([2], np.float32))
  with pytest.raises(ValueError, match='groundtruth_labels'):
    _assign(labels=np.zeros([3, 3], np.float32))
  with pytest.raises(ValueError, match='anchors'):
    _assigner().assign(ANCHORS, box_list.BoxList(GT))
  with pytest.raises(ValueError, match='same length'):
    ta.batch_assign_targets(_assigner(), box_list.BoxList(ANCHORS),
                            [box_list.BoxList(GT)], [LABELS, LABELS])
  with pytest.raises(ValueError, match='matcher'):
    ta.TargetAssigner(region_similarity_calculator.IouSimilarity(), None,
                      faster_rcnn_box_coder.FasterRcnnBoxCoder())


def test_coordinates_grid():
  # stride 4: centers at i*4 + 2 -> rows [2, 6], columns [2, 6, 10].
  grid = ta.coordinates_grid(2, 3, 4).numpy()
  assert grid.shape == (2, 3, 2)
  np.testing.assert_array_equal(grid[..., 0], [[2, 2, 2], [6, 6, 6]])
  np.testing.assert_array_equal(grid[..., 1], [[2, 6, 10], [2, 6, 10]])
  # stride 1: the pixel itself; stride 3: offset 3 // 2 = 1.
  np.testing.assert_array_equal(ta.coordinates_grid(1, 2, 1).numpy(),
                                [[[0, 0], [0, 1]]])
  np.testing.assert_array_equal(ta.coordinates_grid(1, 2, 3).numpy(),
                                [[[1, 1], [1, 4]]])
  fn = tf.function(lambda h, w: ta.coordinates_grid(h, w, 8))
  out = fn(tf.constant(2), tf.constant(0))
  assert out.shape == (2, 0, 2)
  np.testing.assert_array_equal(fn(tf.constant(1), tf.constant(1)).numpy(),
                                [[[4, 4]]])
  with pytest.raises(ValueError, match='stride'):
    ta.coordinates_grid(2, 2, 0)
  with pytest.raises(ValueError, match='stride'):
    ta.coordinates_grid(2, 2, 2.5)


def test_dense_target_assigner_interface():
  with pytest.raises(TypeError):
    ta.DenseTargetAssigner()  # pylint: disable=abstract-class-instantiated

  class Toy(ta.SingleLevelDenseTargetAssigner):

    @property
    def stride(self):
      return 4

    def assign(self, height, width, groundtruth_boxes_list,
               groundtruth_classes_list, groundtruth_weights_list=None,
               **kwargs):
      grid = ta.coordinates_grid(height // self.stride, width // self.stride,
                                 self.stride)
      return {'grid': tf.stack([grid] * len(groundtruth_boxes_list))}

  toy = Toy()
  assert toy.strides == [4]
  out = toy.assign(8, 16, [GT], [LABELS])
  assert out['grid'].shape == (1, 2, 4, 2)
  (level,) = toy.assign_levels(8, 16, [ta.FeatureLevel(4, 2, 4)], [GT],
                               [LABELS])
  np.testing.assert_array_equal(level['grid'].numpy(), out['grid'].numpy())
  with pytest.raises(ValueError, match='strides'):
    toy.assign_levels(8, 16, [ta.FeatureLevel(8, 1, 2)], [GT], [LABELS])
  with pytest.raises(ValueError, match='strides'):
    toy.assign_levels(8, 16, [ta.FeatureLevel(4, 2, 4),
                              ta.FeatureLevel(8, 1, 2)], [GT], [LABELS])


def test_target_assignment_is_one_named_result():
  result = _assign()
  assert isinstance(result, ta.TargetAssignment)
  keyed = result.as_dict()
  assert sorted(keyed) == sorted([
      standard_fields.TargetAssignmentFields.cls_targets,
      standard_fields.TargetAssignmentFields.cls_weights,
      standard_fields.TargetAssignmentFields.reg_targets,
      standard_fields.TargetAssignmentFields.reg_weights,
      standard_fields.TargetAssignmentFields.matches])
  np.testing.assert_array_equal(
      keyed[standard_fields.TargetAssignmentFields.matches].numpy(),
      [0, 1, -2, -1])
  assert issubclass(ta.TargetAssigner, ta.AnchorTargetAssigner)


def test_level_helpers():
  levels = [ta.AnchorLevel(8, 3), ta.AnchorLevel(16, 2)]
  np.testing.assert_allclose(ta.anchor_strides(levels).numpy(),
                             [8, 8, 8, 16, 16])
  np.testing.assert_array_equal(ta.anchor_level_indices(levels).numpy(),
                                [0, 0, 0, 1, 1])
  parts = ta.split_by_level(tf.range(5), levels)
  assert [p.numpy().tolist() for p in parts] == [[0, 1, 2], [3, 4]]
