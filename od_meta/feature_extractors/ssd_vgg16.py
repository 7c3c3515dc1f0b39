"""SSD VGG-16 feature extractor (SSD300 layout) on keras.applications.VGG16.

Liu et al. 2016, "SSD: Single Shot MultiBox Detector", section 2.2 / 3.1
and Fig. 2; Huang et al. 2017, section 3.6.3 (VGG):
  * conv4_3 ('block4_conv3', stride 8, 512 channels) is L2-normalized per
    location and multiplied by a learnable per-channel scale initialized to
    20 (ParseNet, Liu, Rabinovich & Berg 2015, section 3.3);
  * pool5 becomes 3x3 stride 1 (SAME), fc6 a 3x3 conv with dilation 6
    (1024 channels), fc7 a 1x1 conv (1024 channels), both ReLU with bias and
    no batch norm as in the converted VGG fc layers (stride 16);
  * extra layers conv8_2 (512, stride 2), conv9_2 (256, stride 2), conv10_2
    (256), conv11_2 (256), each after a 1x1 conv to half the depth
    (conv8_1 256, conv9_1 128, ...), with batch norm from
    `conv_hyperparams` (Huang et al.: batch norm in all added layers).

`extra_layer_style` chooses the last extra layers:
  * 'ssd300' (paper): conv10_2 and conv11_2 are 3x3 VALID stride 1 convs
    (300 px: 37, 18, 9, 5, 3, 1 maps with keras' floor pooling; Caffe's
    ceil-mode pool3 gives 38, 19, 10, 5, 3, 1). They need a map of at least
    3x3, i.e. inputs of roughly 260 px and more for four extra layers; a
    smaller static input raises ValueError at call time (dynamic shapes get
    a runtime assertion).
  * 'same' (Huang et al. / TF OD API style): every extra layer is a 3x3
    SAME stride-2 conv, so any input size works (128 px: 16, 8, 4, 2, 1, 1).
    Use it, or fewer `num_extra_layers`, for small images.

Nominal `feature_map_strides`: 8, 16, then x2 for each stride-2 extra layer;
a VALID stride-1 layer keeps its input's nominal stride, so anchor
generators must use the actual map shapes for 'ssd300'.

Preprocessing is keras.applications.vgg16.preprocess_input (caffe style:
RGB -> BGR minus the ImageNet mean).
"""

from typing import Optional, Sequence

import tensorflow as tf

from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.feature_extractors import ssd_feature_extractor

DEFAULT_EXTRA_LAYER_DEPTHS = (512, 256, 256, 256)
_STYLES = ('ssd300', 'same')


