"""Tests for od_meta.feature_extractors.hourglass."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import hourglass
from od_meta.feature_extractors import resnet_v1_small


def _tiny(num_stacks=2):
  return hourglass.HourglassNetwork(
      num_stacks=num_stacks, stem_channels=8, channel_dims=(8, 8, 16),
      blocks_per_stage=(1, 1, 1), cnv_dim=8)


@pytest.fixture(scope='module')
def tiny():
  net = _tiny()
  net(tf.zeros([1, 64, 64, 3]))
  return net


def test_returns_one_stride4_map_per_stack(tiny):
  maps = tiny(tf.random.uniform([2, 64, 64, 3], -1, 1, seed=5))
  assert isinstance(maps, list) and len(maps) == tiny.num_stacks == 2
  for m in maps:
    assert m.dtype == tf.float32 and m.shape == (2, 16, 16, 8)
  assert tiny.out_channels == 8 and tiny.out_stride == 4
  # The second stack refines the first: different maps.
  assert not np.allclose(maps[0].numpy(), maps[1].numpy())


def test_three_stacks_and_odd_sizes():
  net = _tiny(num_stacks=3)
  maps = net(tf.zeros([1, 60, 44, 3]))
  # ceil(60 / 4) = 15, ceil(44 / 4) = 11; inside, 15 -> 8 -> 4 and back
  # up with the 2x-upsampled branch cropped to the skip branch.
  assert [tuple(m.shape) for m in maps] == [(1, 15, 11, 8)] * 3
  assert len(net.inter_residuals) == 2


def test_hourglass_104_layout():
  net = hourglass.hourglass_104()  # constructed, not built (188M params)
  assert net.num_stacks == 2 and net.out_channels == 256

  def count_blocks(module):
    n = len(module.up1) + len(module.low1) + len(module.low2) + len(
        module.low3)
    return n + (count_blocks(module.inner) if module.inner else 0)

  # 5 levels x (2 up1 + 2 low1 + 2 low3) + 4 middle residuals (CornerNet).
  assert count_blocks(net.hourglasses[0]) == 5 * 6 + 4
  dims = []
  module = net.hourglasses[0]
  while module is not None:
    dims.append(module.low1[0].filters)
    module = module.inner
  assert dims == [256, 384, 384, 384, 512]
  assert [b.strides for b in net.hourglasses[0].low1] == [2, 1]


def test_small_preset_parameter_count():
  net = hourglass.hourglass_small()
  maps = net(tf.zeros([1, 64, 64, 3]))
  assert len(maps) == 2 and maps[-1].shape == (1, 16, 16, 48)
  count = sum(int(np.prod(v.shape)) for v in net.trainable_variables)
  assert count == 1_709_888  # "~1-2M"


def test_module_is_skip_branch_plus_upsampled_low_branch():
  module = hourglass.HourglassModule((4, 6), (1, 1))
  x = tf.random.normal([1, 4, 4, 4], seed=6)
  out = module(x, training=False).numpy()
  # Newell et al. Sec. 3 / CornerNet kp_module with n = 1:
  # up1(x) + nearest_2x(low3(low2(low1(x)))), low1 a stride-2 residual.
  assert [b.strides for b in module.low1] == [2]
  assert module.inner is None and len(module.low2) == 1
  skip = module.up1[0](x, training=False).numpy()
  low = module.low1[0](x, training=False)
  low = module.low2[0](low, training=False)
  low = module.low3[0](low, training=False).numpy()
  assert low.shape == (1, 2, 2, 4)
  up = np.repeat(np.repeat(low, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(out, skip + up, rtol=1e-5, atol=1e-5)
  assert isinstance(module.up1[0], resnet_v1_small.BasicBlock)


def test_bilinear_upsampling_of_the_low_branch():
  module = hourglass.HourglassModule((4, 6), (1, 1),
                                     upsampling_interpolation='bilinear')
  x = tf.random.normal([1, 4, 4, 4], seed=6)
  out = module(x, training=False).numpy()
  skip = module.up1[0](x, training=False).numpy()
  low = module.low1[0](x, training=False)
  low = module.low2[0](low, training=False)
  low = module.low3[0](low, training=False)
  # tf.image.resize bilinear (half-pixel centers): a 2 x 2 map -> 4 x 4,
  # corner output = input corner, next one = 3/4 corner + 1/4 neighbour.
  low = low.numpy()
  up = tf.image.resize(low, [4, 4], method='bilinear').numpy()
  np.testing.assert_allclose(up[0, 0, 0], low[0, 0, 0], rtol=1e-5)
  np.testing.assert_allclose(up[0, 0, 1], 0.75 * low[0, 0, 0] +
                             0.25 * low[0, 0, 1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, skip + up, rtol=1e-5, atol=1e-5)


def test_graph_mode_and_checkpoint(tiny, tmp_path):
  images = tf.random.uniform([1, 64, 64, 3], -1, 1, seed=7)
  eager = tiny(images)
  graph = tf.function(lambda x: tiny(x, training=False))(images)
  for a, b in zip(graph, eager):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-3)
  path = tf.train.Checkpoint(m=tiny).save(str(tmp_path / 'ckpt'))
  saved = sorted(tuple(s) for n, s in tf.train.list_variables(path)
                 if n.startswith('m/'))
  assert len(saved) > 100
  assert saved == sorted(tuple(v.shape) for v in tiny.variables)


def test_bad_arguments():
  with pytest.raises(ValueError, match='num_stacks'):
    hourglass.HourglassNetwork(num_stacks=0)
  with pytest.raises(ValueError, match='upsampling_interpolation'):
    hourglass.HourglassNetwork(upsampling_interpolation='area')
  with pytest.raises(ValueError, match='channel_dims'):
    hourglass.HourglassNetwork(channel_dims=(8,), blocks_per_stage=(1,))
  with pytest.raises(ValueError, match='blocks_per_stage'):
    hourglass.HourglassNetwork(channel_dims=(8, 8), blocks_per_stage=(1,))
  with pytest.raises(ValueError, match='>= 1'):
    hourglass.HourglassNetwork(channel_dims=(8, 8), blocks_per_stage=(1, 0))
