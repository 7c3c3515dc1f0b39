import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_coder
from od_meta.core import box_list


def _bl(boxes):
  return box_list.BoxList(tf.constant(boxes, tf.float32))


def test_encode_golden_point_anchor():
  # Point anchor (8, 8) as a zero-size box; box [2, 4, 20, 10]; scale 2:
  # t = (8 - 2) / 2 = 3, l = (8 - 4) / 2 = 2, b = (20 - 8) / 2 = 6,
  # r = (10 - 8) / 2 = 1. Code order [t, l, b, r].
  coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder(scale=2.)
  anchors = _bl([[8., 8., 8., 8.]])
  codes = coder.encode(_bl([[2., 4., 20., 10.]]), anchors)
  np.testing.assert_allclose(codes.numpy(), [[3., 2., 6., 1.]])
  np.testing.assert_allclose(coder.decode(codes, anchors).get().numpy(),
                             [[2., 4., 20., 10.]])


def test_anchor_box_center_is_the_point_and_outside_is_negative():
  coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder()
  # Anchor box [6, 6, 10, 10] has center (8, 8); box lies below the point:
  # t = 8 - 9 = -1 (negative: the point is outside), l = 8 - 0 = 8,
  # b = 12 - 8 = 4, r = 16 - 8 = 8.
  codes = coder.encode(_bl([[9., 0., 12., 16.]]), _bl([[6., 6., 10., 10.]]))
  np.testing.assert_allclose(codes.numpy(), [[-1., 8., 4., 8.]])


def test_round_trip_batch_and_graph_mode():
  coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder(scale=16.)
  boxes = [[10., 20., 100., 80.], [0., 0., 64., 64.]]
  points = [[32., 40., 32., 40.], [16., 16., 16., 16.]]

  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2)
  def fn(b, a):
    anchors = box_list.BoxList(a)
    codes = coder.encode(box_list.BoxList(b), anchors)
    return codes, coder.decode(codes, anchors).get()

  codes, dec = fn(tf.constant(boxes), tf.constant(points))
  np.testing.assert_allclose(dec.numpy(), boxes, atol=1e-4)
  # (32 - 10) / 16 = 1.375 ...
  np.testing.assert_allclose(codes.numpy()[0],
                             [22. / 16, 20. / 16, 68. / 16, 40. / 16])
  codes, dec = fn(tf.zeros([0, 4]), tf.zeros([0, 4]))
  assert codes.shape == (0, 4) and dec.shape == (0, 4)
  out = box_coder.batch_decode(tf.stack([codes, codes]), coder,
                               box_list.BoxList(tf.zeros([0, 4])))
  assert out.shape == (2, 0, 4)


def test_bad_scale():
  with pytest.raises(ValueError, match='scale'):
    ltrb_distance_box_coder.LtrbDistanceBoxCoder(scale=-1.)
