"""Tests of od_meta.meta_architectures.center_net_meta_arch (CenterNetMetaArch)
and of the shared DenseHeatmapMetaArch base.

Tiny real models: ResNet-18 x0.125 + a (16, 16, 16) up-convolution neck,
head_channels 8, 64x64 inputs -> 16x16 maps (output stride R = 4), batch 2;
and a 2-stack hourglass_small x0.25 for intermediate supervision.

Golden numbers use hand-made ("planted") prediction dicts, so they do not
depend on the network's weights. Frames ("Objects as Points", Zhou et al.
2019, Sec. 4): a peak at map location (i, j) with offset (dy, dx) and size
(h, w) (output-stride pixels) is the input-pixel box

  center = ((i + dy) R, (j + dx) R),  box = center -/+ (h R / 2, w R / 2),

normalized by the padded input (64 x 64) and then mapped to the true image
window `[0, 0, true_h / 64, true_w / 64]`.

The losses are paper eq. 1-5: L = L_k + 0.1 L_size + 1 L_off, all divided by
the number of objects N; L_k is the penalty-reduced focal loss
(alpha 2, beta 4) whose positive term at a center is
-(1 - p)^2 log p; with logits of -20 the probability is clipped to 1e-4, so
each center costs -(1 - 1e-4)^2 ln(1e-4) = 9.20850 and every other pixel
(1 - y)^4 p^2 (-ln(1 - p)) <= 1e-12.
"""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import losses
from od_meta.core import standard_fields as fields
from od_meta.feature_extractors import center_net_feature_extractor as cnfe
from od_meta.feature_extractors import hourglass
from od_meta.feature_extractors import resnet_v1_small
from od_meta.feature_extractors import up_convolution_neck
from od_meta.meta_architectures import center_net_meta_arch as cn
from od_meta.meta_architectures import dense_meta_arch
from od_meta.target_assigners import center_net_target_assigner as cnta

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_DET = fields.DetectionResultFields
NUM_CLASSES = 2
SIZE = 64
STRIDE = 4
MAP = SIZE // STRIDE  # 16
BACKGROUND_LOGIT = -10.0  # sigmoid = 4.54e-5
# -(1 - 1e-4)^2 ln(1e-4): focal loss of a center pixel at a clipped p=1e-4.
CENTER_COST = -(1.0 - 1e-4) ** 2 * math.log(1e-4)  # 9.208498...


def _resizer(image):
  image = tf.image.resize(image, [SIZE, SIZE])
  return image, tf.constant([SIZE, SIZE, 3], tf.int32)


def _extractor(kind='resnet'):
  if kind == 'hourglass':
    return cnfe.CenterNetFeatureExtractor(
        backbone=hourglass.hourglass_small(depth_multiplier=0.25))
  return cnfe.CenterNetFeatureExtractor(
      backbone=resnet_v1_small.ResNetV1Small(depth=18,
                                             depth_multiplier=0.125),
      neck=up_convolution_neck.UpConvolutionNeck(num_filters=(16, 16, 16)))


def _keypoint_params(num_keypoints=3, **kwargs):
  return cn.KeypointEstimationParams(
      task_name='kp', num_keypoints=num_keypoints,
      classification_loss=losses.PenaltyReducedLogisticFocalLoss(),
      localization_loss=losses.WeightedL1LocalizationLoss(), **kwargs)


def _build(*, keypoints=None, flip_test=False, kind='resnet',
           score_threshold=0.0, max_detections=100, detection=True,
           extractor=None, assigner_stride=STRIDE, is_training=True):
  """A tiny CenterNetMetaArch; `keypoints` is a KeypointEstimationParams."""
  return cn.CenterNetMetaArch(
      is_training=is_training, num_classes=NUM_CLASSES,
      image_resizer_fn=_resizer,
      feature_extractor=(extractor if extractor is not None else
                         _extractor(kind)),
      target_assigner=cnta.CenterNetTargetAssigner(
          stride=assigner_stride, num_classes=NUM_CLASSES,
          compute_keypoints=keypoints is not None,
          per_keypoint_offset=bool(keypoints and
                                   keypoints.per_keypoint_offset)),
      object_center_params=cn.ObjectCenterParams(
          classification_loss=losses.PenaltyReducedLogisticFocalLoss(),
          max_box_predictions=max_detections,
          center_score_threshold=score_threshold),
      object_detection_params=(cn.ObjectDetectionParams(
          localization_loss=losses.WeightedL1LocalizationLoss())
                               if detection else None),
      keypoint_params=keypoints, flip_test=flip_test, head_channels=8)


def _planted(model, batch=1, *, num_stacks=1, fill=None):
  """A prediction dict of the model's heads: heatmaps BACKGROUND_LOGIT,
  regressions 0; `fill` maps head name -> list of (stack, b, i, j, values)."""
  pred = {'preprocessed_inputs': tf.zeros([batch, SIZE, SIZE, 3])}
  arrays = {}
  for name, heads in model.prediction_heads.items():
    base = (BACKGROUND_LOGIT if name in (cn.OBJECT_CENTER,
                                         cn.KEYPOINT_HEATMAP) else 0.0)
    arrays[name] = np.full(
        [len(heads), batch, MAP, MAP, heads[0].num_outputs], base,
        np.float32)
    assert len(heads) == num_stacks
  for name, entries in (fill or {}).items():
    for stack, b, i, j, values in entries:
      arrays[name][stack, b, i, j] = values
  for name, array in arrays.items():
    pred[name] = [tf.constant(a) for a in array]
  return pred


def _shapes(*rows):
  return tf.constant([list(r) for r in rows], tf.int32)


FULL = (SIZE, SIZE, 3)
# The golden object: input-pixel box y 10..34, x 22..38 (center (22, 30)),
# i.e. center / R = (5.5, 7.5) -> location (5, 7), offset (0.5, 0.5),
# size (24, 16) / R = (6, 4).
GT_BOX = np.array([[10 / 64, 22 / 64, 34 / 64, 38 / 64]], np.float32)
# Its keypoints, input pixels (14, 26), (30, 34), (22, 30) -> / R =
# (3.5, 6.5), (7.5, 8.5), (5.5, 7.5): regression from the integer center
# (5, 7) = (-1.5, -0.5), (2.5, 1.5), (0.5, 0.5); offsets (0.5, 0.5) each,
# at three distinct pixels (3, 6), (7, 8), (5, 7).
GT_KEYPOINTS = np.array([[[14, 26], [30, 34], [22, 30]]], np.float32) / 64


