"""Batch normalization on TensorFlow's fused kernel, for every od_meta network.

Keras 3's `BatchNormalization` computes batch moments and the normalization
with separate element-wise ops (`Mean`, `SquaredDifference`, `Mul`, `Tile`,
...): on CPU the default SSD's training step takes 1.45x as long with them
(`benchmarks/batch_norm_speed.py`: 308 vs 212 ms); TensorFlow's fused kernel
(`FusedBatchNormV3` and its gradient, oneDNN on CPU, cuDNN on GPU) does the
same work in one pass, as Keras 2 did with `fused=True`.

`FusedBatchNormalization` is a drop-in subclass: same variables (gamma, beta,
moving_mean, moving_variance), names and config, so checkpoints and
keras.applications ImageNet weights load unchanged. It uses the fused kernel
on 4-D NHWC inputs normalized over the channel axis and falls back to the
Keras implementation otherwise (masks, renorm, synchronized BN in training,
other axes). `synchronize_batch_norms` turns on sync batch norm.
`with_fused_batch_norm` rebuilds a functional Keras model (e.g. a
keras.applications backbone) with its batch norms replaced.

Numerics follow Keras 3: training normalizes with the biased batch variance
and the moving variance is updated with the biased variance too (the kernel
returns the Bessel-corrected one, which is undone here, as Keras 2 did).
"""

import tensorflow as tf
import keras


@keras.saving.register_keras_serializable(package='od_meta')
class FusedBatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` computed with the fused kernel.

  Input and output: [B, H, W, C] (any float dtype; moments in float32) when
  the fused path applies, otherwise whatever Keras' layer accepts. Same
  constructor arguments as `keras.layers.BatchNormalization`.
  """

  def _can_fuse(self, inputs, mask, training):
    # Synchronized moments are only computed in training; inference uses
    # the moving statistics on the fused kernel either way.
    synchronized_moments = self.synchronized and training and self.trainable
    return (mask is None and not self.renorm and not synchronized_moments and
            inputs.shape.rank == 4 and self.axis in (3, -1) and
            inputs.dtype in (tf.float32, tf.float16, tf.bfloat16))

  def call(self, inputs, training=None, mask=None):
    inputs = tf.convert_to_tensor(inputs)
    if not self._can_fuse(inputs, mask, training):
      return super().call(inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    gamma = (tf.cast(self.gamma, tf.float32) if self.scale else
             tf.ones([channels], tf.float32))
    beta = (tf.cast(self.beta, tf.float32) if self.center else
            tf.zeros([channels], tf.float32))
    moving_mean = tf.cast(self.moving_mean, tf.float32)
    moving_variance = tf.cast(self.moving_variance, tf.float32)
    if training and self.trainable:
      outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
          inputs, gamma, beta, epsilon=self.epsilon, data_format='NHWC',
          is_training=True)
      shape = tf.shape(inputs)
      count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
      # The kernel returns the unbiased variance; Keras keeps the biased one.
      variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
      momentum = self.momentum
      self.moving_mean.assign(moving_mean * momentum + mean * (1.0 - momentum))
      self.moving_variance.assign(
          moving_variance * momentum + variance * (1.0 - momentum))
    else:
      outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
          inputs, gamma, beta, mean=moving_mean, variance=moving_variance,
          epsilon=self.epsilon, data_format='NHWC', is_training=False)
    return tf.cast(outputs, self.compute_dtype)


def _clone_layer(layer):
  if type(layer) is keras.layers.BatchNormalization:  # pylint: disable=unidiomatic-typecheck
    return FusedBatchNormalization.from_config(layer.get_config())
  return layer.__class__.from_config(layer.get_config())


def with_fused_batch_norm(model: keras.Model) -> keras.Model:
  """Returns a copy of a functional `model` with fused batch norms.

  Every `keras.layers.BatchNormalization` becomes a
  `FusedBatchNormalization` with the same config; the other layers are
  recreated from their configs, and the weights (ImageNet ones included)
  are copied, so the copy computes the same function.

  Args:
    model: a built functional `keras.Model` (keras.applications models are).

  Returns:
    a new functional `keras.Model` with the same name, layer names and
    weights.

  Raises:
    ValueError: if `model` is not functional (Keras cannot clone it).
  """
  clone = keras.models.clone_model(model, clone_function=_clone_layer)
  clone.set_weights(model.get_weights())
  return clone


def synchronize_batch_norms(model) -> int:
  """Makes every trainable batch norm of `model` compute cross-replica moments.

  Sync batch norm (Peng et al. 2018, MegDet, section 4; Keras'
  `BatchNormalization(synchronized=True)`): in training, the batch mean and
  variance are all-reduced over the replicas of the current
  `tf.distribute` strategy, so the statistics are those of the global batch
  rather than of each replica's slice. It matters for the heatmap detectors,
  whose high-resolution inputs leave a few images per GPU. The layers take
  Keras' (unfused) path, which is slower on one replica. The frozen batch
  norms of the Faster R-CNN extractors always use their moving statistics,
  so the switch does not change them; nor does it change inference, which
  stays on the fused kernel.

  Args:
    model: a Keras layer or model; its sublayers are walked recursively.

  Returns:
    the number of batch norm layers switched.
  """
  layers = [model] + list(model._flatten_layers(include_self=False,  # pylint: disable=protected-access
                                                recursive=True))
  count = 0
  for layer in layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.synchronized = True
      count += 1
  return count
