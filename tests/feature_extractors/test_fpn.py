"""Tests for od_meta.feature_extractors.fpn."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import fpn


def _inputs(batch=2, sizes=((16, 12), (8, 6), (4, 3)), depths=(8, 16, 24)):
  return {level: tf.random.normal([batch, h, w, d], seed=level)
          for level, (h, w), d in zip((3, 4, 5), sizes, depths)}


@pytest.fixture(scope='module')
def neck():
  return fpn.FeaturePyramidNetwork(min_level=3, max_level=7, depth=16)


def test_output_levels_and_shapes(neck):
  inputs = _inputs()
  inputs[2] = tf.zeros([2, 32, 24, 4])  # Finer than min_level: ignored.
  out = neck(inputs, training=False)
  assert sorted(out) == [3, 4, 5, 6, 7]
  # P6 = ceil(4 / 2) x ceil(3 / 2) = 2 x 2, P7 = 1 x 1 (stride-2 SAME).
  assert {k: tuple(v.shape) for k, v in out.items()} == {
      3: (2, 16, 12, 16), 4: (2, 8, 6, 16), 5: (2, 4, 3, 16),
      6: (2, 2, 2, 16), 7: (2, 1, 1, 16)}


def test_top_level_is_lateral_projection(neck):
  inputs = _inputs()
  out = neck(inputs)
  lateral = neck._laterals[5 - 3]  # pylint: disable=protected-access
  kernel, bias = [v.numpy() for v in lateral.weights]
  # FPN: P5 = 1x1 conv(C5) (Lin et al. 2017 section 3; no 3x3 on the top).
  expected = np.einsum('bhwc,cd->bhwd', inputs[5].numpy(),
                       kernel[0, 0]) + bias
  np.testing.assert_allclose(out[5].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_upsample_nearest_2x_crops_to_target():
  x = tf.constant([[1.0, 2.0], [3.0, 4.0]], shape=[1, 2, 2, 1])
  target = tf.zeros([1, 3, 3, 5])
  up = fpn.upsample_nearest_2x_to(x, target)
  # Nearest 2x gives [[1,1,2,2],[1,1,2,2],[3,3,4,4],[3,3,4,4]]; crop 3x3.
  np.testing.assert_array_equal(up.numpy()[0, :, :, 0],
                                [[1, 1, 2], [1, 1, 2], [3, 3, 4]])
  assert up.shape == (1, 3, 3, 1)


def test_non_multiple_sizes_and_graph_mode(neck):
  # 13 x 9 image-level grid: C3 13x9, C4 ceil -> 7x5, C5 4x3.
  inputs = _inputs(batch=1, sizes=((13, 9), (7, 5), (4, 3)))
  spec = [tf.TensorSpec([None, None, None, d]) for d in (8, 16, 24)]
  fn = tf.function(lambda a, b, c: neck({3: a, 4: b, 5: c}),
                   input_signature=spec)
  out = fn(inputs[3], inputs[4], inputs[5])
  eager = neck(inputs)
  assert [tuple(out[l].shape) for l in range(3, 8)] == [
      (1, 13, 9, 16), (1, 7, 5, 16), (1, 4, 3, 16), (1, 2, 2, 16),
      (1, 1, 1, 16)]
  for level in range(3, 8):
    np.testing.assert_allclose(out[level], eager[level], rtol=1e-5,
                               atol=1e-5)


def test_gradients_reach_every_variable(neck):
  inputs = _inputs()
  with tf.GradientTape() as tape:
    out = neck(inputs, training=True)
    loss = tf.add_n([tf.reduce_sum(v ** 2) for v in out.values()])
  grads = tape.gradient(loss, neck.trainable_variables)
  # 3 laterals (kernel + bias), 2 smoothing and 2 downsample blocks
  # (kernel + BN gamma, beta) = 6 + 6 + 6 = 18.
  assert len(neck.trainable_variables) == 18
  assert all(g is not None for g in grads)


def test_depthwise_and_backbone_max_level():
  neck = fpn.FeaturePyramidNetwork(min_level=3, max_level=5, depth=8,
                                   use_depthwise=True, backbone_max_level=4)
  out = neck(_inputs())
  # P5 comes from a stride-2 conv on P4: ceil(8 / 2) x ceil(6 / 2) = 4 x 3.
  assert [tuple(out[l].shape) for l in (3, 4, 5)] == [
      (2, 16, 12, 8), (2, 8, 6, 8), (2, 4, 3, 8)]
  layers = neck._flatten_layers()  # pylint: disable=protected-access
  assert any(isinstance(l, tf.keras.layers.SeparableConv2D) for l in layers)


def test_errors(neck):
  with pytest.raises(ValueError, match='lack levels'):
    neck({3: tf.zeros([1, 8, 8, 8]), 4: tf.zeros([1, 4, 4, 16])})
  with pytest.raises(ValueError, match='max_level'):
    fpn.FeaturePyramidNetwork(min_level=5, max_level=4, depth=8)
  with pytest.raises(ValueError, match='min_level'):
    fpn.FeaturePyramidNetwork(min_level=0, max_level=4, depth=8)
  with pytest.raises(ValueError, match='depth'):
    fpn.FeaturePyramidNetwork(min_level=3, max_level=4, depth=0)
  with pytest.raises(ValueError, match='backbone_max_level'):
    fpn.FeaturePyramidNetwork(min_level=3, max_level=4, depth=8,
                              backbone_max_level=5)
