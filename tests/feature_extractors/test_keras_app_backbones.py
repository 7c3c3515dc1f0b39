"""Tests for od_meta.feature_extractors.keras_app_backbones."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import keras_app_backbones


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
  """weights='' must never download: any get_file call fails the test."""

  def fail(*args, **kwargs):
    raise AssertionError(f'download attempted: {args} {kwargs}')

  monkeypatch.setattr(tf.keras.utils, 'get_file', fail)
  import keras  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(keras.utils, 'get_file', fail)
  monkeypatch.setattr(keras.src.utils.file_utils, 'get_file', fail)


@pytest.fixture(scope='module')
def mobilenet():
  return keras_app_backbones.KerasApplicationsBackbone(
      architecture='mobilenet_v2', weights='', depth_multiplier=0.35,
      batch_norm_momentum=0.8)


def test_mobilenet_v2_stage_dict(mobilenet):
  out = mobilenet(tf.random.uniform([2, 64, 64, 3], -1, 1))
  assert sorted(out) == [4, 8, 16, 32]
  # alpha 0.35: make_divisible(24 * .35) = 8, (32 * .35) = 16,
  # (96 * .35) = 32 (33.6 -> 32), out_relu keeps 1280 for alpha <= 1.
  assert mobilenet.stage_channels == {4: 8, 8: 16, 16: 32, 32: 1280}
  for stride, fmap in out.items():
    assert fmap.dtype == tf.float32
    assert fmap.shape == (2, 64 // stride, 64 // stride,
                          mobilenet.stage_channels[stride])


def test_batch_norm_momentum_is_applied(mobilenet):
  bns = [l for l in mobilenet.keras_model.layers
         if isinstance(l, tf.keras.layers.BatchNormalization)]
  assert bns and all(l.momentum == pytest.approx(0.8) for l in bns)


def test_mobilenet_preprocess_range(mobilenet):
  out = mobilenet.preprocess(tf.constant([0.0, 127.5, 255.0],
                                         shape=[1, 1, 1, 3]))
  np.testing.assert_allclose(out.numpy().ravel(), [-1, 0, 1], atol=1e-6)


def test_resnet50_stage_dict_and_preprocess():
  net = keras_app_backbones.KerasApplicationsBackbone(architecture='resnet50')
  out = net(tf.zeros([1, 64, 64, 3]))
  assert net.stage_channels == {4: 256, 8: 512, 16: 1024, 32: 2048}
  assert {s: tuple(m.shape) for s, m in out.items()} == {
      4: (1, 16, 16, 256), 8: (1, 8, 8, 512), 16: (1, 4, 4, 1024),
      32: (1, 2, 2, 2048)}
  # Caffe style: RGB (255, 0, 0) -> BGR (0, 0, 255) minus
  # (103.939, 116.779, 123.68).
  pixel = net.preprocess(tf.constant([255.0, 0.0, 0.0], shape=[1, 1, 1, 3]))
  np.testing.assert_allclose(pixel.numpy().ravel(),
                             [-103.939, -116.779, 131.32], rtol=1e-5)


def test_layer_table():
  assert keras_app_backbones.stage_layer_names('resnet101') == {
      4: 'conv2_block3_out', 8: 'conv3_block4_out', 16: 'conv4_block23_out',
      32: 'conv5_block3_out'}
  assert keras_app_backbones.stage_layer_names('mobilenet_v2') == {
      4: 'block_2_add', 8: 'block_5_add', 16: 'block_12_add',
      32: 'out_relu'}


def test_weights_arguments():
  assert keras_app_backbones.keras_weights_argument('') is None
  assert keras_app_backbones.keras_weights_argument(None) is None
  assert keras_app_backbones.keras_weights_argument('imagenet') == 'imagenet'
  assert keras_app_backbones.keras_weights_argument('/x/y.h5') is None
  with pytest.raises(ValueError, match='weights'):
    keras_app_backbones.keras_weights_argument(3)


def test_weights_path_is_kept_for_the_caller():
  net = keras_app_backbones.KerasApplicationsBackbone(
      architecture='mobilenet_v2', weights='/tmp/none.h5',
      depth_multiplier=0.35)
  assert net.weights_path == '/tmp/none.h5'


def test_every_variable_is_checkpointed(mobilenet, tmp_path):
  mobilenet(tf.zeros([1, 32, 32, 3]))
  path = tf.train.Checkpoint(m=mobilenet).save(str(tmp_path / 'ckpt'))
  saved = sorted(tuple(s) for n, s in tf.train.list_variables(path)
                 if n.startswith('m/'))
  weights = [v for v in mobilenet.variables if 'seed_generator' not in v.path]
  assert len(weights) > 100
  assert saved == sorted(tuple(v.shape) for v in weights)


def test_graph_mode(mobilenet):
  images = tf.random.uniform([1, 64, 64, 3], -1, 1, seed=4)
  eager = mobilenet(images)
  graph = tf.function(lambda x: mobilenet(x, training=False))(images)
  np.testing.assert_allclose(graph[8].numpy(), eager[8].numpy(), rtol=1e-5,
                             atol=1e-5)


def test_bad_arguments():
  with pytest.raises(ValueError, match='architecture'):
    keras_app_backbones.KerasApplicationsBackbone(architecture='vgg16')
  with pytest.raises(ValueError, match='depth_multiplier'):
    keras_app_backbones.KerasApplicationsBackbone(architecture='resnet50',
                                                  depth_multiplier=0.5)


@pytest.mark.filterwarnings('ignore:`input_shape` is undefined')
def test_imagenet_asks_for_a_download():
  # Shows the no_downloads guard is live: only 'imagenet' reaches get_file.
  with pytest.raises(AssertionError, match='download attempted'):
    keras_app_backbones.KerasApplicationsBackbone(
        architecture='mobilenet_v2', weights='imagenet',
        depth_multiplier=0.35)