# ----------------------------------------------------------------- predict
@pytest.mark.parametrize('use_tf_function', [False, True])
def test_predict_shapes_and_head_count(use_tf_function):
  model = _build(keypoints=_keypoint_params())

  def run(images):
    preprocessed, shapes = model.preprocess(images)
    return model.predict(preprocessed, shapes, training=False), shapes

  if use_tf_function:
    run = tf.function(run)
  # 48x80 raw images go through the config's resizer to 64x64.
  pred, shapes = run(tf.random.uniform([2, 48, 80, 3], maxval=255.0))
  np.testing.assert_array_equal(shapes.numpy(), [FULL, FULL])
  assert pred['preprocessed_inputs'].shape == (2, SIZE, SIZE, 3)
  expected = {cn.OBJECT_CENTER: NUM_CLASSES, cn.BOX_SCALE: 2,
              cn.BOX_OFFSET: 2, cn.KEYPOINT_HEATMAP: 3,
              cn.KEYPOINT_REGRESSION: 6, cn.KEYPOINT_OFFSET: 2}
  assert set(pred) == set(expected) | {'preprocessed_inputs'}
  for name, channels in expected.items():
    assert len(pred[name]) == 1, name
    assert pred[name][0].shape == (2, MAP, MAP, channels), name
    assert len(model.prediction_heads[name]) == 1
  assert model.stride == STRIDE


def test_heatmap_heads_start_at_the_prior():
  # Final bias -2.19 (sigmoid 0.1, Sec. 4 / RetinaNet prior) on heatmap
  # heads, 0 on regression heads.
  model = _build(keypoints=_keypoint_params())
  model.predict(*model.preprocess(tf.zeros([1, SIZE, SIZE, 3])))
  for name, heads in model.prediction_heads.items():
    bias = heads[0]._output_conv.bias.numpy()
    expected = -2.19 if name in (cn.OBJECT_CENTER, cn.KEYPOINT_HEATMAP) else 0
    np.testing.assert_allclose(bias, expected, atol=1e-6, err_msg=name)


def test_preprocess_keeps_given_true_shapes_and_rejects_bad_rank():
  model = _build()
  preprocessed, shapes = model.preprocess(tf.fill([1, SIZE, SIZE, 3], 255.0),
                                          _shapes((32, 48, 3)))
  np.testing.assert_array_equal(shapes.numpy(), [[32, 48, 3]])
  np.testing.assert_allclose(preprocessed.numpy(), 1.0)  # 255 / 127.5 - 1
  with pytest.raises(ValueError, match='batch, height, width, 3'):
    model.preprocess(tf.zeros([SIZE, SIZE, 3]))


def test_restore_map():
  model = _build()
  assert model.restore_map('feature_extractor') == {
      'feature_extractor': model.feature_extractor}
  assert model.restore_map('classification') == {
      'feature_extractor': model.feature_extractor}
  assert model.restore_map('detection') == {'model': model}


# --------------------------------------------------------------------- loss
def test_real_model_loss_keys_and_finiteness():
  model = _build()
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
  pred = model.predict(preprocessed, shapes, training=True)
  model.provide_groundtruth(
      [tf.constant(GT_BOX), tf.constant([[0.5, 0.5, 0.9, 0.8],
                                         [0.1, 0.6, 0.3, 0.95]])],
      [tf.constant([1]), tf.constant([0, 1])])
  out = model.loss(pred, shapes)
  assert set(out) == {'Loss/object_center', 'Loss/box/scale',
                      'Loss/box/offset'}
  for name, value in out.items():
    assert value.shape == (), name
    assert np.isfinite(value.numpy()) and value.numpy() > 0, name


def test_loss_golden_numbers():
  # Planted: heatmap logits -20 everywhere (p clipped to 1e-4), sizes and
  # offsets 0. One object (GT_BOX), N = 1:
  #   L_k = CENTER_COST (its center pixel; the rest <= 1e-12 each);
  #   L_size = |0 - 6| + |0 - 4| = 10, times lambda_size 0.1 = 1.0;
  #   L_off = |0 - 0.5| + |0 - 0.5| = 1.0.
  model = _build()
  pred = _planted(model)
  pred[cn.OBJECT_CENTER] = [tf.fill([1, MAP, MAP, NUM_CLASSES], -20.0)]
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])])
  out = model.loss(pred, _shapes(FULL))
  assert out['Loss/object_center'].numpy() == pytest.approx(CENTER_COST,
                                                            rel=1e-5)
  assert out['Loss/box/scale'].numpy() == pytest.approx(1.0, rel=1e-6)
  assert out['Loss/box/offset'].numpy() == pytest.approx(1.0, rel=1e-6)
  # Predicting the targets exactly (size (6, 4), offset (0.5, 0.5) at
  # (5, 7)) zeroes both regression losses.
  pred = _planted(model, fill={cn.BOX_SCALE: [(0, 0, 5, 7, [6.0, 4.0])],
                               cn.BOX_OFFSET: [(0, 0, 5, 7, [0.5, 0.5])]})
  out = model.loss(pred, _shapes(FULL))
  assert out['Loss/box/scale'].numpy() == pytest.approx(0.0, abs=1e-6)
  assert out['Loss/box/offset'].numpy() == pytest.approx(0.0, abs=1e-6)


def test_loss_is_normalized_by_objects_of_the_whole_batch():
  # Image 0 holds GT_BOX, image 1 the same box twice shifted to another
  # center (rows 34..58 -> center 46 / 4 = 11.5, location 11, same size):
  # N = 3 objects; zero size predictions cost 10 each -> 0.1 * 30 / 3 = 1.
  model = _build()
  shifted = GT_BOX + np.array([[24, 0, 24, 0]], np.float32) / 64
  model.provide_groundtruth(
      [tf.constant(GT_BOX), tf.constant(np.concatenate([GT_BOX, shifted]))],
      [tf.constant([1]), tf.constant([0, 1])])
  out = model.loss(_planted(model, 2), _shapes(FULL, FULL))
  assert out['Loss/box/scale'].numpy() == pytest.approx(1.0, rel=1e-6)


