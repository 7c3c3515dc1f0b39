"""Tests for od_meta.feature_extractors.darknet."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import darknet


def _num_params(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


@pytest.fixture(scope='module')
def tiny():
  net = darknet.DarkNet53(depth_multiplier=0.25, num_blocks=(1, 1, 2, 1, 1))
  net(tf.zeros([1, 64, 64, 3]))
  return net


def test_stage_dict_shapes(tiny):
  out = tiny(tf.random.uniform([2, 64, 64, 3], -1, 1))
  # Channels max(int(c * 0.25), 8) for c = 128, 256, 512, 1024.
  assert tiny.stage_channels == {4: 32, 8: 64, 16: 128, 32: 256}
  assert sorted(out) == [4, 8, 16, 32]
  for stride, fmap in out.items():
    assert fmap.dtype == tf.float32
    assert fmap.shape == (2, 64 // stride, 64 // stride,
                          tiny.stage_channels[stride])
  assert [len(s) for s in tiny.stages] == [2, 2, 3, 2, 2]  # down + blocks


def test_odd_sizes_give_ceil(tiny):
  out = tiny(tf.zeros([1, 50, 33, 3]))
  assert [tuple(out[s].shape[1:3]) for s in (4, 8, 16, 32)] == [
      (13, 9), (7, 5), (4, 3), (2, 2)]


def test_darknet53_parameter_count():
  net = darknet.DarkNet53()
  net(tf.zeros([1, 32, 32, 3]))

  def conv(k, cin, cout):  # conv without bias + BN gamma, beta
    return k * k * cin * cout + 2 * cout

  # YOLOv3 Table 1: 3x3 conv 32, then per stage a 3x3/2 conv and n
  # residual [1x1 c/2, 3x3 c] blocks.
  total, cin = conv(3, 3, 32), 32
  for c, n in zip((64, 128, 256, 512, 1024), (1, 2, 8, 8, 4)):
    total += conv(3, cin, c) + n * (conv(1, c, c // 2) + conv(3, c // 2, c))
    cin = c
  assert total == 40_584_928
  assert _num_params(net.trainable_variables) == total


def test_residual_is_identity_when_last_conv_is_zero():
  block = darknet.DarknetResidual(8, 4)
  x = tf.random.normal([1, 5, 5, 8], seed=3)
  block(x)
  block.expand.conv.conv.kernel.assign(
      tf.zeros_like(block.expand.conv.conv.kernel))
  # BN (inference, moving mean 0 / var 1, beta 0) of 0 is 0 and
  # leaky_relu(0) = 0, so the block returns x + 0 (no activation after the
  # sum, darknet's linear shortcut).
  np.testing.assert_allclose(block(x, training=False).numpy(), x.numpy(),
                             atol=1e-6)


def test_leaky_relu_slope():
  layer = darknet.ConvBNLeaky(1, 1, 1)
  layer(tf.zeros([1, 1, 1, 1]))
  layer.conv.conv.kernel.assign([[[[1.0]]]])
  out = layer(tf.constant([-2.0, 3.0], shape=[1, 1, 2, 1]), training=False)
  # BN inference divides by sqrt(1 + 1e-5); leaky slope 0.1 for x < 0.
  scale = 1.0 / np.sqrt(1.0 + 1e-5)
  np.testing.assert_allclose(out.numpy().ravel(), [-0.2 * scale, 3 * scale],
                             rtol=1e-6)


def test_graph_mode_and_checkpoint(tiny, tmp_path):
  images = tf.random.uniform([1, 64, 64, 3], -1, 1, seed=2)
  eager = tiny(images)
  graph = tf.function(lambda x: tiny(x, training=False))(images)
  np.testing.assert_allclose(graph[32].numpy(), eager[32].numpy(),
                             rtol=1e-5, atol=1e-5)
  path = tf.train.Checkpoint(m=tiny).save(str(tmp_path / 'ckpt'))
  saved = sorted(tuple(s) for n, s in tf.train.list_variables(path)
                 if n.startswith('m/'))
  assert saved == sorted(tuple(v.shape) for v in tiny.variables)


def test_bad_arguments():
  with pytest.raises(ValueError, match='num_blocks'):
    darknet.DarkNet53(num_blocks=(1, 2, 8, 8))
  with pytest.raises(ValueError, match='num_blocks'):
    darknet.DarkNet53(num_blocks=(1, 2, -1, 8, 4))
  with pytest.raises(ValueError, match='depth_multiplier'):
    darknet.DarkNet53(depth_multiplier=-1)
