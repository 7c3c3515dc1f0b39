"""Tests for od_meta.data.image_resizer."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.data import image_resizer


def _image(h, w, value=None):
  if value is None:
    return tf.zeros([h, w, 3], tf.uint8)
  return tf.fill([h, w, 3], tf.constant(value, tf.uint8))


@pytest.mark.parametrize('h,w,expected', [
    (300, 400, (600, 800)),      # 600/300 = 2 -> 600x800, 800 <= 1024
    (300, 1000, (307, 1024)),    # 600x2000 too long; 1024/1000 -> 307.2
    (1000, 300, (1024, 307)),
    (600, 600, (600, 600)),
    (100, 50, (1024, 512)),      # x12 = 1200x600 too long; x10.24
])
def test_keep_aspect_ratio_golden_shapes(h, w, expected):
  resized, true_shape = image_resizer.keep_aspect_ratio_resizer(
      _image(h, w), min_dimension=600, max_dimension=1024)
  assert resized.shape == expected + (3,)
  assert resized.dtype == tf.float32
  np.testing.assert_array_equal(true_shape.numpy(), expected + (3,))


def test_keep_aspect_ratio_padding_keeps_true_shape():
  resized, true_shape = image_resizer.keep_aspect_ratio_resizer(
      _image(30, 100, 10), min_dimension=60, max_dimension=128,
      pad_to_max_dimension=True, per_channel_pad_value=(1, 2, 3))
  # 60x200 too long -> 128/100 = 1.28: 38.4 -> 38 rows, 128 cols.
  assert resized.shape == (128, 128, 3)
  np.testing.assert_array_equal(true_shape.numpy(), [38, 128, 3])
  r = resized.numpy()
  np.testing.assert_allclose(r[:38], 10.0)
  np.testing.assert_array_equal(r[38:, 0], np.tile([1, 2, 3], (90, 1)))


def test_keep_aspect_ratio_in_graph_static_padded_shape():
  fn = tf.function(lambda x: image_resizer.keep_aspect_ratio_resizer(
      x, 8, 16, pad_to_max_dimension=True),
                   input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  resized, true_shape = fn(_image(4, 6))
  assert resized.shape == (16, 16, 3)
  np.testing.assert_array_equal(true_shape.numpy(), [8, 12, 3])


def test_keep_aspect_ratio_no_max():
  resized, _ = image_resizer.keep_aspect_ratio_resizer(_image(10, 40), 20, 0)
  assert resized.shape == (20, 80, 3)


def test_fixed_shape_resizer():
  resized, true_shape = image_resizer.fixed_shape_resizer(
      _image(7, 13, 50), height=5, width=9, method='nearest')
  assert resized.shape == (5, 9, 3)
  assert resized.dtype == tf.float32
  np.testing.assert_allclose(resized.numpy(), 50.0)
  np.testing.assert_array_equal(true_shape.numpy(), [5, 9, 3])


def test_identity_resizer():
  resized, true_shape = image_resizer.identity_resizer(_image(3, 4, 9))
  assert resized.dtype == tf.float32
  np.testing.assert_array_equal(true_shape.numpy(), [3, 4, 3])
  np.testing.assert_allclose(resized.numpy(), 9.0)


def test_conditional_shape_resizer():
  # greater: max side 400 > 300 -> x0.75: 150x300; 100x200 untouched.
  resized, shape = image_resizer.conditional_shape_resizer(
      _image(200, 400), 'greater', 300)
  np.testing.assert_array_equal(shape.numpy(), [150, 300, 3])
  assert resized.shape == (150, 300, 3)
  _, shape = image_resizer.conditional_shape_resizer(_image(100, 200),
                                                     'greater', 300)
  np.testing.assert_array_equal(shape.numpy(), [100, 200, 3])
  # smaller: min side 100 < 300 -> x3: 300x600.
  _, shape = image_resizer.conditional_shape_resizer(_image(100, 200),
                                                     'smaller', 300)
  np.testing.assert_array_equal(shape.numpy(), [300, 600, 3])


def test_pad_to_multiple_resizer():
  resized, shape = image_resizer.pad_to_multiple_resizer(_image(65, 100, 4),
                                                         32)
  # ceil(65/32)*32 = 96, ceil(100/32)*32 = 128.
  assert resized.shape == (96, 128, 3)
  np.testing.assert_array_equal(shape.numpy(), [65, 100, 3])
  np.testing.assert_allclose(resized.numpy()[:65, :100], 4.0)
  np.testing.assert_allclose(resized.numpy()[65:], 0.0)


def test_errors():
  with pytest.raises(ValueError, match='method'):
    image_resizer.fixed_shape_resizer(_image(4, 4), 2, 2, method='magic')
  with pytest.raises(ValueError, match='max_dimension'):
    image_resizer.keep_aspect_ratio_resizer(_image(4, 4), 10, 5)
  with pytest.raises(ValueError, match='image'):
    image_resizer.identity_resizer(tf.zeros([4, 4]))
  with pytest.raises(ValueError, match='condition'):
    image_resizer.conditional_shape_resizer(_image(4, 4), 'equal', 3)
  with pytest.raises(ValueError, match='per_channel_pad_value'):
    image_resizer.keep_aspect_ratio_resizer(
        _image(4, 4), 4, 8, pad_to_max_dimension=True,
        per_channel_pad_value=(0, 0))
