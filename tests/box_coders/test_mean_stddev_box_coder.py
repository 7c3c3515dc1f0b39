import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import mean_stddev_box_coder
from od_meta.core import box_list


def _bl(boxes):
  return box_list.BoxList(tf.constant(boxes, tf.float32))


def test_encode_decode_golden():
  # ([0.1, 0.2, 0.9, 0.8] - [0, 0, 1, 1]) / 0.1 = [1, 2, -1, -2].
  coder = mean_stddev_box_coder.MeanStddevBoxCoder(stddev=0.1)
  anchors = _bl([[0., 0., 1., 1.]])
  codes = coder.encode(_bl([[0.1, 0.2, 0.9, 0.8]]), anchors)
  np.testing.assert_allclose(codes.numpy(), [[1., 2., -1., -2.]], atol=1e-5)
  boxes = coder.decode(codes, anchors)
  np.testing.assert_allclose(boxes.get().numpy(), [[0.1, 0.2, 0.9, 0.8]],
                             atol=1e-6)


def test_default_stddev_and_empty_in_graph():
  coder = mean_stddev_box_coder.MeanStddevBoxCoder()

  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2)
  def fn(b, a):
    return coder.encode(box_list.BoxList(b), box_list.BoxList(a))

  # (0.5 - 0.49) / 0.01 = 1.
  np.testing.assert_allclose(
      fn(tf.constant([[0.5, 0.5, 0.5, 0.5]]),
         tf.constant([[0.49, 0.49, 0.49, 0.49]])).numpy(), [[1.] * 4],
      rtol=1e-4)
  assert fn(tf.zeros([0, 4]), tf.zeros([0, 4])).shape == (0, 4)


def test_bad_stddev():
  with pytest.raises(ValueError, match='stddev'):
    mean_stddev_box_coder.MeanStddevBoxCoder(stddev=0.)
