import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.box_coders import keypoint_box_coder
from od_meta.core import box_coder
from od_meta.core import box_list


def _boxes_with_keypoints(boxes, keypoints):
  bl = box_list.BoxList(tf.constant(boxes, tf.float32))
  bl.add_field('keypoints', tf.constant(keypoints, tf.float32))
  return bl


def test_encode_golden():
  # Anchor [0, 0, 10, 10]: center (5, 5), size 10 x 10. Box part as in the
  # Faster R-CNN test: [2, 0.5, 0, 5 log 0.5]. Keypoints (4, 6), (12, 8):
  # 10 * (4 - 5) / 10 = -1, 10 * (6 - 5) / 10 = 1, 10 * 7 / 10 = 7,
  # 10 * 3 / 10 = 3.
  coder = keypoint_box_coder.KeypointBoxCoder(2, [10., 10., 5., 5.])
  assert coder.code_size == 8
  boxes = _boxes_with_keypoints([[2., 3., 12., 8.]], [[[4., 6.], [12., 8.]]])
  anchors = box_list.BoxList(tf.constant([[0., 0., 10., 10.]]))
  codes = coder.encode(boxes, anchors)
  np.testing.assert_allclose(
      codes.numpy(), [[2., 0.5, 0., 5. * math.log(0.5), -1., 1., 7., 3.]],
      atol=1e-5)
  decoded = coder.decode(codes, anchors)
  np.testing.assert_allclose(decoded.get().numpy(), [[2., 3., 12., 8.]],
                             atol=1e-5)
  np.testing.assert_allclose(decoded.get_field('keypoints').numpy(),
                             [[[4., 6.], [12., 8.]]], atol=1e-5)


def test_round_trip_without_scale_factors_and_batch_decode():
  rng = np.random.RandomState(1)
  yx = rng.uniform(0, 0.5, [5, 2])
  boxes = np.concatenate([yx, yx + 0.3], 1)
  anchors = np.concatenate([yx + 0.05, yx + 0.4], 1)
  kps = rng.uniform(0, 1, [5, 3, 2])
  coder = keypoint_box_coder.KeypointBoxCoder(3)
  a = box_list.BoxList(tf.constant(anchors, tf.float32))
  codes = coder.encode(_boxes_with_keypoints(boxes, kps), a)
  dec = coder.decode(codes, a)
  np.testing.assert_allclose(dec.get().numpy(), boxes, atol=1e-5)
  np.testing.assert_allclose(dec.get_field('keypoints').numpy(), kps,
                             atol=1e-5)
  out = box_coder.batch_decode(codes[tf.newaxis], coder, a)
  np.testing.assert_allclose(out.numpy()[0], boxes, atol=1e-5)


def test_missing_keypoints_are_nan_and_empty_graph_mode():
  coder = keypoint_box_coder.KeypointBoxCoder(1)
  boxes = _boxes_with_keypoints([[0., 0., 1., 1.]], [[[float('nan')] * 2]])
  codes = coder.encode(boxes, box_list.BoxList(tf.constant([[0., 0., 1., 1.]])))
  assert np.all(np.isfinite(codes.numpy()[0, :4]))
  assert np.all(np.isnan(codes.numpy()[0, 4:]))

  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                tf.TensorSpec([None, 1, 2], tf.float32)])
  def fn(b, k):
    bl = box_list.BoxList(b)
    bl.add_field('keypoints', k)
    codes = coder.encode(bl, box_list.BoxList(b))
    return codes, coder.decode(codes, box_list.BoxList(b)).get_field(
        'keypoints')

  codes, kps = fn(tf.zeros([0, 4]), tf.zeros([0, 1, 2]))
  assert codes.shape == (0, 6) and kps.shape == (0, 1, 2)


def test_bad_arguments():
  with pytest.raises(ValueError, match='num_keypoints'):
    keypoint_box_coder.KeypointBoxCoder(0)
  coder = keypoint_box_coder.KeypointBoxCoder(2)
  anchors = box_list.BoxList(tf.zeros([1, 4]))
  with pytest.raises(ValueError, match='keypoints'):
    coder.encode(box_list.BoxList(tf.zeros([1, 4])), anchors)
  with pytest.raises(ValueError, match='keypoints'):
    coder.encode(_boxes_with_keypoints([[0., 0., 1., 1.]], [[[0., 0.]]]),
                 anchors)
