"""Tests for od_meta.feature_extractors.ssd_resnet_fpn."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import ssd_resnet_fpn


@pytest.fixture(scope='module')
def extractor():
  # ResNet-50 is heavy on 2 cores: build once, small FPN depth, 64 px.
  return ssd_resnet_fpn.SSDResNet50FpnFeatureExtractor(
      additional_layer_depth=32)


def test_shapes_and_strides(extractor):
  maps = extractor(extractor.preprocess(
      tf.random.uniform([2, 64, 64, 3], 0, 255)))
  assert extractor.feature_map_strides == [8, 16, 32, 64, 128]
  assert extractor.resnet_depth == 50
  # 64 / 8 = 8, / 16 = 4, / 32 = 2, P6 ceil(2 / 2) = 1, P7 1.
  assert [tuple(m.shape) for m in maps] == [
      (2, 8, 8, 32), (2, 4, 4, 32), (2, 2, 2, 32), (2, 1, 1, 32),
      (2, 1, 1, 32)]


def test_non_square_input_graph_mode(extractor):
  fn = tf.function(lambda x: extractor(x),
                   input_signature=[tf.TensorSpec([None, None, None, 3])])
  maps = fn(tf.zeros([1, 64, 96, 3]))
  assert [tuple(m.shape[1:3]) for m in maps] == [
      (8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]


def test_caffe_preprocessing(extractor):
  rgb = tf.constant([[[[10.0, 20.0, 30.0]]]])
  out = extractor.preprocess(rgb).numpy().ravel()
  # RGB -> BGR (30, 20, 10) minus the ImageNet BGR mean
  # (103.939, 116.779, 123.68): (-73.939, -96.779, -113.68).
  np.testing.assert_allclose(out, [-73.939, -96.779, -113.68], atol=1e-3)


def test_level_layers_and_errors():
  assert ssd_resnet_fpn.resnet_level_layers(50)[4] == 'conv4_block6_out'
  assert ssd_resnet_fpn.resnet_level_layers(101)[4] == 'conv4_block23_out'
  assert ssd_resnet_fpn.resnet_level_layers(152)[3] == 'conv3_block8_out'
  with pytest.raises(ValueError, match='resnet_depth'):
    ssd_resnet_fpn.SSDResNetFpnFeatureExtractor(resnet_depth=34)
