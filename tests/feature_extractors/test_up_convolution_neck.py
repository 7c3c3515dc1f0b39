"""Tests for od_meta.feature_extractors.up_convolution_neck."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import up_convolution_neck as neck_lib

_CHANNELS = {4: 8, 8: 12, 16: 16, 32: 24}


def _stage_dict(height=64, width=64, seed=0, batch=1):
  gen = tf.random.Generator.from_seed(seed)
  return {s: gen.normal([batch, -(-height // s), -(-width // s), c])
          for s, c in _CHANNELS.items()}


def test_bilinear_kernel_golden():
  # f = ceil(4 / 2) = 2, c = (2*2 - 1 - 0) / 4 = 0.75,
  # w_i = 1 - |i / 2 - 0.75| = 0.25, 0.75, 0.75, 0.25 (CenterNet
  # fill_up_weights).
  w1 = np.array([0.25, 0.75, 0.75, 0.25])
  np.testing.assert_allclose(neck_lib.bilinear_kernel_2d(4),
                             np.outer(w1, w1))


@pytest.fixture(scope='module')
def built_neck():
  neck = neck_lib.UpConvolutionNeck(num_filters=(4, 4, 4))
  neck(_stage_dict())
  return neck


def test_deconv_reproduces_bilinear_upsampling(built_neck):
  deconv = built_neck.deconvs[0]
  kernel = deconv.kernel.numpy()  # [k, k, out, in]
  assert kernel.shape == (4, 4, 4, 4)
  assert np.count_nonzero(kernel[:, :, 0, 1]) == 0  # per channel only
  # Input 6x6: channel c is (c + 1) * x along the width, constant along
  # the height. A stride-2 4x4 transposed conv with padding 1 gives
  # out[2m] = .75 x[m] + .25 x[m-1], out[2m+1] = .75 x[m] + .25 x[m+1],
  # i.e. for the ramp x[m] = m: out[o] = o / 2 - 0.25 (half-pixel bilinear
  # upsampling); rows sum .75 + .25 = 1 away from the border.
  ramp = np.arange(6, dtype=np.float32)
  x = np.stack([np.tile(ramp * (c + 1), (6, 1)) for c in range(4)], -1)
  x = tf.constant(x[None])
  out = deconv(x).numpy()[0]
  assert out.shape == (12, 12, 4)
  interior = out[1:-1, 1:-1, :]
  o = np.arange(1, 11, dtype=np.float32)
  for c in range(4):
    expected = np.tile((c + 1) * (o / 2 - 0.25), (10, 1))
    np.testing.assert_allclose(interior[:, :, c], expected, atol=1e-5)
  resized = tf.image.resize(x, [12, 12], method='bilinear').numpy()[0]
  np.testing.assert_allclose(interior, resized[1:-1, 1:-1, :], atol=1e-5)
  # A constant map stays constant in the interior.
  const = deconv(tf.fill([1, 6, 6, 4], 3.0)).numpy()[0]
  np.testing.assert_allclose(const[1:-1, 1:-1, :], 3.0, atol=1e-5)


def test_bilinear_init_off():
  neck = neck_lib.UpConvolutionNeck(num_filters=(4, 4, 4),
                                    bilinear_init=False)
  neck(_stage_dict())
  kernel = neck.deconvs[0].kernel.numpy()
  assert np.count_nonzero(kernel[:, :, 0, 1]) > 0


def test_output_shape_default_filters():
  neck = neck_lib.UpConvolutionNeck()
  out = neck(_stage_dict(batch=2), training=True)
  assert out.dtype == tf.float32
  assert out.shape == (2, 16, 16, 64)
  assert neck.out_channels == 64 and neck.upsampling_factor == 8


def test_sizes_not_multiple_of_32_are_cropped_to_c2():
  neck = neck_lib.UpConvolutionNeck(num_filters=(8, 8, 8),
                                    shortcut_num_convs=(1, 1, 1))
  # H = 72: C5 ceil(72/32) = 3 -> 6 cropped to C4's 5 -> 10 cropped to
  # C3's 9 -> 18 = C2's ceil(72/4). W = 40: 2 -> 4 (C4 3) -> 6 (C3 5) ->
  # 10 = C2.
  out = neck(_stage_dict(72, 40))
  assert out.shape == (1, 18, 10, 8)


def test_shortcuts_use_c2_to_c4():
  stages = _stage_dict(seed=1)
  changed = dict(stages)
  changed[4] = stages[4] + 1.0
  changed[16] = stages[16] + 1.0
  plain = neck_lib.UpConvolutionNeck(num_filters=(8, 8, 8))
  # Without shortcuts only C5 is read.
  np.testing.assert_allclose(plain(stages).numpy(), plain(changed).numpy())
  ttf = neck_lib.UpConvolutionNeck(num_filters=(8, 8, 8),
                                   shortcut_num_convs=(1, 2, 3))
  assert [len(s) for s in ttf.shortcuts] == [1, 2, 3]
  assert not np.allclose(ttf(stages).numpy(), ttf(changed).numpy())
  # The shortcut adds to the up-sampled map: zeroing its convs gives the
  # same output as the shortcut-free path with the same weights.
  for branch in ttf.shortcuts:
    for conv in branch:
      for v in conv.weights:
        v.assign(tf.zeros_like(v))
  np.testing.assert_allclose(ttf(stages).numpy(), ttf(changed).numpy())


def test_shortcut_needs_its_stride():
  neck = neck_lib.UpConvolutionNeck(num_filters=(8, 8, 8),
                                    shortcut_num_convs=(1, 2, 3))
  stages = _stage_dict()
  del stages[8]
  with pytest.raises(ValueError, match='stride-8'):
    neck(stages)


def test_graph_mode_and_checkpoint(tmp_path):
  neck = neck_lib.UpConvolutionNeck(num_filters=(8, 8, 8),
                                    shortcut_num_convs=(1, 2, 3))
  stages = _stage_dict(seed=2)
  eager = neck(stages)
  graph = tf.function(lambda d: neck(d, training=False))(stages)
  np.testing.assert_allclose(graph.numpy(), eager.numpy(), rtol=1e-5,
                             atol=1e-5)
  path = tf.train.Checkpoint(m=neck).save(str(tmp_path / 'ckpt'))
  names = [n for n, _ in tf.train.list_variables(path) if n.startswith('m/')]
  assert any('shortcuts/2/2' in n for n in names)
  assert len(names) == len(neck.variables)
  other = neck_lib.UpConvolutionNeck(num_filters=(8, 8, 8),
                                     shortcut_num_convs=(1, 2, 3))
  other(stages)
  tf.train.Checkpoint(m=other).restore(path).assert_consumed()
  np.testing.assert_allclose(other(stages).numpy(), eager.numpy(),
                             rtol=1e-5, atol=1e-5)


def test_bad_arguments():
  with pytest.raises(ValueError, match='num_filters'):
    neck_lib.UpConvolutionNeck(num_filters=())
  with pytest.raises(ValueError, match='kernel_size'):
    neck_lib.UpConvolutionNeck(kernel_size=1)
  with pytest.raises(ValueError, match='shortcut_num_convs'):
    neck_lib.UpConvolutionNeck(shortcut_num_convs=(1, 2, 3, 4))
  with pytest.raises(ValueError, match='stage dict'):
    neck_lib.UpConvolutionNeck()([tf.zeros([1, 2, 2, 8])])
