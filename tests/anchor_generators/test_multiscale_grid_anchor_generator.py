import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.anchor_generators import multiscale_grid_anchor_generator as msg


def test_levels_golden():
  # Levels 3-4 on a 64x64 image; anchor_scale 4; octave scales 1, 2^(1/2).
  # Level 3: stride 8, base 32, first center (4, 4): [-12, -12, 20, 20] and
  # size 32 * sqrt(2) = 45.2548: [4 - 22.6274, ..., 4 + 22.6274]; /64.
  # Level 4: stride 16, base 64, center (8, 8): [-24, -24, 40, 40] / 64.
  gen = msg.MultiscaleGridAnchorGenerator(
      min_level=3, max_level=4, anchor_scale=4.0, aspect_ratios=[1.0],
      scales_per_octave=2)
  assert gen.num_anchors_per_location() == [2, 2]
  l3, l4 = gen.generate([(8, 8), (4, 4)], im_height=64, im_width=64)
  assert l3.num_boxes_static() == 128 and l4.num_boxes_static() == 32
  np.testing.assert_allclose(l3.get().numpy()[0],
                             np.array([-12., -12., 20., 20.]) / 64, atol=1e-6)
  half = 16 * math.sqrt(2)
  np.testing.assert_allclose(
      l3.get().numpy()[1],
      np.array([4 - half, 4 - half, 4 + half, 4 + half]) / 64, atol=1e-6)
  np.testing.assert_allclose(l4.get().numpy()[0],
                             np.array([-24., -24., 40., 40.]) / 64, atol=1e-6)
  np.testing.assert_array_equal(l4.get_field('feature_map_index').numpy(),
                                np.ones(32))


def test_absolute_coordinates_and_aspect_ratio():
  # Level 2: stride 4, base 4 * 1 = 4; ratio 4: h = 4 / 2 = 2, w = 4 * 2 = 8.
  gen = msg.MultiscaleGridAnchorGenerator(
      2, 2, anchor_scale=1.0, aspect_ratios=[4.0], scales_per_octave=1,
      normalize_coordinates=False)
  (anchors,) = gen.generate([(1, 2)])
  np.testing.assert_allclose(anchors.get().numpy(),
                             [[1., -2., 3., 6.], [1., 2., 3., 10.]])


def test_graph_mode_dynamic_sizes():
  gen = msg.MultiscaleGridAnchorGenerator(3, 3, 4.0, [0.5, 1.0, 2.0], 3)

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)] * 2)
  def fn(h, w):
    (a,) = gen.generate([(h // 8, w // 8)], im_height=h, im_width=w)
    return a.get()

  out = fn(tf.constant(32), tf.constant(64))
  assert out.shape == (4 * 8 * 9, 4)
  np.testing.assert_allclose(
      out.numpy(),
      gen.generate([(4, 8)], im_height=32, im_width=64)[0].get().numpy(),
      atol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match='max_level'):
    msg.MultiscaleGridAnchorGenerator(4, 3, 4.0, [1.0], 1)
  with pytest.raises(ValueError, match='scales_per_octave'):
    msg.MultiscaleGridAnchorGenerator(3, 4, 4.0, [1.0], 0)
  gen = msg.MultiscaleGridAnchorGenerator(3, 4, 4.0, [1.0], 1)
  with pytest.raises(ValueError, match='im_height'):
    gen.generate([(8, 8), (4, 4)])
