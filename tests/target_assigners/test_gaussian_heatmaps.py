import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.target_assigners import gaussian_heatmaps


def _radius(h, w, m=0.7):
  return gaussian_heatmaps.gaussian_radius(
      tf.constant([h], tf.float32), tf.constant([w], tf.float32),
      m).numpy()[0]


def test_gaussian_radius_golden_10x20():
  # CornerNet Sec. 3.2 / CenterNet `gaussian_radius`, h = 10, w = 20,
  # m = 0.7, each root (-b + sqrt(b^2 - 4ac)) / 2:
  # r1: a=1, b=-30, c=200*0.3/1.7=35.2941 -> (30 + sqrt(758.8235)) / 2
  #     = (30 + 27.5468) / 2 = 28.7734
  # r2: a=4, b=-60, c=60 -> (60 + sqrt(3600 - 960)) / 2
  #     = (60 + 51.3809) / 2 = 55.6905
  # r3: a=2.8, b=42, c=-60 -> (-42 + sqrt(1764 + 672)) / 2
  #     = (-42 + 49.3559) / 2 = 3.67793  <- min
  assert _radius(10., 20.) == pytest.approx(3.6779254, rel=1e-5)


def test_gaussian_radius_golden_square_and_other_overlap():
  # 4 x 4 at 0.7: r3 = (-11.2 + sqrt(125.44 + 53.76)) / 2
  #   = (-11.2 + 13.38656) / 2 = 1.09328 (r1 = 7.63, r2 = 14.69).
  assert _radius(4., 4.) == pytest.approx(1.0932802, rel=1e-5)
  # 5 x 8 at 0.5: r3: a=2, b=13, c=-20 -> (-13 + sqrt(169 + 160)) / 2
  #   = (-13 + 18.13836) / 2 = 2.56918.
  assert _radius(5., 8., 0.5) == pytest.approx(2.5691786, rel=1e-5)


def test_gaussian_radius_zero_size_and_bad_overlap():
  assert _radius(0., 0.) == 0.
  with pytest.raises(ValueError, match='min_overlap'):
    gaussian_heatmaps.gaussian_radius(tf.ones([1]), tf.ones([1]), 1.0)


def test_center_net_radius_and_sigma():
  # r = int(3.6779) = 3, sigma = (2*3 + 1) / 6 = 7/6.
  r, s = gaussian_heatmaps.center_net_radius_and_sigma(
      tf.constant([10., 0.]), tf.constant([20., 0.]))
  np.testing.assert_allclose(r.numpy(), [3., 0.])
  np.testing.assert_allclose(s.numpy(), [7. / 6., 1. / 6.], rtol=1e-6)


def test_ttfnet_elliptical_kernel_values():
  # TTFNet Sec. 3.2, h = 10, w = 20 (output pixels), alpha = 0.54:
  # sigma_y = 0.54*10/6 = 0.9, sigma_x = 0.54*20/6 = 1.8,
  # window r_y = int(0.54*10/2) = int(2.7) = 2, r_x = int(5.4) = 5.
  sig, rad = gaussian_heatmaps.ttfnet_sigmas_and_radii(
      tf.constant([10.]), tf.constant([20.]), alpha=0.54)
  np.testing.assert_allclose(sig.numpy(), [[0.9, 1.8]], rtol=1e-6)
  np.testing.assert_allclose(rad.numpy(), [[2., 5.]])
  heat = gaussian_heatmaps.draw_gaussian_heatmaps(
      9, 15, tf.constant([[4, 7]], tf.int32), sig, tf.constant([[1.]]),
      rad).numpy()[:, :, 0]
  assert heat[4, 7] == 1.0
  # (dy=1, dx=0): exp(-1 / (2*0.81)) = exp(-0.617284) = 0.539408
  assert heat[5, 7] == pytest.approx(0.5394075, rel=1e-5)
  # (dy=0, dx=2): exp(-4 / (2*3.24)) = exp(-0.617284) = 0.539408
  assert heat[4, 9] == pytest.approx(0.5394075, rel=1e-5)
  # (dy=1, dx=2): exp(-1.234568) = 0.290960
  assert heat[5, 9] == pytest.approx(0.2909604, rel=1e-5)
  # (dy=0, dx=5): exp(-25 / 6.48) = 0.0211097; dx=6 is outside r_x = 5.
  assert heat[4, 12] == pytest.approx(0.02110966, rel=1e-5)
  assert heat[4, 13] == 0.0
  # dy = 3 is outside r_y = 2 (untruncated it would be exp(-5.556) > 0).
  assert heat[7, 7] == 0.0
  assert heat[2, 7] > 0.0


