"""Tests of `LtrbDistanceBoxCoder(normalize_by_anchor_size=True)`.

With the option the distances from the anchor center to the box sides are
divided by the anchor's height (t, b) and width (l, r): FCOS's regression
in strides when the anchor of a location is the stride x stride square.

Golden example: anchor square of side 8 px centered at (12, 12), i.e.
[8, 8, 16, 16]; box [4, 6, 30, 20]:
  t = (12 - 4) / 8 = 1, l = (12 - 6) / 8 = 0.75,
  b = (30 - 12) / 8 = 2.25, r = (20 - 12) / 8 = 1.
"""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_list

_ANCHOR = [[8., 8., 16., 16.]]
_BOX = [[4., 6., 30., 20.]]
_CODES = [[1., 0.75, 2.25, 1.]]


def _bl(boxes):
  return box_list.BoxList(tf.constant(boxes, tf.float32))


def _coder(**kwargs):
  return ltrb_distance_box_coder.LtrbDistanceBoxCoder(
      normalize_by_anchor_size=True, **kwargs)


def test_encode_decode_golden_pixels():
  coder = _coder()
  codes = coder.encode(_bl(_BOX), _bl(_ANCHOR))
  np.testing.assert_allclose(codes.numpy(), _CODES, rtol=1e-6)
  np.testing.assert_allclose(
      coder.decode(tf.constant(_CODES), _bl(_ANCHOR)).get().numpy(), _BOX,
      rtol=1e-6)


def test_default_is_not_normalized_by_anchor_size():
  coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder()
  codes = coder.encode(_bl(_BOX), _bl(_ANCHOR))
  np.testing.assert_allclose(codes.numpy(), [[8., 6., 18., 8.]])


def test_frame_invariance_in_normalized_coordinates_non_square():
  # The same anchor and box in normalized coordinates of a 32 x 64 image
  # (y / 32, x / 64): the codes are unit-free, hence identical.
  def normalize(boxes):
    return [[b[0] / 32, b[1] / 64, b[2] / 32, b[3] / 64] for b in boxes]

  coder = _coder()
  codes = coder.encode(_bl(normalize(_BOX)), _bl(normalize(_ANCHOR)))
  np.testing.assert_allclose(codes.numpy(), _CODES, rtol=1e-5)
  decoded = coder.decode(tf.constant(_CODES), _bl(normalize(_ANCHOR)))
  np.testing.assert_allclose(decoded.get().numpy(), normalize(_BOX),
                             rtol=1e-5)


def test_non_square_anchor_divides_y_by_height_and_x_by_width():
  # Anchor [8, 4, 16, 20]: center (12, 12), height 8, width 16.
  # t = 8 / 8, l = 6 / 16, b = 18 / 8, r = 8 / 16.
  coder = _coder()
  codes = coder.encode(_bl(_BOX), _bl([[8., 4., 16., 20.]]))
  np.testing.assert_allclose(codes.numpy(), [[1., 0.375, 2.25, 0.5]],
                             rtol=1e-6)


def test_scale_multiplies_in():
  coder = _coder(scale=2.0)
  codes = coder.encode(_bl(_BOX), _bl(_ANCHOR))
  np.testing.assert_allclose(codes.numpy(), np.array(_CODES) / 2.0,
                             rtol=1e-6)
  np.testing.assert_allclose(
      coder.decode(codes, _bl(_ANCHOR)).get().numpy(), _BOX, rtol=1e-6)
  # Decode of the unit codes with scale 2 doubles the distances.
  decoded = coder.decode(tf.constant([[1., 1., 1., 1.]]), _bl(_ANCHOR))
  np.testing.assert_allclose(decoded.get().numpy(), [[-4., -4., 28., 28.]])


def test_round_trip_several_anchor_sizes():
  rng = np.random.default_rng(0)
  sides = np.array([8., 16., 32., 64.], np.float32)
  centers = rng.uniform(20, 100, [4, 2]).astype(np.float32)
  anchors = np.concatenate([centers - sides[:, None] / 2,
                            centers + sides[:, None] / 2], axis=1)
  mins = rng.uniform(0, 40, [4, 2]).astype(np.float32)
  boxes = np.concatenate([mins, mins + rng.uniform(10, 80, [4, 2])], axis=1)
  coder = _coder(scale=1.5)
  codes = coder.encode(_bl(boxes), _bl(anchors))
  # Code = pixel distance / (side * 1.5).
  cy = centers[:, 0]
  np.testing.assert_allclose(codes.numpy()[:, 0],
                             (cy - boxes[:, 0]) / (sides * 1.5), rtol=1e-5)
  decoded = coder.decode(codes, _bl(anchors)).get().numpy()
  np.testing.assert_allclose(decoded, boxes, rtol=1e-5, atol=1e-4)


def test_in_graph_with_dynamic_count():
  coder = _coder()

  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2)
  def encode(boxes, anchors):
    return coder.encode(box_list.BoxList(boxes),
                        box_list.BoxList(anchors))

  codes = encode(tf.constant(_BOX * 2), tf.constant(_ANCHOR * 2))
  np.testing.assert_allclose(codes.numpy(), _CODES * 2, rtol=1e-6)


def test_bad_scale():
  with pytest.raises(ValueError, match='scale'):
    _coder(scale=0.0)
