"""Tests for od_meta.heads.center_net_heads."""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.heads import center_net_heads


def test_heatmap_bias_constant():
  # CenterNet sec. 4 / RetinaNet sec. 3.3: b = -log((1 - 0.1) / 0.1)
  # = -log(9) = -2.1972246, sigmoid(b) = 1 / (1 + 9) = 0.1.
  assert center_net_heads.HEATMAP_BIAS_INIT == pytest.approx(-2.1972246,
                                                             abs=1e-6)
  assert 1.0 / (1.0 + math.exp(-center_net_heads.HEATMAP_BIAS_INIT)) == (
      pytest.approx(0.1))


def test_output_shape_dtype_and_weight_shapes():
  head = center_net_heads.PredictionHead(num_outputs=3, head_channels=8)
  out = head(tf.random.normal([2, 5, 6, 4], seed=1))
  assert out.shape == (2, 5, 6, 3)
  assert out.dtype == tf.float32
  shapes = sorted(tuple(v.shape) for v in head.trainable_variables)
  # 3x3 conv 4 -> 8 (+ bias 8), 1x1 conv 8 -> 3 (+ bias 3).
  assert shapes == sorted([(3, 3, 4, 8), (8,), (1, 1, 8, 3), (3,)])


def test_bias_init_gives_prior_probability_on_zero_features():
  head = center_net_heads.PredictionHead(
      num_outputs=2, head_channels=4,
      bias_init=center_net_heads.HEATMAP_BIAS_INIT)
  # Zero features: hidden conv = its zero bias, ReLU(0) = 0, so the output
  # is the final bias, -2.19, everywhere, i.e. probability 0.1.
  out = head(tf.zeros([1, 3, 3, 5]))
  np.testing.assert_allclose(out.numpy(), np.full([1, 3, 3, 2], -2.1972246),
                             atol=1e-6)
  np.testing.assert_allclose(tf.sigmoid(out).numpy(), 0.1, atol=1e-6)


def test_relu_between_convs():
  head = center_net_heads.PredictionHead(num_outputs=1, head_channels=1,
                                         kernel_size=1)
  head.build([None, 1, 1, 1])
  # hidden: y = 1 * x + 0; output: z = 2 * relu(y) + 0.5.
  head._hidden_conv.set_weights([np.ones([1, 1, 1, 1]), np.zeros([1])])
  head._output_conv.set_weights([np.full([1, 1, 1, 1], 2.0),
                                 np.array([0.5])])
  out = head(tf.constant([[[[3.0]]], [[[-3.0]]]]))
  # x = 3: 2 * 3 + 0.5 = 6.5; x = -3: 2 * relu(-3) + 0.5 = 0.5.
  np.testing.assert_allclose(out.numpy().ravel(), [6.5, 0.5])


def test_depthwise_variant():
  head = center_net_heads.PredictionHead(num_outputs=2, head_channels=8,
                                         use_depthwise=True)
  out = head(tf.ones([1, 4, 4, 3]))
  assert out.shape == (1, 4, 4, 2)
  shapes = sorted(tuple(v.shape) for v in head.trainable_variables)
  # depthwise 3x3x3x1, pointwise 1x1x3x8, bias 8, final 1x1x8x2, bias 2.
  assert shapes == sorted([(3, 3, 3, 1), (1, 1, 3, 8), (8,), (1, 1, 8, 2),
                           (2,)])


def test_works_in_tf_function_with_dynamic_spatial_size():
  head = center_net_heads.PredictionHead(num_outputs=4)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 6])])
  def run(x):
    return head(x)

  assert run(tf.ones([1, 3, 7, 6])).shape == (1, 3, 7, 4)
  assert run(tf.ones([2, 5, 2, 6])).shape == (2, 5, 2, 4)


def test_gradients_reach_all_variables():
  head = center_net_heads.PredictionHead(num_outputs=2, head_channels=4)
  x = tf.random.normal([1, 4, 4, 3], seed=3)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(head(x) ** 2)
  grads = tape.gradient(loss, head.trainable_variables)
  assert len(grads) == 4 and all(g is not None for g in grads)


def test_checkpoint_round_trip(tmp_path):
  head = center_net_heads.PredictionHead(num_outputs=2, head_channels=4)
  x = tf.random.normal([1, 3, 3, 2], seed=4)
  expected = head(x).numpy()
  path = tf.train.Checkpoint(head=head).save(str(tmp_path / 'ckpt'))
  restored = center_net_heads.PredictionHead(num_outputs=2, head_channels=4)
  restored(x)
  tf.train.Checkpoint(head=restored).restore(path).assert_consumed()
  np.testing.assert_allclose(restored(x).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize('kwargs', [
    dict(num_outputs=0), dict(num_outputs=2, head_channels=0),
    dict(num_outputs=2, kernel_size=0), dict(num_outputs=2.0),
    dict(num_outputs=2, bias_init=float('nan')),
])
def test_bad_constructor_arguments(kwargs):
  with pytest.raises(ValueError):
    center_net_heads.PredictionHead(**kwargs)


def test_bad_input_rank():
  head = center_net_heads.PredictionHead(num_outputs=2)
  with pytest.raises(ValueError, match=r'\[B, h, w, C\]'):
    head(tf.ones([4, 4, 3]))
