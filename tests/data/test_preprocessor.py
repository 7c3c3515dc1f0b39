"""Tests for od_meta.data.preprocessor."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import standard_fields
from od_meta.data import preprocessor

F = standard_fields.InputDataFields
NAN = float('nan')


def _example(num_boxes=2, height=20, width=30, keypoints=True):
  """A decoded example dict; per-box fields encode the box index i."""
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 0.9],
                    [0.0, 0.0, 1.0, 1.0], [0.3, 0.1, 0.4, 0.3]],
                   np.float32)[:num_boxes]
  rng = np.random.RandomState(0)
  d = {
      F.image: tf.constant(rng.randint(0, 256, [height, width, 3]), tf.uint8),
      F.groundtruth_boxes: tf.constant(boxes),
      F.groundtruth_classes: tf.range(num_boxes, dtype=tf.int32),
      F.groundtruth_weights: tf.range(num_boxes, dtype=tf.float32),
      F.groundtruth_is_crowd: tf.constant(np.arange(num_boxes) % 2 == 1),
      F.groundtruth_difficult: tf.zeros([num_boxes], tf.bool),
      F.groundtruth_area: tf.ones([num_boxes], tf.float32),
      F.num_groundtruth_boxes: tf.constant(num_boxes, tf.int32),
  }
  if keypoints:
    # keypoint 0 = box center, keypoint 1 = box top-left corner.
    center = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2,
                       (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    corner = boxes[:, :2]
    d[F.groundtruth_keypoints] = tf.constant(
        np.stack([center, corner], axis=1).reshape([num_boxes, 2, 2]))
    d[F.groundtruth_keypoint_visibilities] = tf.ones([num_boxes, 2], tf.bool)
  return d


def _np(d):
  return {k: v.numpy() for k, v in d.items()}


# --------------------------------------------------------------------- flips
def test_horizontal_flip_golden():
  d = {F.image: tf.constant([[[1, 1, 1], [2, 2, 2], [3, 3, 3]]], tf.uint8),
       F.groundtruth_boxes: tf.constant([[0.1, 0.2, 0.5, 0.6]]),
       F.groundtruth_keypoints: tf.constant([[[0.2, 0.3], [0.4, 0.9]]]),
       F.groundtruth_keypoint_visibilities: tf.constant([[True, False]]),
       F.groundtruth_classes: tf.constant([3])}
  out = _np(preprocessor.random_horizontal_flip(
      d, keypoint_flip_permutation=[1, 0], probability=1.0))
  # x -> 1 - x and xmin/xmax swap: [0.1, 1-0.6, 0.5, 1-0.2] = [.1,.4,.5,.8]
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             [[0.1, 0.4, 0.5, 0.8]], atol=1e-6)
  # mirrored: (0.2, 0.7), (0.4, 0.1); permuted [1, 0]: (0.4, 0.1), (0.2, 0.7)
  np.testing.assert_allclose(out[F.groundtruth_keypoints],
                             [[[0.4, 0.1], [0.2, 0.7]]], atol=1e-6)
  np.testing.assert_array_equal(out[F.groundtruth_keypoint_visibilities],
                                [[False, True]])
  np.testing.assert_array_equal(out[F.image][0, :, 0], [3, 2, 1])
  assert out[F.image].dtype == np.float32
  np.testing.assert_array_equal(out[F.groundtruth_classes], [3])


def test_vertical_flip_golden():
  d = {F.image: tf.constant([[[1, 1, 1]], [[2, 2, 2]]], tf.float32),
       F.groundtruth_boxes: tf.constant([[0.1, 0.2, 0.5, 0.6]])}
  out = _np(preprocessor.random_vertical_flip(d, probability=1.0))
  # y -> 1 - y: [1-0.5, 0.2, 1-0.1, 0.6] = [0.5, 0.2, 0.9, 0.6]
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             [[0.5, 0.2, 0.9, 0.6]], atol=1e-6)
  np.testing.assert_array_equal(out[F.image][:, 0, 0], [2, 1])


def test_flip_twice_is_identity_and_probability_zero_is_identity():
  d = _example()
  once = preprocessor.random_horizontal_flip(d, [0, 1], probability=1.0)
  twice = _np(preprocessor.random_horizontal_flip(once, [0, 1],
                                                  probability=1.0))
  none = _np(preprocessor.random_horizontal_flip(d, [0, 1], probability=0.0))
  ref = _np(d)
  for out in (twice, none):
    np.testing.assert_allclose(out[F.groundtruth_boxes],
                               ref[F.groundtruth_boxes], atol=1e-6)
    np.testing.assert_allclose(out[F.groundtruth_keypoints],
                               ref[F.groundtruth_keypoints], atol=1e-6)
    np.testing.assert_array_equal(out[F.image], ref[F.image])


def test_flip_keeps_nan_keypoints_nan():
  d = {F.image: tf.zeros([4, 4, 3]),
       F.groundtruth_boxes: tf.constant([[0.1, 0.2, 0.5, 0.6]]),
       F.groundtruth_keypoints: tf.constant([[[NAN, NAN], [0.5, 0.25]]])}
  out = _np(preprocessor.random_horizontal_flip(d, [1, 0], probability=1.0))
  np.testing.assert_allclose(out[F.groundtruth_keypoints][0, 0], [0.5, 0.75])
  assert np.all(np.isnan(out[F.groundtruth_keypoints][0, 1]))


def test_flip_errors():
  d = _example()
  with pytest.raises(ValueError, match='keypoint_flip_permutation'):
    preprocessor.random_horizontal_flip(d)
  with pytest.raises(ValueError, match='keypoint_flip_permutation'):
    preprocessor.random_horizontal_flip(d, keypoint_flip_permutation=[0])
  with pytest.raises(ValueError, match='permutation'):
    preprocessor.random_horizontal_flip(d, keypoint_flip_permutation=[0, 0])
  with pytest.raises(ValueError, match='probability'):
    preprocessor.random_horizontal_flip(d, [0, 1], probability=1.5)
  # No keypoints: no permutation needed.
  preprocessor.random_horizontal_flip(_example(keypoints=False))


# ------------------------------------------------------------- crop window
def test_apply_window_golden():
  d = {F.image: tf.zeros([4, 4, 3]),
       F.groundtruth_boxes: tf.constant([[0.1, 0.1, 0.3, 0.3],
                                         [0.4, 0.4, 0.8, 0.8],
                                         [0.6, 0.6, 0.9, 0.9]]),
       F.groundtruth_classes: tf.constant([0, 1, 2]),
       F.groundtruth_area: tf.constant([4.0, 16.0, 9.0]),
       F.num_groundtruth_boxes: tf.constant(3)}
  window = tf.constant([0.0, 0.0, 0.5, 0.5])
  # Box 1 has (0.1*0.1)/(0.4*0.4) = 0.0625 of its area inside -> < 0.3,
  # dropped; box 2 is completely outside -> dropped.
  out = _np(preprocessor._apply_window(d, window, overlap_thresh=0.3))
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             [[0.2, 0.2, 0.6, 0.6]], atol=1e-6)
  np.testing.assert_array_equal(out[F.groundtruth_classes], [0])
  assert out[F.num_groundtruth_boxes] == 1
  # overlap 0: box 1 kept, (0.4-0)/0.5 = 0.8, (0.8-0)/0.5 = 1.6 -> clip 1;
  # its area is scaled by the inside fraction 0.0625: 16 * 0.0625 = 1.
  out = _np(preprocessor._apply_window(d, window, overlap_thresh=0.0))
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             [[0.2, 0.2, 0.6, 0.6], [0.8, 0.8, 1.0, 1.0]],
                             atol=1e-6)
  np.testing.assert_allclose(out[F.groundtruth_area], [4.0, 1.0], atol=1e-6)
  # SSD center rule: box 1 center (0.6, 0.6) is outside the window.
  out = _np(preprocessor._apply_window(d, window, overlap_thresh=0.0,
                                       keep_center_in_window=True))
  np.testing.assert_array_equal(out[F.groundtruth_classes], [0])


def test_crop_whole_image_keeps_everything():
  d = _example(height=20, width=20)
  out = _np(preprocessor.random_crop_image(
      d, min_object_covered=0.0, aspect_ratio_range=(1.0, 1.0),
      area_range=(1.0, 1.0), overlap_thresh=0.0))
  ref = _np(d)
  assert out[F.image].shape == (20, 20, 3)
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             ref[F.groundtruth_boxes], atol=1e-6)
  np.testing.assert_allclose(out[F.groundtruth_keypoints],
                             ref[F.groundtruth_keypoints], atol=1e-6)


def test_random_coef_one_returns_input():
  d = _example()
  out = _np(preprocessor.random_crop_image(d, min_object_covered=0.0,
                                           random_coef=1.0))
  np.testing.assert_array_equal(out[F.image], _np(d)[F.image])
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             _np(d)[F.groundtruth_boxes])


def _check_aligned(out, clip_boxes):
  boxes = out[F.groundtruth_boxes]
  n = boxes.shape[0]
  assert out[F.num_groundtruth_boxes] == n
  for key in (F.groundtruth_classes, F.groundtruth_weights,
              F.groundtruth_is_crowd, F.groundtruth_area,
              F.groundtruth_difficult, F.groundtruth_keypoints,
              F.groundtruth_keypoint_visibilities):
    assert out[key].shape[0] == n, key
  # weights and is_crowd were derived from the original index (= class).
  np.testing.assert_array_equal(out[F.groundtruth_weights],
                                out[F.groundtruth_classes])
  np.testing.assert_array_equal(out[F.groundtruth_is_crowd],
                                out[F.groundtruth_classes] % 2 == 1)
  if clip_boxes:
    assert np.all(boxes >= 0.0) and np.all(boxes <= 1.0)
  else:
    # keypoint 0 was the box center: it moves with the box exactly.
    center = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2,
                       (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    kp = out[F.groundtruth_keypoints][:, 0]
    finite = np.all(np.isfinite(kp), axis=1)
    np.testing.assert_allclose(kp[finite], center[finite], atol=1e-5)
  kp = out[F.groundtruth_keypoints]
  vis = out[F.groundtruth_keypoint_visibilities]
  assert not np.any(vis & np.isnan(kp[..., 0]))
  finite = kp[np.isfinite(kp)]
  assert np.all(finite >= 0.0) and np.all(finite <= 1.0)


@pytest.mark.parametrize('clip_boxes', [True, False])
def test_ssd_random_crop_keeps_fields_aligned_in_graph(clip_boxes):
  d = _example(num_boxes=4, height=24, width=32)

  @tf.function
  def crop(x):
    return preprocessor.ssd_random_crop(x, clip_boxes=(clip_boxes,) * 7,
                                        random_coef=(0.0,) * 7)

  shapes = set()
  for _ in range(15):
    out = _np(crop(d))
    _check_aligned(out, clip_boxes)
    assert out[F.image].dtype == np.float32
    shapes.add(out[F.image].shape)
  assert len(shapes) > 1  # it does crop


def test_random_crop_in_dataset_map():
  d = _example(num_boxes=3)
  ds = tf.data.Dataset.from_tensors(d).repeat(6).map(
      lambda x: preprocessor.preprocess(x, [
          (preprocessor.random_crop_image,
           {'min_object_covered': 0.1, 'overlap_thresh': 0.5, 'seed': 5}),
          (preprocessor.random_distort_color, {'seed': 5}),
          (preprocessor.random_pad_image, {'seed': 5})]))
  for out in ds:
    _check_aligned(_np(out), clip_boxes=True)


@pytest.mark.parametrize('step', [
    preprocessor.ssd_random_crop,
    preprocessor.random_crop_image,
    preprocessor.random_pad_image,
    preprocessor.random_image_scale,
    lambda d: preprocessor.random_scale_crop_and_pad_to_square(d, 16),
    lambda d: preprocessor.random_horizontal_flip(d, probability=1.0),
])
def test_zero_boxes(step):
  d = _example(num_boxes=0, keypoints=False)
  out = step(d)
  assert out[F.groundtruth_boxes].shape == (0, 4)
  assert out[F.groundtruth_classes].shape == (0,)
  assert out[F.image].shape.rank == 3
  assert int(out[F.num_groundtruth_boxes]) == 0


def test_crop_argument_errors():
  d = _example()
  with pytest.raises(ValueError, match='area_range'):
    preprocessor.random_crop_image(d, area_range=(0.5, 0.1))
  with pytest.raises(ValueError, match='equal length'):
    preprocessor.ssd_random_crop(d, min_object_covered=(0.1, 0.3))


# -------------------------------------------------------------- scale / pad
def test_random_pad_image_golden():
  d = _example(keypoints=False, height=10, width=20)
  out = _np(preprocessor.random_pad_image(
      d, min_image_size=(20, 40), max_image_size=(20, 40),
      pad_color=(7, 7, 7)))
  assert out[F.image].shape == (20, 40, 3)
  # The image doubles: box heights/widths halve (0.4 -> 0.2).
  boxes = out[F.groundtruth_boxes]
  np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], [0.2, 0.2], atol=1e-6)
  np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], [0.2, 0.2], atol=1e-6)
  # Padding color: at least half of the pixels are 7.
  assert np.mean(out[F.image] == 7.0) >= 0.5 - 1e-6
  # Locate the original content: offset = box ymin * 20 - 0.1 * 10.
  off_y = int(round(boxes[0, 0] * 20 - 1))
  off_x = int(round(boxes[0, 1] * 40 - 4))
  np.testing.assert_array_equal(
      out[F.image][off_y:off_y + 10, off_x:off_x + 20],
      _np(d)[F.image].astype(np.float32))


def test_random_scale_crop_and_pad_to_square_golden():
  d = _example(keypoints=False, height=20, width=40)
  out = _np(preprocessor.random_scale_crop_and_pad_to_square(
      d, output_size=40, scale_min=1.0, scale_max=1.0))
  # scale 1: longer side 40 -> 40, shorter 20 -> 20; no crop; pad 20x40 to
  # 40x40, so y coordinates halve: [0.1,0.2,0.5,0.6] -> [0.05,0.2,0.25,0.6].
  assert out[F.image].shape == (40, 40, 3)
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             [[0.05, 0.2, 0.25, 0.6], [0.25, 0.5, 0.45, 0.9]],
                             atol=1e-6)
  assert np.all(out[F.image][20:] == 0)


def test_random_scale_crop_and_pad_to_square_random():
  d = _example(num_boxes=4, height=24, width=32)
  fn = tf.function(lambda x: preprocessor.random_scale_crop_and_pad_to_square(
      x, output_size=32, scale_min=0.5, scale_max=2.0))
  for _ in range(5):
    out = _np(fn(d))
    assert out[F.image].shape == (32, 32, 3)
    _check_aligned(out, clip_boxes=True)


def test_random_image_scale_keeps_boxes():
  d = _example(height=10, width=20)
  out = _np(preprocessor.random_image_scale(d, min_scale_ratio=2.0,
                                            max_scale_ratio=2.0))
  assert out[F.image].shape == (20, 40, 3)
  np.testing.assert_allclose(out[F.groundtruth_boxes],
                             _np(d)[F.groundtruth_boxes])


# ---------------------------------------------------------------- color ops
COLOR_STEPS = [
    preprocessor.random_pixel_value_scale,
    preprocessor.random_adjust_brightness,
    preprocessor.random_adjust_contrast,
    preprocessor.random_adjust_hue,
    preprocessor.random_adjust_saturation,
    preprocessor.random_distort_color,
    lambda d: preprocessor.random_distort_color(d, color_ordering=1),
    lambda d: preprocessor.random_rgb_to_gray(d, probability=1.0),
]


@pytest.mark.parametrize('step', COLOR_STEPS)
def test_color_ops_shape_dtype_range_in_graph(step):
  d = _example()
  out = _np(tf.function(step)(d))
  assert out[F.image].shape == (20, 30, 3)
  assert out[F.image].dtype == np.float32
  assert out[F.image].min() >= 0.0 and out[F.image].max() <= 255.0
  np.testing.assert_array_equal(out[F.groundtruth_boxes],
                                _np(d)[F.groundtruth_boxes])


def test_color_ops_identity_settings_and_golden():
  d = _example(keypoints=False)
  ref = _np(d)[F.image].astype(np.float32)
  for out in (preprocessor.random_adjust_brightness(d, max_delta=0.0),
              preprocessor.random_adjust_contrast(d, 1.0, 1.0),
              preprocessor.random_pixel_value_scale(d, 1.0, 1.0)):
    np.testing.assert_allclose(out[F.image].numpy(), ref, atol=1e-3)
  # x2 then clip to 255: 100 -> 200, 200 -> 255.
  out = preprocessor.random_pixel_value_scale(d, 2.0, 2.0)[F.image].numpy()
  np.testing.assert_allclose(out, np.minimum(ref * 2.0, 255.0), atol=1e-3)
  gray = preprocessor.random_rgb_to_gray(d, probability=1.0)[F.image].numpy()
  np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-4)


def test_color_op_errors():
  d = _example()
  with pytest.raises(ValueError, match='min_delta'):
    preprocessor.random_adjust_contrast(d, 1.5, 1.0)
  with pytest.raises(ValueError, match='color_ordering'):
    preprocessor.random_distort_color(d, color_ordering=2)
  with pytest.raises(ValueError, match='max_delta'):
    preprocessor.random_adjust_brightness(d, max_delta=-1.0)


# ----------------------------------------------------------------- padding
def test_pad_to_fixed_size_pads_and_truncates():
  d = _example(num_boxes=2)
  out = _np(preprocessor.pad_to_fixed_size(d, 4))
  assert out[F.num_groundtruth_boxes] == 2
  np.testing.assert_array_equal(out[F.groundtruth_classes], [0, 1, -1, -1])
  np.testing.assert_array_equal(out[F.groundtruth_weights], [0, 1, 0, 0])
  assert out[F.groundtruth_keypoints].shape == (4, 2, 2)
  np.testing.assert_array_equal(out[F.groundtruth_boxes][2:], 0.0)
  assert not out[F.groundtruth_keypoint_visibilities][2:].any()
  out = _np(preprocessor.pad_to_fixed_size(_example(num_boxes=4), 3))
  assert out[F.num_groundtruth_boxes] == 3
  np.testing.assert_array_equal(out[F.groundtruth_classes], [0, 1, 2])
  with pytest.raises(ValueError, match='max_number_of_boxes'):
    preprocessor.pad_to_fixed_size(d, 0)


# -------------------------------------------------------------- preprocess
def test_preprocess_applies_steps_in_order():
  d = _example()
  opts = [(preprocessor.random_horizontal_flip,
           {'keypoint_flip_permutation': [0, 1], 'probability': 1.0}),
          (preprocessor.random_vertical_flip,
           {'keypoint_flip_permutation': [0, 1], 'probability': 1.0})]
  out = _np(preprocessor.preprocess(d, opts))
  # [0.1,0.2,0.5,0.6] -> h-flip [0.1,0.4,0.5,0.8] -> v-flip [0.5,0.4,0.9,0.8]
  np.testing.assert_allclose(out[F.groundtruth_boxes][0],
                             [0.5, 0.4, 0.9, 0.8], atol=1e-6)
  assert out[F.image].dtype == np.float32
  with pytest.raises(ValueError, match='preprocess_options'):
    preprocessor.preprocess(d, [preprocessor.random_horizontal_flip])
