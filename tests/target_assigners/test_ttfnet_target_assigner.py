import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import target_assigner
from od_meta.target_assigners import ttfnet_target_assigner

TTFNetTargetAssigner = ttfnet_target_assigner.TTFNetTargetAssigner


def _norm(pixel_boxes, size=64.):
  return tf.constant(np.array(pixel_boxes, np.float32) / size)


def _np(targets):
  return {k: v.numpy() for k, v in targets.items()}


def test_single_box_golden():
  # 64 x 64 input, stride 4 -> 16 x 16 map. Box [8, 8, 48, 32] px:
  # h = 40 -> 10, w = 24 -> 6 output pixels; center (28, 20) -> (7, 5).
  # TTFNet Sec. 3.2, alpha = beta = 0.54: sigma_y = 0.9, sigma_x = 0.54;
  # window r_y = int(2.7) = 2, r_x = int(1.62) = 1 -> sub-area rows 5..9,
  # cols 4..6 (15 locations).
  assigner = TTFNetTargetAssigner(stride=4, num_classes=2)
  assert isinstance(assigner, target_assigner.DenseTargetAssigner)
  t = _np(assigner.assign(64, 64, [_norm([[8., 8., 48., 32.]])],
                          [tf.constant([1])]))
  assert t['heatmap'].shape == (1, 16, 16, 2)
  assert t['box_targets'].shape == (1, 16, 16, 4)
  assert t['box_weights'].shape == (1, 16, 16)
  heat = t['heatmap'][0, :, :, 1]
  assert heat[7, 5] == 1.0
  # (1, 0): exp(-1 / (2 * 0.81)) = 0.539408; (0, 1): exp(-1 / (2 *
  # 0.2916)) = exp(-1.714678) = 0.180022; (0, 2), (3, 0): outside.
  assert heat[8, 5] == pytest.approx(0.5394075, rel=1e-5)
  assert heat[7, 6] == pytest.approx(0.1800217, rel=1e-5)
  assert heat[7, 7] == 0.0 and heat[10, 5] == 0.0
  assert not t['heatmap'][0, :, :, 0].any()

  region = np.zeros([16, 16], bool)
  region[5:10, 4:7] = True
  np.testing.assert_array_equal(t['box_weights'][0] > 0, region)
  np.testing.assert_allclose(t['box_targets'][0][region],
                             np.tile([[8., 8., 48., 32.]], [15, 1]))
  assert not t['box_targets'][0][~region].any()
  # Eq. 5: W = log(40 * 24) * G / sum(G); sum(G) = (1 + 2 e^-0.617284 +
  # 2 e^-2.469136) * (1 + 2 e^-1.714678) = 2.248131 * 1.360043 = 3.057556;
  # W(center) = 6.866933 / 3.057556 = 2.245890.
  assert t['box_weights'][0, 7, 5] == pytest.approx(2.245890, rel=1e-5)
  assert t['box_weights'][0, 8, 5] == pytest.approx(2.245890 * 0.5394075,
                                                    rel=1e-5)
  assert t['box_weights'].sum() == pytest.approx(math.log(960.), rel=1e-5)
  np.testing.assert_array_equal(t['num_objects'], [1.])


def test_normalization_without_log_area_and_box_weight():
  assigner = TTFNetTargetAssigner(stride=4, num_classes=1,
                                  use_log_area_weight=False)
  t = _np(assigner.assign(64, 64, [_norm([[8., 8., 48., 32.]])],
                          [tf.constant([0])]))
  assert t['box_weights'].sum() == pytest.approx(1.0, rel=1e-5)
  assigner = TTFNetTargetAssigner(stride=4, num_classes=1)
  t = _np(assigner.assign(64, 64, [_norm([[8., 8., 48., 32.]])],
                          [tf.constant([0])], [tf.constant([0.5])]))
  assert t['box_weights'].sum() == pytest.approx(0.5 * math.log(960.),
                                                 rel=1e-5)
  assert t['heatmap'].max() == 0.5


