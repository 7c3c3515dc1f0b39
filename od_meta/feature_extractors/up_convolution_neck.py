"""Up-convolution neck: stage dict -> one stride-4 map (CenterNet / TTFNet).

Zhou et al. 2019, "Objects as Points", Sec. 4 (ResNet backbones: three
up-convolutional stages of 256, 128, 64 channels) in the form of
MMDetection's `CTResNetNeck`: starting from the coarsest backbone map (C5,
stride 32), each stage is

  3x3 conv (no bias) -> BN -> ReLU -> 4x4 stride-2 transposed conv
  (no bias) -> BN -> ReLU

so three stages reach stride 4. The transposed convs start as bilinear
upsampling (MMDetection / CenterNet `fill_up_weights`): with f =
ceil(k / 2) and c = (2f - 1 - f % 2) / (2f), the kernel is
w[i, j] = (1 - |i / f - c|) * (1 - |j / f - c|), for k = 4 the outer
product of (0.25, 0.75, 0.75, 0.25). It is placed per channel (channel c
to channel c, zero elsewhere), so the initial layer is exactly per-channel
bilinear upsampling with half-pixel centers (`tf.image.resize` bilinear)
away from the borders. (The PyTorch reference writes it only into
w[c, 0] of a dense transposed conv, which leaves the other output
channels random; the per-channel form is what the code intends.)

TTFNet (Liu et al. 2019, Sec. 3.4 "Shortcut connections" / Fig. 2) adds
shortcuts from the backbone to the up-sampling path: `shortcut_num_convs =
(n16, n8, n4)` gives the stage producing stride 16 a branch of n16 3x3 convs
(with bias, ReLU between them, none after the last) on C4, added to the
up-sampled map; likewise C3 (n8 convs) and C2 (n4 convs). The TTFNet
reference uses (1, 2, 3); an entry 0 means no shortcut at that stride.
(TTFNet up-samples with bilinear interpolation after a modulated deformable
conv; here the CenterNet up-convolution stages are used for both, without
deformable convs.)

Map sizes: each up-sampled map is cropped at the bottom / right to the
backbone map of the same stride when the stage dict has it (a no-op when H
and W are multiples of 32), so the output is C2-sized: ceil(H / 4).
"""

import math
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from od_meta.feature_extractors import resnet_v1_small
from od_meta.utils import keras_tracking


def bilinear_kernel_2d(kernel_size: int) -> np.ndarray:
  """The [k, k] bilinear upsampling kernel of CenterNet's `fill_up_weights`.

  Args:
    kernel_size: int >= 1.

  Returns:
    float32 [k, k] array; k = 4 gives outer((.25, .75, .75, .25), same).
  """
  k = int(kernel_size)
  f = math.ceil(k / 2)
  c = (2 * f - 1 - f % 2) / (2.0 * f)
  w1 = np.array([1 - abs(i / f - c) for i in range(k)], np.float32)
  return np.outer(w1, w1).astype(np.float32)


class BilinearUpsamplingInitializer(tf.keras.initializers.Initializer):
  """Conv2DTranspose kernel [k, k, out, in] = per-channel bilinear kernel.

  kernel[:, :, c, c] = `bilinear_kernel_2d(k)` for c < min(out, in), zero
  elsewhere.
  """

  def __call__(self, shape, dtype=None, **kwargs):
    kh, kw, out_channels, in_channels = shape
    if kh != kw:
      raise ValueError(f'bilinear init needs a square kernel, got {shape}')
    kernel = np.zeros(shape, np.float32)
    k2d = bilinear_kernel_2d(kh)
    for c in range(min(out_channels, in_channels)):
      kernel[:, :, c, c] = k2d
    return tf.constant(kernel, dtype=dtype or tf.float32)

  def get_config(self):
    return {}


