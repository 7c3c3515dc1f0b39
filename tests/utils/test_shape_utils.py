import numpy as np
import pytest
import tensorflow as tf

from od_meta.utils import shape_utils


def test_pad_or_clip_pads_and_clips():
  t = tf.reshape(tf.range(6, dtype=tf.float32), [3, 2])
  out = shape_utils.pad_or_clip_nd(t, [5, 1], constant_value=-1)
  assert out.shape.as_list() == [5, 1]
  np.testing.assert_array_equal(out.numpy()[:, 0], [0, 2, 4, -1, -1])


def test_pad_or_clip_keeps_none_dimension_in_graph():
  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
  def fn(t):
    out = shape_utils.pad_or_clip_nd(t, [3, None])
    assert out.shape.as_list() == [3, 4]
    return out
  np.testing.assert_array_equal(fn(tf.ones([1, 4])).numpy().sum(), 4)
  assert fn(tf.zeros([0, 4])).shape == (3, 4)


def test_pad_or_clip_rank_mismatch():
  with pytest.raises(ValueError, match='rank'):
    shape_utils.pad_or_clip_nd(tf.zeros([2, 2]), [2])


def test_combined_static_and_dynamic_shape():
  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def fn(t):
    shape = shape_utils.combined_static_and_dynamic_shape(t)
    assert shape[1] == 3 and isinstance(shape[0], tf.Tensor)
    return shape[0]
  assert int(fn(tf.zeros([7, 3]))) == 7
