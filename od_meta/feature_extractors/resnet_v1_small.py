"""ResNet-18 / ResNet-34 v1 backbones (BasicBlocks) returning a stage dict.

He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1
(18- and 34-layer columns) and Fig. 5 left ("basic" building block):

  conv1   7x7, 64, stride 2 -> BN -> ReLU                     stride 2
  pool    3x3 max pool, stride 2                              stride 4
  conv2_x [3x3, 64;  3x3, 64]  x 2 (18) / x 3 (34)            stride 4  = C2
  conv3_x [3x3, 128; 3x3, 128] x 2 / x 4, first stride 2      stride 8  = C3
  conv4_x [3x3, 256; 3x3, 256] x 2 / x 6, first stride 2      stride 16 = C4
  conv5_x [3x3, 512; 3x3, 512] x 2 / x 3, first stride 2      stride 32 = C5

(no average pool / fc: a detection backbone). keras.applications has no
ResNet-18/34, which CenterNet (Zhou et al. 2019, Sec. 4), its MMDetection
reproduction and TTFNet-18 use, so this is ours. Details follow torchvision's
`resnet18` / `resnet34` so its ImageNet weights can be ported:
  * shortcuts are identities, or a 1x1 conv (stride s) -> BN projection
    where the shape changes (the paper's option B);
  * convolutions have no bias (BN follows); He-normal (fan_out) init;
  * stride-2 convs and the max pool pad symmetrically (k // 2 on each side,
    like PyTorch) instead of Keras' 'same' (which pads more at the bottom /
    right), so every map is ceil(H / stride) x ceil(W / stride).

`BasicBlock` is shared with the Hourglass backbone (CornerNet's `residual`
is the same block).
"""

from typing import Dict, Optional

import tensorflow as tf

from od_meta.feature_extractors import batch_norm as batch_norm_lib
from od_meta.utils import keras_tracking

_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
_BASE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (4, 8, 16, 32)


def he_normal_fan_out() -> tf.keras.initializers.Initializer:
  """Kaiming normal, fan_out mode (torchvision ResNet conv init).

  Returns:
    a Keras initializer with std = sqrt(2 / (kh * kw * out_channels)).
  """
  return tf.keras.initializers.VarianceScaling(
      scale=2.0, mode='fan_out', distribution='untruncated_normal')


def scaled_depth(depth: int, depth_multiplier: float, min_depth: int) -> int:
  """Returns `max(int(depth * depth_multiplier), min_depth)` (TF OD API)."""
  return max(int(depth * depth_multiplier), int(min_depth))


def check_width_args(depth_multiplier, min_depth, batch_norm_momentum):
  """Validates the width / batch-norm arguments shared by our backbones.

  Raises:
    ValueError: depth_multiplier <= 0, min_depth < 1, or
      batch_norm_momentum outside [0, 1] (the message names the argument).
  """
  if not depth_multiplier > 0:
    raise ValueError(f'depth_multiplier must be > 0, got {depth_multiplier}')
  if int(min_depth) < 1:
    raise ValueError(f'min_depth must be >= 1, got {min_depth}')
  if not 0.0 <= batch_norm_momentum <= 1.0:
    raise ValueError('batch_norm_momentum must be in [0, 1], got '
                     f'{batch_norm_momentum}')


class PaddedConv2D(tf.keras.layers.Layer):
  """Conv2D with PyTorch-style symmetric padding (k // 2 each side).

  For stride 1 and odd k this equals Keras 'same'; for stride 2 the output
  is ceil(H / 2) like 'same', but the padding is (k // 2, k // 2) instead of
  Keras' bottom/right-heavy split, so kernels trained in PyTorch line up.

  Args:
    filters: output channels.
    kernel_size: odd int.
    strides: int.
    use_bias: bool.
    kernel_initializer: Keras initializer (default He normal, fan_out).
    name: layer name.

  Call: float32 [B, H, W, C] -> [B, ceil(H / s), ceil(W / s), filters].
  """

  def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1,
               use_bias: bool = False, kernel_initializer=None,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    self._pad = int(kernel_size) // 2 if int(strides) > 1 else 0
    self.conv = tf.keras.layers.Conv2D(
        int(filters), int(kernel_size), strides=int(strides),
        padding='valid' if self._pad or int(strides) > 1 else 'same',
        use_bias=use_bias,
        kernel_initializer=kernel_initializer or he_normal_fan_out(),
        name='conv')

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs):
    x = inputs
    if self._pad:
      p = self._pad
      x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
    return self.conv(x)


