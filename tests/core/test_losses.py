"""Golden-value tests for od_meta.core.losses."""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import losses


def _np(t):
  return np.asarray(t.numpy() if hasattr(t, 'numpy') else t)


# ---------------------------------------------------------------- smooth L1


def test_smooth_l1_golden():
  # Fast R-CNN eq. 3 (delta=1): 0.5*0.5^2 + (2.0 - 0.5) = 0.125 + 1.5 = 1.625.
  pred = tf.constant([[[0.5, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
  target = tf.zeros([1, 2, 4])
  weights = tf.constant([[1.0, 1.0]])
  loss = losses.WeightedSmoothL1LocalizationLoss()(pred, target,
                                                   weights=weights)
  assert loss.shape == (1, 2)
  np.testing.assert_allclose(_np(loss), [[1.625, 0.0]], rtol=1e-6)


def test_smooth_l1_delta_and_weights():
  # Huber with delta=0.5: 0.5*0.5^2 = 0.125 ; 0.5*(2 - 0.25) = 0.875 -> 1.0,
  # times weight 3 -> 3.0.
  pred = tf.constant([[[0.5, -2.0, 0.0, 0.0]]])
  loss = losses.WeightedSmoothL1LocalizationLoss(delta=0.5)(
      pred, tf.zeros([1, 1, 4]), weights=tf.constant([[3.0]]))
  np.testing.assert_allclose(_np(loss), [[3.0]], rtol=1e-6)


def test_smooth_l1_per_coordinate_weights():
  # weights [batch, anchors, code]: 1*0.125 + 0*1.5 = 0.125.
  pred = tf.constant([[[0.5, 2.0, 0.0, 0.0]]])
  loss = losses.WeightedSmoothL1LocalizationLoss()(
      pred, tf.zeros([1, 1, 4]), weights=tf.constant([[[1., 0., 1., 1.]]]))
  np.testing.assert_allclose(_np(loss), [[0.125]], rtol=1e-6)


def test_smooth_l1_bad_delta_and_rank():
  with pytest.raises(ValueError, match='delta'):
    losses.WeightedSmoothL1LocalizationLoss(delta=0.0)
  with pytest.raises(ValueError, match='prediction_tensor'):
    losses.WeightedSmoothL1LocalizationLoss()(tf.zeros([2, 4]),
                                              tf.zeros([2, 4]))
  with pytest.raises(ValueError, match='weights'):
    losses.WeightedSmoothL1LocalizationLoss()(
        tf.zeros([1, 2, 4]), tf.zeros([1, 2, 4]), weights=tf.zeros([2]))


# ---------------------------------------------------------------- L2 / L1


def test_l2_and_l1_golden():
  pred = tf.constant([[[1.0, -2.0, 0.0, 0.0]]])
  target = tf.zeros([1, 1, 4])
  # L2: 0.5*(1 + 4) = 2.5, weight 2 -> 5.0.
  l2 = losses.WeightedL2LocalizationLoss()(pred, target,
                                           weights=tf.constant([[2.0]]))
  np.testing.assert_allclose(_np(l2), [[5.0]], rtol=1e-6)
  # L1: |1| + |-2| = 3.
  l1 = losses.WeightedL1LocalizationLoss()(pred, target,
                                           weights=tf.constant([[1.0]]))
  np.testing.assert_allclose(_np(l1), [[3.0]], rtol=1e-6)


def test_localization_empty_anchors():
  loss = losses.WeightedSmoothL1LocalizationLoss()(
      tf.zeros([2, 0, 4]), tf.zeros([2, 0, 4]), weights=tf.zeros([2, 0]))
  assert loss.shape == (2, 0)


def test_nan_targets_ignored_in_regression():
  pred = tf.constant([[[0.5, 2.0, 1.0, 1.0]]])
  target = tf.constant([[[0.0, 0.0, np.nan, np.nan]]])
  loss = losses.WeightedSmoothL1LocalizationLoss()(
      pred, target, ignore_nan_targets=True, weights=tf.constant([[1.0]]))
  np.testing.assert_allclose(_np(loss), [[1.625]], rtol=1e-6)
  loss_nan = losses.WeightedSmoothL1LocalizationLoss()(
      pred, target, weights=tf.constant([[1.0]]))
  assert np.isnan(_np(loss_nan)).all()


def test_losses_mask_drops_images():
  pred = tf.constant([[[1.0, 0., 0., 0.]], [[1.0, 0., 0., 0.]]])
  target = tf.zeros([2, 1, 4])
  loss = losses.WeightedL1LocalizationLoss()(
      pred, target, losses_mask=tf.constant([True, False]),
      weights=tf.ones([2, 1]))
  np.testing.assert_allclose(_np(loss), [[1.0], [0.0]])
  # Without weights the mask becomes the weights.
  loss = losses.WeightedSigmoidClassificationLoss()(
      tf.zeros([2, 1, 1]), tf.ones([2, 1, 1]),
      losses_mask=tf.constant([False, True]))
  np.testing.assert_allclose(_np(loss), [[[0.0]], [[math.log(2.0)]]],
                             rtol=1e-6)


# ---------------------------------------------------------------- balanced L1


def test_balanced_l1_golden():
  # Libra R-CNN eqs. 8-10 with alpha=0.5, gamma=1.5, beta=1:
  # b = e^(gamma/alpha) - 1 = e^3 - 1 = 19.0855.
  a, g = 0.5, 1.5
  b = math.exp(g / a) - 1.0
  # Inlier |x|=0.5: a/b*(b*0.5+1)*ln(b*0.5+1) - a*0.5 = 0.40057.
  inlier = a / b * (b * 0.5 + 1) * math.log(b * 0.5 + 1) - a * 0.5
  assert abs(inlier - 0.40057) < 1e-4
  # Outlier |x|=2: g*2 + g/b - a*1 = 3 + 0.078594 - 0.5 = 2.578594.
  outlier = g * 2.0 + g / b - a
  assert abs(outlier - 2.578594) < 1e-5
  pred = tf.constant([[[0.5, -2.0, 0.0, 0.0]]])
  loss = losses.BalancedL1LocalizationLoss()(pred, tf.zeros([1, 1, 4]),
                                             weights=tf.constant([[1.0]]))
  np.testing.assert_allclose(_np(loss), [[inlier + outlier]], rtol=1e-5)


def test_balanced_l1_continuity_and_gradients():
  loss_fn = losses.BalancedL1LocalizationLoss(alpha=0.5, gamma=1.5, beta=1.0)
  x = tf.constant([[[0.5, 2.0, 1.0 - 1e-4, 1.0 + 1e-4]]])
  with tf.GradientTape() as tape:
    tape.watch(x)
    elementwise = loss_fn._elementwise(x)
  grads = _np(tape.gradient(elementwise, x))[0, 0]
  # Eq. 8: dL/dx = alpha*ln(b|x|+1) for inliers, gamma for outliers.
  b = math.exp(3.0) - 1.0
  np.testing.assert_allclose(grads[0], 0.5 * math.log(b * 0.5 + 1), rtol=1e-5)
  np.testing.assert_allclose(grads[1], 1.5, rtol=1e-6)
  # Continuity at beta (eq. 10): both sides meet, gradient -> gamma.
  vals = _np(elementwise)[0, 0]
  np.testing.assert_allclose(vals[2], vals[3], atol=1e-3)
  np.testing.assert_allclose(grads[2], 1.5, atol=1e-3)


# ---------------------------------------------------------------- IoU / GIoU


def test_giou_and_iou_golden():
  pred = tf.constant([[[0., 0., 2., 2.],     # overlapping
                       [0., 0., 1., 1.],     # touching
                       [0., 0., 1., 1.],     # far apart
                       [0., 0., 1., 1.]]])   # identical
  target = tf.constant([[[1., 1., 3., 3.],
                         [0., 1., 1., 2.],
                         [2., 2., 3., 3.],
                         [0., 0., 1., 1.]]])
  giou = losses.WeightedGIOULocalizationLoss()(pred, target,
                                              weights=tf.ones([1, 4]))
  # Overlap: inter 1, union 7, IoU 1/7; enclosing 9; GIoU 1/7 - 2/9 = -5/63.
  # Touching: IoU 0, enclosing 2 = union -> GIoU 0.
  # Far: IoU 0, union 2, enclosing 9 -> GIoU = -7/9.
  expected = [1 + 5 / 63, 1.0, 1 + 7 / 9, 0.0]
  np.testing.assert_allclose(_np(giou), [expected], rtol=1e-6, atol=1e-7)
  iou = losses.WeightedIOULocalizationLoss()(pred, target,
                                            weights=tf.ones([1, 4]))
  np.testing.assert_allclose(_np(iou), [[6 / 7, 1.0, 1.0, 0.0]], rtol=1e-6,
                             atol=1e-7)


def test_giou_degenerate_and_nan():
  pred = tf.constant([[[0., 0., 0., 0.], [0., 0., 1., 1.]]])
  target = tf.constant([[[0., 0., 0., 0.], [np.nan, 0., 1., 1.]]])
  loss = losses.WeightedGIOULocalizationLoss()(
      pred, target, ignore_nan_targets=True, weights=tf.constant([[2., 1.]]))
  # Two empty boxes: IoU 0 and GIoU 0 (no NaN) -> 1 * weight 2.
  np.testing.assert_allclose(_np(loss), [[2.0, 0.0]])
  with tf.GradientTape() as tape:
    tape.watch(pred)
    loss = losses.WeightedGIOULocalizationLoss()(
        pred, target, ignore_nan_targets=True, weights=tf.ones([1, 2]))
  assert np.isfinite(_np(tape.gradient(loss, pred))).all()


def test_giou_bad_shape():
  with pytest.raises(ValueError, match='prediction_tensor'):
    losses.WeightedGIOULocalizationLoss()(tf.zeros([1, 2, 3]),
                                          tf.zeros([1, 2, 3]))


# ---------------------------------------------------------------- sigmoid


def test_sigmoid_ce_golden_and_weight_shapes():
  logits = tf.constant([[[0.0, 2.0]]])
  targets = tf.constant([[[1.0, 0.0]]])
  # -ln(sigmoid(0)) = ln 2 ; -ln(1 - sigmoid(2)) = ln(1 + e^2) = 2.126928.
  expected = np.array([[[math.log(2.0), math.log(1 + math.e ** 2)]]])
  loss_fn = losses.WeightedSigmoidClassificationLoss()
  np.testing.assert_allclose(
      _np(loss_fn(logits, targets, weights=tf.constant([[2.0]]))),
      2 * expected, rtol=1e-6)
  np.testing.assert_allclose(
      _np(loss_fn(logits, targets, weights=tf.constant([[[1.0, 0.0]]]))),
      expected * [1, 0], rtol=1e-6)
  np.testing.assert_allclose(
      _np(loss_fn(logits, targets, weights=tf.constant([[1.0]]),
                  class_indices=[1])),
      expected * [0, 1], rtol=1e-6)


def test_sigmoid_nan_targets():
  loss = losses.WeightedSigmoidClassificationLoss()(
      tf.constant([[[3.0, 0.0]]]), tf.constant([[[np.nan, 1.0]]]),
      ignore_nan_targets=True)
  np.testing.assert_allclose(_np(loss), [[[0.0, math.log(2.0)]]], rtol=1e-6)


# ---------------------------------------------------------------- focal


def test_focal_loss_single_logit():
  # Lin et al. 2017 eq. 5 with logit 1: p = sigmoid(1) = 0.731059.
  p = 1 / (1 + math.exp(-1))
  # Positive: alpha*(1-p)^2*(-ln p) = 0.25*0.072329*0.313262 = 0.005664.
  pos = 0.25 * (1 - p) ** 2 * -math.log(p)
  # Negative: (1-alpha)*p^2*(-ln(1-p)) = 0.75*0.534447*1.313262 = 0.526401.
  neg = 0.75 * p ** 2 * -math.log(1 - p)
  assert abs(pos - 0.005664) < 1e-6 and abs(neg - 0.526401) < 1e-6
  loss = losses.SigmoidFocalClassificationLoss(gamma=2.0, alpha=0.25)(
      tf.constant([[[1.0, 1.0]]]), tf.constant([[[1.0, 0.0]]]),
      weights=tf.constant([[1.0]]))
  np.testing.assert_allclose(_np(loss), [[[pos, neg]]], rtol=1e-5)


def test_focal_loss_reduces_to_ce():
  logits = tf.constant([[[0.3, -1.2, 2.0]]])
  targets = tf.constant([[[1.0, 0.0, 1.0]]])
  focal = losses.SigmoidFocalClassificationLoss(gamma=0.0, alpha=None)(
      logits, targets)
  ce = losses.WeightedSigmoidClassificationLoss()(logits, targets)
  np.testing.assert_allclose(_np(focal), _np(ce), rtol=1e-6)
  with pytest.raises(ValueError, match='alpha'):
    losses.SigmoidFocalClassificationLoss(alpha=1.5)


# ---------------------------------------------------------------- softmax


def test_softmax_golden():
  # Uniform logits over 3 columns: -ln(1/3) = ln 3.
  loss = losses.WeightedSoftmaxClassificationLoss()(
      tf.zeros([1, 1, 3]), tf.constant([[[0., 1., 0.]]]),
      weights=tf.constant([[2.0]]))
  np.testing.assert_allclose(_np(loss), [[2 * math.log(3.0)]], rtol=1e-6)
  # logit_scale 2: logits [2, 0] -> [1, 0]; target col 1:
  # -ln(e^0 / (e^1 + e^0)) = ln(1 + e) = 1.313262.
  loss = losses.WeightedSoftmaxClassificationLoss(logit_scale=2.0)(
      tf.constant([[[2.0, 0.0]]]), tf.constant([[[0.0, 1.0]]]),
      weights=tf.constant([[[1.0, 1.0]]]))
  np.testing.assert_allclose(_np(loss), [[math.log(1 + math.e)]], rtol=1e-6)


# ---------------------------------------------------------------- CenterNet


def test_penalty_reduced_focal_3x3():
  # CenterNet eq. 1 with all logits 0 (p = 0.5), alpha=2, beta=4:
  #   center (y=1): -(1-p)^2 ln p = 0.25 ln 2 = 0.173287
  #   y=0.5: (1-0.5)^4 * p^2 * -ln(1-p) = 0.0625 * 0.173287
  #   y=0.25: 0.75^4 = 0.31640625 -> 0.31640625 * 0.173287
  # total = 0.173287 * (1 + 4*0.0625 + 4*0.31640625) = 0.435925.
  heatmap = tf.constant([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5],
                         [0.25, 0.5, 0.25]])[tf.newaxis, :, :, tf.newaxis]
  logits = tf.zeros_like(heatmap)
  loss = losses.PenaltyReducedLogisticFocalLoss()(logits, heatmap)
  assert loss.shape == (1, 3, 3, 1)
  unit = 0.25 * math.log(2.0)
  corner, edge = 0.31640625, 0.0625
  np.testing.assert_allclose(_np(loss)[0, :, :, 0],
                             unit * np.array([[corner, edge, corner],
                                              [edge, 1.0, edge],
                                              [corner, edge, corner]]),
                             rtol=1e-5)
  total = losses.normalized_penalty_reduced_focal_loss(logits, heatmap)
  np.testing.assert_allclose(_np(total), 0.435925, rtol=1e-5)
  # Two objects -> divided by N = 2 (CenterNet's 1/N).
  two = tf.concat([heatmap, heatmap], axis=0)
  total2 = losses.normalized_penalty_reduced_focal_loss(tf.zeros_like(two), two)
  np.testing.assert_allclose(_np(total2), 0.435925, rtol=1e-5)


def test_penalty_reduced_focal_clipping_and_empty():
  # Logit -100 at a center: p clipped to 1e-4 -> (1-1e-4)^2 * ln(1e4) = 9.2085.
  loss = losses.PenaltyReducedLogisticFocalLoss()(
      tf.constant([[[-100.0]]]), tf.constant([[[1.0]]]))
  np.testing.assert_allclose(_np(loss), [[[(1 - 1e-4) ** 2 * math.log(1e4)]]],
                             rtol=1e-4)
  # No objects: normalized by max(N, 1) = 1 -> the negative loss sum.
  total = losses.normalized_penalty_reduced_focal_loss(
      tf.zeros([1, 2, 2, 1]), tf.zeros([1, 2, 2, 1]))
  np.testing.assert_allclose(_np(total), 4 * 0.25 * math.log(2.0), rtol=1e-5)
  # Weights with one dimension less than the logits get a trailing axis.
  w = tf.constant([[[1.0, 0.0], [0.0, 0.0]]])
  total = losses.normalized_penalty_reduced_focal_loss(
      tf.zeros([1, 2, 2, 3]), tf.zeros([1, 2, 2, 3]), weights=w)
  np.testing.assert_allclose(_np(total), 3 * 0.25 * math.log(2.0), rtol=1e-5)


def test_losses_under_tf_function_with_dynamic_anchors():
  focal = losses.SigmoidFocalClassificationLoss()
  smooth = losses.WeightedSmoothL1LocalizationLoss()

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, None, 4])])
  def fn(logits, codes):
    b, n = tf.shape(logits)[0], tf.shape(logits)[1]
    return (tf.reduce_sum(focal(logits, tf.zeros_like(logits),
                                weights=tf.ones([b, n]))),
            tf.reduce_sum(smooth(codes, tf.zeros_like(codes),
                                 weights=tf.ones([b, n]))))

  cls, loc = fn(tf.zeros([2, 3, 2]), tf.fill([2, 3, 4], 0.5))
  # Focal, logit 0, target 0: 0.75 * 0.25 * ln 2 per entry, 12 entries.
  np.testing.assert_allclose(_np(cls), 12 * 0.75 * 0.25 * math.log(2.0),
                             rtol=1e-5)
  np.testing.assert_allclose(_np(loc), 24 * 0.125, rtol=1e-6)
  cls, loc = fn(tf.zeros([1, 0, 2]), tf.zeros([1, 0, 4]))
  assert _np(cls) == 0.0 and _np(loc) == 0.0