def test_groundtruth_is_mapped_from_the_true_window_to_the_padded_frame():
  # True window 32x32 of the 64x64 padded input; box [0, 0, 1, 1] of the
  # window is [0, 0, 32, 32] input pixels: size 32 / 4 = (8, 8), center
  # (16, 16) / 4 = (4, 4) exactly (offset 0). Zero predictions:
  # L_size = 0.1 * (8 + 8) = 1.6, L_off = 0. On the full window the same
  # normalized box is 64 px: size (16, 16) -> 3.2.
  model = _build()
  model.provide_groundtruth([tf.constant([[0.0, 0.0, 1.0, 1.0]])],
                            [tf.constant([0])])
  pred = _planted(model)
  out = model.loss(pred, _shapes((32, 32, 3)))
  assert out['Loss/box/scale'].numpy() == pytest.approx(1.6, rel=1e-6)
  assert out['Loss/box/offset'].numpy() == pytest.approx(0.0, abs=1e-6)
  out = model.loss(pred, _shapes(FULL))
  assert out['Loss/box/scale'].numpy() == pytest.approx(3.2, rel=1e-6)


def test_empty_groundtruth_gives_a_finite_loss():
  model = _build(keypoints=_keypoint_params())
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
  pred = model.predict(preprocessed, shapes, training=True)
  model.provide_groundtruth(
      [tf.zeros([0, 4]), tf.zeros([0, 4])],
      [tf.zeros([0], tf.int32), tf.zeros([0], tf.int32)],
      groundtruth_keypoints_list=[tf.zeros([0, 3, 2]), tf.zeros([0, 3, 2])])
  out = model.loss(pred, shapes)
  for name, value in out.items():
    assert np.isfinite(value.numpy()), name
  # No object: nothing to regress; the heatmaps still learn the background
  # (normalized by max(N, 1) = 1).
  for name in ('Loss/box/scale', 'Loss/box/offset',
               'Loss/kp/keypoint_regression', 'Loss/kp/keypoint_offset'):
    assert out[name].numpy() == 0.0, name
  assert out['Loss/object_center'].numpy() > 0
  assert out['Loss/kp/keypoint_heatmap'].numpy() > 0


def test_loss_gradients_are_finite():
  model = _build()
  images = tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0)
  model.provide_groundtruth([tf.constant(GT_BOX), tf.zeros([0, 4])],
                            [tf.constant([1]), tf.zeros([0], tf.int32)])
  with tf.GradientTape() as tape:
    preprocessed, shapes = model.preprocess(images)
    out = model.loss(model.predict(preprocessed, shapes, training=True),
                     shapes)
    total = tf.add_n(list(out.values()))
  grads = tape.gradient(total, model.trainable_variables)
  assert len(grads) == len(model.trainable_variables) > 0
  assert all(g is not None for g in grads)
  assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_keypoint_loss_keys_and_golden_numbers():
  # Planted zero regressions and keypoint heatmap logits -20; GT_KEYPOINTS
  # (module constants) land on 3 distinct pixels, so the normalizer is 3:
  #   regression: (1.5 + 0.5 + 2.5 + 1.5 + 0.5 + 0.5) / 3 = 7 / 3;
  #   offset: 3 * (0.5 + 0.5) / 3 = 1;
  #   heatmap: 3 keypoint peaks of CENTER_COST each / 3 = CENTER_COST.
  model = _build(keypoints=_keypoint_params())
  pred = _planted(model)
  pred[cn.KEYPOINT_HEATMAP] = [tf.fill([1, MAP, MAP, 3], -20.0)]
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])],
                            groundtruth_keypoints_list=[
                                tf.constant(GT_KEYPOINTS)])
  out = model.loss(pred, _shapes(FULL))
  assert set(out) == {
      'Loss/object_center', 'Loss/box/scale', 'Loss/box/offset',
      'Loss/kp/keypoint_heatmap', 'Loss/kp/keypoint_regression',
      'Loss/kp/keypoint_offset'}
  assert out['Loss/kp/keypoint_regression'].numpy() == pytest.approx(
      7.0 / 3.0, rel=1e-5)
  assert out['Loss/kp/keypoint_offset'].numpy() == pytest.approx(1.0,
                                                                 rel=1e-5)
  assert out['Loss/kp/keypoint_heatmap'].numpy() == pytest.approx(
      CENTER_COST, rel=1e-5)
  # Invisible keypoints are not supervised: hiding keypoint 1 (regression
  # 2.5 + 1.5) leaves (2 + 1) / 2 and offsets 2 / 2.
  model.provide_groundtruth(
      [tf.constant(GT_BOX)], [tf.constant([1])],
      groundtruth_keypoints_list=[tf.constant(GT_KEYPOINTS)],
      groundtruth_keypoint_visibilities_list=[
          tf.constant([[True, False, True]])])
  out = model.loss(pred, _shapes(FULL))
  assert out['Loss/kp/keypoint_regression'].numpy() == pytest.approx(
      1.5, rel=1e-5)
  assert out['Loss/kp/keypoint_offset'].numpy() == pytest.approx(1.0,
                                                                 rel=1e-5)


def test_keypoint_loss_weights_scale_the_terms():
  params = _keypoint_params(task_loss_weight=2.0,
                            keypoint_regression_loss_weight=0.5,
                            keypoint_offset_loss_weight=3.0)
  model = _build(keypoints=params)
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])],
                            groundtruth_keypoints_list=[
                                tf.constant(GT_KEYPOINTS)])
  out = model.loss(_planted(model), _shapes(FULL))
  # 2 * 0.5 * 7/3 and 2 * 3 * 1.
  assert out['Loss/kp/keypoint_regression'].numpy() == pytest.approx(
      7.0 / 3.0, rel=1e-5)
  assert out['Loss/kp/keypoint_offset'].numpy() == pytest.approx(6.0,
                                                                 rel=1e-5)


def test_keypoint_task_needs_groundtruth_keypoints():
  model = _build(keypoints=_keypoint_params())
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])])
  with pytest.raises(ValueError, match='groundtruth_keypoints'):
    model.loss(_planted(model), _shapes(FULL))


