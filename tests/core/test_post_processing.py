"""Golden tests for od_meta.core.post_processing (multi-class NMS)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import post_processing
from od_meta.core import standard_fields

fields = standard_fields.BoxListFields

# Eight shared boxes (q = 1), two classes. Boxes 0/1/2 overlap (IoU 0.818),
# 3/4 overlap, 6/7 overlap (IoU 2/2.1 = 0.952), 5 is alone.
BOXES = np.array([[[0, 0, 1, 1]], [[0, 0.1, 1, 1.1]], [[0, -0.1, 1, 0.9]],
                  [[0, 10, 1, 11]], [[0, 10.1, 1, 11.1]], [[0, 100, 1, 101]],
                  [[0, 1000, 1, 1002]], [[0, 1000, 1, 1002.1]]], np.float32)
SCORES = np.array([[.9, 0.01], [.75, 0.05], [.6, 0.01], [.95, 0],
                   [.5, 0.01], [.3, 0.01], [.01, .85], [.01, .5]], np.float32)
# Class 0 keeps 3 (.95), 0 (.9), 5 (.3); class 1 keeps 6 (.85); all others
# are suppressed (IoU > 0.5) or not above the 0.1 threshold.
EXP_BOXES = [[0, 10, 1, 11], [0, 0, 1, 1], [0, 1000, 1, 1002],
             [0, 100, 1, 101]]
EXP_SCORES = [.95, .9, .85, .3]
EXP_CLASSES = [0, 0, 1, 0]
EXP_ANCHORS = [3, 0, 6, 5]


def _nms(**kwargs):
  args = dict(score_thresh=0.1, iou_thresh=0.5, max_size_per_class=4,
              max_total_size=4)
  args.update(kwargs)
  return post_processing.multiclass_non_max_suppression(
      args.pop('boxes', BOXES), args.pop('scores', SCORES), **args)


def test_multiclass_nms_golden():
  keypoints = np.arange(8 * 2, dtype=np.float32).reshape(8, 1, 2)
  result = _nms(additional_fields={'keypoints': keypoints})
  np.testing.assert_allclose(result.get().numpy(), EXP_BOXES)
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(),
                             EXP_SCORES, rtol=1e-6)
  classes = result.get_field(fields.classes)
  assert classes.dtype == tf.int32
  np.testing.assert_array_equal(classes.numpy(), EXP_CLASSES)
  np.testing.assert_array_equal(
      result.get_field(post_processing.ANCHOR_INDICES_FIELD).numpy(),
      EXP_ANCHORS)
  np.testing.assert_allclose(result.get_field('keypoints').numpy(),
                             keypoints[EXP_ANCHORS])


def test_max_sizes_and_threshold():
  # max_total_size=2: the two best of [.95, .9, .85, .3].
  result = _nms(max_total_size=2)
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(),
                             [.95, .9], rtol=1e-6)
  # One per class: class 0 -> .95, class 1 -> .85.
  result = _nms(max_size_per_class=1)
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(),
                             [.95, .85], rtol=1e-6)
  # Threshold is strict: score 0.3 is not > 0.3.
  result = _nms(score_thresh=0.3)
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(),
                             [.95, .9, .85], rtol=1e-6)
  # max_total_size=0 -> num_classes * max_size_per_class = 8 slots, 4 used.
  result = _nms(max_total_size=0)
  assert result.num_boxes().numpy() == 4


def test_class_agnostic_nms():
  boxes = np.array([[[0, 0, 1, 1]], [[0, 0.1, 1, 1.1]]], np.float32)
  scores = np.array([[.9, .2], [.1, .8]], np.float32)
  # Per-class NMS keeps both (different classes).
  per_class = _nms(boxes=boxes, scores=scores)
  np.testing.assert_allclose(per_class.get_field(fields.scores).numpy(),
                             [.9, .8], rtol=1e-6)
  # Class-agnostic: box 1 (IoU 0.818 with box 0) is suppressed.
  agnostic = _nms(boxes=boxes, scores=scores, use_class_agnostic_nms=True)
  np.testing.assert_allclose(agnostic.get_field(fields.scores).numpy(), [.9],
                             rtol=1e-6)
  np.testing.assert_array_equal(agnostic.get_field(fields.classes).numpy(),
                                [0])
  # Two classes per kept box: box 0 as class 0 (.9) and class 1 (.2 > .1).
  two = _nms(boxes=boxes, scores=scores, use_class_agnostic_nms=True,
             max_classes_per_detection=2)
  np.testing.assert_allclose(two.get_field(fields.scores).numpy(), [.9, .2],
                             rtol=1e-6)
  np.testing.assert_array_equal(two.get_field(fields.classes).numpy(),
                                [0, 1])
  np.testing.assert_array_equal(
      two.get_field(post_processing.ANCHOR_INDICES_FIELD).numpy(), [0, 0])


def test_soft_nms_gaussian_decay():
  # IoU([0,0,1,1], [0,0.5,1,1.5]) = 0.5 / 1.5 = 1/3. Gaussian decay with the
  # TF / TF OD API convention exp(-iou^2 / (2 sigma)), sigma = 0.25:
  # 0.8 * exp(-(1/3)^2 / 0.5) = 0.8 * exp(-0.2222) = 0.640590.
  boxes = np.array([[[0, 0, 1, 1]], [[0, 0.5, 1, 1.5]]], np.float32)
  scores = np.array([[.9], [.8]], np.float32)
  result = _nms(boxes=boxes, scores=scores, iou_thresh=1.0,
                soft_nms_sigma=0.25)
  expected = 0.8 * math.exp(-(1 / 3) ** 2 / 0.5)
  assert abs(expected - 0.640590) < 1e-5
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(),
                             [.9, expected], rtol=1e-5)
  # A threshold above the decayed score drops the box.
  result = _nms(boxes=boxes, scores=scores, iou_thresh=1.0,
                soft_nms_sigma=0.25, score_thresh=0.7)
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(), [.9],
                             rtol=1e-6)


def test_clip_window_and_change_frame():
  # Window [0, 0, 1, 10.5]: box 3 clips to [0, 10, 1, 10.5]; boxes 5 and 6
  # fall outside (zero area) and are removed.
  window = np.array([0, 0, 1, 10.5], np.float32)
  result = _nms(clip_window=window)
  np.testing.assert_allclose(result.get().numpy(),
                             [[0, 10, 1, 10.5], [0, 0, 1, 1]])
  result = _nms(clip_window=window, change_coordinate_frame=True)
  np.testing.assert_allclose(result.get().numpy(),
                             [[0, 10 / 10.5, 1, 1], [0, 0, 1, 1 / 10.5]],
                             rtol=1e-6)


def test_class_specific_boxes():
  # q = num_classes = 2: anchor 0 has a different box per class.
  boxes = np.array([[[0, 0, 1, 1], [0, 5, 1, 6]],
                    [[0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32)
  scores = np.array([[.9, .7], [.8, .6]], np.float32)
  result = _nms(boxes=boxes, scores=scores)
  # Class 0: anchor 0 (.9) suppresses anchor 1; class 1: same box, anchor 0.
  np.testing.assert_allclose(result.get().numpy(),
                             [[0, 0, 1, 1], [0, 5, 1, 6]])
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(),
                             [.9, .7], rtol=1e-6)
  np.testing.assert_array_equal(result.get_field(fields.classes).numpy(),
                                [0, 1])


def _batch_inputs():
  boxes2 = np.zeros_like(BOXES)
  boxes2[:, 0] = [0, 0, 1, 1]
  scores2 = np.zeros_like(SCORES)
  scores2[2, 1] = 0.7  # a single detection: anchor 2, class 1
  boxes = np.stack([BOXES, boxes2])
  scores = np.stack([SCORES, scores2])
  keypoints = np.arange(2 * 8 * 2, dtype=np.float32).reshape(2, 8, 1, 2)
  return boxes, scores, keypoints


def _check_batch(result, keypoints, max_total_size=5):
  boxes, scores, classes, extra, num, anchors = result
  assert boxes.shape == (2, max_total_size, 4)
  np.testing.assert_array_equal(num.numpy(), [4, 1])
  np.testing.assert_allclose(boxes.numpy()[0, :4], EXP_BOXES)
  np.testing.assert_allclose(boxes.numpy()[1, 0], [0, 0, 1, 1])
  np.testing.assert_allclose(scores.numpy()[0], EXP_SCORES + [0], rtol=1e-6)
  np.testing.assert_allclose(scores.numpy()[1], [.7, 0, 0, 0, 0], rtol=1e-6)
  np.testing.assert_array_equal(classes.numpy(),
                                [EXP_CLASSES + [0], [1, 0, 0, 0, 0]])
  np.testing.assert_array_equal(anchors.numpy(),
                                [EXP_ANCHORS + [0], [2, 0, 0, 0, 0]])
  # Padding rows are zero.
  np.testing.assert_array_equal(boxes.numpy()[1, 1:], 0)
  np.testing.assert_allclose(extra['keypoints'].numpy()[0, :4],
                             keypoints[0, EXP_ANCHORS])
  np.testing.assert_allclose(extra['keypoints'].numpy()[1, 0],
                             keypoints[1, 2])
  np.testing.assert_array_equal(extra['keypoints'].numpy()[1, 1:], 0)


def test_batch_nms_under_tf_function_dynamic_n():
  boxes, scores, keypoints = _batch_inputs()

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, 1, 4]), tf.TensorSpec([None, None, 2]),
      tf.TensorSpec([None, None, 1, 2])])
  def fn(b, s, k):
    return post_processing.batch_multiclass_non_max_suppression(
        b, s, 0.1, 0.5, max_size_per_class=4, max_total_size=5,
        additional_fields={'keypoints': k})

  _check_batch(fn(boxes, scores, keypoints), keypoints)
  # No anchors at all: everything padded, zero detections.
  empty = fn(np.zeros([2, 0, 1, 4], np.float32),
             np.zeros([2, 0, 2], np.float32),
             np.zeros([2, 0, 1, 2], np.float32))
  np.testing.assert_array_equal(empty.num_detections.numpy(), [0, 0])
  assert empty.nmsed_boxes.shape == (2, 5, 4)


def test_combined_nms_matches_regular():
  boxes, scores, keypoints = _batch_inputs()
  result = post_processing.batch_multiclass_non_max_suppression(
      boxes, scores, 0.1, 0.5, max_size_per_class=4, max_total_size=5,
      additional_fields={'keypoints': keypoints}, use_combined_nms=True)
  _check_batch(result, keypoints)


def test_batch_clip_window_per_image():
  boxes, scores, _ = _batch_inputs()
  windows = np.array([[0, 0, 1, 10.5], [0, 0, 0.5, 0.5]], np.float32)
  result = post_processing.batch_multiclass_non_max_suppression(
      boxes, scores, 0.1, 0.5, max_size_per_class=4, max_total_size=3,
      clip_window=windows, change_coordinate_frame=True)
  np.testing.assert_array_equal(result.num_detections.numpy(), [2, 1])
  # Image 1: [0,0,1,1] clipped to [0,0,.5,.5] -> [0,0,1,1] in window frame.
  np.testing.assert_allclose(result.nmsed_boxes.numpy()[1, 0], [0, 0, 1, 1])


def test_nan_scores_are_never_selected():
  scores = SCORES.copy()
  scores[3, 0] = np.nan
  result = _nms(scores=scores)
  # Anchor 3 is gone; anchor 4 (.5) now survives in its place.
  np.testing.assert_allclose(result.get_field(fields.scores).numpy(),
                             [.9, .85, .5, .3], rtol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match='q'):
    post_processing.batch_multiclass_non_max_suppression(
        np.zeros([1, 2, 3, 4], np.float32), np.zeros([1, 2, 2], np.float32),
        0.1, 0.5, 4)
  with pytest.raises(ValueError, match='use_combined_nms'):
    post_processing.batch_multiclass_non_max_suppression(
        BOXES[None], SCORES[None], 0.1, 0.5, 4, soft_nms_sigma=0.5,
        use_combined_nms=True)
  with pytest.raises(ValueError, match='iou_thresh'):
    _nms(iou_thresh=1.5)
  with pytest.raises(ValueError, match='max_size_per_class'):
    _nms(max_size_per_class=0)


def test_score_converters():
  logits = tf.constant([[0.0, 2.0]])
  np.testing.assert_allclose(
      post_processing.get_score_converter('SIGMOID')(logits).numpy(),
      [[0.5, 1 / (1 + math.exp(-2))]], rtol=1e-6)
  # IDENTITY with logit_scale 2 divides: [0, 1].
  np.testing.assert_allclose(
      post_processing.get_score_converter('identity', 2.0)(logits).numpy(),
      [[0.0, 1.0]])
  # SOFTMAX keeps all columns: logits/2 = [0, 1] -> [1, e] / (1 + e).
  np.testing.assert_allclose(
      post_processing.get_score_converter('SOFTMAX', 2.0)(logits).numpy(),
      [[1 / (1 + math.e), math.e / (1 + math.e)]], rtol=1e-6)
  with pytest.raises(ValueError, match='score_converter'):
    post_processing.get_score_converter('RELU')
  with pytest.raises(ValueError, match='logit_scale'):
    post_processing.get_score_converter('SIGMOID', 0.0)


def test_combined_and_regular_agree_on_random_class_specific_boxes():
  rng = np.random.RandomState(0)
  corners = rng.uniform(0, 1, size=(2, 30, 3, 2, 2)).astype(np.float32)
  mins, maxs = corners.min(axis=3), corners.max(axis=3)
  boxes = np.concatenate([mins, maxs], axis=-1)  # [2, 30, 3, 4] valid yxyx
  scores = rng.uniform(0, 1, size=(2, 30, 3)).astype(np.float32)
  kwargs = dict(score_thresh=0.2, iou_thresh=0.4, max_size_per_class=5,
                max_total_size=10)
  regular = post_processing.batch_multiclass_non_max_suppression(
      boxes, scores, **kwargs)
  combined = post_processing.batch_multiclass_non_max_suppression(
      boxes, scores, use_combined_nms=True, **kwargs)
  np.testing.assert_array_equal(regular.num_detections.numpy(), [10, 10])
  for a, b in zip(regular, combined):
    if a is not None:
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
  # Every detection's score is its anchor's score for its class.
  rows = regular.nmsed_anchor_indices.numpy()[..., None]
  anchor_scores = np.take_along_axis(
      np.take_along_axis(scores, rows, axis=1),
      regular.nmsed_classes.numpy()[..., None], axis=2)[..., 0]
  np.testing.assert_allclose(anchor_scores, regular.nmsed_scores.numpy())


def test_class_agnostic_with_class_specific_boxes():
  # q = 2: each anchor reports the box of its best class.
  boxes = np.array([[[0, 0, 1, 1], [0, 5, 1, 6]],
                    [[0, 2, 1, 3], [0, 8, 1, 9]]], np.float32)
  scores = np.array([[.2, .9], [.6, .1]], np.float32)
  result = _nms(boxes=boxes, scores=scores, use_class_agnostic_nms=True)
  np.testing.assert_allclose(result.get().numpy(),
                             [[0, 5, 1, 6], [0, 2, 1, 3]])
  np.testing.assert_array_equal(result.get_field(fields.classes).numpy(),
                                [1, 0])
