import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import box_list


def test_num_boxes_and_fields():
  boxes = tf.constant([[0., 0., 1., 1.], [0.1, 0.2, 0.5, 0.6]])
  bl = box_list.BoxList(boxes)
  assert bl.num_boxes_static() == 2
  assert int(bl.num_boxes()) == 2
  bl.add_field('scores', tf.constant([0.9, 0.1]))
  assert bl.has_field('scores') and not bl.has_field('classes')
  assert bl.get_all_fields() == ['boxes', 'scores']
  assert bl.get_extra_fields() == ['scores']
  np.testing.assert_allclose(bl.get_field('scores').numpy(), [0.9, 0.1])
  bl.set_field('scores', tf.constant([0.3, 0.4]))
  np.testing.assert_allclose(bl.get_field('scores').numpy(), [0.3, 0.4])
  d = bl.as_tensor_dict()
  assert set(d) == {'boxes', 'scores'}
  assert set(bl.as_tensor_dict(['scores'])) == {'scores'}


def test_center_coordinates_and_sizes():
  # [ymin, xmin, ymax, xmax] = [2, 3, 12, 8]: center (7, 5.5), h 10, w 5.
  bl = box_list.BoxList(tf.constant([[2., 3., 12., 8.]]))
  yc, xc, h, w = [t.numpy() for t in bl.get_center_coordinates_and_sizes()]
  np.testing.assert_allclose([yc[0], xc[0], h[0], w[0]], [7., 5.5, 10., 5.])


def test_transpose_coordinates():
  bl = box_list.BoxList(tf.constant([[1., 2., 3., 4.]]))
  bl.transpose_coordinates()
  np.testing.assert_allclose(bl.get().numpy(), [[2., 1., 4., 3.]])


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match='boxes'):
    box_list.BoxList(tf.zeros([3, 3]))
  with pytest.raises(ValueError, match='float32'):
    box_list.BoxList(tf.zeros([3, 4], tf.float64))
  bl = box_list.BoxList(tf.zeros([3, 4]))
  with pytest.raises(ValueError, match='scores'):
    bl.get_field('scores')
  with pytest.raises(ValueError, match='scores'):
    bl.add_field('scores', tf.zeros([2]))
  with pytest.raises(ValueError, match='reserved'):
    bl.add_field('boxes', tf.zeros([3, 4]))
  with pytest.raises(ValueError, match='classes'):
    bl.set_field('classes', tf.zeros([3]))


def test_array_like_input_is_cast():
  bl = box_list.BoxList(np.array([[0, 0, 1, 1]], np.float64))
  assert bl.get().dtype == tf.float32


def test_empty_and_dynamic_in_tf_function():
  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
  def fn(boxes):
    bl = box_list.BoxList(boxes)
    assert bl.num_boxes_static() is None
    bl.add_field('scores', tf.ones([bl.num_boxes()]))
    _, _, h, _ = bl.get_center_coordinates_and_sizes()
    return bl.num_boxes(), tf.reduce_sum(h)

  n, s = fn(tf.zeros([0, 4]))
  assert int(n) == 0 and float(s) == 0.
  n, s = fn(tf.constant([[0., 0., 2., 1.], [1., 1., 4., 2.]]))
  assert int(n) == 2 and float(s) == 5.