def test_keypoint_class_id_restricts_the_supervision():
  # GT_BOX is class 1. With class_id=0 its keypoints are not supervised:
  # regression and offset losses are exactly 0; with class_id=1 they are
  # the golden 7/3 and 1 of the previous test.
  for class_id, regression, offset in ((0, 0.0, 0.0), (1, 7.0 / 3.0, 1.0)):
    model = _build(keypoints=_keypoint_params(class_id=class_id))
    model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])],
                              groundtruth_keypoints_list=[
                                  tf.constant(GT_KEYPOINTS)])
    out = model.loss(_planted(model), _shapes(FULL))
    assert out['Loss/kp/keypoint_regression'].numpy() == pytest.approx(
        regression, rel=1e-5, abs=1e-7), class_id
    assert out['Loss/kp/keypoint_offset'].numpy() == pytest.approx(
        offset, rel=1e-5, abs=1e-7), class_id


def test_per_keypoint_offset_head_and_loss():
  # 2K offset channels; each keypoint type is trained on its own pair at
  # its own pixel: 3 * (0.5 + 0.5) / 3 = 1 with zero predictions, 0 when
  # the pairs of the right types are planted.
  model = _build(keypoints=_keypoint_params(per_keypoint_offset=True))
  assert model.prediction_heads[cn.KEYPOINT_OFFSET][0].num_outputs == 6
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])],
                            groundtruth_keypoints_list=[
                                tf.constant(GT_KEYPOINTS)])
  out = model.loss(_planted(model), _shapes(FULL))
  assert out['Loss/kp/keypoint_offset'].numpy() == pytest.approx(1.0,
                                                                 rel=1e-5)
  exact = _planted(model, fill={cn.KEYPOINT_OFFSET: [
      (0, 0, 3, 6, [0.5, 0.5, 9, 9, 9, 9]),
      (0, 0, 7, 8, [9, 9, 0.5, 0.5, 9, 9]),
      (0, 0, 5, 7, [9, 9, 9, 9, 0.5, 0.5])]})
  out = model.loss(exact, _shapes(FULL))
  assert out['Loss/kp/keypoint_offset'].numpy() == pytest.approx(0.0,
                                                                 abs=1e-6)


# -------------------------------------------------------------- postprocess
# Planted object: class 1 peak at (5, 7) (logit 10), size (6, 4), offset
# (0.5, 0.25), R = 4: center ((5 + 0.5) 4, (7 + 0.25) 4) = (22, 29),
# half size (6 * 4 / 2, 4 * 4 / 2) = (12, 8) -> box [10, 21, 34, 37] input
# pixels.
PEAK = {cn.OBJECT_CENTER: [(0, 0, 5, 7, [BACKGROUND_LOGIT, 10.0])],
        cn.BOX_SCALE: [(0, 0, 5, 7, [6.0, 4.0])],
        cn.BOX_OFFSET: [(0, 0, 5, 7, [0.5, 0.25])]}
PEAK_BOX_PIXELS = np.array([10.0, 21.0, 34.0, 37.0])
PEAK_SCORE = 1.0 / (1.0 + math.exp(-10.0))


@pytest.mark.parametrize('use_tf_function', [False, True])
def test_postprocess_decodes_a_planted_box(use_tf_function):
  model = _build(score_threshold=0.1, max_detections=5)
  postprocess = model.postprocess
  if use_tf_function:
    postprocess = tf.function(postprocess)
  det = postprocess(_planted(model, fill=PEAK), _shapes(FULL))
  assert det[_DET.detection_boxes].shape == (1, 5, 4)
  assert det[_DET.detection_scores].shape == (1, 5)
  assert det[_DET.detection_classes].dtype == tf.float32
  np.testing.assert_array_equal(det[_DET.num_detections].numpy(), [1.0])
  # [10, 21, 34, 37] / 64.
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             [0.15625, 0.328125, 0.53125, 0.578125],
                             atol=1e-6)
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             PEAK_BOX_PIXELS / SIZE, atol=1e-6)
  assert det[_DET.detection_scores].numpy()[0, 0] == pytest.approx(
      PEAK_SCORE, rel=1e-6)
  assert det[_DET.detection_classes].numpy()[0, 0] == 1.0
  # Rows past num_detections are zeros.
  for key in (_DET.detection_boxes, _DET.detection_scores,
              _DET.detection_classes):
    np.testing.assert_array_equal(det[key].numpy()[0, 1:], 0.0, err_msg=key)


def test_postprocess_maps_boxes_to_the_true_window():
  model = _build(score_threshold=0.1, max_detections=5)
  pred = _planted(model, 2, fill={
      name: entries + [(0, 1) + e[2:] for e in entries]
      for name, entries in PEAK.items()})
  # Image 0: true window 48x48 of the 64x64 input: [10, 21, 34, 37] / 48.
  # Image 1: true window 32x48 (h x w): ymax 34 / 32 > 1 is clipped to 1.
  det = model.postprocess(pred, _shapes((48, 48, 3), (32, 48, 3)))
  boxes = det[_DET.detection_boxes].numpy()
  np.testing.assert_allclose(boxes[0, 0], PEAK_BOX_PIXELS / 48.0, atol=1e-6)
  np.testing.assert_allclose(
      boxes[1, 0], [10 / 32, 21 / 48, 1.0, 37 / 48], atol=1e-6)
  np.testing.assert_array_equal(det[_DET.num_detections].numpy(), [1, 1])


def test_postprocess_top_k_peaks_without_nms():
  # Two peaks 2 cells apart both survive the 3x3 max-pool (no NMS); a
  # neighbour of a peak with a lower score is suppressed. Default
  # threshold 0: every plateau cell of the background is a peak too, so
  # num_detections = max_box_predictions.
  model = _build(max_detections=4)
  pred = _planted(model, fill={cn.OBJECT_CENTER: [
      (0, 0, 5, 7, [BACKGROUND_LOGIT, 3.0]),
      (0, 0, 5, 8, [2.0, BACKGROUND_LOGIT]),  # Neighbour, other class: kept.
      (0, 0, 6, 7, [BACKGROUND_LOGIT, 1.0]),  # Neighbour, same class: gone.
      (0, 0, 5, 9, [BACKGROUND_LOGIT, 0.0])]})
  det = model.postprocess(pred, _shapes(FULL))
  scores = det[_DET.detection_scores].numpy()[0]
  sig = lambda x: 1.0 / (1.0 + math.exp(-x))
  np.testing.assert_allclose(scores[:3], [sig(3.0), sig(2.0), sig(0.0)],
                             rtol=1e-6)
  np.testing.assert_array_equal(det[_DET.detection_classes].numpy()[0, :3],
                                [1, 0, 1])
  np.testing.assert_array_equal(det[_DET.num_detections].numpy(), [4])
  assert scores[3] == pytest.approx(sig(BACKGROUND_LOGIT), rel=1e-5)


