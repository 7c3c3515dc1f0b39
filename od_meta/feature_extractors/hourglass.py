"""Stacked Hourglass backbone with intermediate outputs (CornerNet layout).

Newell et al. 2016, "Stacked Hourglass Networks for Human Pose Estimation"
(Sec. 3: recursive down / up modules with skip branches, stacked with
intermediate supervision), as modified by CornerNet (Law & Deng 2018,
Sec. 3.5 / 4.1) and used unchanged by CenterNet "Objects as Points" (Zhou
et al. 2019, Sec. 4) in Hourglass-104:

  stem: 7x7 conv, 128, stride 2 -> BN -> ReLU; residual, 256, stride 2
        (the image is reduced 4x before the hourglasses);
  hourglass module (recursive, depth n = len(channel_dims) - 1):
    up1  = blocks_per_stage[0] residuals at channel_dims[0]  (skip branch)
    low1 = residual(channel_dims[1], stride 2) + (blocks_per_stage[0] - 1)
           residuals                 (stride-2 conv instead of max pooling)
    low2 = hourglass(channel_dims[1:], blocks_per_stage[1:]) if n > 1
           else blocks_per_stage[1] residuals at channel_dims[1]
    low3 = (blocks_per_stage[0] - 1) residuals at channel_dims[1] then one
           residual to channel_dims[0]
    out  = up1 + nearest_upsample_2x(low3)
  Hourglass-104: channel_dims (256, 256, 384, 384, 384, 512),
  blocks_per_stage (2, 2, 2, 2, 2, 4) (5 reductions, 4 residuals of 512
  in the middle), 2 stacks: 187,700,352 trainable parameters;
  after each hourglass: 3x3 conv (cnv_dim) -> BN -> ReLU: the stack's
  output map (the heads of that stack read it);
  between stacks (intermediate supervision; the next stack's input):
    inter = residual(ReLU(BN(conv1x1(inter)) + BN(conv1x1(out_map))))
  (CornerNet Sec. 4.1 / reference code: 1x1 Conv-BN on the input and the
  output of the previous hourglass, merged by addition, ReLU, then a
  residual block; the intermediate predictions are not re-injected).

Residual = ResNet basic block (two 3x3 conv-BN, projection shortcut when
the shape changes); `resnet_v1_small.BasicBlock`.

Training applies the loss to every stack's output; inference uses the last.
Sizes: stride-2 convs give ceil(h / 2); the 2x-upsampled branch is cropped
to the skip branch, so any input size works (multiples of 4 * 2**n keep
every level exact, e.g. 128 px for Hourglass-104, 64 px for the small one).
"""

from typing import List, Optional, Sequence

import tensorflow as tf

from od_meta.feature_extractors import resnet_v1_small
from od_meta.feature_extractors import up_convolution_neck
from od_meta.utils import keras_tracking

HOURGLASS_104 = dict(num_stacks=2, stem_channels=128,
                     channel_dims=(256, 256, 384, 384, 384, 512),
                     blocks_per_stage=(2, 2, 2, 2, 2, 4), cnv_dim=256)
# 1,709,888 trainable parameters: 2 stacks, 4 reductions (64 px inputs
# reach 1x1 cells in the middle).
HOURGLASS_SMALL = dict(num_stacks=2, stem_channels=32,
                       channel_dims=(48, 48, 48, 64, 64),
                       blocks_per_stage=(1, 1, 1, 1, 2), cnv_dim=48)


class ConvBNReLU(tf.keras.layers.Layer):
  """k x k conv (symmetric padding, no bias) -> BN -> optional ReLU.

  Call: float32 [B, H, W, C] -> [B, ceil(H / s), ceil(W / s), filters].
  """

  def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1,
               relu: bool = True, batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5, name: Optional[str] = None,
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.relu = bool(relu)
    self.conv = resnet_v1_small.PaddedConv2D(filters, kernel_size, strides,
                                             name='conv')
    self.bn = resnet_v1_small.batch_norm(batch_norm_momentum,
                                         batch_norm_epsilon, name='bn')

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=None):
    x = self.bn(self.conv(inputs), training=training)
    return tf.nn.relu(x) if self.relu else x


UPSAMPLING_INTERPOLATIONS = ('nearest', 'bilinear')


def check_interpolation(value: str) -> str:
  """Returns `value` if it is a known upsampling interpolation.

  Raises:
    ValueError: naming the allowed values.
  """
  if value not in UPSAMPLING_INTERPOLATIONS:
    raise ValueError(f'upsampling_interpolation must be one of '
                     f'{UPSAMPLING_INTERPOLATIONS}, got {value!r}')
  return value


