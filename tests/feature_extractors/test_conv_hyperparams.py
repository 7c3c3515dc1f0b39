"""Tests for od_meta.feature_extractors.conv_hyperparams."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import conv_hyperparams


def test_regularizer_matches_od_api_l2_loss():
  hp = conv_hyperparams.ConvHyperparams(l2_weight_decay=0.1)
  kernel = tf.constant([3.0, 4.0])
  # OD API: w * tf.nn.l2_loss(k) = 0.1 * (9 + 16) / 2 = 1.25.
  assert float(hp.kernel_regularizer()(kernel)) == pytest.approx(1.25)
  assert conv_hyperparams.ConvHyperparams(
      l2_weight_decay=0.0).kernel_regularizer() is None


def test_conv_block_layers_and_bias():
  hp = conv_hyperparams.ConvHyperparams()
  layers = hp.build_conv_block(8, 3, strides=2, name='b')
  assert [type(l).__name__ for l in layers] == [
      'Conv2D', 'FusedBatchNormalization', 'ReLU']
  assert isinstance(layers[1], tf.keras.layers.BatchNormalization)
  assert not layers[0].use_bias  # BN beta replaces the bias.
  out = conv_hyperparams.apply_layers(layers, tf.ones([1, 5, 5, 2]))
  assert out.shape == (1, 3, 3, 8)
  # ReLU6 caps activations at 6.
  assert float(tf.reduce_max(layers[2](tf.constant([10.0])))) == 6.0
  dw = hp.build_conv_block(8, 3, use_depthwise=True, name='d')
  assert type(dw[0]).__name__ == 'DepthwiseConv2D'
  no_bn = hp.replace(use_batch_norm=False, activation='none')
  plain = no_bn.build_conv_block(4, 1, name='p')
  assert plain[0].use_bias
  x = tf.constant([[[[-2.0]]]])
  np.testing.assert_allclose(plain[2](plain[1](x)), x)  # identity BN / act


def test_initializer_stddev():
  hp = conv_hyperparams.ConvHyperparams(initializer_stddev=0.03)
  values = hp.kernel_initializer()((20000,)).numpy()
  # Truncated at 2 stddev: |v| <= 0.06.
  assert np.abs(values).max() <= 0.06 + 1e-7
  assert 0.02 < values.std() < 0.03


def test_create_and_errors():
  hp = conv_hyperparams.ConvHyperparams.create({'activation': 'relu'})
  assert hp.activation == 'relu' and hp.use_batch_norm
  assert conv_hyperparams.ConvHyperparams.create(hp) is hp
  assert conv_hyperparams.ConvHyperparams.create(None) == (
      conv_hyperparams.ConvHyperparams())
  with pytest.raises(ValueError, match='unknown keys'):
    conv_hyperparams.ConvHyperparams.create({'actvation': 'relu'})
  with pytest.raises(ValueError, match='activation'):
    conv_hyperparams.ConvHyperparams(activation='gelu6')
  with pytest.raises(ValueError, match='initializer'):
    conv_hyperparams.ConvHyperparams(initializer='zeros')
  with pytest.raises(ValueError, match='l2_weight_decay'):
    conv_hyperparams.ConvHyperparams(l2_weight_decay=-1.0)
  with pytest.raises(ValueError, match='conv_hyperparams'):
    conv_hyperparams.ConvHyperparams.create(3)
