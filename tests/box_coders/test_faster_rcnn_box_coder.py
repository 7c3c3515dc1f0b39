import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.core import box_coder
from od_meta.core import box_list


def _bl(boxes):
  return box_list.BoxList(tf.constant(boxes, tf.float32))


def test_encode_golden():
  # Anchor [0, 0, 10, 10]: center (5, 5), h = w = 10.
  # Box [2, 3, 12, 8]: center (7, 5.5), h = 10, w = 5.
  # Huang et al. 2017 / Ren et al. 2015 Eq. 2 with scales [10, 10, 5, 5]:
  # ty = 10 * (7 - 5) / 10 = 2, tx = 10 * (5.5 - 5) / 10 = 0.5,
  # th = 5 * log(10 / 10) = 0, tw = 5 * log(5 / 10) = -3.4657359.
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder([10., 10., 5., 5.])
  codes = coder.encode(_bl([[2., 3., 12., 8.]]), _bl([[0., 0., 10., 10.]]))
  np.testing.assert_allclose(codes.numpy(),
                             [[2., 0.5, 0., 5. * math.log(0.5)]], atol=1e-5)
  # Without scale factors: [0.2, 0.05, 0, log 0.5].
  codes = faster_rcnn_box_coder.FasterRcnnBoxCoder().encode(
      _bl([[2., 3., 12., 8.]]), _bl([[0., 0., 10., 10.]]))
  np.testing.assert_allclose(codes.numpy(), [[0.2, 0.05, 0., math.log(0.5)]],
                             atol=1e-6)


def test_decode_golden():
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder([10., 10., 5., 5.])
  boxes = coder.decode(tf.constant([[2., 0.5, 0., 5. * math.log(0.5)]]),
                       _bl([[0., 0., 10., 10.]]))
  np.testing.assert_allclose(boxes.get().numpy(), [[2., 3., 12., 8.]],
                             atol=1e-5)


def test_round_trip_random():
  rng = np.random.RandomState(0)
  def rand_boxes(n):
    yx = rng.uniform(0, 0.7, [n, 2])
    hw = rng.uniform(0.05, 0.3, [n, 2])
    return np.concatenate([yx, yx + hw], 1).astype(np.float32)
  boxes, anchors = _bl(rand_boxes(20)), _bl(rand_boxes(20))
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder([10., 10., 5., 5.])
  decoded = coder.decode(coder.encode(boxes, anchors), anchors)
  np.testing.assert_allclose(decoded.get().numpy(), boxes.get().numpy(),
                             atol=1e-5)


def test_zero_size_boxes_are_finite():
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder([10., 10., 5., 5.])
  codes = coder.encode(_bl([[0., 0., 0., 0.]]), _bl([[0., 0., 0., 0.]]))
  assert np.all(np.isfinite(codes.numpy()))


def test_empty_and_graph_mode_and_batch_decode():
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder([10., 10., 5., 5.])

  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2)
  def fn(b, a):
    return coder.encode(box_list.BoxList(b), box_list.BoxList(a))

  assert fn(tf.zeros([0, 4]), tf.zeros([0, 4])).shape == (0, 4)
  anchors = _bl([[0., 0., 10., 10.], [5., 5., 15., 25.]])
  codes = tf.constant([[[2., 0.5, 0., 0.], [0., 0., 0., 0.]],
                       [[0., 0., 0., 0.], [1., 1., 1., 1.]]])
  out = box_coder.batch_decode(codes, coder, anchors)
  assert out.shape == (2, 2, 4)
  for i in range(2):
    np.testing.assert_allclose(
        out.numpy()[i], coder.decode(codes[i], anchors).get().numpy())
  np.testing.assert_allclose(out.numpy()[1, 0], [0., 0., 10., 10.])
  assert box_coder.batch_decode(tf.zeros([3, 0, 4]), coder,
                                _bl(np.zeros([0, 4]))).shape == (3, 0, 4)

  @tf.function(input_signature=[tf.TensorSpec([None, 2, 4], tf.float32)])
  def dyn(c):
    return box_coder.batch_decode(c, coder, anchors)
  np.testing.assert_allclose(dyn(codes).numpy(), out.numpy())


def test_bad_arguments():
  with pytest.raises(ValueError, match='scale_factors'):
    faster_rcnn_box_coder.FasterRcnnBoxCoder([10., 10., 5.])
  with pytest.raises(ValueError, match='scale_factors'):
    faster_rcnn_box_coder.FasterRcnnBoxCoder([10., 0., 5., 5.])
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder()
  with pytest.raises(ValueError, match='rel_codes'):
    coder.decode(tf.zeros([2, 5]), _bl(np.zeros([2, 4])))
  with pytest.raises(ValueError, match='same number'):
    coder.encode(_bl(np.zeros([2, 4])), _bl(np.zeros([3, 4])))
  with pytest.raises(ValueError, match='encoded_boxes'):
    box_coder.batch_decode(tf.zeros([2, 4]), coder, _bl(np.zeros([2, 4])))
  with pytest.raises(ValueError, match='anchors'):
    box_coder.batch_decode(tf.zeros([1, 3, 4]), coder, _bl(np.zeros([2, 4])))