def test_real_model_postprocess_shapes_and_ranges():
  model = _build(max_detections=7, is_training=False)
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
  det = model.postprocess(model.predict(preprocessed, shapes), shapes)
  assert set(det) == {_DET.detection_boxes, _DET.detection_scores,
                      _DET.detection_classes, _DET.num_detections}
  assert det[_DET.detection_boxes].shape == (2, 7, 4)
  boxes = det[_DET.detection_boxes].numpy()
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0
  assert (boxes[..., 2] >= boxes[..., 0]).all()
  classes = det[_DET.detection_classes].numpy()
  assert ((classes >= 0) & (classes < NUM_CLASSES)).all()
  # Threshold 0: every local maximum (3x3) of the heatmap is kept, up to 7.
  num = det[_DET.num_detections].numpy()
  assert ((num >= 1) & (num <= 7)).all()


def test_heatmap_only_model_detects_points():
  # object_detection_params=None: no size / offset heads; a detection is
  # the peak location itself, (5, 7) * 4 = (20, 28) input pixels.
  model = _build(detection=False, score_threshold=0.1)
  assert set(model.prediction_heads) == {cn.OBJECT_CENTER}
  det = model.postprocess(
      _planted(model, fill={cn.OBJECT_CENTER: PEAK[cn.OBJECT_CENTER]}),
      _shapes(FULL))
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             [20 / 64, 28 / 64, 20 / 64, 28 / 64], atol=1e-6)
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])])
  assert set(model.loss(_planted(model), _shapes(FULL))) == {
      'Loss/object_center'}


# ---------------------------------------------------------------- keypoints
# Keypoint golden, with the PEAK object (center location (5, 7), box
# [2.5, 5.25, 8.5, 9.25] output pixels):
#   kp 0: regression (-2, -1) -> (3, 6); keypoint heatmap peak at (3, 6)
#     (logit 5) with offset (0.25, 0.5): candidate (3.25, 6.5), inside the
#     1.2-scaled box and 0.56 < 0.3 * max(6, 4) = 1.8 from the regression:
#     snapped to (3.25, 6.5) with score sigmoid(5);
#   kp 1: regression (1, 1) -> (6, 8); no candidate above 0.1 -> kept,
#     score unmatched_keypoint_score 0.1;
#   kp 2: regression (0, 3) -> (5, 10); a candidate at (5, 13) (logit 5)
#     is 3 > 1.8 away -> kept at (5, 10), score 0.1.
# Normalized: output pixel / 16 (full window).
KEYPOINT_FILL = dict(PEAK, **{
    cn.KEYPOINT_REGRESSION: [(0, 0, 5, 7, [-2, -1, 1, 1, 0, 3])],
    cn.KEYPOINT_HEATMAP: [(0, 0, 3, 6, [5.0, BACKGROUND_LOGIT,
                                        BACKGROUND_LOGIT]),
                          (0, 0, 5, 13, [BACKGROUND_LOGIT, BACKGROUND_LOGIT,
                                         5.0])],
    cn.KEYPOINT_OFFSET: [(0, 0, 3, 6, [0.25, 0.5])]})
KEYPOINTS_OUT = np.array([[3.25, 6.5], [6.0, 8.0], [5.0, 10.0]])
KEYPOINT_SCORES = np.array([1.0 / (1.0 + math.exp(-5.0)), 0.1, 0.1])


@pytest.mark.parametrize('use_tf_function', [False, True])
def test_keypoints_snap_to_heatmap_peaks(use_tf_function):
  model = _build(keypoints=_keypoint_params(), score_threshold=0.1,
                 max_detections=4)
  postprocess = model.postprocess
  if use_tf_function:
    postprocess = tf.function(postprocess)
  det = postprocess(_planted(model, fill=KEYPOINT_FILL), _shapes(FULL))
  assert det[_DET.detection_keypoints].shape == (1, 4, 3, 2)
  assert det[_DET.detection_keypoint_scores].shape == (1, 4, 3)
  np.testing.assert_allclose(det[_DET.detection_keypoints].numpy()[0, 0],
                             KEYPOINTS_OUT / MAP, atol=1e-6)
  np.testing.assert_allclose(
      det[_DET.detection_keypoint_scores].numpy()[0, 0], KEYPOINT_SCORES,
      rtol=1e-5)
  # Padding rows are zeros.
  np.testing.assert_array_equal(det[_DET.detection_keypoints].numpy()[0, 1:],
                                0.0)
  np.testing.assert_array_equal(
      det[_DET.detection_keypoint_scores].numpy()[0, 1:], 0.0)


def test_keypoints_are_mapped_to_the_true_window():
  # 48x48 true window: output pixel * 4 / 48.
  model = _build(keypoints=_keypoint_params(), score_threshold=0.1,
                 max_detections=4)
  det = model.postprocess(_planted(model, fill=KEYPOINT_FILL),
                          _shapes((48, 48, 3)))
  np.testing.assert_allclose(det[_DET.detection_keypoints].numpy()[0, 0],
                             KEYPOINTS_OUT * STRIDE / 48.0, atol=1e-6)


def test_per_keypoint_offsets_are_read_from_their_own_channels():
  model = _build(keypoints=_keypoint_params(per_keypoint_offset=True),
                 score_threshold=0.1, max_detections=2)
  fill = dict(KEYPOINT_FILL)
  # Type 0 reads channels (0, 1); the other pairs must be ignored.
  fill[cn.KEYPOINT_OFFSET] = [(0, 0, 3, 6, [0.25, 0.5, 0.9, 0.9, 0.9, 0.9])]
  det = model.postprocess(_planted(model, fill=fill), _shapes(FULL))
  np.testing.assert_allclose(det[_DET.detection_keypoints].numpy()[0, 0],
                             KEYPOINTS_OUT / MAP, atol=1e-6)


