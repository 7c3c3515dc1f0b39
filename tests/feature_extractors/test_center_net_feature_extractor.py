"""Tests for od_meta.feature_extractors.center_net_feature_extractor."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import center_net_feature_extractor as cnfe
from od_meta.feature_extractors import darknet
from od_meta.feature_extractors import hourglass
from od_meta.feature_extractors import resnet_v1_small
from od_meta.feature_extractors import up_convolution_neck


def _tiny_resnet_extractor(**kwargs):
  return cnfe.CenterNetFeatureExtractor(
      backbone=resnet_v1_small.ResNetV1Small(depth=18, depth_multiplier=0.125),
      neck=up_convolution_neck.UpConvolutionNeck(
          num_filters=(16, 8, 8), shortcut_num_convs=(1, 2, 3)),
      **kwargs)


def _tiny_hourglass():
  return hourglass.HourglassNetwork(
      num_stacks=2, stem_channels=8, channel_dims=(8, 16),
      blocks_per_stage=(1, 1), cnv_dim=8)


@pytest.fixture(scope='module')
def resnet_extractor():
  extractor = _tiny_resnet_extractor()
  extractor(tf.zeros([1, 64, 64, 3]))
  return extractor


def test_backbone_table():
  assert sorted(cnfe.BACKBONES) == sorted([
      'resnet_v1_18', 'resnet_v1_34', 'resnet_v1_50', 'resnet_v1_101',
      'mobilenet_v2', 'darknet_53', 'hourglass_104', 'hourglass_small'])
  assert isinstance(cnfe.BACKBONES['hourglass_104'](),
                    hourglass.HourglassNetwork)  # constructed, not built
  net = cnfe.BACKBONES['darknet_53'](depth_multiplier=0.125,
                                     batch_norm_momentum=0.5)
  assert isinstance(net, darknet.DarkNet53) and net.stage_channels[32] == 128
  net = cnfe.BACKBONES['resnet_v1_34'](depth_multiplier=0.125)
  assert net.depth == 34 and net.stage_channels == {4: 8, 8: 16, 16: 32,
                                                    32: 64}
  with pytest.raises(ValueError, match='imagenet'):
    cnfe.BACKBONES['resnet_v1_18'](weights='imagenet')


def test_resnet_extractor_outputs(resnet_extractor):
  images = tf.random.uniform([2, 64, 64, 3], 0, 255, seed=8)
  maps = resnet_extractor(resnet_extractor.preprocess(images), training=True)
  assert isinstance(maps, list) and len(maps) == 1
  assert maps[0].dtype == tf.float32 and maps[0].shape == (2, 16, 16, 8)
  assert resnet_extractor.out_stride == 4
  assert resnet_extractor.num_feature_outputs == 1
  assert resnet_extractor.out_channels == 8


def test_graph_mode_matches_eager(resnet_extractor):
  images = tf.random.uniform([1, 64, 64, 3], 0, 255, seed=9)

  @tf.function
  def run(x):
    return resnet_extractor(resnet_extractor.preprocess(x), training=False)

  eager = resnet_extractor(resnet_extractor.preprocess(images))
  np.testing.assert_allclose(run(images)[0].numpy(), eager[0].numpy(),
                             rtol=1e-4, atol=1e-4)


def test_hourglass_extractor_returns_every_stack():
  extractor = cnfe.CenterNetFeatureExtractor(backbone=_tiny_hourglass())
  maps = extractor(tf.zeros([1, 32, 32, 3]))
  assert len(maps) == extractor.num_feature_outputs == 2
  assert all(m.shape == (1, 8, 8, 8) for m in maps)
  assert extractor.neck is None and extractor.out_channels == 8
  with pytest.raises(ValueError, match='neck'):
    cnfe.CenterNetFeatureExtractor(
        backbone=_tiny_hourglass(),
        neck=up_convolution_neck.UpConvolutionNeck())


def test_default_neck():
  extractor = cnfe.CenterNetFeatureExtractor(
      backbone=resnet_v1_small.ResNetV1Small(depth_multiplier=0.125))
  assert isinstance(extractor.neck, up_convolution_neck.UpConvolutionNeck)
  assert extractor.neck.num_filters == (256, 128, 64)


def test_preprocess():
  pixel = tf.constant([10.0, 20.0, 40.0], shape=[1, 1, 1, 3])
  extractor = _tiny_resnet_extractor(channel_means=(1.0, 2.0, 4.0),
                                     channel_stds=(1.0, 2.0, 4.0))
  # (x - mean) / std: (9, 18 / 2, 36 / 4).
  np.testing.assert_allclose(extractor.preprocess(pixel).numpy().ravel(),
                             [9.0, 9.0, 9.0])
  bgr = _tiny_resnet_extractor(channel_means=(0.0, 10.0, 0.0),
                               bgr_ordering=True)
  # Flipped to (40, 20, 10), then the means in B, G, R order; stds 1.
  np.testing.assert_allclose(bgr.preprocess(pixel).numpy().ravel(),
                             [40.0, 10.0, 10.0])
  default = _tiny_resnet_extractor()
  # Backbone default x / 127.5 - 1.
  np.testing.assert_allclose(
      default.preprocess(tf.constant([0.0, 127.5, 255.0],
                                     shape=[1, 1, 1, 3])).numpy().ravel(),
      [-1.0, 0.0, 1.0], atol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match='channel_means'):
    _tiny_resnet_extractor(channel_means=(1.0, 2.0))
  with pytest.raises(ValueError, match='channel_stds'):
    _tiny_resnet_extractor(channel_stds=(1.0, 0.0, 1.0))
  with pytest.raises(ValueError, match='backbone'):
    cnfe.CenterNetFeatureExtractor(backbone=lambda x: x)
  with pytest.raises(ValueError, match='3 channels'):
    _tiny_resnet_extractor().preprocess(tf.zeros([1, 4, 4, 1]))


def test_every_variable_is_checkpointed(resnet_extractor, tmp_path):
  path = tf.train.Checkpoint(m=resnet_extractor).save(str(tmp_path / 'ckpt'))
  saved = sorted(tuple(s) for n, s in tf.train.list_variables(path)
                 if n.startswith('m/'))
  assert len(saved) > 80
  assert saved == sorted(tuple(v.shape) for v in resnet_extractor.variables)


@pytest.mark.parametrize('kind', ['save', 'write', 'weights.h5'])
def test_restore_backbone_weights(resnet_extractor, tmp_path, kind):
  source = resnet_extractor.backbone
  if kind == 'save':
    path = tf.train.Checkpoint(model=source).save(str(tmp_path / 'bb'))
  elif kind == 'write':
    path = tf.train.Checkpoint(model=source).write(str(tmp_path / 'bb'))
  else:
    path = str(tmp_path / 'bb.weights.h5')
    source.save_weights(path)
  target = _tiny_resnet_extractor(weights=path)
  with pytest.raises(ValueError, match='once'):
    target.restore_backbone_weights()
  target(tf.zeros([1, 32, 32, 3]))
  assert not np.allclose(target.backbone.variables[0].numpy(),
                         source.variables[0].numpy())
  assert target.restore_backbone_weights()
  for a, b in zip(target.backbone.variables, source.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_restore_without_a_file():
  assert not _tiny_resnet_extractor().restore_backbone_weights()
  missing = _tiny_resnet_extractor(weights='/nonexistent/ckpt')
  missing(tf.zeros([1, 32, 32, 3]))
  with pytest.raises(ValueError, match='/nonexistent/ckpt'):
    missing.restore_backbone_weights()
