import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.anchor_generators import grid_anchor_generator


def test_2x2_map_golden():
  # Stride 16, offset 8: centers (8, 8), (8, 24), (24, 8), (24, 24) pixels.
  # Scale 1, ratio 1, base 10: 10 x 10. Ratio 2: h = 10 / sqrt(2) = 7.0711,
  # w = 10 * sqrt(2) = 14.1421 (Ren et al. 2015 Sec. 3.1.1).
  gen = grid_anchor_generator.GridAnchorGenerator(
      scales=[1.0], aspect_ratios=[1.0, 2.0], base_anchor_size=[10, 10],
      anchor_stride=[16, 16], anchor_offset=[8, 8])
  assert gen.num_anchors_per_location() == [2]
  (anchors,) = gen.generate([(2, 2)])
  h2, w2 = 10 / math.sqrt(2) / 2, 10 * math.sqrt(2) / 2
  expected = []
  for yc, xc in [(8, 8), (8, 24), (24, 8), (24, 24)]:
    expected.append([yc - 5, xc - 5, yc + 5, xc + 5])
    expected.append([yc - h2, xc - w2, yc + h2, xc + w2])
  np.testing.assert_allclose(anchors.get().numpy(), expected, rtol=1e-5)
  np.testing.assert_array_equal(anchors.get_field('feature_map_index').numpy(),
                                np.zeros(8))


def test_defaults_match_tf_od_api():
  # 3 scales x 3 ratios, base 256, stride 16, offset 0. First anchor:
  # ratio 0.5, scale 0.5: h = 0.5 / sqrt(0.5) * 256 = 181.02,
  # w = 0.5 * sqrt(0.5) * 256 = 90.51, centered at (0, 0).
  gen = grid_anchor_generator.GridAnchorGenerator()
  (anchors,) = gen.generate([(3, 4)])
  assert anchors.num_boxes_static() == 3 * 4 * 9
  h = 0.5 / math.sqrt(0.5) * 256 / 2
  w = 0.5 * math.sqrt(0.5) * 256 / 2
  np.testing.assert_allclose(anchors.get().numpy()[0], [-h, -w, h, w],
                             rtol=1e-5)
  # Second anchor: ratio 0.5, scale 1.0 (scale is the inner loop).
  np.testing.assert_allclose(anchors.get().numpy()[1],
                             [-2 * h, -2 * w, 2 * h, 2 * w], rtol=1e-5)
  # Last anchor of the last location: center (32, 48), ratio 2, scale 2:
  # half height 2 / sqrt(2) * 128 = 181.02, half width 2 * sqrt(2) * 128 =
  # 362.04.
  hh, hw = 2 / math.sqrt(2) * 128, 2 * math.sqrt(2) * 128
  np.testing.assert_allclose(anchors.get().numpy()[-1],
                             [32 - hh, 48 - hw, 32 + hh, 48 + hw], rtol=1e-5)


def test_dynamic_grid_in_graph_mode_and_empty_map():
  gen = grid_anchor_generator.GridAnchorGenerator()

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)] * 2)
  def fn(h, w):
    (anchors,) = gen.generate([(h, w)])
    return anchors.get(), anchors.get_field('feature_map_index')

  boxes, idx = fn(tf.constant(5), tf.constant(3))
  assert boxes.shape == (135, 4) and idx.shape == (135,)
  np.testing.assert_allclose(boxes.numpy(),
                             gen.generate([(5, 3)])[0].get().numpy())
  boxes, _ = fn(tf.constant(0), tf.constant(3))
  assert boxes.shape == (0, 4)


def test_bad_arguments():
  with pytest.raises(ValueError, match='scales'):
    grid_anchor_generator.GridAnchorGenerator(scales=[])
  with pytest.raises(ValueError, match='aspect_ratios'):
    grid_anchor_generator.GridAnchorGenerator(aspect_ratios=[0.])
  with pytest.raises(ValueError, match='anchor_stride'):
    grid_anchor_generator.GridAnchorGenerator(anchor_stride=[16])
  gen = grid_anchor_generator.GridAnchorGenerator()
  with pytest.raises(ValueError, match='feature_map_shape_list'):
    gen.generate([(2, 2), (1, 1)])
  with pytest.raises(ValueError, match='feature_map_shape_list'):
    gen.generate([2, 2])
