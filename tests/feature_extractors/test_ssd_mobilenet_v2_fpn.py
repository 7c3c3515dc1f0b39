"""Tests for od_meta.feature_extractors.ssd_mobilenet_v2_fpn."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import ssd_mobilenet_v2_fpn


@pytest.fixture(scope='module')
def extractor():
  return ssd_mobilenet_v2_fpn.SSDMobileNetV2FpnFeatureExtractor(
      depth_multiplier=0.35)


def test_shapes_and_strides(extractor):
  maps = extractor(extractor.preprocess(
      tf.random.uniform([2, 128, 128, 3], 0, 255)))
  assert extractor.feature_map_strides == [8, 16, 32, 64, 128]
  # 128 / 2**l for l = 3..7; depth max(int(128 * 0.35), 16) = 44.
  assert [tuple(m.shape) for m in maps] == [
      (2, 16, 16, 44), (2, 8, 8, 44), (2, 4, 4, 44), (2, 2, 2, 44),
      (2, 1, 1, 44)]


def test_non_square_input(extractor):
  maps = extractor(tf.zeros([1, 96, 64, 3]))
  # 96 / 8 = 12, 64 / 8 = 8; then 6x4, 3x2, ceil -> 2x1, 1x1.
  assert [tuple(m.shape[1:3]) for m in maps] == [
      (12, 8), (6, 4), (3, 2), (2, 1), (1, 1)]


def test_fpn_lite_uses_separable_convs(extractor):
  layers = extractor._fpn._flatten_layers()  # pylint: disable=protected-access
  assert any(isinstance(l, tf.keras.layers.SeparableConv2D) for l in layers)


def test_preprocess_range(extractor):
  out = extractor.preprocess(tf.constant([[[[0.0, 127.5, 255.0]]]])).numpy()
  np.testing.assert_allclose(out.ravel(), [-1.0, 0.0, 1.0], atol=1e-6)


def test_gradients_reach_fpn_variables(extractor):
  x = tf.random.uniform([1, 64, 64, 3], -1, 1)
  with tf.GradientTape() as tape:
    loss = tf.add_n([tf.reduce_sum(m) for m in extractor(x, training=True)])
  # pylint: disable-next=protected-access
  variables = extractor._fpn.trainable_variables
  grads = tape.gradient(loss, variables)
  assert variables and all(g is not None for g in grads)


def test_min_level_2_and_errors():
  fe = ssd_mobilenet_v2_fpn.SSDMobileNetV2FpnFeatureExtractor(
      depth_multiplier=0.35, min_level=2, max_level=5, use_depthwise=False)
  maps = fe(tf.zeros([1, 64, 64, 3]))
  assert fe.feature_map_strides == [4, 8, 16, 32]
  assert [m.shape[1] for m in maps] == [16, 8, 4, 2]
  with pytest.raises(ValueError, match='min_level'):
    ssd_mobilenet_v2_fpn.SSDMobileNetV2FpnFeatureExtractor(
        depth_multiplier=0.35, min_level=6, max_level=7)
  with pytest.raises(ValueError, match='max_level'):
    ssd_mobilenet_v2_fpn.SSDMobileNetV2FpnFeatureExtractor(
        depth_multiplier=0.35, min_level=4, max_level=3)
