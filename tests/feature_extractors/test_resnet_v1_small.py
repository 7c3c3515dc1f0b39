"""Tests for od_meta.feature_extractors.resnet_v1_small."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import resnet_v1_small


def _num_params(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


def assert_all_checkpointed(layer, tmp_path):
  """Every variable of `layer` is saved by tf.train.Checkpoint (by shape)."""
  path = tf.train.Checkpoint(m=layer).save(str(tmp_path / 'ckpt'))
  saved = sorted(tuple(shape) for name, shape in tf.train.list_variables(path)
                 if name.startswith('m/'))
  weights = [v for v in layer.variables if 'seed_generator' not in v.path]
  assert len(weights) > 0
  assert saved == sorted(tuple(v.shape) for v in weights)


@pytest.fixture(scope='module')
def tiny18():
  net = resnet_v1_small.ResNetV1Small(depth=18, depth_multiplier=0.25)
  net(tf.zeros([1, 64, 64, 3]))
  return net


def test_stage_dict_shapes_and_channels(tiny18):
  out = tiny18(tf.random.uniform([2, 64, 64, 3]), training=False)
  assert sorted(out) == [4, 8, 16, 32]
  # Channels max(int(c * 0.25), 8) for c = 64, 128, 256, 512.
  assert tiny18.stage_channels == {4: 16, 8: 32, 16: 64, 32: 128}
  for stride, fmap in out.items():
    assert fmap.dtype == tf.float32
    assert fmap.shape == (2, 64 // stride, 64 // stride,
                          tiny18.stage_channels[stride])


def test_odd_sizes_give_ceil(tiny18):
  out = tiny18(tf.zeros([1, 65, 47, 3]))
  # ceil(65 / s), ceil(47 / s) for s = 4, 8, 16, 32.
  assert [tuple(out[s].shape[1:3]) for s in (4, 8, 16, 32)] == [
      (17, 12), (9, 6), (5, 3), (3, 2)]


def test_block_layout(tiny18):
  assert [len(s) for s in tiny18.stages] == [2, 2, 2, 2]
  # Projection shortcuts only where the shape changes (option B).
  assert tiny18.stages[0][0].projection is None
  assert [s[0].projection is not None for s in tiny18.stages[1:]] == [
      True, True, True]
  assert all(s[1].projection is None for s in tiny18.stages)
  assert [len(s) for s in resnet_v1_small.ResNetV1Small(
      depth=34, depth_multiplier=0.125).stages] == [3, 4, 6, 3]


def test_resnet18_parameter_count():
  net = resnet_v1_small.ResNetV1Small(depth=18)
  net(tf.zeros([1, 32, 32, 3]))
  # Hand count (conv k*k*in*out, BN gamma+beta 2*c), He et al. Table 1:
  # conv1 7*7*3*64 + 128 = 9,536
  # conv2_x 2 * 2 * (9*64*64 + 128) = 147,968
  # conv3_x (9*64*128 + 256) + (9*128*128 + 256) + (64*128 + 256)
  #        + 2 * (9*128*128 + 256) = 230,144 + 295,424 = 525,568
  # conv4_x (294,912 + 512) + (589,824 + 512) + (32,768 + 512)
  #        + 2 * (589,824 + 512) = 919,040 + 1,180,672 = 2,099,712
  # conv5_x (1,179,648 + 1,024) + (2,359,296 + 1,024) + (131,072 + 1,024)
  #        + 2 * (2,359,296 + 1,024) = 3,673,088 + 4,720,640 = 8,393,728
  # total 11,176,512 = torchvision resnet18's 11,689,512 minus its fc
  # (512 * 1000 + 1000 = 513,000).
  assert _num_params(net.trainable_variables) == 11_176_512
  assert 11_689_512 - 513_000 == 11_176_512
  # Moving mean + variance of 64 + 4*64 + 5*128 + 5*256 + 5*512 = 4,800 BN
  # channels.
  assert _num_params(net.non_trainable_variables) == 2 * 4_800


def test_symmetric_stride_two_padding():
  conv = resnet_v1_small.PaddedConv2D(
      1, 3, 2, kernel_initializer=tf.keras.initializers.Ones())
  out = conv(tf.ones([1, 4, 4, 1]))[0, :, :, 0].numpy()
  # Pad 1 on every side: the 3x3 windows at rows/cols {-1..1} and {1..3}
  # cover 2x2, 2x3, 3x2 and 3x3 real pixels. Keras 'same' would pad only
  # bottom/right and give [[9, 6], [6, 4]].
  np.testing.assert_array_equal(out, [[4, 6], [6, 9]])


def test_graph_mode_matches_eager(tiny18):
  images = tf.random.uniform([1, 64, 64, 3], -1, 1, seed=1)
  eager = tiny18(images, training=False)
  graph = tf.function(lambda x: tiny18(x, training=False))(images)
  for s in eager:
    np.testing.assert_allclose(graph[s].numpy(), eager[s].numpy(),
                               rtol=1e-5, atol=1e-5)


def test_every_variable_is_checkpointed(tiny18, tmp_path):
  assert_all_checkpointed(tiny18, tmp_path)


def test_bad_arguments():
  with pytest.raises(ValueError, match='depth'):
    resnet_v1_small.ResNetV1Small(depth=50)
  with pytest.raises(ValueError, match='depth_multiplier'):
    resnet_v1_small.ResNetV1Small(depth_multiplier=0.0)
  with pytest.raises(ValueError, match='batch_norm_momentum'):
    resnet_v1_small.ResNetV1Small(batch_norm_momentum=1.5)
  with pytest.raises(ValueError, match='images'):
    resnet_v1_small.ResNetV1Small(depth_multiplier=0.125)(tf.zeros([8, 8, 3]))
