"""Tests of od_meta.anchor_generators.point_anchor_generator.

`PointAnchorGenerator(min_level, max_level)` makes one stride x stride
square per location of each level, centered on the location's pixel center
`(i * s + s // 2, j * s + s // 2)`, normalized by the image size.

Hand-computed for a 32x32 image and levels 3..4:
  * stride 8, 4x4 map: centers 4, 12, 20, 28 px; squares [c - 4, c + 4];
    normalized by 32, e.g. location (0, 0) -> [0, 0, 8, 8] / 32 =
    [0, 0, 0.25, 0.25], location (1, 2) -> [8, 16, 16, 24] / 32 =
    [0.25, 0.5, 0.5, 0.75];
  * stride 16, 2x2 map: centers 8, 24 px; squares [c - 8, c + 8], e.g.
    (1, 0) -> [16, 0, 32, 16] / 32 = [0.5, 0, 1, 0.5].
"""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.anchor_generators import point_anchor_generator


def _squares(n, stride, height, width):
  """Row-major [n*n, 4] normalized squares of one level (numpy reference)."""
  rows = []
  for i in range(n):
    for j in range(n):
      cy = i * stride + stride // 2
      cx = j * stride + stride // 2
      h = stride / 2
      rows.append([(cy - h) / height, (cx - h) / width, (cy + h) / height,
                   (cx + h) / width])
  return np.array(rows, np.float32)


def test_strides_and_anchors_per_location():
  gen = point_anchor_generator.PointAnchorGenerator(3, 5)
  assert gen.strides == [8, 16, 32]
  assert gen.num_anchors_per_location() == [1, 1, 1]
  # The property returns a copy.
  gen.strides.append(64)
  assert gen.strides == [8, 16, 32]


def test_golden_anchors_32x32_levels_3_4():
  gen = point_anchor_generator.PointAnchorGenerator(3, 4)
  anchors = gen.generate([(4, 4), (2, 2)], im_height=32, im_width=32)
  assert len(anchors) == 2
  assert anchors[0].num_boxes_static() == 16
  assert anchors[1].num_boxes_static() == 4
  level3 = anchors[0].get().numpy()
  level4 = anchors[1].get().numpy()
  # Explicit values (not only the reference helper).
  np.testing.assert_allclose(level3[0], [0., 0., 0.25, 0.25])
  np.testing.assert_allclose(level3[1 * 4 + 2], [0.25, 0.5, 0.5, 0.75])
  np.testing.assert_allclose(level3[15], [0.75, 0.75, 1., 1.])
  np.testing.assert_allclose(level4, [[0., 0., 0.5, 0.5],
                                      [0., 0.5, 0.5, 1.],
                                      [0.5, 0., 1., 0.5],
                                      [0.5, 0.5, 1., 1.]])
  np.testing.assert_allclose(level3, _squares(4, 8, 32, 32), atol=1e-7)
  # Centers 4, 12, 20, 28 px (stride 8) and 8, 24 px (stride 16); side =
  # stride.
  centers_y = (level3[:, 0] + level3[:, 2]) / 2 * 32
  np.testing.assert_allclose(np.unique(centers_y), [4., 12., 20., 28.])
  np.testing.assert_allclose((level3[:, 2] - level3[:, 0]) * 32, 8.)
  np.testing.assert_allclose((level4[:, 3] - level4[:, 1]) * 32, 16.)
  centers_x = (level4[:, 1] + level4[:, 3]) / 2 * 32
  np.testing.assert_allclose(np.unique(centers_x), [8., 24.])


def test_feature_map_index_field():
  gen = point_anchor_generator.PointAnchorGenerator(3, 4)
  anchors = gen.generate([(4, 4), (2, 2)], im_height=32, im_width=32)
  for index, boxes in enumerate(anchors):
    assert boxes.has_field('feature_map_index')
    values = boxes.get_field('feature_map_index')
    assert values.dtype == tf.float32
    np.testing.assert_array_equal(values.numpy(),
                                  np.full([boxes.num_boxes_static()], index))


def test_non_square_image_normalizes_each_axis():
  # 32 rows x 64 columns, stride 8: a 4x8 map. Location (1, 5): center
  # (12, 44) px -> [8, 40, 16, 48] -> [8/32, 40/64, 16/32, 48/64].
  gen = point_anchor_generator.PointAnchorGenerator(3, 4)
  anchors = gen.generate([(4, 8), (2, 4)], im_height=32, im_width=64)
  level3 = anchors[0].get().numpy()
  level4 = anchors[1].get().numpy()
  assert level3.shape == (32, 4)
  assert level4.shape == (8, 4)
  np.testing.assert_allclose(level3[1 * 8 + 5],
                             [0.25, 0.625, 0.5, 0.75])
  # Stride 16, location (1, 3): center (24, 56) -> [16, 48, 32, 64].
  np.testing.assert_allclose(level4[1 * 4 + 3], [0.5, 0.75, 1., 1.])
  # Heights are stride / 32, widths stride / 64.
  np.testing.assert_allclose(level3[:, 2] - level3[:, 0], 8. / 32)
  np.testing.assert_allclose(level3[:, 3] - level3[:, 1], 8. / 64)


def test_tensor_image_size_and_dynamic_maps_in_graph():
  gen = point_anchor_generator.PointAnchorGenerator(3, 3)

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)] * 2)
  def run(height, width):
    boxes = gen.generate([(height // 8, width // 8)], im_height=height,
                         im_width=width)
    return boxes[0].get()

  out = run(tf.constant(16), tf.constant(32)).numpy()
  np.testing.assert_allclose(out, [[0., 0., 0.5, 0.25],
                                   [0., 0.25, 0.5, 0.5],
                                   [0., 0.5, 0.5, 0.75],
                                   [0., 0.75, 0.5, 1.],
                                   [0.5, 0., 1., 0.25],
                                   [0.5, 0.25, 1., 0.5],
                                   [0.5, 0.5, 1., 0.75],
                                   [0.5, 0.75, 1., 1.]])


def test_errors():
  with pytest.raises(ValueError, match='max_level'):
    point_anchor_generator.PointAnchorGenerator(4, 3)
  with pytest.raises(ValueError, match='min_level'):
    point_anchor_generator.PointAnchorGenerator(-1, 3)
  gen = point_anchor_generator.PointAnchorGenerator(3, 4)
  with pytest.raises(ValueError, match='im_height'):
    gen.generate([(4, 4), (2, 2)], im_width=32)
  with pytest.raises(ValueError, match='im_height'):
    gen.generate([(4, 4), (2, 2)], im_height=32)
  # One map per level.
  with pytest.raises(ValueError, match='feature map'):
    gen.generate([(4, 4)], im_height=32, im_width=32)