def crop_to(x: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """Crops [B, h, w, C] at the bottom / right to target's H, W (<= h, w)."""
  size = tf.shape(target)
  out = x[:, :size[1], :size[2], :]
  out.set_shape([x.shape[0], target.shape[1], target.shape[2], x.shape[-1]])
  return out


class UpConvolutionNeck(keras_tracking.CheckpointTrackedCollections,
                        tf.keras.layers.Layer):
  """CenterNet / TTFNet up-convolution neck (see the module docstring).

  Args:
    num_filters: channels of each stage (each doubles the resolution);
      default (256, 128, 64): stride 32 -> 4.
    kernel_size: transposed-conv kernel side, >= 2 (default 4).
    bilinear_init: initialize the transposed convs as bilinear upsampling;
      otherwise He normal (fan_out).
    shortcut_num_convs: () or up to len(num_filters) ints >= 0, the number
      of 3x3 convs of the shortcut added after stage i (from the backbone
      map at stride top / 2**(i + 1), i.e. C4, C3, C2 for a C5 input);
      TTFNet uses (1, 2, 3).
    batch_norm_momentum: BN momentum in [0, 1] (Keras meaning).
    batch_norm_epsilon: BN epsilon.
    name: layer name.

  Call:
    inputs: stage dict {int stride: float32 [B, h_s, w_s, C_s]}; the
      largest stride is the input of the first stage; shortcut strides must
      be present.
    training: Python bool.
    Returns float32 [B, h, w, num_filters[-1]] at stride
    top / 2**len(num_filters) (4 for the defaults), cropped to the stage
    dict's map of that stride when present.

  Raises:
    ValueError: empty / non-positive num_filters, kernel_size < 2, a bad
      shortcut_num_convs (constructor); a non-dict input or a missing
      shortcut stride (call).
  """

  def __init__(self, num_filters: Sequence[int] = (256, 128, 64),
               kernel_size: int = 4, bilinear_init: bool = True,
               shortcut_num_convs: Sequence[int] = (),
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    num_filters = tuple(int(f) for f in num_filters)
    if not num_filters or min(num_filters) < 1:
      raise ValueError('num_filters must be non-empty positive ints, got '
                       f'{num_filters}')
    if int(kernel_size) < 2:
      raise ValueError(f'kernel_size must be >= 2, got {kernel_size}')
    shortcut_num_convs = tuple(int(n) for n in shortcut_num_convs)
    if (len(shortcut_num_convs) > len(num_filters) or
        (shortcut_num_convs and min(shortcut_num_convs) < 0)):
      raise ValueError('shortcut_num_convs must hold at most '
                       f'len(num_filters)={len(num_filters)} ints >= 0, got '
                       f'{shortcut_num_convs}')
    resnet_v1_small.check_width_args(1.0, 1, batch_norm_momentum)
    self.num_filters = num_filters
    self.kernel_size = int(kernel_size)
    self.bilinear_init = bool(bilinear_init)
    self.shortcut_num_convs = shortcut_num_convs
    bn = lambda n: resnet_v1_small.batch_norm(  # pylint: disable=g-long-lambda
        batch_norm_momentum, batch_norm_epsilon, name=n)
    self.convs, self.conv_bns = [], []
    self.deconvs, self.deconv_bns = [], []
    for i, f in enumerate(num_filters):
      self.convs.append(tf.keras.layers.Conv2D(
          f, 3, padding='same', use_bias=False,
          kernel_initializer=resnet_v1_small.he_normal_fan_out(),
          name=f'stage{i}_conv'))
      self.conv_bns.append(bn(f'stage{i}_conv_bn'))
      self.deconvs.append(tf.keras.layers.Conv2DTranspose(
          f, self.kernel_size, strides=2, padding='same', use_bias=False,
          kernel_initializer=(BilinearUpsamplingInitializer()
                              if self.bilinear_init
                              else resnet_v1_small.he_normal_fan_out()),
          name=f'stage{i}_deconv'))
      self.deconv_bns.append(bn(f'stage{i}_deconv_bn'))
    self.shortcuts = []
    for i, n in enumerate(shortcut_num_convs):
      self.shortcuts.append([
          tf.keras.layers.Conv2D(
              num_filters[i], 3, padding='same', use_bias=True,
              kernel_initializer=resnet_v1_small.he_normal_fan_out(),
              name=f'shortcut{i}_conv{j}') for j in range(n)])

  @property
  def out_channels(self) -> int:
    """Channels of the output map (num_filters[-1])."""
    return self.num_filters[-1]

  @property
  def upsampling_factor(self) -> int:
    """Input stride / output stride (2 ** len(num_filters))."""
    return 2 ** len(self.num_filters)

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs: Dict[int, tf.Tensor], training=False):
    if not isinstance(inputs, dict) or not inputs:
      raise ValueError('UpConvolutionNeck inputs must be a non-empty stage '
                       f'dict {{stride: map}}, got {type(inputs).__name__}')
    top = max(inputs)
    x = inputs[top]
    for i in range(len(self.num_filters)):
      x = tf.nn.relu(self.conv_bns[i](self.convs[i](x), training=training))
      x = tf.nn.relu(self.deconv_bns[i](self.deconvs[i](x),
                                        training=training))
      stride = top // 2 ** (i + 1)
      needs_shortcut = i < len(self.shortcuts) and self.shortcuts[i]
      if stride in inputs:
        x = crop_to(x, inputs[stride])
      elif needs_shortcut:
        raise ValueError(f'shortcut {i} needs the stride-{stride} map; the '
                         f'stage dict has strides {sorted(inputs)}')
      if needs_shortcut:
        y = inputs[stride]
        for j, conv in enumerate(self.shortcuts[i]):
          if j:
            y = tf.nn.relu(y)
          y = conv(y)
        x = x + y
    return x
