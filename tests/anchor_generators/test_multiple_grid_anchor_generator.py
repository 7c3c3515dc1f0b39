import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.anchor_generators import multiple_grid_anchor_generator as mgag


def test_ssd_scales_six_layers():
  # s_k = 0.2 + (0.95 - 0.2) (k - 1) / 5 (Liu et al. 2016, Eq. 4).
  np.testing.assert_allclose(mgag.ssd_scales(6, 0.2, 0.95),
                             [0.2, 0.35, 0.5, 0.65, 0.8, 0.95])


def test_create_ssd_anchors_box_specs():
  gen = mgag.create_ssd_anchors()
  # Lowest layer: 3 reduced boxes; others: 5 ratios + interpolated scale.
  assert gen.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
  specs = gen._box_specs  # pylint: disable=protected-access
  np.testing.assert_allclose(specs[0], [(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)])
  np.testing.assert_allclose(specs[1][0], (0.35, 1.0))
  # Interpolated: sqrt(0.35 * 0.5) = 0.41833; last layer sqrt(0.95 * 1.0).
  np.testing.assert_allclose(specs[1][-1], (math.sqrt(0.35 * 0.5), 1.0))
  np.testing.assert_allclose(specs[5][-1], (math.sqrt(0.95), 1.0))
  gen = mgag.create_ssd_anchors(num_layers=2,
                                reduce_boxes_in_lowest_layer=False,
                                interpolated_scale_aspect_ratio=0.)
  assert gen.num_anchors_per_location() == [5, 5]
  scales = [0.3, 0.6]
  mgag.create_ssd_anchors(num_layers=2, scales=scales)
  assert scales == [0.3, 0.6]  # Not mutated.
  with pytest.raises(ValueError, match='scales'):
    mgag.create_ssd_anchors(num_layers=3, scales=[0.3, 0.6])
  with pytest.raises(ValueError, match='num_layers'):
    mgag.create_ssd_anchors(num_layers=0)


def test_generate_golden_square_and_non_square():
  gen = mgag.create_ssd_anchors(num_layers=2, min_scale=0.2, max_scale=0.95)
  layer0, layer1 = gen.generate([(2, 2), (1, 1)])
  assert layer0.num_boxes_static() == 2 * 2 * 3
  assert layer1.num_boxes_static() == 6
  a0 = layer0.get().numpy()
  # 2x2 map: stride 0.5, offset 0.25. Spec (0.1, 1.0) at (0.25, 0.25).
  np.testing.assert_allclose(a0[0], [0.2, 0.2, 0.3, 0.3], atol=1e-6)
  # Spec (0.2, 2.0): h = 0.2 / sqrt(2) = 0.141421, w = 0.282843.
  np.testing.assert_allclose(
      a0[1], [0.25 - 0.0707107, 0.25 - 0.1414214, 0.25 + 0.0707107,
              0.25 + 0.1414214], atol=1e-6)
  # 1x1 map: center 0.5, scale 0.95, ratio 1.
  np.testing.assert_allclose(layer1.get().numpy()[0],
                             [0.025, 0.025, 0.975, 0.975], atol=1e-6)
  np.testing.assert_array_equal(layer1.get_field('feature_map_index').numpy(),
                                np.ones(6))
  # 200 x 400 image: base size (1, 0.5) so the anchor is square in pixels:
  # h = 0.95, w = 0.475.
  _, layer1 = gen.generate([(2, 2), (1, 1)], im_height=200, im_width=400)
  np.testing.assert_allclose(layer1.get().numpy()[0],
                             [0.025, 0.2625, 0.975, 0.7375], atol=1e-6)


def test_pixel_strides_offsets_and_clip_window():
  # Stride 50 px and offset 25 px on a 100 px image: 0.5 and 0.25 normalized.
  gen = mgag.MultipleGridAnchorGenerator(
      [[(0.8, 1.0)]], anchor_strides=[(50, 50)], anchor_offsets=[(25, 25)],
      clip_window=[0., 0., 1., 1.])
  (anchors,) = gen.generate([(2, 2)], im_height=100, im_width=100)
  # Center (0.25, 0.25), size 0.8: [-0.15, -0.15, 0.65, 0.65] -> clipped.
  np.testing.assert_allclose(anchors.get().numpy()[0], [0., 0., 0.65, 0.65],
                             atol=1e-6)
  np.testing.assert_allclose(anchors.get().numpy()[3], [0.35, 0.35, 1., 1.],
                             atol=1e-6)


def test_graph_mode_dynamic_image_size():
  gen = mgag.create_ssd_anchors(num_layers=2)

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)] * 2)
  def fn(h, w):
    return [a.get() for a in gen.generate([(3, 3), (1, 1)], im_height=h,
                                          im_width=w)]

  out = fn(tf.constant(300), tf.constant(300))
  assert out[0].shape == (27, 4) and out[1].shape == (6, 4)
  np.testing.assert_allclose(
      out[1].numpy(), gen.generate([(3, 3), (1, 1)])[1].get().numpy(),
      atol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match='box_specs_list'):
    mgag.MultipleGridAnchorGenerator([(1.0, 1.0)])
  with pytest.raises(ValueError, match='box_specs_list'):
    mgag.MultipleGridAnchorGenerator([[1.0]])
  with pytest.raises(ValueError, match='anchor_strides'):
    mgag.MultipleGridAnchorGenerator([[(1.0, 1.0)]],
                                     anchor_strides=[(8, 8)] * 2)
  with pytest.raises(ValueError, match='clip_window'):
    mgag.MultipleGridAnchorGenerator([[(1.0, 1.0)]], clip_window=[0., 1.])
  gen = mgag.create_ssd_anchors(num_layers=2)
  with pytest.raises(ValueError, match='feature maps'):
    gen.generate([(2, 2)])