def test_keypoint_class_id_restricts_detected_keypoints():
  # Peaks of class 1 (the PEAK) and class 0 at (12, 12); with class_id=1
  # only the class-1 detection carries keypoints, the other gets zeros.
  model = _build(keypoints=_keypoint_params(class_id=1), score_threshold=0.1,
                 max_detections=3)
  fill = dict(KEYPOINT_FILL)
  fill[cn.OBJECT_CENTER] = KEYPOINT_FILL[cn.OBJECT_CENTER] + [
      (0, 0, 12, 12, [9.0, BACKGROUND_LOGIT])]
  fill[cn.BOX_SCALE] = KEYPOINT_FILL[cn.BOX_SCALE] + [
      (0, 0, 12, 12, [2.0, 2.0])]
  fill[cn.KEYPOINT_REGRESSION] = KEYPOINT_FILL[cn.KEYPOINT_REGRESSION] + [
      (0, 0, 12, 12, [1, 1, 1, 1, 1, 1])]
  det = model.postprocess(_planted(model, fill=fill), _shapes(FULL))
  classes = det[_DET.detection_classes].numpy()[0]
  np.testing.assert_array_equal(classes[:2], [1, 0])  # logit 10 > 9.
  np.testing.assert_array_equal(det[_DET.num_detections].numpy(), [2])
  np.testing.assert_allclose(det[_DET.detection_keypoints].numpy()[0, 0],
                             KEYPOINTS_OUT / MAP, atol=1e-6)
  np.testing.assert_array_equal(det[_DET.detection_keypoints].numpy()[0, 1],
                                0.0)
  np.testing.assert_array_equal(
      det[_DET.detection_keypoint_scores].numpy()[0, 1], 0.0)


def test_real_keypoint_model_outputs():
  model = _build(keypoints=_keypoint_params(), max_detections=6,
                 is_training=False)
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
  det = model.postprocess(model.predict(preprocessed, shapes), shapes)
  keypoints = det[_DET.detection_keypoints].numpy()
  scores = det[_DET.detection_keypoint_scores].numpy()
  assert keypoints.shape == (2, 6, 3, 2)
  assert scores.shape == (2, 6, 3)
  assert keypoints.min() >= 0.0 and keypoints.max() <= 1.0
  assert np.isfinite(scores).all()
  assert ((scores >= 0.0) & (scores <= 1.0)).all()


# ---------------------------------------------------------------- flip test
def test_flip_test_predict_runs_the_mirrored_batch():
  model = _build(flip_test=True, is_training=False)
  images = tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0)
  preprocessed, shapes = model.preprocess(images)
  pred = model.predict(preprocessed, shapes, training=False)
  assert pred[cn.OBJECT_CENTER + '_flipped'].shape == (2, MAP, MAP,
                                                       NUM_CLASSES)
  assert pred[cn.BOX_SCALE + '_flipped'].shape == (2, MAP, MAP, 2)
  assert pred[cn.OBJECT_CENTER][0].shape == (2, MAP, MAP, NUM_CLASSES)
  # The flipped maps are the plain forward pass of the mirrored images.
  base = dense_meta_arch.DenseHeatmapMetaArch.predict
  plain = base(model, preprocessed, shapes, training=False)
  mirrored = base(model, tf.reverse(preprocessed, axis=[2]), shapes,
                  training=False)
  np.testing.assert_allclose(pred[cn.OBJECT_CENTER][0].numpy(),
                             plain[cn.OBJECT_CENTER][0].numpy(), atol=1e-4)
  np.testing.assert_allclose(pred[cn.OBJECT_CENTER + '_flipped'].numpy(),
                             mirrored[cn.OBJECT_CENTER][0].numpy(), atol=1e-4)
  np.testing.assert_allclose(pred[cn.BOX_SCALE + '_flipped'].numpy(),
                             mirrored[cn.BOX_SCALE][0].numpy(), atol=1e-4)
  det = model.postprocess(pred, shapes)
  assert det[_DET.detection_boxes].shape == (2, 100, 4)
  assert np.isfinite(det[_DET.detection_boxes].numpy()).all()
  # In training the mirrored pass is skipped.
  train_pred = model.predict(preprocessed, shapes, training=True)
  assert cn.OBJECT_CENTER + '_flipped' not in train_pred


def test_flip_test_with_mirror_symmetric_maps_gives_the_same_boxes():
  # Flipped maps that are exactly the mirror of the original ones average
  # to the original heatmap and sizes: same detections as without them.
  model = _build(flip_test=True, score_threshold=0.1, max_detections=5)
  pred = _planted(model, fill=PEAK)
  flipped = dict(pred)
  flipped[cn.OBJECT_CENTER + '_flipped'] = tf.reverse(
      pred[cn.OBJECT_CENTER][0], axis=[2])
  flipped[cn.BOX_SCALE + '_flipped'] = tf.reverse(pred[cn.BOX_SCALE][0],
                                                  axis=[2])
  with_flip = model.postprocess(flipped, _shapes(FULL))
  without = model.postprocess(pred, _shapes(FULL))
  for key in without:
    np.testing.assert_allclose(with_flip[key].numpy(), without[key].numpy(),
                               atol=1e-6, err_msg=key)
  np.testing.assert_allclose(with_flip[_DET.detection_boxes].numpy()[0, 0],
                             PEAK_BOX_PIXELS / SIZE, atol=1e-6)


def test_flip_test_averages_heatmaps_and_sizes_not_offsets():
  # The mirrored image sees the object at column 15 - 7 = 8 with logit 0
  # (p = 0.5) and size (8, 4). Merged: score (sigmoid(10) + 0.5) / 2, size
  # ((6 + 8) / 2, 4) = (7, 4), offset (0.5, 0.25) of the original only:
  # center (22, 29), half (14, 8) -> box [8, 21, 36, 37] input pixels.
  model = _build(flip_test=True, score_threshold=0.1, max_detections=5)
  pred = _planted(model, fill=PEAK)
  heat = np.full([1, MAP, MAP, NUM_CLASSES], BACKGROUND_LOGIT, np.float32)
  heat[0, 5, 8, 1] = 0.0
  size = np.zeros([1, MAP, MAP, 2], np.float32)
  size[0, 5, 8] = [8.0, 4.0]
  pred[cn.OBJECT_CENTER + '_flipped'] = tf.constant(heat)
  pred[cn.BOX_SCALE + '_flipped'] = tf.constant(size)
  det = model.postprocess(pred, _shapes(FULL))
  assert det[_DET.detection_scores].numpy()[0, 0] == pytest.approx(
      (PEAK_SCORE + 0.5) / 2.0, rel=1e-5)
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             np.array([8, 21, 36, 37]) / 64.0, atol=1e-6)


