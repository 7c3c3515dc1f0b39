"""Tests for od_meta.data.inputs (tiny TFRecords written in tmp_path)."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import standard_fields
from od_meta.data import image_resizer
from od_meta.data import inputs
from od_meta.data import preprocessor

F = standard_fields.InputDataFields
T = standard_fields.TfExampleFields

# (height, width, number of boxes) of the three examples.
SPECS = [(20, 30, 2), (30, 20, 0), (16, 16, 5)]
NUM_KP = 2


def _floats(v):
  return tf.train.Feature(float_list=tf.train.FloatList(value=list(v)))


def _ints(v):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))


def _bytes(v):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))


def _example(index, height, width, num_boxes):
  image = np.full([height, width, 3], 10 * (index + 1), np.uint8)
  encoded = tf.io.encode_png(image).numpy()
  ymin = np.linspace(0.0, 0.4, num_boxes)
  xmin = np.linspace(0.1, 0.3, num_boxes)
  kp_y = np.repeat(ymin + 0.1, NUM_KP)
  kp_x = np.repeat(xmin + 0.1, NUM_KP)
  feature = {
      T.image_encoded: _bytes([encoded]),
      T.image_format: _bytes([b'png']),
      T.height: _ints([height]),
      T.width: _ints([width]),
      T.source_id: _bytes([str(index).encode()]),
      T.object_bbox_ymin: _floats(ymin),
      T.object_bbox_xmin: _floats(xmin),
      T.object_bbox_ymax: _floats(ymin + 0.5),
      T.object_bbox_xmax: _floats(xmin + 0.5),
      T.object_class_label: _ints(np.arange(num_boxes) % 3 + 1),  # 1-based
      T.object_keypoint_y: _floats(kp_y),
      T.object_keypoint_x: _floats(kp_x),
      T.object_keypoint_visibility: _ints([2] * (num_boxes * NUM_KP)),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _write(path, indices):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i in indices:
      writer.write(_example(i, *SPECS[i]).SerializeToString())
  return str(path)


@pytest.fixture(name='record')
def _record(tmp_path):
  return _write(tmp_path / 'data.tfrecord', range(3))


class _Decoder:
  """Minimal stand-in with the TfExampleDecoder output contract."""

  def __init__(self, num_keypoints=0):
    self.num_keypoints = num_keypoints

  def decode(self, serialized):
    var = lambda dt: tf.io.VarLenFeature(dt)
    spec = {T.image_encoded: tf.io.FixedLenFeature([], tf.string),
            T.source_id: tf.io.FixedLenFeature([], tf.string),
            T.object_bbox_ymin: var(tf.float32),
            T.object_bbox_xmin: var(tf.float32),
            T.object_bbox_ymax: var(tf.float32),
            T.object_bbox_xmax: var(tf.float32),
            T.object_class_label: var(tf.int64),
            T.object_keypoint_y: var(tf.float32),
            T.object_keypoint_x: var(tf.float32)}
    p = tf.io.parse_single_example(serialized, spec)
    dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor)
             else v for k, v in p.items()}
    image = tf.io.decode_image(dense[T.image_encoded], channels=3,
                               expand_animations=False)
    boxes = tf.stack([dense[T.object_bbox_ymin], dense[T.object_bbox_xmin],
                      dense[T.object_bbox_ymax], dense[T.object_bbox_xmax]],
                     axis=1)
    n = tf.shape(boxes)[0]
    out = {F.image: image,
           F.original_image_spatial_shape: tf.shape(image)[:2],
           F.source_id: dense[T.source_id],
           F.groundtruth_boxes: boxes,
           F.groundtruth_classes: tf.cast(dense[T.object_class_label] - 1,
                                          tf.int32),
           F.groundtruth_is_crowd: tf.zeros([n], tf.bool),
           F.groundtruth_area: tf.ones([n], tf.float32),
           F.groundtruth_difficult: tf.zeros([n], tf.bool),
           F.groundtruth_weights: tf.ones([n], tf.float32),
           F.num_groundtruth_boxes: n}
    if self.num_keypoints:
      kp = tf.stack([dense[T.object_keypoint_y], dense[T.object_keypoint_x]],
                    axis=1)
      out[F.groundtruth_keypoints] = tf.reshape(kp,
                                                [n, self.num_keypoints, 2])
      out[F.groundtruth_keypoint_visibilities] = tf.ones(
          [n, self.num_keypoints], tf.bool)
    return out


def _first(dataset):
  features, labels = next(iter(dataset))
  return ({k: v.numpy() for k, v in features.items()},
          {k: v.numpy() for k, v in labels.items()})


def test_eval_dataset_pads_images_and_boxes(record):
  ds = inputs.build_dataset([record], _Decoder(), batch_size=3,
                            is_training=False, max_number_of_boxes=4,
                            retain_original_image=True)
  features, labels = _first(ds)
  # Identity resizer: images 20x30, 30x20, 16x16 padded to 30x30.
  assert features[F.image].shape == (3, 30, 30, 3)
  assert features[F.image].dtype == np.float32
  np.testing.assert_array_equal(features[F.true_image_shape],
                                [[20, 30, 3], [30, 20, 3], [16, 16, 3]])
  np.testing.assert_array_equal(features[F.original_image_spatial_shape],
                                [[20, 30], [30, 20], [16, 16]])
  np.testing.assert_array_equal(features[F.image][0, :20, :30], 10.0)
  np.testing.assert_array_equal(features[F.image][0, 20:], 0.0)
  np.testing.assert_array_equal(features[F.image][2, :16, :16], 30.0)
  assert features[F.original_image].shape == (3, 30, 30, 3)
  np.testing.assert_array_equal(features[F.source_id], [b'0', b'1', b'2'])
  assert features[inputs.HASH_KEY].dtype == np.int64
  assert len(set(features[inputs.HASH_KEY])) == 3
  # Boxes: 2, 0 and 5 -> truncated to max_number_of_boxes = 4.
  np.testing.assert_array_equal(labels[F.num_groundtruth_boxes], [2, 0, 4])
  assert labels[F.groundtruth_boxes].shape == (3, 4, 4)
  np.testing.assert_array_equal(labels[F.groundtruth_weights],
                                [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
  np.testing.assert_array_equal(labels[F.groundtruth_classes],
                                [[0, 1, -1, -1], [-1] * 4, [0, 1, 2, 0]])
  # Example 0: ymin = linspace(0, 0.4, 2) = [0, 0.4], xmin [0.1, 0.3].
  np.testing.assert_allclose(labels[F.groundtruth_boxes][0, :2],
                             [[0.0, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8]],
                             atol=1e-6)
  np.testing.assert_array_equal(labels[F.groundtruth_boxes][0, 2:], 0.0)
  assert F.groundtruth_keypoints not in labels


def test_keep_aspect_ratio_batches_of_different_sizes(record):
  resizer = functools.partial(image_resizer.keep_aspect_ratio_resizer,
                              min_dimension=32, max_dimension=48)
  ds = inputs.build_dataset(record, _Decoder(), batch_size=3,
                            is_training=False, image_resizer_fn=resizer)
  features, _ = _first(ds)
  # 20x30 -> x1.6 = 32x48; 30x20 -> 48x32; 16x16 -> x2 = 32x32.
  np.testing.assert_array_equal(features[F.true_image_shape],
                                [[32, 48, 3], [48, 32, 3], [32, 32, 3]])
  assert features[F.image].shape == (3, 48, 48, 3)
  np.testing.assert_array_equal(features[F.image][1, :, 32:], 0.0)
  np.testing.assert_allclose(features[F.image][1, :, :32], 20.0, atol=1e-3)


def test_training_dataset_static_shapes_and_augmentation(record):
  preprocess_fn = functools.partial(
      preprocessor.preprocess,
      preprocess_options=[
          (preprocessor.random_horizontal_flip,
           {'keypoint_flip_permutation': [1, 0]}),
          (preprocessor.ssd_random_crop, {}),
          (preprocessor.random_adjust_brightness, {}),
      ])
  resizer = functools.partial(image_resizer.fixed_shape_resizer,
                              height=24, width=24)
  ds = inputs.build_dataset([record], _Decoder(NUM_KP), batch_size=2,
                            is_training=True, preprocess_fn=preprocess_fn,
                            image_resizer_fn=resizer, max_number_of_boxes=6,
                            num_keypoints=NUM_KP, shuffle_buffer_size=4,
                            seed=1)
  features_spec, labels_spec = ds.element_spec
  assert features_spec[F.image].shape == (2, 24, 24, 3)
  assert labels_spec[F.groundtruth_boxes].shape == (2, 6, 4)
  assert labels_spec[F.groundtruth_keypoints].shape == (2, 6, NUM_KP, 2)
  assert labels_spec[F.groundtruth_keypoint_visibilities].shape == (2, 6,
                                                                    NUM_KP)
  assert labels_spec[F.num_groundtruth_boxes].shape == (2,)
  # Repeats forever: 5 batches from 3 examples.
  for features, labels in ds.take(5):
    image = features[F.image].numpy()
    assert image.min() >= 0.0 and image.max() <= 255.0
    np.testing.assert_array_equal(features[F.true_image_shape].numpy(),
                                  [[24, 24, 3]] * 2)
    num = labels[F.num_groundtruth_boxes].numpy()
    weights = labels[F.groundtruth_weights].numpy()
    boxes = labels[F.groundtruth_boxes].numpy()
    for b in range(2):
      np.testing.assert_array_equal(weights[b, :num[b]], 1.0)
      np.testing.assert_array_equal(weights[b, num[b]:], 0.0)
      assert np.all(boxes[b] >= 0.0) and np.all(boxes[b] <= 1.0)


def test_unbatch_groundtruth(record):
  ds = inputs.build_dataset([record], _Decoder(NUM_KP), batch_size=3,
                            is_training=False, max_number_of_boxes=4,
                            num_keypoints=NUM_KP)
  _, labels = next(iter(ds))
  lists = inputs.unbatch_groundtruth(labels)
  assert [b.shape[0] for b in lists[F.groundtruth_boxes]] == [2, 0, 4]
  assert lists[F.groundtruth_keypoints][2].shape == (4, NUM_KP, 2)
  kwargs = inputs.provide_groundtruth_kwargs(labels)
  assert set(kwargs) == {
      'groundtruth_boxes_list', 'groundtruth_classes_list',
      'groundtruth_weights_list', 'groundtruth_keypoints_list',
      'groundtruth_keypoint_visibilities_list', 'groundtruth_is_crowd_list'}
  np.testing.assert_array_equal(kwargs['groundtruth_classes_list'][0], [0, 1])
  # Inside a tf.function as well (static batch size).
  counts = tf.function(lambda l: [tf.shape(b)[0] for b in
                                  inputs.unbatch_groundtruth(l)[
                                      F.groundtruth_boxes]])(labels)
  assert [int(c) for c in counts] == [2, 0, 4]


def test_unbatch_groundtruth_needs_counts():
  with pytest.raises(ValueError, match='num_groundtruth_boxes'):
    inputs.unbatch_groundtruth({F.groundtruth_boxes: tf.zeros([1, 2, 4])})


def test_missing_files_error_names_pattern(tmp_path, record):
  pattern = str(tmp_path / 'nothing-*.tfrecord')
  with pytest.raises(ValueError, match='nothing-'):
    inputs.build_dataset([record, pattern], _Decoder(), batch_size=1,
                         is_training=False)
  with pytest.raises(ValueError, match='input_files'):
    inputs.build_dataset([], _Decoder(), batch_size=1, is_training=False)
  with pytest.raises(ValueError, match='batch_size'):
    inputs.build_dataset([record], _Decoder(), batch_size=0,
                         is_training=False)


def test_missing_keypoints_error(record):
  with pytest.raises(ValueError, match='num_keypoints'):
    inputs.build_dataset([record], _Decoder(0), batch_size=1,
                         is_training=False, num_keypoints=2)


def test_input_context_shards_records_and_batch(record):
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=1,
                                       num_replicas_in_sync=2)
  ds = inputs.build_dataset([record], _Decoder(), batch_size=4,
                            is_training=False, input_context=context)
  ids = [f[F.source_id].numpy().tolist() for f, _ in ds]
  # One file, fewer files than pipelines: records shard -> [1]; per-replica
  # batch 4 / 2 = 2.
  assert ids == [[b'1']]


def test_input_context_shards_files(tmp_path):
  a = _write(tmp_path / 'a.tfrecord', [0, 1])
  b = _write(tmp_path / 'b.tfrecord', [2])
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=0,
                                       num_replicas_in_sync=2)
  ds = inputs.build_dataset([str(tmp_path / '*.tfrecord')], _Decoder(),
                            batch_size=4, is_training=False,
                            input_context=context)
  ids = [f[F.source_id].numpy().tolist() for f, _ in ds]
  assert ids == [[b'0', b'1']]  # file a (sorted first), batches of 2
  del a, b


def test_with_tf_example_decoder(record):
  from od_meta.data import tf_example_decoder  # pylint: disable=g-import-not-at-top
  decoder = tf_example_decoder.TfExampleDecoder(num_keypoints=NUM_KP)
  ds = inputs.build_dataset([record], decoder, batch_size=3,
                            is_training=False, max_number_of_boxes=5,
                            num_keypoints=NUM_KP)
  features, labels = _first(ds)
  np.testing.assert_array_equal(labels[F.num_groundtruth_boxes], [2, 0, 5])
  np.testing.assert_array_equal(labels[F.groundtruth_classes][2],
                                [0, 1, 2, 0, 1])
  np.testing.assert_allclose(labels[F.groundtruth_keypoints][0, 0],
                             [[0.1, 0.2], [0.1, 0.2]], atol=1e-6)
  assert labels[F.groundtruth_keypoint_visibilities][0, :2].all()
  assert features[F.image].shape == (3, 30, 30, 3)
