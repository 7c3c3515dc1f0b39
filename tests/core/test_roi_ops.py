"""Tests for od_meta.core.roi_ops.

Frame reminder (tf.image.crop_and_resize): normalized coordinate y maps to
feature row y * (H - 1); a crop of n cells samples n evenly spaced points
from the box's first to its last coordinate (the centre for n = 1); samples
outside the map read 0.
"""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import roi_ops


def _ramp(height=4, width=4, offset=0.0):
  """[1, H, W, 1] map with value 10 * y + x + offset at (y, x)."""
  y, x = np.mgrid[0:height, 0:width]
  return tf.constant((10.0 * y + x + offset)[None, :, :, None], tf.float32)


WHOLE = [0.0, 0.0, 1.0, 1.0]


class TestCropAndResizeFeatures:

  def test_shapes_default_pool(self):
    # Huang et al. 2017 sec. 3.6.1: 14x14 crop, 2x2/2 max pool -> 7x7.
    features = tf.random.normal([2, 9, 7, 5], seed=1)
    boxes = tf.random.uniform([2, 3, 4], seed=2)
    crops = roi_ops.crop_and_resize_features(features, boxes, 14)
    assert crops.shape == (6, 7, 7, 5)
    assert crops.dtype == tf.float32
    # 17x17 crop without pool (Inception, kernel 1 / stride 1 or unset 0).
    for kernel, stride in ((1, 1), (0, 0)):
      crops = roi_ops.crop_and_resize_features(
          features, boxes, (17, 17), maxpool_kernel_size=kernel,
          maxpool_stride=stride)
      assert crops.shape == (6, 17, 17, 5)
    # Kernel 1 / stride 2 subsamples: (14 - 1) // 2 + 1 = 7; rectangular
    # crop 6x4 with 3x3 / stride 1: (6 - 3) + 1 = 4, (4 - 3) + 1 = 2.
    assert roi_ops.crop_and_resize_features(
        features, boxes, 14, 1, 2).shape == (6, 7, 7, 5)
    assert roi_ops.crop_and_resize_features(
        features, boxes, (6, 4), 3, 1).shape == (6, 4, 2, 5)

  def test_whole_box_golden_bilinear_grid(self):
    features = _ramp()  # f(y, x) = 10 y + x, H = W = 4.
    box = tf.constant([[WHOLE]])
    # crop 4: samples at rows/cols 0, 1, 2, 3 -> the map itself.
    crop = roi_ops.crop_and_resize_features(features, box, 4, 1, 1)
    np.testing.assert_allclose(crop[0, :, :, 0], features[0, :, :, 0])
    # crop 3: samples at 0, 1.5, 3 (step (4 - 1) / (3 - 1) = 1.5); the map is
    # linear so bilinear interpolation is exact: 10 * y + x.
    crop = roi_ops.crop_and_resize_features(features, box, 3, 1, 1)
    expected = [[0.0, 1.5, 3.0], [15.0, 16.5, 18.0], [30.0, 31.5, 33.0]]
    np.testing.assert_allclose(crop[0, :, :, 0], expected, atol=1e-5)
    # Default 2x2 / stride 2 max pool of the 4x4 crop: max of each quadrant
    # = its bottom-right value: [[11, 13], [31, 33]].
    crop = roi_ops.crop_and_resize_features(features, box, 4)
    np.testing.assert_allclose(crop[0, :, :, 0], [[11.0, 13.0], [31.0, 33.0]])

  def test_nonlinear_bilinear_centre(self):
    # 2x2 map [[0, 4], [8, 0]]; crop 1 samples the centre (0.5, 0.5):
    # 0.25 * (0 + 4 + 8 + 0) = 3. Box [0, 0, 0.5, 1]: crop 1 samples
    # (0.25, 0.5): row 0 gives 0.5 * 0 + 0.5 * 4 = 2, row 1 gives
    # 0.5 * 8 + 0.5 * 0 = 4, then 0.75 * 2 + 0.25 * 4 = 2.5.
    features = tf.constant([[0.0, 4.0], [8.0, 0.0]], shape=[1, 2, 2, 1])
    boxes = tf.constant([[WHOLE, [0.0, 0.0, 0.5, 1.0]]])
    crop = roi_ops.crop_and_resize_features(features, boxes, 1, 1, 1)
    np.testing.assert_allclose(crop[:, 0, 0, 0], [3.0, 2.5], atol=1e-6)

  def test_batch_row_order_and_outside_samples(self):
    # Image b holds 10 y + x + 100 b; row b * N + n is box n of image b.
    features = tf.concat([_ramp(), _ramp(offset=100.0)], axis=0)
    third = 1.0 / 3.0
    boxes = tf.constant([[WHOLE, [third, third, third, third]],
                         [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]]])
    crops = roi_ops.crop_and_resize_features(features, boxes, 2, 1, 1)
    assert crops.shape == (4, 2, 2, 1)
    # Row 0: image 0 corners 0, 3, 30, 33. Row 1: image 0 point
    # (1/3 * 3, 1/3 * 3) = (1, 1) = 11.
    np.testing.assert_allclose(crops[0, :, :, 0], [[0.0, 3.0], [30.0, 33.0]])
    np.testing.assert_allclose(crops[1, :, :, 0], [[11.0] * 2] * 2,
                               rtol=1e-5)
    # Row 2: image 1 point (3, 3) = 33 + 100.
    np.testing.assert_allclose(crops[2, :, :, 0], [[133.0] * 2] * 2)
    # Row 3: box [0, 0, 2, 2] samples rows/cols 0 and 2 * 3 = 6 > 3: outside
    # samples read 0, only (0, 0) = 100 is inside.
    np.testing.assert_allclose(crops[3, :, :, 0], [[100.0, 0.0], [0.0, 0.0]])

  def test_gradients_reach_features_not_boxes(self):
    features = tf.random.normal([1, 5, 5, 2], seed=3)
    boxes = tf.constant([[[0.1, 0.2, 0.7, 0.9]]])
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(features)
      tape.watch(boxes)
      loss = tf.reduce_sum(
          roi_ops.crop_and_resize_features(features, boxes, 4) ** 2)
    grad_features = tape.gradient(loss, features)
    grad_boxes = tape.gradient(loss, boxes)
    assert grad_features is not None
    assert np.abs(grad_features.numpy()).sum() > 0
    # Huang et al. 2017 sec. 3.4: no back-propagation into box coordinates.
    assert grad_boxes is None or not np.any(grad_boxes.numpy())

  def test_empty_boxes(self):
    features = tf.random.normal([2, 4, 4, 3], seed=4)
    crops = roi_ops.crop_and_resize_features(features, tf.zeros([2, 0, 4]), 4)
    assert crops.shape == (0, 2, 2, 3)

  def test_tf_function_dynamic_shapes(self):
    fn = tf.function(
        lambda f, b: roi_ops.crop_and_resize_features(f, b, 4),
        input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32),
                         tf.TensorSpec([None, None, 4], tf.float32)])
    features = tf.concat([_ramp(), _ramp(offset=100.0)], axis=0)
    features = tf.concat([features, -features], axis=-1)
    boxes = tf.constant([[WHOLE], [WHOLE]])
    crops = fn(features, boxes)
    assert crops.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(crops[1, :, :, 0],
                               [[111.0, 113.0], [131.0, 133.0]])
    # max of the negated map = -(min of each quadrant) = -(top-left value).
    np.testing.assert_allclose(crops[0, :, :, 1], [[0.0, -2.0], [-20.0, -22.0]])
    assert fn(features, tf.zeros([2, 0, 4])).shape == (0, 2, 2, 2)

  def test_errors(self):
    features = tf.zeros([1, 4, 4, 1])
    boxes = tf.zeros([1, 2, 4])
    with pytest.raises(ValueError, match='features'):
      roi_ops.crop_and_resize_features(tf.zeros([4, 4, 1]), boxes, 4)
    with pytest.raises(ValueError, match='boxes'):
      roi_ops.crop_and_resize_features(features, tf.zeros([2, 4]), 4)
    with pytest.raises(ValueError, match='boxes'):
      roi_ops.crop_and_resize_features(features, tf.zeros([1, 2, 3]), 4)
    with pytest.raises(ValueError, match='batch'):
      roi_ops.crop_and_resize_features(features, tf.zeros([2, 2, 4]), 4)
    with pytest.raises(ValueError, match='crop_size'):
      roi_ops.crop_and_resize_features(features, boxes, 0)
    with pytest.raises(ValueError, match='crop_size'):
      roi_ops.crop_and_resize_features(features, boxes, (2, 2, 2))
    with pytest.raises(ValueError, match='maxpool'):
      roi_ops.crop_and_resize_features(features, boxes, 4, -1, 2)
    with pytest.raises(ValueError, match='maxpool_kernel_size'):
      roi_ops.crop_and_resize_features(features, boxes, 2, 3, 1)
    with pytest.raises(ValueError, match='float'):
      roi_ops.crop_and_resize_features(tf.zeros([1, 4, 4, 1], tf.int32),
                                       boxes, 4)


