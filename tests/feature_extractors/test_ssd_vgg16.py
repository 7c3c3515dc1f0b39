"""Tests for od_meta.feature_extractors.ssd_vgg16."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import ssd_vgg16


@pytest.fixture(scope='module')
def same_extractor():
  # Small added layers keep the test fast; VGG itself is fixed.
  return ssd_vgg16.SSDVgg16FeatureExtractor(
      extra_layer_style='same', depth_multiplier=0.25, fc_depth=64)


@pytest.fixture(scope='module')
def ssd300_extractor():
  return ssd_vgg16.SSDVgg16FeatureExtractor(
      extra_layer_style='ssd300', depth_multiplier=0.25, fc_depth=64,
      num_extra_layers=3)


def test_l2_normalization_golden():
  layer = ssd_vgg16.L2Normalization(scale_init=20.0)
  out = layer(tf.constant([[3.0, 4.0], [0.0, 0.0]]))
  # [3, 4] / sqrt(9 + 16) * 20 = [0.6, 0.8] * 20 = [12, 16]; the all-zero
  # vector stays 0 (epsilon floor, no NaN).
  np.testing.assert_allclose(out.numpy(), [[12.0, 16.0], [0.0, 0.0]],
                             rtol=1e-6)
  np.testing.assert_allclose(layer.scale.numpy(), [20.0, 20.0])


def test_same_style_shapes(same_extractor):
  fe = same_extractor
  maps = fe(fe.preprocess(tf.random.uniform([2, 64, 64, 3], 0, 255)))
  assert fe.feature_map_strides == [8, 16, 32, 64, 128, 256]
  # conv4_3 64 / 8 = 8 (512 ch), fc7 4 (64 ch), then SAME stride 2:
  # 2, 1, 1, 1; depths max(int(d * .25), 16): 128, 64, 64, 64.
  assert [tuple(m.shape) for m in maps] == [
      (2, 8, 8, 512), (2, 4, 4, 64), (2, 2, 2, 128), (2, 1, 1, 64),
      (2, 1, 1, 64), (2, 1, 1, 64)]


def test_conv4_3_is_normalized_to_scale(same_extractor):
  maps = same_extractor(tf.random.uniform([1, 64, 48, 3], -50, 50))
  norms = tf.norm(maps[0], axis=-1).numpy()
  assert maps[0].shape[1:3] == (8, 6)
  # Every location with a nonzero conv4_3 vector has norm 20 (scale init).
  nonzero = norms > 1e-3
  assert nonzero.any()
  np.testing.assert_allclose(norms[nonzero], 20.0, rtol=1e-4)
  scale = same_extractor._l2_norm.scale  # pylint: disable=protected-access
  assert scale.shape == (512,) and scale.trainable


def test_ssd300_style_valid_layers(ssd300_extractor):
  fe = ssd300_extractor
  maps = fe(tf.zeros([1, 160, 160, 3]))
  # conv4_3 160 / 8 = 20, fc7 10, conv8_2 5, conv9_2 3 (SAME stride 2),
  # conv10_2 3x3 VALID: 3 - 2 = 1.
  assert [m.shape[1] for m in maps] == [20, 10, 5, 3, 1]
  assert fe.feature_map_strides == [8, 16, 32, 64, 64]


def test_ssd300_style_too_small_input(ssd300_extractor):
  # 128 px: fc7 8, conv8_2 4, conv9_2 2 -> a 3x3 VALID conv would give 0.
  with pytest.raises(ValueError, match="extra_layer_style='same'"):
    ssd300_extractor(tf.zeros([1, 128, 128, 3]))
  fn = tf.function(lambda x: ssd300_extractor(x),
                   input_signature=[tf.TensorSpec([1, None, None, 3])])
  with pytest.raises(tf.errors.InvalidArgumentError, match='3x3'):
    fn(tf.zeros([1, 128, 128, 3]))


def test_caffe_preprocessing(same_extractor):
  out = same_extractor.preprocess(tf.constant([[[[255.0, 0.0, 0.0]]]]))
  # RGB (255, 0, 0) -> BGR (0, 0, 255) - (103.939, 116.779, 123.68).
  np.testing.assert_allclose(out.numpy().ravel(),
                             [-103.939, -116.779, 131.32], atol=1e-3)


def test_bad_arguments():
  with pytest.raises(ValueError, match='extra_layer_style'):
    ssd_vgg16.SSDVgg16FeatureExtractor(extra_layer_style='ssd512')
  with pytest.raises(ValueError, match='num_extra_layers'):
    ssd_vgg16.SSDVgg16FeatureExtractor(num_extra_layers=5)