FLIP_PERMUTATION = [0, 2, 1]  # e.g. nose, left_eye, right_eye


def _mirror_keypoint_maps(pred):
  """The keypoint maps the mirrored image would give for `pred`'s scene:
  width reversed, mirrored type k = original type FLIP_PERMUTATION[k], dx
  negated."""
  heat = pred[cn.KEYPOINT_HEATMAP][0].numpy()[:, :, ::-1]
  reg = pred[cn.KEYPOINT_REGRESSION][0].numpy()[:, :, ::-1]
  reg = reg.reshape(reg.shape[:3] + (3, 2)) * np.array([1.0, -1.0])
  return (tf.constant(heat[..., FLIP_PERMUTATION]),
          tf.constant(reg[:, :, :, FLIP_PERMUTATION].reshape(
              reg.shape[:3] + (6,))))


def _flip_keypoint_model():
  return _build(keypoints=_keypoint_params(
      keypoint_flip_permutation=FLIP_PERMUTATION), flip_test=True,
                score_threshold=0.1, max_detections=4)


def test_flip_test_with_mirrored_keypoint_maps_gives_the_same_keypoints():
  model = _flip_keypoint_model()
  pred = _planted(model, fill=KEYPOINT_FILL)
  flipped = dict(pred)
  flipped[cn.OBJECT_CENTER + '_flipped'] = tf.reverse(
      pred[cn.OBJECT_CENTER][0], axis=[2])
  flipped[cn.BOX_SCALE + '_flipped'] = tf.reverse(pred[cn.BOX_SCALE][0],
                                                  axis=[2])
  (flipped[cn.KEYPOINT_HEATMAP + '_flipped'],
   flipped[cn.KEYPOINT_REGRESSION + '_flipped']) = _mirror_keypoint_maps(pred)
  det = model.postprocess(flipped, _shapes(FULL))
  np.testing.assert_allclose(det[_DET.detection_keypoints].numpy()[0, 0],
                             KEYPOINTS_OUT / MAP, atol=1e-6)
  np.testing.assert_allclose(
      det[_DET.detection_keypoint_scores].numpy()[0, 0], KEYPOINT_SCORES,
      rtol=1e-5)


def test_flip_test_averages_keypoint_heatmaps_and_regressions():
  # The mirror sees no keypoint peaks (all background) and regresses type 1
  # (the mirror's type 2) as (3, -3) (dx negated): merged type-1 vector
  # ((1 + 3) / 2, (1 + 3) / 2) = (2, 2) -> (7, 9); merged kp-0 peak score
  # (sigmoid(5) + sigmoid(-10)) / 2, still a candidate above 0.1.
  model = _flip_keypoint_model()
  pred = _planted(model, fill=KEYPOINT_FILL)
  pred[cn.OBJECT_CENTER + '_flipped'] = tf.reverse(
      pred[cn.OBJECT_CENTER][0], axis=[2])
  pred[cn.BOX_SCALE + '_flipped'] = tf.reverse(pred[cn.BOX_SCALE][0],
                                               axis=[2])
  heat = np.full([1, MAP, MAP, 3], BACKGROUND_LOGIT, np.float32)
  reg = np.zeros([1, MAP, MAP, 6], np.float32)
  # Original location (5, 7) -> mirrored column 8; original types
  # (0, 1, 2) -> mirrored channels (0, 2, 1).
  reg[0, 5, 8] = [-2, 1, 0, -3, 3, -3]
  pred[cn.KEYPOINT_HEATMAP + '_flipped'] = tf.constant(heat)
  pred[cn.KEYPOINT_REGRESSION + '_flipped'] = tf.constant(reg)
  det = model.postprocess(pred, _shapes(FULL))
  expected = KEYPOINTS_OUT.copy()
  expected[1] = [7.0, 9.0]
  np.testing.assert_allclose(det[_DET.detection_keypoints].numpy()[0, 0],
                             expected / MAP, atol=1e-6)
  score0 = (1.0 / (1.0 + math.exp(-5.0)) +
            1.0 / (1.0 + math.exp(-BACKGROUND_LOGIT))) / 2.0
  assert det[_DET.detection_keypoint_scores].numpy()[0, 0, 0] == (
      pytest.approx(score0, rel=1e-5))


def test_flip_test_predict_adds_mirrored_keypoint_maps():
  model = _build(keypoints=_keypoint_params(
      keypoint_flip_permutation=FLIP_PERMUTATION), flip_test=True,
                 is_training=False)
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([1, SIZE, SIZE, 3], maxval=255.0))
  pred = model.predict(preprocessed, shapes, training=False)
  base = dense_meta_arch.DenseHeatmapMetaArch.predict
  mirrored = base(model, tf.reverse(preprocessed, axis=[2]), shapes,
                  training=False)
  for name in (cn.KEYPOINT_HEATMAP, cn.KEYPOINT_REGRESSION):
    np.testing.assert_allclose(pred[name + '_flipped'].numpy(),
                               mirrored[name][0].numpy(), atol=1e-4)
  det = model.postprocess(pred, shapes)
  assert np.isfinite(det[_DET.detection_keypoints].numpy()).all()


def test_bad_keypoint_flip_permutation():
  with pytest.raises(ValueError, match='keypoint_flip_permutation'):
    _build(keypoints=_keypoint_params(keypoint_flip_permutation=[0, 1, 1]))


