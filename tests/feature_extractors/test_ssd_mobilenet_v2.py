"""Tests for od_meta.feature_extractors.ssd_mobilenet_v2."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import ssd_mobilenet_v2


@pytest.fixture(scope='module')
def digits_extractor():
  # The small-image layout intended for 128 px digits scenes.
  return ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
      depth_multiplier=0.35, first_feature_layer='block_6_expand_relu',
      num_layers=4)


def _hw(maps):
  return [tuple(m.shape[1:3]) for m in maps]


def test_digits_layout_shapes_and_strides(digits_extractor):
  images = tf.random.uniform([2, 128, 128, 3], 0, 255)
  maps = digits_extractor(digits_extractor.preprocess(images))
  assert digits_extractor.feature_map_strides == [8, 16, 32, 64]
  assert digits_extractor.num_feature_maps == 4
  # 128 / 8 = 16, / 16 = 8, / 32 = 4, / 64 = 2.
  assert _hw(maps) == [(16, 16), (8, 8), (4, 4), (2, 2)]
  # Depths: block_6 expansion 6 * make_divisible(32 * 0.35 = 11.2, 8) = 96;
  # block_13 expansion 6 * make_divisible(96 * 0.35 = 33.6, 8) = 192;
  # out_relu 1280 (not scaled for alpha <= 1); extra max(int(512*.35), 16)
  # = 179.
  assert [m.shape[-1] for m in maps] == [96, 192, 1280, 179]
  assert all(m.shape[0] == 2 and m.dtype == tf.float32 for m in maps)


def test_non_square_input(digits_extractor):
  maps = digits_extractor(tf.zeros([1, 128, 96, 3]))
  # 96 / 8 = 12, / 16 = 6, / 32 = 3, ceil(3 / 2) = 2 (SAME stride 2).
  assert _hw(maps) == [(16, 12), (8, 6), (4, 3), (2, 2)]


def test_preprocess_range(digits_extractor):
  images = tf.constant([0.0, 127.5, 255.0], shape=[1, 1, 3, 1])
  images = tf.tile(images, [1, 1, 1, 3])
  out = digits_extractor.preprocess(images).numpy()
  # (2 / 255) * x - 1: 0 -> -1, 127.5 -> 0, 255 -> 1.
  np.testing.assert_allclose(out[0, 0, :, 0], [-1.0, 0.0, 1.0], atol=1e-6)


def test_extra_layer_param_count(digits_extractor):
  extra = digits_extractor._extra_layers  # pylint: disable=protected-access
  assert len(extra) == 1
  count = sum(int(np.prod(v.shape)) for layer in extra[0]
              for v in layer.trainable_variables)
  # 1x1 conv 1280 -> max(int(256 * .35), 16) = 89, no bias (BN follows):
  # 1280 * 89 = 113920, BN gamma + beta 2 * 89 = 178;
  # 3x3 conv 89 -> 179: 9 * 89 * 179 = 143379, BN 2 * 179 = 358.
  assert count == 113920 + 178 + 143379 + 358


def test_graph_mode_dynamic_shape(digits_extractor):
  fn = tf.function(lambda x: digits_extractor(x),
                   input_signature=[tf.TensorSpec([None, None, None, 3])])
  maps = fn(tf.zeros([1, 64, 96, 3]))
  assert [tuple(m.shape) for m in maps] == [
      (1, 8, 12, 96), (1, 4, 6, 192), (1, 2, 3, 1280), (1, 1, 2, 179)]


@pytest.fixture(scope='module')
def default_extractor():
  return ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
      depth_multiplier=0.35, pad_to_multiple=32)


def test_default_layout_and_padding(default_extractor):
  fe = default_extractor
  assert fe.feature_map_strides == [16, 32, 64, 128, 256, 512]
  assert fe.from_layer_names == ['block_13_expand_relu', 'out_relu']
  # 50 x 70 is padded to 64 x 96: 64 / 16 = 4, 96 / 16 = 6, then halving
  # with ceil: (2, 3), (1, 2), (1, 1), (1, 1), (1, 1).
  maps = fe(tf.zeros([1, 50, 70, 3]))
  assert _hw(maps) == [(4, 6), (2, 3), (1, 2), (1, 1), (1, 1), (1, 1)]
  # Extra depths 512, 256, 256, 128 x 0.35 -> 179, 89, 89, 44.
  assert [m.shape[-1] for m in maps[2:]] == [179, 89, 89, 44]


def test_depthwise_extra_layers_are_smaller(default_extractor):
  lite = ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
      depth_multiplier=0.35, pad_to_multiple=32, use_depthwise=True)
  x = tf.zeros([1, 64, 64, 3])
  assert ([m.shape for m in default_extractor(x)] ==
          [m.shape for m in lite(x)])
  count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)
  # e.g. the 3x3 conv 640 -> 179 (9 * 640 * 179 weights) becomes depthwise
  # 9 * 640 + BN + pointwise 640 * 179 in SSDLite.
  assert count(lite) < count(default_extractor)


def test_bad_arguments():
  with pytest.raises(ValueError, match='num_layers'):
    ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
        depth_multiplier=0.35, num_layers=1)
  with pytest.raises(ValueError, match='num_layers'):
    ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
        depth_multiplier=0.35, num_layers=7)
  with pytest.raises(ValueError, match='no_such_layer'):
    ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
        depth_multiplier=0.35, from_layers=('no_such_layer',),
        num_layers=1)
  with pytest.raises(ValueError, match='stride order'):
    ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
        depth_multiplier=0.35, from_layers=('out_relu', 'block_6_expand_relu'),
        num_layers=2)
  with pytest.raises(ValueError, match='depth_multiplier'):
    ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(depth_multiplier=0.0)
  with pytest.raises(ValueError, match='conv_hyperparams'):
    ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
        depth_multiplier=0.35, conv_hyperparams={'bad_key': 1})
