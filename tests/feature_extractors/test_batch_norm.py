"""Tests for od_meta.feature_extractors.batch_norm: the fused layer computes
what Keras' BatchNormalization computes (outputs, gradients, moving
statistics), and cloned backbones keep their weights."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from od_meta.feature_extractors import batch_norm


def _pair(**kwargs):
  reference = keras.layers.BatchNormalization(**kwargs)
  fused = batch_norm.FusedBatchNormalization(**kwargs)
  shape = (None, 5, 6, 3)
  reference.build(shape)
  fused.build(shape)
  rng = np.random.default_rng(0)
  weights = [rng.uniform(0.5, 2.0, w.shape).astype(np.float32)
             for w in reference.get_weights()]
  reference.set_weights(weights)
  fused.set_weights(weights)
  return reference, fused


def _grads(layer, x, training):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer(x, training=training)
    loss = tf.reduce_sum(y * tf.range(1.0, 4.0))
  return y, tape.gradient(loss, [x] + layer.trainable_variables)


@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('scale,center', [(True, True), (False, True),
                                          (True, False)])
def test_matches_keras_outputs_gradients_and_moving_stats(training, scale,
                                                          center):
  reference, fused = _pair(momentum=0.9, epsilon=1e-3, scale=scale,
                           center=center)
  x = tf.constant(np.random.default_rng(1).normal(
      2.0, 3.0, (4, 5, 6, 3)).astype(np.float32))
  initial_mean = fused.moving_mean.numpy().copy()
  y_ref, g_ref = _grads(reference, x, training)
  y_fused, g_fused = _grads(fused, x, training)
  np.testing.assert_allclose(y_fused, y_ref, rtol=1e-4, atol=1e-4)
  for a, b in zip(g_fused, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(fused.moving_mean, reference.moving_mean,
                             rtol=1e-5)
  # Biased variance in the moving average, as Keras keeps it.
  np.testing.assert_allclose(fused.moving_variance,
                             reference.moving_variance, rtol=1e-5)
  # Training updates the moving statistics; inference leaves them.
  assert np.allclose(fused.moving_mean, initial_mean) != training


def test_moving_mean_golden():
  fused = batch_norm.FusedBatchNormalization(momentum=0.5)
  x = tf.reshape(tf.constant([1.0, 3.0, 5.0, 7.0]), [1, 2, 2, 1])
  fused(x, training=True)
  # mean 4, biased variance 5; moving = 0.5 * init + 0.5 * batch.
  np.testing.assert_allclose(fused.moving_mean, [2.0])
  np.testing.assert_allclose(fused.moving_variance, [3.0])


def test_falls_back_to_keras_off_the_fused_case():
  fused = batch_norm.FusedBatchNormalization(axis=1)
  reference = keras.layers.BatchNormalization(axis=1)
  x = tf.constant(np.random.default_rng(2).normal(
      size=(3, 4, 2)).astype(np.float32))
  np.testing.assert_allclose(fused(x, training=True),
                             reference(x, training=True), rtol=1e-5,
                             atol=1e-5)


def test_with_fused_batch_norm_keeps_names_weights_and_function():
  inputs = keras.Input((None, None, 2))
  x = keras.layers.Conv2D(4, 3, padding='same', name='conv')(inputs)
  x = keras.layers.BatchNormalization(name='bn')(x)
  outputs = keras.layers.ReLU(name='relu')(x)
  model = keras.Model(inputs, outputs, name='toy')
  rng = np.random.default_rng(3)
  model.set_weights([rng.normal(size=w.shape).astype(np.float32) + 1.0
                     for w in model.get_weights()])
  clone = batch_norm.with_fused_batch_norm(model)
  assert clone is not model
  assert clone.name == 'toy'
  # Same layer names (the input layer's name is Keras' own).
  assert [l.name for l in clone.layers[1:]] == [
      l.name for l in model.layers[1:]]
  assert isinstance(clone.get_layer('bn'),
                    batch_norm.FusedBatchNormalization)
  x = tf.constant(rng.normal(size=(2, 5, 5, 2)).astype(np.float32))
  np.testing.assert_allclose(clone(x, training=False),
                             model(x, training=False), rtol=1e-4, atol=1e-4)


def test_mobilenet_v2_backbone_uses_fused_batch_norm():
  base = keras.applications.MobileNetV2(input_shape=(None, None, 3),
                                        alpha=0.35, include_top=False,
                                        weights=None)
  clone = batch_norm.with_fused_batch_norm(base)
  norms = [l for l in clone.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  assert norms and all(
      isinstance(l, batch_norm.FusedBatchNormalization) for l in norms)
  x = tf.random.uniform([1, 64, 64, 3], -1.0, 1.0, seed=4)
  np.testing.assert_allclose(clone(x, training=False),
                             base(x, training=False), rtol=1e-3, atol=1e-4)
