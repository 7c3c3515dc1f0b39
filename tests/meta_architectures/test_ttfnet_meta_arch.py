"""Tests of od_meta.meta_architectures.ttfnet_meta_arch (TTFNetMetaArch).

Tiny real model: ResNet-18 x0.125 + a (16, 16, 16) up-convolution neck,
head_channels 8, 64x64 inputs -> 16x16 maps (stride R = 4), batch 2.

TTFNet (Liu et al. 2019, arXiv 1909.00700), Sec. 3: the distance head
predicts (top, left, bottom, right) to the box sides in input pixels as
s * ReLU(raw) with s = 16 (Eq. 4); the location (i, j) sits at input pixel
(4 i + 2, 4 j + 2) (`target_assigner.coordinates_grid`), so

  box = [y - t, x - l, y + b, x + r].

L = w_loc L_heatmap + w_reg L_GIoU (w_loc 1, w_reg 5), L_GIoU =
sum_ij W_ij (1 - GIoU) / (sum_ij W_ij + 1e-4) over the Gaussian sub-areas,
with W summing to log(area) for a box owning its whole sub-area (Eq. 5-6).

Golden numbers come from hand-made ("planted") prediction dicts.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import losses
from od_meta.core import standard_fields as fields
from od_meta.feature_extractors import center_net_feature_extractor as cnfe
from od_meta.feature_extractors import resnet_v1_small
from od_meta.feature_extractors import up_convolution_neck
from od_meta.meta_architectures import ttfnet_meta_arch as tt
from od_meta.target_assigners import ttfnet_target_assigner as ttta

_DET = fields.DetectionResultFields
NUM_CLASSES = 2
SIZE = 64
STRIDE = 4
MAP = SIZE // STRIDE  # 16
BACKGROUND_LOGIT = -10.0
# -(1 - 1e-4)^2 ln(1e-4): penalty-reduced focal loss at a center pixel with
# the probability clipped to 1e-4 (logit -20).
CENTER_COST = -(1.0 - 1e-4) ** 2 * math.log(1e-4)
# A 24 x 16 px box (rows 10..34, cols 22..38), well inside the image.
GT_BOX = np.array([[10 / 64, 22 / 64, 34 / 64, 38 / 64]], np.float32)
FULL = (SIZE, SIZE, 3)


def _resizer(image):
  image = tf.image.resize(image, [SIZE, SIZE])
  return image, tf.constant([SIZE, SIZE, 3], tf.int32)


def _build(*, score_threshold=0.01, max_detections=100, assigner_stride=4,
           is_training=True):
  extractor = cnfe.CenterNetFeatureExtractor(
      backbone=resnet_v1_small.ResNetV1Small(depth=18,
                                             depth_multiplier=0.125),
      neck=up_convolution_neck.UpConvolutionNeck(num_filters=(16, 16, 16)))
  return tt.TTFNetMetaArch(
      is_training=is_training, num_classes=NUM_CLASSES,
      image_resizer_fn=_resizer, feature_extractor=extractor,
      target_assigner=ttta.TTFNetTargetAssigner(
          stride=assigner_stride, num_classes=NUM_CLASSES),
      params=tt.TTFNetParams(
          classification_loss=losses.PenaltyReducedLogisticFocalLoss(),
          localization_loss=losses.WeightedGIOULocalizationLoss(),
          max_box_predictions=max_detections,
          score_threshold=score_threshold),
      head_channels=8)


def _planted(batch=1, *, heatmap_fill=None, distance_fill=None,
             heatmap=None, distances=None):
  """Planted prediction dict; fills are lists of (b, i, j, values)."""
  if heatmap is None:
    heatmap = np.full([batch, MAP, MAP, NUM_CLASSES], BACKGROUND_LOGIT,
                      np.float32)
  if distances is None:
    distances = np.zeros([batch, MAP, MAP, 4], np.float32)
  heatmap = np.array(heatmap, np.float32)
  distances = np.array(distances, np.float32)
  for b, i, j, values in heatmap_fill or ():
    heatmap[b, i, j] = values
  for b, i, j, values in distance_fill or ():
    distances[b, i, j] = values
  return {'preprocessed_inputs': tf.zeros([batch, SIZE, SIZE, 3]),
          tt.HEATMAP: [tf.constant(heatmap)],
          tt.BOX_DISTANCES: [tf.constant(distances)]}


def _shapes(*rows):
  return tf.constant([list(r) for r in rows], tf.int32)


# ----------------------------------------------------------------- predict
@pytest.mark.parametrize('use_tf_function', [False, True])
def test_predict_shapes(use_tf_function):
  model = _build()

  def run(images):
    preprocessed, shapes = model.preprocess(images)
    return model.predict(preprocessed, shapes, training=False), shapes

  if use_tf_function:
    run = tf.function(run)
  pred, shapes = run(tf.random.uniform([2, 48, 80, 3], maxval=255.0))
  np.testing.assert_array_equal(shapes.numpy(), [FULL, FULL])
  assert set(pred) == {'preprocessed_inputs', tt.HEATMAP, tt.BOX_DISTANCES}
  assert [p.shape for p in pred[tt.HEATMAP]] == [(2, MAP, MAP, NUM_CLASSES)]
  assert [p.shape for p in pred[tt.BOX_DISTANCES]] == [(2, MAP, MAP, 4)]
  assert model.stride == STRIDE
  heads = model.prediction_heads
  np.testing.assert_allclose(heads[tt.HEATMAP][0]._output_conv.bias.numpy(),
                             -2.19, atol=1e-6)
  np.testing.assert_allclose(
      heads[tt.BOX_DISTANCES][0]._output_conv.bias.numpy(), 0.0)


def test_distances_are_s_times_relu():
  # Eq. 4: 16 * ReLU(raw): -1 -> 0, 0 -> 0, 0.5 -> 8, 2 -> 32.
  model = _build()
  np.testing.assert_allclose(
      model.distances(tf.constant([-1.0, 0.0, 0.5, 2.0])).numpy(),
      [0.0, 0.0, 8.0, 32.0])


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
  assert set(out) == {'Loss/heatmap', 'Loss/box/giou'}
  for name, value in out.items():
    assert value.shape == ()
    assert np.isfinite(value.numpy()) and value.numpy() > 0, name
  # 1 - GIoU lies in [0, 2], times w_reg 5; the weights are normalized.
  assert out['Loss/box/giou'].numpy() <= 10.0


def _exact_raw_distances(model, shapes):
  """Raw distances whose decoded boxes equal the assigned box targets at
  every weighted pixel (zeros elsewhere), and the targets."""
  targets, _ = model._assign_targets(tf.zeros([1, SIZE, SIZE, 3]), shapes)
  boxes = targets['box_targets'].numpy()[0]  # input pixels
  weights = targets['box_weights'].numpy()[0]
  raw = np.zeros([1, MAP, MAP, 4], np.float32)
  for i, j in zip(*np.nonzero(weights)):
    y, x = 4 * i + 2, 4 * j + 2
    ymin, xmin, ymax, xmax = boxes[i, j]
    raw[0, i, j] = np.array([y - ymin, x - xmin, ymax - y, xmax - x]) / 16.0
  return raw, targets


def test_giou_loss_is_zero_when_boxes_equal_the_targets():
  model = _build()
  model.provide_groundtruth(
      [tf.constant(np.concatenate([GT_BOX, [[0.6, 0.1, 0.95, 0.5]]]))],
      [tf.constant([1, 0])])
  raw, targets = _exact_raw_distances(model, _shapes(FULL))
  weights = targets['box_weights'].numpy()
  assert (weights > 0).sum() > 2  # Several samples per box (Sec. 3.3).
  assert (raw >= 0).all()  # Weighted pixels lie inside their boxes.
  out = model.loss(_planted(distances=raw), _shapes(FULL))
  assert out['Loss/box/giou'].numpy() == pytest.approx(0.0, abs=1e-5)
  # Disturbing one weighted pixel makes it positive.
  i, j = np.argwhere(weights[0] > 0)[0]
  raw[0, i, j, 2] += 0.5
  out = model.loss(_planted(distances=raw), _shapes(FULL))
  assert out['Loss/box/giou'].numpy() > 1e-3


def test_point_predictions_cost_one_per_weighted_sample():
  # Raw distances 0 decode every location to a point box at its center.
  # Inside the target box: IoU 0, the enclosing box is the target, so
  # GIoU = 0 - (C - U) / C = 0 and 1 - GIoU = 1 at every weighted sample:
  # L = 5 * S / (S + 1e-4) with S the summed weights, here one box owning
  # its whole sub-area: S = log(24 * 16) = log(384) (Eq. 5).
  model = _build()
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])])
  targets, _ = model._assign_targets(tf.zeros([1, SIZE, SIZE, 3]),
                                     _shapes(FULL))
  total = float(tf.reduce_sum(targets['box_weights']))
  assert total == pytest.approx(math.log(384.0), rel=1e-5)
  out = model.loss(_planted(), _shapes(FULL))
  assert out['Loss/box/giou'].numpy() == pytest.approx(
      5.0 * total / (total + 1e-4), rel=1e-5)


def test_heatmap_loss_golden():
  # Logits -20 everywhere: one center of cost CENTER_COST, N = 1, w_loc 1.
  model = _build()
  model.provide_groundtruth([tf.constant(GT_BOX)], [tf.constant([1])])
  heatmap = np.full([1, MAP, MAP, NUM_CLASSES], -20.0, np.float32)
  out = model.loss(_planted(heatmap=heatmap), _shapes(FULL))
  assert out['Loss/heatmap'].numpy() == pytest.approx(CENTER_COST, rel=1e-5)


def test_groundtruth_is_mapped_from_the_true_window():
  # Window 32x32 of the padded 64x64 input: the box [0, 0, 1, 1] of the
  # window is 32 x 32 input pixels, S = log(1024); on the full window the
  # same box is 64 x 64: S = log(4096). The box targets (input pixels) at
  # the center location (16 / 4 = 4, resp. 32 / 4 = 8) are the box.
  model = _build()
  model.provide_groundtruth([tf.constant([[0.0, 0.0, 1.0, 1.0]])],
                            [tf.constant([0])])
  for shape, side in (((32, 32, 3), 32.0), (FULL, 64.0)):
    targets, _ = model._assign_targets(tf.zeros([1, SIZE, SIZE, 3]),
                                       _shapes(shape))
    assert float(tf.reduce_sum(targets['box_weights'])) == pytest.approx(
        math.log(side * side), rel=1e-5)
    center = int(side / 2 / STRIDE)
    np.testing.assert_allclose(
        targets['box_targets'].numpy()[0, center, center],
        [0.0, 0.0, side, side], atol=1e-4)


def test_empty_groundtruth_gives_a_finite_loss():
  model = _build()
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
  pred = model.predict(preprocessed, shapes, training=True)
  model.provide_groundtruth([tf.zeros([0, 4]), tf.zeros([0, 4])],
                            [tf.zeros([0], tf.int32),
                             tf.zeros([0], tf.int32)])
  out = model.loss(pred, shapes)
  assert np.isfinite(out['Loss/heatmap'].numpy())
  assert out['Loss/heatmap'].numpy() > 0
  assert out['Loss/box/giou'].numpy() == 0.0


def test_loss_gradients_are_finite():
  model = _build()
  model.provide_groundtruth([tf.constant(GT_BOX), tf.zeros([0, 4])],
                            [tf.constant([1]), tf.zeros([0], tf.int32)])
  with tf.GradientTape() as tape:
    preprocessed, shapes = model.preprocess(
        tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
    out = model.loss(model.predict(preprocessed, shapes, training=True),
                     shapes)
    total = tf.add_n(list(out.values()))
  grads = tape.gradient(total, model.trainable_variables)
  assert grads and all(g is not None for g in grads)
  assert all(np.isfinite(g.numpy()).all() for g in grads)


# -------------------------------------------------------------- postprocess
# Peak of class 0 at (5, 7) (logit 10); raw distances (0.5, 0.75, 1, 0.25)
# -> (8, 12, 16, 4) input pixels; the location's center is
# (4 * 5 + 2, 4 * 7 + 2) = (22, 30): box [22 - 8, 30 - 12, 22 + 16, 30 + 4]
# = [14, 18, 38, 34] input pixels.
PEAK_HEATMAP = [(0, 5, 7, [10.0, BACKGROUND_LOGIT])]
PEAK_DISTANCES = [(0, 5, 7, [0.5, 0.75, 1.0, 0.25])]
PEAK_BOX_PIXELS = np.array([14.0, 18.0, 38.0, 34.0])


@pytest.mark.parametrize('use_tf_function', [False, True])
def test_postprocess_decodes_a_planted_distance_map(use_tf_function):
  model = _build(max_detections=5)
  postprocess = model.postprocess
  if use_tf_function:
    postprocess = tf.function(postprocess)
  det = postprocess(_planted(heatmap_fill=PEAK_HEATMAP,
                             distance_fill=PEAK_DISTANCES), _shapes(FULL))
  assert det[_DET.detection_boxes].shape == (1, 5, 4)
  # The background (sigmoid(-10) = 4.5e-5) is under score_threshold 0.01.
  np.testing.assert_array_equal(det[_DET.num_detections].numpy(), [1.0])
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             [0.21875, 0.28125, 0.59375, 0.53125],
                             atol=1e-6)  # [14, 18, 38, 34] / 64
  assert det[_DET.detection_scores].numpy()[0, 0] == pytest.approx(
      1.0 / (1.0 + math.exp(-10.0)), rel=1e-6)
  assert det[_DET.detection_classes].numpy()[0, 0] == 0.0
  np.testing.assert_array_equal(det[_DET.detection_boxes].numpy()[0, 1:], 0)
  np.testing.assert_array_equal(det[_DET.detection_scores].numpy()[0, 1:],
                                0)


def test_negative_raw_distances_decode_to_the_location_center():
  # ReLU: raw (-1, -1, 0.25, 0.25) -> (0, 0, 4, 4): [22, 30, 26, 34].
  model = _build(max_detections=2)
  det = model.postprocess(
      _planted(heatmap_fill=PEAK_HEATMAP,
               distance_fill=[(0, 5, 7, [-1.0, -1.0, 0.25, 0.25])]),
      _shapes(FULL))
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             np.array([22, 30, 26, 34]) / 64.0, atol=1e-6)


def test_postprocess_maps_boxes_to_the_true_window():
  model = _build(max_detections=3)
  pred = _planted(2, heatmap_fill=PEAK_HEATMAP + [(1,) + PEAK_HEATMAP[0][1:]],
                  distance_fill=PEAK_DISTANCES + [
                      (1,) + PEAK_DISTANCES[0][1:]])
  # Image 0: window 48x48 -> / 48. Image 1: window 32 x 48 (h x w): ymax
  # 38 / 32 > 1 is clipped to 1.
  det = model.postprocess(pred, _shapes((48, 48, 3), (32, 48, 3)))
  boxes = det[_DET.detection_boxes].numpy()
  np.testing.assert_allclose(boxes[0, 0], PEAK_BOX_PIXELS / 48.0, atol=1e-6)
  np.testing.assert_allclose(boxes[1, 0], [14 / 32, 18 / 48, 1.0, 34 / 48],
                             atol=1e-6)


def test_real_model_postprocess_shapes_and_ranges():
  model = _build(max_detections=9, score_threshold=0.0, is_training=False)
  preprocessed, shapes = model.preprocess(
      tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0))
  det = model.postprocess(model.predict(preprocessed, shapes), shapes)
  assert set(det) == {_DET.detection_boxes, _DET.detection_scores,
                      _DET.detection_classes, _DET.num_detections}
  boxes = det[_DET.detection_boxes].numpy()
  assert boxes.shape == (2, 9, 4)
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0
  assert (boxes[..., 2] >= boxes[..., 0]).all()
  assert (boxes[..., 3] >= boxes[..., 1]).all()
  # score_threshold 0: every local maximum of the heatmap is kept, up to 9.
  num = det[_DET.num_detections].numpy()
  assert ((num >= 1) & (num <= 9)).all()


# ------------------------------------------------------------------- errors
def test_assigner_stride_must_match_the_extractor():
  with pytest.raises(ValueError, match='stride'):
    _build(assigner_stride=8)


def test_loss_and_postprocess_under_tf_function_match_eager():
  model = _build(is_training=False, score_threshold=0.0, max_detections=10)
  images = tf.random.uniform([2, SIZE, SIZE, 3], maxval=255.0, seed=1)
  model.provide_groundtruth(
      [tf.constant(GT_BOX), tf.constant([[0.5, 0.5, 0.9, 0.8]])],
      [tf.constant([1]), tf.constant([0])])

  def run(images):
    preprocessed, shapes = model.preprocess(images)
    pred = model.predict(preprocessed, shapes, training=False)
    return model.loss(pred, shapes), model.postprocess(pred, shapes)

  eager_losses, eager_det = run(images)
  graph_losses, graph_det = tf.function(run)(images)
  for name in eager_losses:
    assert graph_losses[name].numpy() == pytest.approx(
        eager_losses[name].numpy(), rel=1e-4, abs=1e-6), name
  for name in eager_det:
    np.testing.assert_allclose(graph_det[name].numpy(),
                               eager_det[name].numpy(), atol=1e-4,
                               err_msg=name)