class L2Normalization(tf.keras.layers.Layer):
  """Per-location L2 normalization with a learnable per-channel scale.

  y[..., c] = scale[c] * x[..., c] / sqrt(max(sum_c' x[..., c']**2, eps))
  (ParseNet, Liu et al. 2015, eq. 2-3; SSD section 3.1 uses it on conv4_3
  with scale initialized to 20). Example: x = [3, 4], scale 20 ->
  [3, 4] / 5 * 20 = [12, 16].

  Args:
    scale_init: initial value of every channel's scale (default 20).
    epsilon: floor of the squared norm (avoids 0 / 0 on all-zero vectors).
    name: layer name.

  Call: float [..., C] -> float [..., C]; the scale variable has shape [C].
  """

  def __init__(self, scale_init: float = 20.0, epsilon: float = 1e-10,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    self._scale_init = float(scale_init)
    self._epsilon = float(epsilon)

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels is None:
      raise ValueError('L2Normalization needs a static channel dimension')
    self.scale = self.add_weight(
        name='scale', shape=(int(channels),),
        initializer=tf.keras.initializers.Constant(self._scale_init),
        trainable=True)

  def call(self, inputs):
    x = tf.math.l2_normalize(inputs, axis=-1, epsilon=self._epsilon)
    return x * tf.cast(self.scale, x.dtype)

  def get_config(self):
    config = super().get_config()
    config.update({'scale_init': self._scale_init, 'epsilon': self._epsilon})
    return config


class SSDVgg16FeatureExtractor(ssd_feature_extractor.SSDFeatureExtractor):
  """SSD VGG-16 feature extractor (see the module docstring).

  Args (keyword-only), beyond `SSDFeatureExtractor`'s (depth_multiplier and
  min_depth scale the extra layers only; VGG and fc6/fc7 are fixed):
    extra_layer_style: 'ssd300' (default, paper) or 'same'.
    num_extra_layers: number of extra layers after fc7 (0..len(
      extra_layer_depths)); default all four.
    extra_layer_depths: depths of conv8_2.. (default 512, 256, 256, 256);
      the 1x1 layer before each has half the depth.
    fc_depth: depth of fc6 / fc7 (default 1024).
    l2_norm_scale_init: initial conv4_3 scale (default 20).

  Output: `2 + num_extra_layers` float32 maps: conv4_3 (normalized, 512
  ch), fc7 (fc_depth ch), conv8_2, ...

  Raises:
    ValueError: unknown extra_layer_style, num_extra_layers out of range,
      fc_depth < 1; at call, a static map smaller than 3x3 entering a VALID
      layer.
  """

  def __init__(self, *, depth_multiplier: float = 1.0, min_depth: int = 16,
               pad_to_multiple: int = 1, use_depthwise: bool = False,
               weights=None, conv_hyperparams=None,
               extra_layer_style: str = 'ssd300',
               num_extra_layers: Optional[int] = None,
               extra_layer_depths: Sequence[int] = DEFAULT_EXTRA_LAYER_DEPTHS,
               fc_depth: int = 1024, l2_norm_scale_init: float = 20.0,
               name: str = 'ssd_vgg16_feature_extractor'):
    super().__init__(depth_multiplier=depth_multiplier, min_depth=min_depth,
                     pad_to_multiple=pad_to_multiple,
                     use_depthwise=use_depthwise, weights=weights,
                     conv_hyperparams=conv_hyperparams, name=name)
    if extra_layer_style not in _STYLES:
      raise ValueError(f'extra_layer_style must be one of {_STYLES}, got '
                       f'{extra_layer_style!r}')
    extra_layer_depths = list(extra_layer_depths)
    if num_extra_layers is None:
      num_extra_layers = len(extra_layer_depths)
    if not 0 <= int(num_extra_layers) <= len(extra_layer_depths):
      raise ValueError(f'num_extra_layers must be in [0, '
                       f'{len(extra_layer_depths)}], got {num_extra_layers}')
    if int(fc_depth) < 1:
      raise ValueError(f'fc_depth must be >= 1, got {fc_depth}')
    self._extra_layer_style = extra_layer_style

    base = tf.keras.applications.VGG16(
        input_shape=(None, None, 3), include_top=False,
        weights=ssd_feature_extractor.keras_application_weights(weights))
    self._backbone = tf.keras.Model(
        base.inputs, [base.get_layer('block4_conv3').output,
                      base.get_layer('block5_conv3').output],
        name='vgg16_backbone')
    ssd_feature_extractor.configure_backbone_batch_norm(
        self._backbone, self.conv_hyperparams)
    self._l2_norm = L2Normalization(scale_init=l2_norm_scale_init,
                                    name='conv4_3_norm')
    hp = self.conv_hyperparams
    self._pool5 = tf.keras.layers.MaxPooling2D(3, strides=1, padding='same',
                                               name='pool5')
    self._fc6 = hp.build_conv2d(int(fc_depth), 3, dilation_rate=6,
                                use_bias=True, name='fc6')
    self._fc7 = hp.build_conv2d(int(fc_depth), 1, use_bias=True, name='fc7')

    self._extra_layers = []
    self._extra_valid = []
    strides = [8, 16]
    for i, depth in enumerate(extra_layer_depths[:int(num_extra_layers)]):
      valid = extra_layer_style == 'ssd300' and i >= 2
      self._extra_valid.append(valid)
      self._extra_layers.append(ssd_feature_extractor.build_extra_layer(
          hp, depth=self.depth_fn(depth),
          bottleneck_depth=self.depth_fn(depth // 2),
          stride=1 if valid else 2, padding='valid' if valid else 'same',
          use_depthwise=self._use_depthwise, name=f'conv{8 + i}'))
      strides.append(strides[-1] if valid else strides[-1] * 2)
    self._strides = strides

  @property
  def feature_map_strides(self):
    """Nominal strides: 8, 16, then x2 per stride-2 extra layer."""
    return list(self._strides)

  @property
  def extra_layer_style(self) -> str:
    return self._extra_layer_style

  def preprocess(self, images):
    """float32 RGB [0, 255] -> BGR minus [103.939, 116.779, 123.68]."""
    images = tf.convert_to_tensor(images, tf.float32)
    return tf.keras.applications.vgg16.preprocess_input(images)

  def _check_valid_input(self, x, index):
    """Raises (static) or asserts (dynamic) that x is at least 3x3."""
    static = x.shape.as_list()[1:3]
    if None not in static:
      if min(static) < 3:
        raise ValueError(
            f'SSD VGG16 extra layer conv{8 + index}_2 (3x3 VALID) gets a '
            f'{static[0]}x{static[1]} map; the input image is too small for '
            "extra_layer_style='ssd300'. Use extra_layer_style='same' or "
            'fewer num_extra_layers.')
      return x
    shape = tf.shape(x)
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
        tf.minimum(shape[1], shape[2]), 3,
        message=f'SSD VGG16 conv{8 + index}_2 (VALID 3x3) needs a map of at '
        "least 3x3; use extra_layer_style='same' for small images")]):
      return tf.identity(x)

  def _extract_features(self, inputs, training):
    conv4_3, conv5_3 = self._backbone(inputs, training=training)
    x = self._pool5(conv5_3)
    x = tf.nn.relu(self._fc6(x))
    fc7 = tf.nn.relu(self._fc7(x))
    maps = [self._l2_norm(conv4_3), fc7]
    x = fc7
    for i, (layers, valid) in enumerate(zip(self._extra_layers,
                                            self._extra_valid)):
      if valid:
        x = self._check_valid_input(x, i)
      x = hyperparams_lib.apply_layers(layers, x, training=training)
      maps.append(x)
    return maps
