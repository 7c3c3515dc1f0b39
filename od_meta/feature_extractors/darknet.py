"""Darknet-53 backbone (YOLOv3) returning a stage dict.

Redmon & Farhadi 2018, "YOLOv3: An Incremental Improvement", Sec. 2.4 and
Table 1; the TTFNet-53 backbone (Liu et al. 2019, TTFNet Sec. 4). Every
convolution is conv (no bias) -> BN -> leaky ReLU (slope 0.1):

  conv 3x3, 32                                             stride 1
  stage 1: conv 3x3/2, 64;   1 x [1x1, 32;  3x3, 64]   +   stride 2
  stage 2: conv 3x3/2, 128;  2 x [1x1, 64;  3x3, 128]  +   stride 4  = C2
  stage 3: conv 3x3/2, 256;  8 x [1x1, 128; 3x3, 256]  +   stride 8  = C3
  stage 4: conv 3x3/2, 512;  8 x [1x1, 256; 3x3, 512]  +   stride 16 = C4
  stage 5: conv 3x3/2, 1024; 4 x [1x1, 512; 3x3, 1024] +   stride 32 = C5

Residual blocks add their input to the 3x3 conv's activated output with
no activation after the sum (darknet `shortcut` layer, linear). Stride-2
convs pad one pixel on each side (darknet / MMDetection `padding=1`), so
maps are ceil(H / stride). The global pool / fc classifier is dropped.
At depth_multiplier 1 with num_blocks (1, 2, 8, 8, 4) it has 40,584,928
trainable parameters (a figure the tests recompute from the layout).
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from od_meta.feature_extractors import resnet_v1_small
from od_meta.utils import keras_tracking

_BASE_CHANNELS = (64, 128, 256, 512, 1024)
DARKNET53_NUM_BLOCKS = (1, 2, 8, 8, 4)
LEAKY_RELU_SLOPE = 0.1


class ConvBNLeaky(tf.keras.layers.Layer):
  """Conv (symmetric padding, no bias) -> BN -> leaky ReLU(0.1).

  Args:
    filters: output channels.
    kernel_size: odd int (1 or 3 here).
    strides: int.
    batch_norm_momentum: BN momentum (Keras meaning).
    batch_norm_epsilon: BN epsilon.
    name: layer name.

  Call: float32 [B, H, W, C] -> float32 [B, ceil(H/s), ceil(W/s), filters].
  """

  def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1,
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.conv = resnet_v1_small.PaddedConv2D(
        filters, kernel_size, strides,
        kernel_initializer=tf.keras.initializers.VarianceScaling(
            scale=2.0, mode='fan_in', distribution='untruncated_normal'),
        name='conv')
    self.bn = resnet_v1_small.batch_norm(batch_norm_momentum,
                                         batch_norm_epsilon, name='bn')

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=None):
    return tf.nn.leaky_relu(self.bn(self.conv(inputs), training=training),
                            alpha=LEAKY_RELU_SLOPE)


class DarknetResidual(tf.keras.layers.Layer):
  """x + ConvBNLeaky3x3(ConvBNLeaky1x1(x, c / 2), c) (YOLOv3 Table 1)."""

  def __init__(self, filters: int, hidden_filters: int,
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.reduce = ConvBNLeaky(hidden_filters, 1, 1, batch_norm_momentum,
                              batch_norm_epsilon, name='conv1x1')
    self.expand = ConvBNLeaky(filters, 3, 1, batch_norm_momentum,
                              batch_norm_epsilon, name='conv3x3')

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=None):
    x = self.reduce(inputs, training=training)
    return inputs + self.expand(x, training=training)


class DarkNet53(keras_tracking.CheckpointTrackedCollections, tf.keras.Model):
  """Darknet-53 (see the module docstring) with configurable depth / width.

  Args:
    depth_multiplier: float > 0 scaling every channel count as
      `max(int(c * depth_multiplier), min_depth)` (the residual 1x1 convs
      use half of the scaled stage width, at least min_depth).
    num_blocks: five ints >= 0, residual blocks per stage (strides 2, 4, 8,
      16, 32); (1, 2, 8, 8, 4) is Darknet-53, smaller values make tiny test
      networks.
    min_depth: int >= 1.
    batch_norm_momentum: BN momentum in [0, 1] (Keras meaning).
    batch_norm_epsilon: BN epsilon.
    name: model name.

  Call:
    images: float32 [B, H, W, 3] preprocessed (`preprocess`: x / 127.5 - 1).
    training: Python bool.
    Returns the stage dict {4: C2, 8: C3, 16: C4, 32: C5}, float32
    [B, ceil(H / s), ceil(W / s), stage_channels[s]].

  Raises:
    ValueError: num_blocks not five ints >= 0, bad width / momentum, images
      not rank 4.
  """

  def __init__(self, depth_multiplier: float = 1.0,
               num_blocks: Sequence[int] = DARKNET53_NUM_BLOCKS,
               min_depth: int = 8, batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               name: Optional[str] = 'darknet_53'):
    resnet_v1_small.check_width_args(depth_multiplier, min_depth,
                                     batch_norm_momentum)
    num_blocks = tuple(int(n) for n in num_blocks)
    if len(num_blocks) != 5 or min(num_blocks) < 0:
      raise ValueError('num_blocks must be 5 ints >= 0 (strides 2..32), got '
                       f'{num_blocks}')
    super().__init__(name=name)
    self.num_blocks = num_blocks

    def depth(c):
      return resnet_v1_small.scaled_depth(c, depth_multiplier, min_depth)

    bn = dict(batch_norm_momentum=batch_norm_momentum,
              batch_norm_epsilon=batch_norm_epsilon)
    self.stem = ConvBNLeaky(depth(32), 3, 1, name='conv0', **bn)
    self.stages = []
    channels = []
    for index, (base, n) in enumerate(zip(_BASE_CHANNELS, num_blocks)):
      filters = depth(base)
      channels.append(filters)
      stage = [ConvBNLeaky(filters, 3, 2, name=f'stage{index + 1}_down',
                           **bn)]
      stage += [DarknetResidual(filters, depth(base // 2),
                                name=f'stage{index + 1}_block{b + 1}', **bn)
                for b in range(n)]
      self.stages.append(stage)
    self._stage_channels = {4: channels[1], 8: channels[2], 16: channels[3],
                            32: channels[4]}

  @property
  def stage_channels(self) -> Dict[int, int]:
    """{stride: channels} of the stage dict's maps."""
    return dict(self._stage_channels)

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """Default preprocessing: RGB [0, 255] -> `x / 127.5 - 1`."""
    return resnet_v1_small.image_to_minus_one_one(images)

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=False):
    x = self.stem(resnet_v1_small.check_images(inputs), training=training)
    outputs = {}
    for index, stage in enumerate(self.stages):
      for layer in stage:
        x = layer(x, training=training)
      stride = 2 ** (index + 1)
      if stride >= 4:
        outputs[stride] = x
    return outputs
