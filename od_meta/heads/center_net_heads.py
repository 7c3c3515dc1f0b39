"""Prediction heads of the heatmap (keypoint-style) detectors.

CenterNet "Objects as Points" (Zhou et al. 2019, section 4 and "Implementation
details"), TTFNet, CornerNet and FCOS put small fully convolutional heads on a
shared feature map: one head per output (class heatmap, size, offset, keypoint
offsets, ltrb distances, ...). Each head is

  3x3 conv (head_channels) -> ReLU -> 1x1 conv (num_outputs)

(the MMDetection CenterNet reproduction's `_build_head`, the TF OD API's
`make_prediction_net`). The bias of the last conv is initialized to
`bias_init`: heatmap heads use -2.19 = -log((1 - 0.1) / 0.1), i.e. an initial
sigmoid output of 0.1 (CenterNet section 4 / RetinaNet section 3.3 prior
initialization), regression heads use 0.
"""

import math
from typing import Optional

import tensorflow as tf

# Bias of heatmap heads: sigmoid(b) = 0.1 (CenterNet section 4).
HEATMAP_BIAS_INIT = -math.log((1.0 - 0.1) / 0.1)  # -2.1972245...


class PredictionHead(tf.keras.layers.Layer):
  """3x3 conv (+ReLU) then 1x1 conv: one dense prediction head.

  With `use_depthwise` the 3x3 conv is a depthwise separable conv
  (`SeparableConv2D`, depth multiplier 1), as in the TF OD API's
  `make_prediction_net(use_depthwise=True)` and CornerNet-Squeeze.

  Args (keyword-only):
    num_outputs: positive int, channels of the output (num_classes for a
      heatmap, 2 for size / offset, 4 for ltrb distances, 2K for keypoint
      offsets, ...).
    head_channels: positive int, channels of the hidden 3x3 conv (64 in
      CenterNet's ResNet / DLA heads, 256 for Hourglass).
    kernel_size: positive int, kernel of the hidden conv (default 3).
    bias_init: float, initial bias of the final 1x1 conv (use
      `HEATMAP_BIAS_INIT` = -2.19 for heatmaps, 0 for regression).
    use_depthwise: bool, depthwise separable hidden conv.
    name: layer name.

  Call:
    features: float [B, h, w, C] feature map (h, w in output-stride
      pixels; C must be static).
    Returns float32 [B, h, w, num_outputs]: raw values (logits for
    heatmaps; the caller applies sigmoid / activations).

  Raises:
    ValueError: non-positive num_outputs, head_channels or kernel_size; an
      input that is not rank 4.
  """

  def __init__(self, *, num_outputs: int, head_channels: int = 64,
               kernel_size: int = 3, bias_init: float = 0.0,
               use_depthwise: bool = False, name: Optional[str] = None,
               **kwargs):
    super().__init__(name=name, **kwargs)
    for arg_name, value in (('num_outputs', num_outputs),
                            ('head_channels', head_channels),
                            ('kernel_size', kernel_size)):
      if (isinstance(value, bool) or not isinstance(value, int) or
          value < 1):
        raise ValueError(f'{arg_name} must be a positive int, got {value!r}.')
    if not math.isfinite(float(bias_init)):
      raise ValueError(f'bias_init must be finite, got {bias_init!r}.')
    self._num_outputs = num_outputs
    self._head_channels = head_channels
    self._kernel_size = kernel_size
    self._bias_init = float(bias_init)
    self._use_depthwise = bool(use_depthwise)
    if self._use_depthwise:
      self._hidden_conv = tf.keras.layers.SeparableConv2D(
          head_channels, kernel_size, padding='same', depth_multiplier=1,
          name='hidden_conv')
    else:
      self._hidden_conv = tf.keras.layers.Conv2D(
          head_channels, kernel_size, padding='same', name='hidden_conv')
    self._relu = tf.keras.layers.ReLU(name='hidden_relu')
    # Small final weights (normal, std 0.01, as TTFNet's and MMDetection's
    # heads) so that every location starts near the bias: sigmoid 0.1 for
    # heatmaps. Keras' default Glorot init gives logits of unit scale and
    # initial focal losses in the hundreds.
    self._output_conv = tf.keras.layers.Conv2D(
        num_outputs, 1, padding='same',
        kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer=tf.keras.initializers.Constant(self._bias_init),
        name='output_conv')

  @property
  def num_outputs(self) -> int:
    return self._num_outputs

  def build(self, input_shape):
    shape = tf.TensorShape(input_shape)
    if shape.rank != 4:
      raise ValueError(f'{type(self).__name__} input must be [B, h, w, C], '
                       f'got shape {shape}.')
    if shape[-1] is None:
      raise ValueError(f'{type(self).__name__} input needs a static channel '
                       f'dimension, got shape {shape}.')
    self._hidden_conv.build(shape)
    hidden_shape = shape[:-1].concatenate([self._head_channels])
    self._output_conv.build(hidden_shape)
    self.built = True

  def call(self, features):
    if len(features.shape) != 4:
      raise ValueError(f'{type(self).__name__} input must be [B, h, w, C], '
                       f'got shape {features.shape}.')
    x = self._relu(self._hidden_conv(features))
    return tf.cast(self._output_conv(x), tf.float32)

  def get_config(self):
    config = super().get_config()
    config.update(num_outputs=self._num_outputs,
                  head_channels=self._head_channels,
                  kernel_size=self._kernel_size, bias_init=self._bias_init,
                  use_depthwise=self._use_depthwise)
    return config