def test_smallest_area_box_owns_shared_locations():
  # A = [0, 0, 64, 64] px: 16 x 16 out, center (8, 8), r = int(4.32) = 4,
  #   sub-area rows/cols 4..12, sigma = 0.54 * 16 / 6 = 1.44.
  # B = [16, 16, 32, 32] px: 4 x 4 out, center (6, 6), r = int(1.08) = 1,
  #   sub-area rows/cols 5..7, entirely inside A's: B owns those 9.
  assigner = TTFNetTargetAssigner(stride=4, num_classes=1)
  box_a, box_b = [0., 0., 64., 64.], [16., 16., 32., 32.]
  for boxes in ([box_a, box_b], [box_b, box_a]):
    t = _np(assigner.assign(64, 64, [_norm(boxes)],
                            [tf.zeros([2], tf.int32)]))
    targets, weights = t['box_targets'][0], t['box_weights'][0]
    np.testing.assert_allclose(targets[6, 6], box_b)
    np.testing.assert_allclose(targets[5, 7], box_b)
    np.testing.assert_allclose(targets[8, 8], box_a)
    np.testing.assert_allclose(targets[4, 4], box_a)
    assert not targets[3, 8].any() and weights[3, 8] == 0.
    owned_b = np.zeros([16, 16], bool)
    owned_b[5:8, 5:8] = True
    # B owns its whole sub-area: its weights sum to log(16 * 16).
    assert weights[owned_b].sum() == pytest.approx(math.log(256.), rel=1e-5)
    # A keeps its Eq. 5 weights (normalized over its whole sub-area):
    # W_A(8, 8) = log(4096) / (sum_{d=-4..4} exp(-d^2 / (2 * 1.44^2)))^2.
    g1 = sum(math.exp(-d * d / (2 * 1.44**2)) for d in range(-4, 5))
    assert weights[8, 8] == pytest.approx(math.log(4096.) / g1**2, rel=1e-5)
    assert weights[~owned_b].sum() < math.log(4096.)
    # Heatmap: element-wise max, both peaks exactly 1.
    assert t['heatmap'][0, 8, 8, 0] == 1.0 and t['heatmap'][0, 6, 6, 0] == 1.0
    assert t['heatmap'].max() == 1.0


def test_weight_zero_and_zero_boxes():
  assigner = TTFNetTargetAssigner(stride=4, num_classes=2)
  t = _np(assigner.assign(
      64, 64, [_norm([[8., 8., 48., 32.], [30., 30., 40., 40.]]),
               tf.zeros([0, 4])],
      [tf.constant([0, 1]), tf.zeros([0], tf.int32)],
      [tf.constant([0., 1.]), tf.zeros([0])]))
  np.testing.assert_array_equal(t['num_objects'], [1., 0.])
  assert not t['heatmap'][0, :, :, 0].any()
  assert t['heatmap'][0, :, :, 1].max() == 1.0
  np.testing.assert_allclose(
      t['box_targets'][0][t['box_weights'][0] > 0][0], [30., 30., 40., 40.])
  for key in ('heatmap', 'box_targets', 'box_weights'):
    assert not t[key][1].any()


def test_graph_mode_batch_two_different_n():
  assigner = TTFNetTargetAssigner(stride=4, num_classes=2, beta=0.3)
  spec = [tf.TensorSpec([None, 4], tf.float32),
          tf.TensorSpec([None, 2], tf.float32)] * 2

  @tf.function(input_signature=spec)
  def assign(b0, c0, b1, c1):
    return assigner.assign(32, 48, [b0, b1], [c0, c1])

  args = (tf.constant([[0.1, 0.1, 0.9, 0.5], [0.5, 0.5, 0.8, 0.9]]),
          tf.constant([[1., 0.], [0., 1.]]),
          tf.constant([[0.2, 0.2, 0.6, 0.6]]), tf.constant([[0., 1.]]))
  graph = _np(assign(*args))
  eager = _np(assigner.assign(32, 48, [args[0], args[2]], [args[1], args[3]]))
  assert graph['heatmap'].shape == (2, 8, 12, 2)
  np.testing.assert_array_equal(graph['num_objects'], [2., 1.])
  for key in eager:
    np.testing.assert_allclose(graph[key], eager[key], rtol=1e-6)
  # Image 1: [6.4, 9.6, 19.2, 28.8] px, 3.2 x 4.8 out, beta 0.3 ->
  # r = (int(0.48), int(0.72)) = (0, 0): a single sample at the center
  # (12.8, 19.2) / 4 -> (3, 4), weight log(12.8 * 19.2) = 5.50439.
  assert np.count_nonzero(graph['box_weights'][1]) == 1
  assert graph['box_weights'][1, 3, 4] == pytest.approx(
      math.log(12.8 * 19.2), rel=1e-5)
  empty = _np(assign(tf.zeros([0, 4]), tf.zeros([0, 2]), *args[2:]))
  assert not empty['box_weights'][0].any()
  assert empty['num_objects'][0] == 0.


def test_bad_arguments():
  with pytest.raises(ValueError, match='alpha'):
    TTFNetTargetAssigner(stride=4, num_classes=1, alpha=0.)
  with pytest.raises(ValueError, match='num_classes'):
    TTFNetTargetAssigner(stride=4, num_classes=0)
  assigner = TTFNetTargetAssigner(stride=4, num_classes=1)
  with pytest.raises(ValueError, match='groundtruth_weights_list'):
    assigner.assign(32, 32, [tf.zeros([0, 4])], [tf.zeros([0], tf.int32)],
                    [tf.zeros([0]), tf.zeros([0])])
  with pytest.raises(ValueError, match='boxes'):
    assigner.assign(32, 32, [tf.zeros([2, 3])], [tf.zeros([2], tf.int32)])