def _reference_ps_crop(features, boxes, crop_size, bins, global_pool):
  """TF OD API ops.position_sensitive_crop_regions, per image and bin."""
  bins_h, bins_w = bins
  bin_crop = [crop_size[0] // bins_h, crop_size[1] // bins_w]
  results = []
  for b in range(features.shape[0]):
    splits = tf.split(features[b:b + 1], bins_h * bins_w, axis=3)
    ymin, xmin, ymax, xmax = tf.unstack(boxes[b], axis=1)
    dy, dx = (ymax - ymin) / bins_h, (xmax - xmin) / bins_w
    per_bin = []
    for i in range(bins_h):
      for j in range(bins_w):
        sub = tf.stack([ymin + i * dy, xmin + j * dx, ymin + (i + 1) * dy,
                        xmin + (j + 1) * dx], axis=1)
        crop = tf.image.crop_and_resize(
            splits[i * bins_w + j], sub,
            tf.zeros([boxes.shape[1]], tf.int32), bin_crop)
        per_bin.append(tf.reduce_mean(crop, [1, 2]))
    stacked = tf.stack(per_bin, axis=1)  # [N, K, C']
    if global_pool:
      results.append(tf.reduce_mean(stacked, 1)[:, None, None, :])
    else:
      results.append(tf.reshape(stacked, [-1, bins_h, bins_w,
                                          stacked.shape[-1]]))
  return tf.concat(results, axis=0)


class TestPositionSensitiveCropRegions:

  def test_shapes(self):
    features = tf.random.normal([2, 6, 5, 3 * 3 * 4], seed=5)
    boxes = tf.random.uniform([2, 7, 4], seed=6)
    out = roi_ops.position_sensitive_crop_regions(features, boxes, (12, 12),
                                                  (3, 3))
    assert out.shape == (14, 1, 1, 4)
    assert out.dtype == tf.float32
    out = roi_ops.position_sensitive_crop_regions(
        features, boxes, (6, 9), (3, 3), global_pool=False)
    assert out.shape == (14, 3, 3, 4)
    # Non-square bins 1 x 2 over 2 * 5 channels -> C' = 5.
    out = roi_ops.position_sensitive_crop_regions(
        tf.random.normal([1, 4, 4, 10]), boxes[:1], (2, 4), (1, 2),
        global_pool=False)
    assert out.shape == (7, 1, 2, 5)

  def test_constant_groups_vote(self):
    # 2x2 bins, C' = 2: channel g * 2 + c is the constant 10 g + c. Bin
    # (i, j) reads group g = 2 i + j only, so its average is 10 g + c, and
    # voting gives mean_g(10 g + c) = 10 * (0 + 1 + 2 + 3) / 4 + c = 15 + c.
    values = np.array([10.0 * g + c for g in range(4) for c in range(2)])
    features = tf.constant(np.broadcast_to(values, [2, 5, 5, 8]), tf.float32)
    boxes = tf.constant([[[0.1, 0.2, 0.6, 0.9], WHOLE],
                         [[0.5, 0.5, 0.75, 0.75], [0.0, 0.3, 0.2, 0.4]]])
    voted = roi_ops.position_sensitive_crop_regions(features, boxes, (4, 4),
                                                    (2, 2))
    np.testing.assert_allclose(voted[:, 0, 0, :], [[15.0, 16.0]] * 4,
                               rtol=1e-6)
    per_bin = roi_ops.position_sensitive_crop_regions(
        features, boxes, (4, 4), (2, 2), global_pool=False)
    expected = values.reshape(2, 2, 2)  # [i, j, c] = 10 (2 i + j) + c.
    for row in range(4):
      np.testing.assert_allclose(per_bin[row], expected, rtol=1e-6)

  def test_top_left_quarter_golden(self):
    # 4x4 map; group g (C' = 1) holds f_g(y, x) = 100 g + 10 y + x. Box
    # [0, 0, 0.5, 0.5] = rows/cols 0 .. 1.5; crop 4 with 2x2 bins -> 2x2
    # samples per bin. Bin (0, 0): sub-box rows/cols 0 .. 0.75 (0.25 * 3),
    # samples {0, 0.75}, mean 0.375; f linear -> bilinear exact, so
    # r(0,0) = 0 + 10 * 0.375 + 0.375 = 4.125;
    # r(0,1) (g=1, x in {0.75, 1.5}, mean 1.125) = 100 + 3.75 + 1.125
    #        = 104.875;
    # r(1,0) (g=2) = 200 + 11.25 + 0.375 = 211.625;
    # r(1,1) (g=3) = 300 + 11.25 + 1.125 = 312.375;
    # vote (Dai et al. 2016 Eq. 1 then averaging) = 633 / 4 = 158.25.
    ramp = _ramp()
    features = tf.concat([ramp + 100.0 * g for g in range(4)], axis=-1)
    boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5]]])
    per_bin = roi_ops.position_sensitive_crop_regions(
        features, boxes, (4, 4), (2, 2), global_pool=False)
    np.testing.assert_allclose(per_bin[0, :, :, 0],
                               [[4.125, 104.875], [211.625, 312.375]],
                               rtol=1e-6)
    voted = roi_ops.position_sensitive_crop_regions(features, boxes, (4, 4),
                                                    (2, 2))
    np.testing.assert_allclose(voted[0, 0, 0, 0], 158.25, rtol=1e-6)

  def test_matches_per_bin_reference(self):
    # One batched crop_and_resize == the TF OD API's loop over bins / images.
    features = tf.random.normal([2, 7, 6, 2 * 3 * 3], seed=7)
    ymin_xmin = tf.random.uniform([2, 5, 2], 0.0, 0.6, seed=8)
    sizes = tf.random.uniform([2, 5, 2], 0.05, 0.6, seed=9)
    boxes = tf.concat([ymin_xmin, ymin_xmin + sizes], axis=-1)
    for global_pool in (True, False):
      got = roi_ops.position_sensitive_crop_regions(
          features, boxes, (4, 6), (2, 3), global_pool=global_pool)
      want = _reference_ps_crop(features, boxes, (4, 6), (2, 3), global_pool)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  def test_gradients_reach_features_not_boxes(self):
    features = tf.random.normal([1, 5, 5, 8], seed=10)
    boxes = tf.constant([[[0.1, 0.2, 0.7, 0.9]]])
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(features)
      tape.watch(boxes)
      loss = tf.reduce_sum(roi_ops.position_sensitive_crop_regions(
          features, boxes, (4, 4), (2, 2)))
    grad_features = tape.gradient(loss, features)
    assert np.abs(grad_features.numpy()).sum() > 0
    grad_boxes = tape.gradient(loss, boxes)
    assert grad_boxes is None or not np.any(grad_boxes.numpy())

  def test_empty_boxes_and_tf_function(self):
    fn = tf.function(
        lambda f, b: roi_ops.position_sensitive_crop_regions(
            f, b, (4, 4), (2, 2)),
        input_signature=[tf.TensorSpec([None, None, None, 8], tf.float32),
                         tf.TensorSpec([None, None, 4], tf.float32)])
    values = np.array([10.0 * g + c for g in range(4) for c in range(2)])
    features = tf.constant(np.broadcast_to(values, [2, 5, 5, 8]), tf.float32)
    out = fn(features, tf.constant([[WHOLE], [[0.2, 0.2, 0.4, 0.4]]]))
    np.testing.assert_allclose(out[:, 0, 0, :], [[15.0, 16.0]] * 2, rtol=1e-6)
    assert fn(features, tf.zeros([2, 0, 4])).shape == (0, 1, 1, 2)
    eager = roi_ops.position_sensitive_crop_regions(
        features, tf.zeros([2, 0, 4]), (4, 4), (2, 2), global_pool=False)
    assert eager.shape == (0, 2, 2, 2)

  def test_errors(self):
    features = tf.zeros([1, 4, 4, 8])
    boxes = tf.zeros([1, 2, 4])
    with pytest.raises(ValueError, match='multiple'):
      roi_ops.position_sensitive_crop_regions(features, boxes, (5, 4), (2, 2))
    with pytest.raises(ValueError, match='divisible'):
      roi_ops.position_sensitive_crop_regions(features, boxes, (3, 3), (3, 3))
    with pytest.raises(ValueError, match='num_spatial_bins'):
      roi_ops.position_sensitive_crop_regions(features, boxes, (4, 4), (0, 2))
    with pytest.raises(ValueError, match='boxes'):
      roi_ops.position_sensitive_crop_regions(features, tf.zeros([2, 4]),
                                              (4, 4), (2, 2))
    with pytest.raises(ValueError, match='features'):
      roi_ops.position_sensitive_crop_regions(tf.zeros([4, 4, 8]), boxes,
                                              (4, 4), (2, 2))