def batch_norm(momentum: float, epsilon: float,
               name: Optional[str] = None) -> tf.keras.layers.Layer:
  """BatchNormalization with gamma = 1, beta = 0 initialization."""
  return batch_norm_lib.FusedBatchNormalization(momentum=momentum,
                                                epsilon=epsilon, name=name)


class BasicBlock(keras_tracking.CheckpointTrackedCollections,
                 tf.keras.layers.Layer):
  """ResNet v1 basic block (He et al. 2016, Fig. 5 left; option B shortcut).

  y = ReLU(BN(conv3x3(ReLU(BN(conv3x3_s(x))))) + shortcut(x)), shortcut =
  identity, or conv1x1_s -> BN when `strides` != 1 or the input has a
  different channel count. Also CornerNet's / Hourglass' `residual` module.

  Args:
    filters: output channels.
    strides: stride of the first 3x3 conv (and of the projection).
    batch_norm_momentum: BN moving-average momentum (Keras meaning: 0.9 is
      PyTorch's default momentum 0.1).
    batch_norm_epsilon: BN epsilon (torchvision 1e-5).
    name: layer name.

  Call: float32 [B, H, W, C] -> float32 [B, ceil(H/s), ceil(W/s), filters];
    `training` selects batch statistics in BN.
  """

  def __init__(self, filters: int, strides: int = 1,
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.filters = int(filters)
    self.strides = int(strides)
    self._momentum = float(batch_norm_momentum)
    self._epsilon = float(batch_norm_epsilon)
    self.conv1 = PaddedConv2D(self.filters, 3, self.strides, name='conv1')
    self.bn1 = batch_norm(self._momentum, self._epsilon, name='bn1')
    self.conv2 = PaddedConv2D(self.filters, 3, 1, name='conv2')
    self.bn2 = batch_norm(self._momentum, self._epsilon, name='bn2')
    self.projection = None
    self.projection_bn = None

  def build(self, input_shape):
    in_channels = input_shape[-1]
    if self.strides != 1 or in_channels != self.filters:
      self.projection = PaddedConv2D(self.filters, 1, self.strides,
                                     name='projection')
      self.projection_bn = batch_norm(self._momentum, self._epsilon,
                                      name='projection_bn')

  def call(self, inputs, training=None):
    x = tf.nn.relu(self.bn1(self.conv1(inputs), training=training))
    x = self.bn2(self.conv2(x), training=training)
    shortcut = inputs
    if self.projection is not None:
      shortcut = self.projection_bn(self.projection(inputs),
                                    training=training)
    return tf.nn.relu(x + shortcut)


def image_to_minus_one_one(images: tf.Tensor) -> tf.Tensor:
  """float [0, 255] -> float32 [-1, 1]: `x / 127.5 - 1`.

  The default preprocessing of our randomly initialized backbones.
  """
  images = tf.convert_to_tensor(images, tf.float32)
  return images / 127.5 - 1.0


def check_images(images) -> tf.Tensor:
  """Checks the rank is 4 ([B, H, W, C]); non-float inputs become float32.

  A floating input keeps its dtype: under a mixed precision policy Keras has
  already cast it to the layer's compute dtype (float16 / bfloat16).

  Raises:
    ValueError: if `images` is not rank 4.
  """
  images = tf.convert_to_tensor(images)
  if not images.dtype.is_floating:
    images = tf.cast(images, tf.float32)
  if images.shape.rank != 4:
    raise ValueError(f'images must be [B, H, W, C], got shape {images.shape}')
  return images


class ResNetV1Small(keras_tracking.CheckpointTrackedCollections,
                    tf.keras.Model):
  """ResNet-18 / ResNet-34 v1 (see the module docstring).

  Args:
    depth: 18 or 34.
    depth_multiplier: float > 0 scaling every channel count (64, 128, 256,
      512) as `max(int(c * depth_multiplier), min_depth)`; 1.0 is the paper.
    min_depth: int >= 1, lower bound of the scaled channel counts.
    batch_norm_momentum: BN moving-average momentum in [0, 1] (Keras
      meaning; 0.9 = PyTorch's 0.1).
    batch_norm_epsilon: BN epsilon (torchvision 1e-5).
    name: model name (default 'resnet_v1_<depth>').

  Call:
    images: float32 [B, H, W, 3], preprocessed (see `preprocess`).
    training: Python bool, batch statistics in BN when True.
    Returns the stage dict {4: C2, 8: C3, 16: C4, 32: C5}: float32
    [B, ceil(H / s), ceil(W / s), stage_channels[s]] keyed by the int output
    stride s (input pixels per feature cell).

  At depth_multiplier 1 ResNet-18 has 11,176,512 trainable parameters
  (torchvision's 11,689,512 minus the 513,000 of the 1000-way fc) and
  ResNet-34 21,284,672 (21,797,672 - 513,000); BN moving statistics add
  2 * 4,800 / 2 * 8,512 non-trainable ones.

  Raises:
    ValueError: depth not 18 or 34; bad width / momentum; images not rank 4.
  """

  def __init__(self, depth: int = 18, depth_multiplier: float = 1.0,
               min_depth: int = 8, batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5, name: Optional[str] = None):
    if depth not in _BLOCKS:
      raise ValueError(f'depth must be one of {sorted(_BLOCKS)}, got {depth}')
    check_width_args(depth_multiplier, min_depth, batch_norm_momentum)
    super().__init__(name=name or f'resnet_v1_{depth}')
    self.depth = int(depth)
    channels = [scaled_depth(c, depth_multiplier, min_depth)
                for c in _BASE_CHANNELS]
    self._stage_channels = dict(zip(STAGE_STRIDES, channels))
    stem_channels = scaled_depth(64, depth_multiplier, min_depth)
    self.conv1 = PaddedConv2D(stem_channels, 7, 2, name='conv1')
    self.bn1 = batch_norm(batch_norm_momentum, batch_norm_epsilon,
                          name='bn1')
    self.stages = []
    for index, (num_blocks, filters) in enumerate(
        zip(_BLOCKS[self.depth], channels)):
      stage = []
      for b in range(num_blocks):
        stage.append(BasicBlock(
            filters, strides=2 if (b == 0 and index > 0) else 1,
            batch_norm_momentum=batch_norm_momentum,
            batch_norm_epsilon=batch_norm_epsilon,
            name=f'conv{index + 2}_block{b + 1}'))
      self.stages.append(stage)

  @property
  def stage_channels(self) -> Dict[int, int]:
    """{stride: channels} of the stage dict's maps."""
    return dict(self._stage_channels)

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """Default preprocessing: RGB [0, 255] -> `x / 127.5 - 1`.

    For ported torchvision ImageNet weights configure the extractor's
    channel_means (123.675, 116.28, 103.53) and channel_stds (58.395,
    57.12, 57.375) instead.
    """
    return image_to_minus_one_one(images)

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=False):
    x = check_images(inputs)
    x = tf.nn.relu(self.bn1(self.conv1(x), training=training))
    # 3x3 / 2 max pool with 1-pixel symmetric padding; zero padding equals
    # -inf padding here because x >= 0 after the ReLU.
    x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    x = tf.nn.max_pool2d(x, 3, 2, 'VALID')
    outputs = {}
    for stride, stage in zip(STAGE_STRIDES, self.stages):
      for block in stage:
        x = block(x, training=training)
      outputs[stride] = x
    return outputs