# ---------------------------------------------------------------- hourglass
def test_hourglass_creates_heads_per_stack_and_averages_the_loss():
  model = _build(kind='hourglass')
  assert model.feature_extractor.num_feature_outputs == 2
  for name, heads in model.prediction_heads.items():
    assert len(heads) == 2, name
    assert heads[0] is not heads[1]
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
  pred = model.predict(preprocessed, shapes, training=True)
  for name in model.prediction_heads:
    assert [p.shape[:3] for p in pred[name]] == [(2, MAP, MAP)] * 2, name
  # Separate weights per stack: 3 heads x 2 stacks x (2 convs x 2 vars).
  head_vars = [v for heads in model.prediction_heads.values()
               for h in heads for v in h.trainable_variables]
  assert len(head_vars) == 3 * 2 * 4
  model.provide_groundtruth([tf.constant(GT_BOX)] * 2,
                            [tf.constant([1])] * 2)
  out = model.loss(pred, shapes)
  assert all(np.isfinite(v.numpy()) for v in out.values())
  # Planted: stack 0 predicts zero sizes (L_size = 0.1 * 10 = 1 per
  # object), stack 1 the exact size (0): the mean over stacks is 0.5.
  planted = _planted(model, num_stacks=2,
                     fill={cn.BOX_SCALE: [(1, 0, 5, 7, [6.0, 4.0])]})
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])])
  out = model.loss(planted, _shapes(FULL))
  assert out['Loss/box/scale'].numpy() == pytest.approx(0.5, rel=1e-6)


def test_hourglass_postprocess_decodes_the_last_stack():
  model = _build(kind='hourglass', score_threshold=0.1, max_detections=3)
  # Stack 0 has a peak elsewhere (2, 2); stack 1 holds the PEAK object.
  fill = {name: [(1,) + e[1:] for e in entries]
          for name, entries in PEAK.items()}
  fill[cn.OBJECT_CENTER].append((0, 0, 2, 2, [12.0, BACKGROUND_LOGIT]))
  det = model.postprocess(_planted(model, num_stacks=2, fill=fill),
                          _shapes(FULL))
  np.testing.assert_array_equal(det[_DET.num_detections].numpy(), [1])
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             PEAK_BOX_PIXELS / SIZE, atol=1e-6)


# ------------------------------------------------------------------- errors
def test_assigner_stride_must_match_the_extractor():
  with pytest.raises(ValueError, match='stride'):
    _build(assigner_stride=8)


def test_extractor_needs_an_out_stride():
  class NoStride(tf.keras.layers.Layer):

    def preprocess(self, images):
      return images

  with pytest.raises(ValueError, match='out_stride'):
    _build(extractor=NoStride())


def test_extractor_must_return_the_declared_number_of_maps():
  class TwoMaps(tf.keras.layers.Layer):
    out_stride = 4
    num_feature_outputs = 1

    def preprocess(self, images):
      return images

    def call(self, inputs, training=False):
      del training
      small = tf.nn.avg_pool2d(inputs, 4, 4, 'VALID')
      return [small, small]

  model = _build(extractor=TwoMaps())
  with pytest.raises(ValueError, match='num_feature_outputs'):
    model.predict(tf.zeros([1, SIZE, SIZE, 3]), _shapes(FULL))


def test_loss_and_postprocess_under_tf_function_match_eager():
  model = _build(keypoints=_keypoint_params(), is_training=False)
  images = tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0, seed=3)
  model.provide_groundtruth(
      [tf.constant(GT_BOX), tf.constant(GT_BOX * 1.5)],
      [tf.constant([1]), tf.constant([0])],
      groundtruth_keypoints_list=[tf.constant(GT_KEYPOINTS),
                                  tf.constant(GT_KEYPOINTS * 1.5)])

  def run(images):
    preprocessed, shapes = model.preprocess(images)
    pred = model.predict(preprocessed, shapes, training=False)
    return model.loss(pred, shapes), model.postprocess(pred, shapes)

  eager_losses, eager_det = run(images)
  graph_losses, graph_det = tf.function(run)(images)
  assert set(graph_losses) == set(eager_losses)
  for name in eager_losses:
    assert graph_losses[name].numpy() == pytest.approx(
        eager_losses[name].numpy(), rel=1e-4, abs=1e-6), name
  for name in eager_det:
    np.testing.assert_allclose(graph_det[name].numpy(),
                               eager_det[name].numpy(), atol=1e-4,
                               err_msg=name)


_STATIC_EMPTY_SCRIPT = textwrap.dedent('''
    import sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]  # tests dir, repository root
    import tensorflow as tf
    from test_center_net_meta_arch import (GT_BOX, GT_KEYPOINTS, _build,
                                           _keypoint_params)
    model = _build(keypoints=_keypoint_params(), is_training=False)
    # Groundtruth shapes are static when tracing: [1, 4] and [0, 4].
    empty = (tf.zeros([0, 4]), tf.zeros([0], tf.int32), tf.zeros([0, 3, 2]))
    full = (tf.constant(GT_BOX), tf.constant([1]), tf.constant(GT_KEYPOINTS))
    for batch in ([full, empty], [empty, empty]):
      model.provide_groundtruth(
          [b[0] for b in batch], [b[1] for b in batch],
          groundtruth_keypoints_list=[b[2] for b in batch])

      @tf.function
      def run(images):
        preprocessed, shapes = model.preprocess(images)
        return model.loss(model.predict(preprocessed, shapes), shapes)

      out = run(tf.zeros([2, 64, 64, 3]))
      print('OK', sorted(out), flush=True)
    ''')


def test_tf_function_with_statically_empty_keypoint_groundtruth(tmp_path):
  """Tracing the keypoint loss with zero objects must not kill the process.

  With the default keypoint std devs (all 1), `sigma[:, None] * ones`
  with N = 0 made grappler's ReplaceMulWithBroadcastByTile divide by a zero
  dimension (SIGFPE). Run in a subprocess so that a crash is a failure of
  this test rather than the end of the pytest run.
  """
  script = tmp_path / 'static_empty.py'
  script.write_text(_STATIC_EMPTY_SCRIPT)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, str(script), os.path.dirname(os.path.abspath(
          __file__)), _REPO],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
      cwd=_REPO, timeout=300, check=False)
  text = proc.stdout.decode(errors='replace')
  assert proc.returncode == 0, (proc.returncode, text[-3000:])
  assert text.count('OK') == 2 and 'Loss/kp/keypoint_heatmap' in text