class HourglassModule(keras_tracking.CheckpointTrackedCollections,
                      tf.keras.layers.Layer):
  """One recursive hourglass (CornerNet `kp_module`; module docstring).

  Args:
    channel_dims: n + 1 ints: channels at the input resolution, then after
      each of the n stride-2 reductions.
    blocks_per_stage: n + 1 ints >= 1: residual blocks per level (the last
      is the number of blocks in the middle, lowest resolution).
    batch_norm_momentum, batch_norm_epsilon: BN settings.
    upsampling_interpolation: 'nearest' (CornerNet's nearest-neighbour 2x
      upsampling of the low branch) or 'bilinear'.
    name: layer name.

  Call: float32 [B, h, w, channel_dims[0]] -> same shape.

  Raises:
    ValueError: an unknown `upsampling_interpolation`.
  """

  def __init__(self, channel_dims: Sequence[int],
               blocks_per_stage: Sequence[int],
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               upsampling_interpolation: str = 'nearest',
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    self._interpolation = check_interpolation(upsampling_interpolation)
    dims = [int(d) for d in channel_dims]
    mods = [int(m) for m in blocks_per_stage]
    curr_dim, next_dim = dims[0], dims[1]
    curr_mod, next_mod = mods[0], mods[1]

    def block(filters, strides=1, block_name=None):
      return resnet_v1_small.BasicBlock(
          filters, strides, batch_norm_momentum, batch_norm_epsilon,
          name=block_name)

    self.up1 = [block(curr_dim, block_name=f'up1_{i}')
                for i in range(curr_mod)]
    self.low1 = [block(next_dim, 2, 'low1_0')] + [
        block(next_dim, block_name=f'low1_{i}')
        for i in range(1, curr_mod)]
    if len(dims) > 2:
      self.inner = HourglassModule(dims[1:], mods[1:], batch_norm_momentum,
                                   batch_norm_epsilon, self._interpolation,
                                   name='inner')
      self.low2 = []
    else:
      self.inner = None
      self.low2 = [block(next_dim, block_name=f'low2_{i}')
                   for i in range(next_mod)]
    self.low3 = [block(next_dim, block_name=f'low3_{i}')
                 for i in range(curr_mod - 1)] + [
                     block(curr_dim, block_name=f'low3_{curr_mod - 1}')]

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=None):
    up1 = inputs
    for layer in self.up1:
      up1 = layer(up1, training=training)
    low = inputs
    for layer in self.low1:
      low = layer(low, training=training)
    if self.inner is not None:
      low = self.inner(low, training=training)
    for layer in self.low2 + self.low3:
      low = layer(low, training=training)
    if self._interpolation == 'nearest':
      up2 = tf.repeat(tf.repeat(low, 2, axis=1), 2, axis=2)
    else:
      size = tf.shape(low)[1:3] * 2
      up2 = tf.cast(tf.image.resize(low, size, method='bilinear'), low.dtype)
    return up1 + up_convolution_neck.crop_to(up2, up1)