def test_element_wise_max_not_sum_and_peaks():
  # Two class-0 Gaussians, sigma 1, centers (3, 3) and (3, 5): at (3, 4)
  # each is exp(-1/2) = 0.60653; the max keeps 0.60653 (a sum would give
  # 1.21306). A class-1 object goes to its own channel.
  centers = tf.constant([[3, 3], [3, 5], [1, 1]], tf.int32)
  sigmas = tf.ones([3, 2])
  weights = tf.constant([[1., 0.], [1., 0.], [0., 0.5]])
  heat = gaussian_heatmaps.draw_gaussian_heatmaps(7, 8, centers, sigmas,
                                                  weights).numpy()
  assert heat.shape == (7, 8, 2)
  assert heat[3, 4, 0] == pytest.approx(math.exp(-0.5), rel=1e-6)
  assert heat[3, 3, 0] == 1.0 and heat[3, 5, 0] == 1.0
  # Class weight 0.5 scales the peak; the other channel is untouched there.
  assert heat[1, 1, 1] == 0.5
  assert heat[1, 1, 0] == pytest.approx(math.exp(-2.) * math.exp(-2.),
                                        rel=1e-5)
  assert heat[3, 4, 1] == pytest.approx(0.5 * math.exp(-2 - 4.5), rel=1e-5)


def test_zero_rows_zero_objects_and_zero_sigma():
  heat = gaussian_heatmaps.draw_gaussian_heatmaps(
      4, 5, tf.zeros([0, 2], tf.int32), tf.zeros([0, 2]), tf.zeros([0, 3]))
  np.testing.assert_array_equal(heat.numpy(), np.zeros([4, 5, 3]))
  # A zero class row draws nothing; a zero sigma draws a single 1.
  heat = gaussian_heatmaps.draw_gaussian_heatmaps(
      4, 5, tf.constant([[1, 1], [2, 3]]), tf.constant([[1., 1.], [0., 0.]]),
      tf.constant([[0.], [1.]])).numpy()
  expected = np.zeros([4, 5, 1], np.float32)
  expected[2, 3, 0] = 1.
  np.testing.assert_array_equal(heat, expected)


def test_graph_mode_dynamic_n():
  @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.int32),
                                tf.TensorSpec([None, 2], tf.float32),
                                tf.TensorSpec([None, 2], tf.float32)])
  def draw(centers, sigmas, radii):
    weights = tf.one_hot(tf.zeros_like(centers[:, 0]), 2)
    return gaussian_heatmaps.draw_gaussian_heatmaps(6, 6, centers, sigmas,
                                                    weights, radii)

  out = draw(tf.constant([[2, 2]]), tf.constant([[1., 1.]]),
             tf.constant([[1., 1.]])).numpy()
  assert out[2, 2, 0] == 1.0 and out[2, 4, 0] == 0.0
  assert out[3, 3, 0] == pytest.approx(math.exp(-1.), rel=1e-6)
  empty = draw(tf.zeros([0, 2], tf.int32), tf.zeros([0, 2]),
               tf.zeros([0, 2])).numpy()
  np.testing.assert_array_equal(empty, np.zeros([6, 6, 2]))


def test_bad_shapes():
  with pytest.raises(ValueError, match='centers_yx'):
    gaussian_heatmaps.draw_gaussian_heatmaps(
        4, 4, tf.zeros([2, 3]), tf.ones([2, 2]), tf.ones([2, 1]))
  with pytest.raises(ValueError, match='class_weights'):
    gaussian_heatmaps.draw_gaussian_heatmaps(
        4, 4, tf.zeros([2, 2]), tf.ones([2, 2]), tf.ones([2]))
