"""Tests for od_meta.data.tf_example_decoder: tf_example_util round trips."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from od_meta.core import standard_fields
from od_meta.data import label_map_util
from od_meta.data import tf_example_decoder
from od_meta.data import tf_example_util

_I = standard_fields.InputDataFields
_F = standard_fields.TfExampleFields


def _image(h=6, w=8):
  return np.random.default_rng(0).integers(0, 256, [h, w, 3]).astype(np.uint8)


def _encode(image, fmt):
  out = io.BytesIO()
  Image.fromarray(image).save(out, format=fmt)
  return out.getvalue()


_BOXES = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.25, 1.0, 0.75]], np.float32)
_KPTS = np.array([[[0.2, 0.3], [0.4, 0.5], [0.3, 0.3]],
                  [[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]]], np.float32)
_VIS = np.array([[2, 1, 2], [2, 0, 2]])


def _example(fmt='png', **overrides):
  image = _image()
  args = dict(
      encoded_image=_encode(image, fmt), image_format=fmt, height=6, width=8,
      boxes=_BOXES, class_labels=[1, 3], class_texts=['a', 'c'],
      filename='f.png', source_id='42', keypoints=_KPTS,
      keypoint_visibilities=_VIS, area=[4.0, 9.5], is_crowd=[0, 1],
      difficult=[1, 0])
  args.update(overrides)
  return image, tf_example_util.build_tf_example(**args).SerializeToString()


def test_round_trip_png():
  image, serialized = _example('png')
  out = tf_example_decoder.TfExampleDecoder(num_keypoints=3).decode(
      tf.constant(serialized))
  np.testing.assert_array_equal(out[_I.image].numpy(), image)
  assert out[_I.image].dtype == tf.uint8
  np.testing.assert_array_equal(out[_I.original_image_spatial_shape], [6, 8])
  assert out[_I.source_id].numpy() == b'42'
  assert out[_I.filename].numpy() == b'f.png'
  assert len(out[_I.key].numpy()) == 64
  np.testing.assert_allclose(out[_I.groundtruth_boxes].numpy(), _BOXES)
  # Label-map ids 1 and 3 -> 0-based classes 0 and 2.
  np.testing.assert_array_equal(out[_I.groundtruth_classes], [0, 2])
  assert out[_I.groundtruth_classes].dtype == tf.int32
  np.testing.assert_array_equal(out[_I.groundtruth_text], [b'a', b'c'])
  np.testing.assert_array_equal(out[_I.groundtruth_is_crowd], [False, True])
  np.testing.assert_array_equal(out[_I.groundtruth_difficult], [True, False])
  np.testing.assert_allclose(out[_I.groundtruth_area], [4.0, 9.5])
  np.testing.assert_allclose(out[_I.groundtruth_weights], [1.0, 1.0])
  assert out[_I.num_groundtruth_boxes].numpy() == 2
  kpts = out[_I.groundtruth_keypoints].numpy()
  assert kpts.shape == (2, 3, 2)
  # Visibility 1 (labelled, occluded) and 2 count as visible; 0 -> NaN.
  expected = _KPTS.copy()
  expected[1, 1] = np.nan
  np.testing.assert_allclose(kpts, expected)
  np.testing.assert_array_equal(
      out[_I.groundtruth_keypoint_visibilities],
      [[True, True, True], [True, False, True]])


def test_round_trip_jpeg_in_dataset_map():
  image, serialized = _example('jpeg')
  reference = np.asarray(Image.open(io.BytesIO(_encode(image, 'jpeg'))))
  decoder = tf_example_decoder.TfExampleDecoder(num_keypoints=3)
  ds = tf.data.Dataset.from_tensor_slices([serialized] * 2).map(decoder)
  out = next(iter(ds))
  decoded = out[_I.image].numpy()
  assert decoded.shape == (6, 8, 3)
  # JPEG is lossy: compare with Pillow's decoding of the same bytes (the
  # two libjpeg builds may differ by a level or two in IDCT rounding).
  assert np.abs(decoded.astype(float) - reference).max() <= 3
  np.testing.assert_array_equal(out[_I.groundtruth_classes], [0, 2])
  assert np.isnan(out[_I.groundtruth_keypoints].numpy()[1, 1]).all()


def test_decode_under_tf_function_without_keypoints():
  _, serialized = _example()
  decoder = tf_example_decoder.TfExampleDecoder()
  out = tf.function(decoder.decode)(tf.constant(serialized))
  assert _I.groundtruth_keypoints not in out
  np.testing.assert_array_equal(out[_I.groundtruth_classes], [0, 2])


def test_zero_boxes_and_defaults():
  _, serialized = _example(boxes=np.zeros([0, 4]), class_labels=[],
                           class_texts=[], keypoints=np.zeros([0, 3, 2]),
                           keypoint_visibilities=np.zeros([0, 3]), area=[],
                           is_crowd=[], difficult=[], source_id='')
  out = tf_example_decoder.TfExampleDecoder(num_keypoints=3).decode(
      serialized)
  assert out[_I.groundtruth_boxes].shape == (0, 4)
  assert out[_I.groundtruth_classes].shape == (0,)
  assert out[_I.groundtruth_keypoints].shape == (0, 3, 2)
  assert out[_I.num_groundtruth_boxes].numpy() == 0
  # Missing source_id -> hash of the image bytes (as official.vision does).
  assert out[_I.source_id].numpy().isdigit()


def test_missing_optional_fields_get_defaults():
  _, serialized = _example(keypoints=None, keypoint_visibilities=None,
                           area=None, is_crowd=None, difficult=None)
  out = tf_example_decoder.TfExampleDecoder(num_keypoints=2).decode(
      serialized)
  np.testing.assert_array_equal(out[_I.groundtruth_area], [0.0, 0.0])
  np.testing.assert_array_equal(out[_I.groundtruth_is_crowd], [False, False])
  # No keypoints in the record: all NaN and invisible.
  assert out[_I.groundtruth_keypoints].shape == (2, 2, 2)
  assert np.isnan(out[_I.groundtruth_keypoints].numpy()).all()
  assert not out[_I.groundtruth_keypoint_visibilities].numpy().any()


def test_class_text_mapped_through_label_map(tmp_path):
  path = str(tmp_path / 'lm.pbtxt')
  label_map_util.write_label_map(path, ['a', 'b', 'c'])
  _, serialized = _example()
  ex = tf.train.Example.FromString(serialized)
  del ex.features.feature[_F.object_class_label]
  decoder = tf_example_decoder.TfExampleDecoder(label_map_path=path)
  out = decoder.decode(ex.SerializeToString())
  np.testing.assert_array_equal(out[_I.groundtruth_classes], [0, 2])
  # Unknown text fails loudly.
  ex.features.feature[_F.object_class_text].bytes_list.value[1] = b'zebra'
  with pytest.raises(tf.errors.InvalidArgumentError, match='label map'):
    decoder.decode(ex.SerializeToString())
  # Without a label map the classes are missing: error.
  with pytest.raises(tf.errors.InvalidArgumentError, match='class/label'):
    tf_example_decoder.TfExampleDecoder().decode(ex.SerializeToString())


def test_wrong_keypoint_count_raises():
  _, serialized = _example()
  with pytest.raises(tf.errors.InvalidArgumentError, match='num_keypoints'):
    tf_example_decoder.TfExampleDecoder(num_keypoints=2).decode(serialized)


def test_constructor_errors():
  with pytest.raises(ValueError, match='load_instance_masks'):
    tf_example_decoder.TfExampleDecoder(load_instance_masks=True)
  with pytest.raises(ValueError, match='num_additional_channels'):
    tf_example_decoder.TfExampleDecoder(num_additional_channels=1)
  with pytest.raises(ValueError, match='num_keypoints'):
    tf_example_decoder.TfExampleDecoder(num_keypoints=-1)