class HourglassNetwork(keras_tracking.CheckpointTrackedCollections,
                       tf.keras.Model):
  """Stacked hourglass (see the module docstring); returns one map per stack.

  Args:
    num_stacks: int >= 1 (2 in Hourglass-104).
    stem_channels: channels of the 7x7 stride-2 stem conv (128); the stem
      residual (stride 2) outputs channel_dims[0].
    channel_dims: n + 1 ints >= 1 (n >= 1 reductions inside each hourglass).
    blocks_per_stage: n + 1 ints >= 1.
    cnv_dim: channels of each stack's output map (256).
    depth_multiplier: float > 0 scaling stem_channels, channel_dims and
      cnv_dim as `max(int(c * depth_multiplier), min_depth)`.
    min_depth: int >= 1.
    batch_norm_momentum: BN momentum in [0, 1] (Keras meaning).
    batch_norm_epsilon: BN epsilon.
    upsampling_interpolation: 'nearest' (default, CornerNet) or 'bilinear',
      the 2x upsampling inside every hourglass module.
    name: model name.

  Call:
    images: float32 [B, H, W, 3] preprocessed (`preprocess`: x / 127.5 - 1).
    training: Python bool.
    Returns a list of `num_stacks` float32 maps [B, ceil(H / 4),
    ceil(W / 4), out_channels], first stack first; the loss is applied to
    all of them (intermediate supervision), inference uses the last.

  Raises:
    ValueError: num_stacks < 1, fewer than 2 channel_dims, lengths of
      channel_dims and blocks_per_stage that differ, a value < 1, bad width /
      momentum, an unknown upsampling_interpolation, images not rank 4.
  """

  def __init__(self, num_stacks: int = 2, stem_channels: int = 128,
               channel_dims: Sequence[int] = HOURGLASS_104['channel_dims'],
               blocks_per_stage: Sequence[int] = (
                   HOURGLASS_104['blocks_per_stage']),
               cnv_dim: int = 256, depth_multiplier: float = 1.0,
               min_depth: int = 8, batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               upsampling_interpolation: str = 'nearest',
               name: Optional[str] = 'hourglass'):
    resnet_v1_small.check_width_args(depth_multiplier, min_depth,
                                     batch_norm_momentum)
    check_interpolation(upsampling_interpolation)
    channel_dims = tuple(int(d) for d in channel_dims)
    blocks_per_stage = tuple(int(b) for b in blocks_per_stage)
    if int(num_stacks) < 1:
      raise ValueError(f'num_stacks must be >= 1, got {num_stacks}')
    if len(channel_dims) < 2:
      raise ValueError('channel_dims needs >= 2 entries (at least one '
                       f'reduction), got {channel_dims}')
    if len(blocks_per_stage) != len(channel_dims):
      raise ValueError(f'blocks_per_stage {blocks_per_stage} must have the '
                       f'length of channel_dims {channel_dims}')
    if min(channel_dims + blocks_per_stage) < 1 or min(
        stem_channels, cnv_dim) < 1:
      raise ValueError('stem_channels, channel_dims, blocks_per_stage and '
                       'cnv_dim must be >= 1')
    super().__init__(name=name)

    def depth(c):
      return resnet_v1_small.scaled_depth(c, depth_multiplier, min_depth)

    bn = dict(batch_norm_momentum=batch_norm_momentum,
              batch_norm_epsilon=batch_norm_epsilon)
    dims = [depth(d) for d in channel_dims]
    self.num_stacks = int(num_stacks)
    self._out_channels = depth(cnv_dim)
    self.stem_conv = ConvBNReLU(depth(stem_channels), 7, 2, name='stem_conv',
                                **bn)
    self.stem_residual = resnet_v1_small.BasicBlock(dims[0], 2,
                                                    name='stem_residual',
                                                    **bn)
    self.hourglasses = [HourglassModule(
        dims, blocks_per_stage,
        upsampling_interpolation=upsampling_interpolation,
        name=f'hourglass{i}', **bn)
                        for i in range(self.num_stacks)]
    self.output_convs = [ConvBNReLU(self._out_channels, 3, 1,
                                    name=f'output_conv{i}', **bn)
                         for i in range(self.num_stacks)]
    self.inter_convs = [ConvBNReLU(dims[0], 1, 1, relu=False,
                                   name=f'inter_conv{i}', **bn)
                        for i in range(self.num_stacks - 1)]
    self.output_to_inter = [ConvBNReLU(dims[0], 1, 1, relu=False,
                                       name=f'output_to_inter{i}', **bn)
                            for i in range(self.num_stacks - 1)]
    self.inter_residuals = [resnet_v1_small.BasicBlock(
        dims[0], 1, name=f'inter_residual{i}', **bn)
                            for i in range(self.num_stacks - 1)]

  @property
  def out_channels(self) -> int:
    """Channels of every output map (scaled cnv_dim)."""
    return self._out_channels

  @property
  def out_stride(self) -> int:
    """Output stride of every map (4)."""
    return 4

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """Default preprocessing: RGB [0, 255] -> `x / 127.5 - 1`."""
    return resnet_v1_small.image_to_minus_one_one(images)

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=False) -> List[tf.Tensor]:
    x = self.stem_conv(resnet_v1_small.check_images(inputs),
                       training=training)
    inter = self.stem_residual(x, training=training)
    outputs = []
    for i in range(self.num_stacks):
      out = self.output_convs[i](self.hourglasses[i](inter,
                                                     training=training),
                                 training=training)
      outputs.append(out)
      if i < self.num_stacks - 1:
        inter = tf.nn.relu(
            self.inter_convs[i](inter, training=training) +
            self.output_to_inter[i](out, training=training))
        inter = self.inter_residuals[i](inter, training=training)
    return outputs


def hourglass_104(**kwargs) -> HourglassNetwork:
  """Hourglass-104 (CornerNet / CenterNet): 2 stacks, 5 reductions.

  Keyword arguments override `HOURGLASS_104` or add HourglassNetwork's
  others (depth_multiplier, batch_norm_momentum, ...).
  """
  config = dict(HOURGLASS_104, name='hourglass_104')
  config.update(kwargs)
  return HourglassNetwork(**config)


def hourglass_small(**kwargs) -> HourglassNetwork:
  """A 1.7M-parameter 2-stack hourglass (4 reductions) for small inputs.

  Keyword arguments override `HOURGLASS_SMALL`.
  """
  config = dict(HOURGLASS_SMALL, name='hourglass_small')
  config.update(kwargs)
  return HourglassNetwork(**config)
