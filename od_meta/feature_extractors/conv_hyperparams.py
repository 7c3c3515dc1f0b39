"""Convolution hyperparameters shared by feature extractors, necks and heads.

`ConvHyperparams` plays the role of the TF Object Detection API's
`hyperparams.proto` / `KerasLayerHyperparams`: one frozen value object that
says which activation, batch norm, initializer and weight decay the *new*
layers of a network use (extra SSD layers, FPN convolutions, box predictor
towers). Pretrained `keras.applications` backbones keep their own layers.

Defaults follow Huang et al. 2017 ("Speed/accuracy trade-offs", section
3.6.3): batch norm in all additional layers, weights initialized from a
truncated normal with stddev 0.03, ReLU6 activation, L2 weight decay 4e-5 and
batch-norm decay 0.997 as in the TF OD API SSD configs.
"""

import dataclasses
from typing import Any, Mapping, Optional, Union

import tensorflow as tf

from od_meta.feature_extractors import batch_norm as batch_norm_lib

_ACTIVATIONS = ('relu', 'relu6', 'swish', 'sigmoid', 'tanh', 'linear', 'none')
_INITIALIZERS = ('truncated_normal', 'random_normal', 'glorot_uniform',
                 'he_normal', 'variance_scaling')


@dataclasses.dataclass(frozen=True)
class ConvHyperparams:
  """Hyperparameters for the convolutions that od_meta adds to a network.

  Attributes:
    activation: one of 'relu', 'relu6', 'swish', 'sigmoid', 'tanh', 'linear'
      or 'none' ('linear' and 'none' mean identity).
    use_batch_norm: whether conv blocks put a BatchNormalization after the
      convolution (the convolution then has no bias, as BN's beta replaces it).
    batch_norm_momentum: moving-average decay of the BN statistics.
    batch_norm_epsilon: BN variance epsilon.
    batch_norm_scale: BN learns gamma.
    batch_norm_center: BN learns beta.
    l2_weight_decay: TF OD API-style L2 weight `w`; the Keras regularizer is
      `l2(0.5 * w)`, i.e. the loss term is `w * sum(k**2) / 2` exactly like
      `tf.nn.l2_loss` in the OD API / slim. 0 disables the regularizer.
    initializer: one of 'truncated_normal', 'random_normal', 'glorot_uniform',
      'he_normal', 'variance_scaling' (fan_in, scale 1, truncated normal).
    initializer_stddev: stddev of the (truncated) normal initializers.

  Raises (at construction):
    ValueError: unknown activation or initializer name, negative weight decay
      or stddev, momentum outside [0, 1], epsilon <= 0.
  """

  activation: str = 'relu6'
  use_batch_norm: bool = True
  batch_norm_momentum: float = 0.997
  batch_norm_epsilon: float = 0.001
  batch_norm_scale: bool = True
  batch_norm_center: bool = True
  l2_weight_decay: float = 4e-5
  initializer: str = 'truncated_normal'
  initializer_stddev: float = 0.03

  def __post_init__(self):
    if self.activation not in _ACTIVATIONS:
      raise ValueError(f'activation must be one of {_ACTIVATIONS}, got '
                       f'{self.activation!r}')
    if self.initializer not in _INITIALIZERS:
      raise ValueError(f'initializer must be one of {_INITIALIZERS}, got '
                       f'{self.initializer!r}')
    if self.l2_weight_decay < 0:
      raise ValueError('l2_weight_decay must be >= 0, got '
                       f'{self.l2_weight_decay}')
    if self.initializer_stddev <= 0:
      raise ValueError('initializer_stddev must be > 0, got '
                       f'{self.initializer_stddev}')
    if not 0.0 <= self.batch_norm_momentum <= 1.0:
      raise ValueError('batch_norm_momentum must be in [0, 1], got '
                       f'{self.batch_norm_momentum}')
    if self.batch_norm_epsilon <= 0:
      raise ValueError('batch_norm_epsilon must be > 0, got '
                       f'{self.batch_norm_epsilon}')

  @classmethod
  def create(cls, value: Union[None, 'ConvHyperparams', Mapping[str, Any]]
             ) -> 'ConvHyperparams':
    """Normalizes a `conv_hyperparams` constructor argument.

    Args:
      value: None (defaults), a ConvHyperparams (returned as is) or a dict of
        field names to values.

    Returns:
      A ConvHyperparams.

    Raises:
      ValueError: for a dict with unknown keys or any other type.
    """
    if value is None:
      return cls()
    if isinstance(value, cls):
      return value
    if isinstance(value, Mapping):
      names = {f.name for f in dataclasses.fields(cls)}
      unknown = sorted(set(value) - names)
      if unknown:
        raise ValueError(f'conv_hyperparams has unknown keys {unknown}; '
                         f'allowed: {sorted(names)}')
      return cls(**dict(value))
    raise ValueError('conv_hyperparams must be None, a ConvHyperparams or a '
                     f'dict, got {type(value).__name__}')

  def replace(self, **changes) -> 'ConvHyperparams':
    """Returns a copy with some fields changed (dataclasses.replace)."""
    return dataclasses.replace(self, **changes)

  # --- Keras objects -------------------------------------------------------

  def kernel_initializer(self) -> tf.keras.initializers.Initializer:
    """Returns a fresh Keras initializer for conv kernels."""
    if self.initializer == 'truncated_normal':
      return tf.keras.initializers.TruncatedNormal(
          stddev=self.initializer_stddev)
    if self.initializer == 'random_normal':
      return tf.keras.initializers.RandomNormal(stddev=self.initializer_stddev)
    if self.initializer == 'glorot_uniform':
      return tf.keras.initializers.GlorotUniform()
    if self.initializer == 'he_normal':
      return tf.keras.initializers.HeNormal()
    return tf.keras.initializers.VarianceScaling(
        scale=1.0, mode='fan_in', distribution='truncated_normal')

  def kernel_regularizer(self) -> Optional[tf.keras.regularizers.Regularizer]:
    """Returns `l2(0.5 * l2_weight_decay)` or None when the decay is 0."""
    if self.l2_weight_decay == 0:
      return None
    return tf.keras.regularizers.L2(0.5 * self.l2_weight_decay)

  def build_conv2d(self, filters: int, kernel_size=3, *, strides=1,
                   padding: str = 'same', dilation_rate=1,
                   use_bias: Optional[bool] = None,
                   bias_initializer='zeros',
                   name: Optional[str] = None) -> tf.keras.layers.Conv2D:
    """Returns a Conv2D with this initializer and regularizer, no activation.

    Args:
      filters: output depth.
      kernel_size: int or (kh, kw).
      strides: int or (sy, sx).
      padding: 'same' or 'valid'.
      dilation_rate: int or pair.
      use_bias: None means `not use_batch_norm`.
      bias_initializer: Keras initializer for the bias.
      name: layer name.
    """
    if use_bias is None:
      use_bias = not self.use_batch_norm
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding,
        dilation_rate=dilation_rate, use_bias=use_bias,
        kernel_initializer=self.kernel_initializer(),
        kernel_regularizer=self.kernel_regularizer(),
        bias_initializer=bias_initializer, name=name)

  def build_depthwise_conv2d(self, kernel_size=3, *, strides=1,
                             padding: str = 'same', depth_multiplier: int = 1,
                             dilation_rate=1, use_bias: Optional[bool] = None,
                             name: Optional[str] = None
                             ) -> tf.keras.layers.DepthwiseConv2D:
    """Returns a DepthwiseConv2D with this initializer and regularizer."""
    if use_bias is None:
      use_bias = not self.use_batch_norm
    return tf.keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding=padding,
        depth_multiplier=depth_multiplier, dilation_rate=dilation_rate,
        use_bias=use_bias,
        depthwise_initializer=self.kernel_initializer(),
        depthwise_regularizer=self.kernel_regularizer(), name=name)

  def build_separable_conv2d(self, filters: int, kernel_size=3, *, strides=1,
                             padding: str = 'same',
                             use_bias: Optional[bool] = None,
                             bias_initializer='zeros',
                             name: Optional[str] = None
                             ) -> tf.keras.layers.SeparableConv2D:
    """Returns a SeparableConv2D (depthwise kxk then pointwise 1x1)."""
    if use_bias is None:
      use_bias = not self.use_batch_norm
    return tf.keras.layers.SeparableConv2D(
        filters, kernel_size, strides=strides, padding=padding,
        depth_multiplier=1, use_bias=use_bias,
        depthwise_initializer=self.kernel_initializer(),
        pointwise_initializer=self.kernel_initializer(),
        depthwise_regularizer=self.kernel_regularizer(),
        pointwise_regularizer=self.kernel_regularizer(),
        bias_initializer=bias_initializer, name=name)

  def build_batch_norm(self, name: Optional[str] = None
                       ) -> tf.keras.layers.Layer:
    """Returns a (fused) BatchNormalization layer, or identity if BN is off."""
    if not self.use_batch_norm:
      return tf.keras.layers.Identity(name=name)
    return batch_norm_lib.FusedBatchNormalization(
        momentum=self.batch_norm_momentum, epsilon=self.batch_norm_epsilon,
        scale=self.batch_norm_scale, center=self.batch_norm_center, name=name)

  def build_activation(self, name: Optional[str] = None
                       ) -> tf.keras.layers.Layer:
    """Returns the activation layer (ReLU(6) for 'relu6'; identity for none)."""
    if self.activation == 'relu6':
      return tf.keras.layers.ReLU(max_value=6.0, name=name)
    if self.activation == 'relu':
      return tf.keras.layers.ReLU(name=name)
    if self.activation in ('linear', 'none'):
      return tf.keras.layers.Identity(name=name)
    return tf.keras.layers.Activation(self.activation, name=name)

  def build_conv_block(self, filters: int, kernel_size=3, *, strides=1,
                       padding: str = 'same', dilation_rate=1,
                       use_depthwise: bool = False,
                       name: str = 'conv') -> list:
    """Returns the layers of conv -> BN -> activation, as a list.

    With `use_depthwise` the convolution is depthwise kxk -> BN -> activation
    -> pointwise 1x1 (MobileNet style, as the TF OD API's extra SSD layers),
    followed by BN -> activation. Apply the layers in order.

    Args:
      filters: output depth.
      kernel_size: int kernel size.
      strides: int stride.
      padding: 'same' or 'valid'.
      dilation_rate: dilation of the (depthwise) kxk convolution.
      use_depthwise: depthwise separable convolution.
      name: prefix of the layer names.

    Returns:
      A list of Keras layers.
    """
    layers = []
    if use_depthwise and kernel_size != 1:
      layers += [
          self.build_depthwise_conv2d(kernel_size, strides=strides,
                                      padding=padding,
                                      dilation_rate=dilation_rate,
                                      name=f'{name}_depthwise'),
          self.build_batch_norm(name=f'{name}_depthwise_bn'),
          self.build_activation(name=f'{name}_depthwise_act'),
          self.build_conv2d(filters, 1, name=f'{name}_pointwise'),
      ]
    else:
      layers.append(self.build_conv2d(filters, kernel_size, strides=strides,
                                      padding=padding,
                                      dilation_rate=dilation_rate,
                                      name=f'{name}_conv'))
    layers += [self.build_batch_norm(name=f'{name}_bn'),
               self.build_activation(name=f'{name}_act')]
    return layers


def apply_layers(layers, inputs, training=None):
  """Applies Keras layers in order, passing `training` to each.

  Args:
    layers: iterable of Keras layers.
    inputs: tensor.
    training: Python bool or None, given to every layer (layers that do not
      use it ignore it).

  Returns:
    The output tensor of the last layer.
  """
  x = inputs
  for layer in layers:
    x = layer(x, training=training)
  return x
