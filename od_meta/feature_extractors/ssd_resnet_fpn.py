"""SSD ResNet-50/101/152 FPN feature extractors (RetinaNet backbone).

Lin et al. 2017b, "Focal Loss for Dense Object Detection", section 4
("RetinaNet Detector"): ResNet C3..C5 ('conv3_block4_out',
'conv4_block6_out' / 'conv4_block23_out' / 'conv4_block36_out',
'conv5_block3_out' in keras.applications; strides 8, 16, 32) feed an FPN
with 256 channels on levels P3..P7; P6 and P7 come from 3x3 stride-2 convs
(here on P5 as in the TF OD API `ssd_resnet_v1_fpn` extractor rather than
on C5 as in the paper).

Preprocessing is keras.applications.resnet.preprocess_input (caffe style:
RGB -> BGR, subtract the ImageNet mean [103.939, 116.779, 123.68], no
scaling), which matches the keras.applications ImageNet weights.
"""

import tensorflow as tf

from od_meta.feature_extractors import ssd_feature_extractor

_RESNETS = {
    50: (tf.keras.applications.ResNet50, 'conv4_block6_out'),
    101: (tf.keras.applications.ResNet101, 'conv4_block23_out'),
    152: (tf.keras.applications.ResNet152, 'conv4_block36_out'),
}


def resnet_level_layers(resnet_depth: int) -> dict:
  """{level: keras.applications layer name} of C2..C5 for a ResNet depth.

  Raises:
    ValueError: resnet_depth not 50, 101 or 152.
  """
  if resnet_depth not in _RESNETS:
    raise ValueError(f'resnet_depth must be one of {sorted(_RESNETS)}, got '
                     f'{resnet_depth}')
  return {2: 'conv2_block3_out', 3: {50: 'conv3_block4_out',
                                     101: 'conv3_block4_out',
                                     152: 'conv3_block8_out'}[resnet_depth],
          4: _RESNETS[resnet_depth][1], 5: 'conv5_block3_out'}


class SSDResNetFpnFeatureExtractor(
    ssd_feature_extractor.SSDFpnFeatureExtractorBase):
  """ResNet v1 (keras.applications) + FPN; maps P_min_level..P_max_level.

  Args (keyword-only):
    resnet_depth: 50, 101 or 152.
    depth_multiplier: multiplies the FPN depth only (ResNet has no width
      multiplier).
    min_depth: lower bound of the FPN depth.
    pad_to_multiple: zero-pad inputs to a multiple (bottom / right).
    use_depthwise: depthwise separable FPN convs.
    weights: None, 'imagenet' or a checkpoint path (see the base class).
    conv_hyperparams: ConvHyperparams / dict for the FPN convs.
    min_level: finest level, 2..5 (default 3).
    max_level: coarsest level (default 7).
    additional_layer_depth: FPN depth (default 256, RetinaNet).
    name: model name.

  Output: list of float32 [B, ceil(H / 2**l), ceil(W / 2**l), depth], l =
  min_level..max_level.

  Raises:
    ValueError: bad resnet_depth or levels, base-class errors.
  """

  def __init__(self, *, resnet_depth: int = 50,
               depth_multiplier: float = 1.0, min_depth: int = 16,
               pad_to_multiple: int = 1, use_depthwise: bool = False,
               weights=None, conv_hyperparams=None, min_level: int = 3,
               max_level: int = 7, additional_layer_depth: int = 256,
               name=None):
    level_layers = resnet_level_layers(resnet_depth)
    base = _RESNETS[resnet_depth][0](
        input_shape=(None, None, 3), include_top=False,
        weights=ssd_feature_extractor.keras_application_weights(weights))
    super().__init__(base_model=base, level_layers=level_layers,
                     min_level=min_level, max_level=max_level,
                     additional_layer_depth=additional_layer_depth,
                     depth_multiplier=depth_multiplier, min_depth=min_depth,
                     pad_to_multiple=pad_to_multiple,
                     use_depthwise=use_depthwise, weights=weights,
                     conv_hyperparams=conv_hyperparams,
                     name=name or f'ssd_resnet{resnet_depth}_fpn_'
                     'feature_extractor')
    self._resnet_depth = resnet_depth

  @property
  def resnet_depth(self) -> int:
    return self._resnet_depth

  def preprocess(self, images):
    """float32 RGB [0, 255] -> caffe-style BGR minus ImageNet mean.

    Args:
      images: float [B, H, W, 3] RGB in [0, 255].

    Returns:
      float32 [B, H, W, 3], channels BGR, x - [103.939, 116.779, 123.68].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    return tf.keras.applications.resnet.preprocess_input(images)


class SSDResNet50FpnFeatureExtractor(SSDResNetFpnFeatureExtractor):
  """SSDResNetFpnFeatureExtractor with resnet_depth=50 (RetinaNet-50)."""

  def __init__(self, **kwargs):
    super().__init__(resnet_depth=50, **kwargs)


class SSDResNet101FpnFeatureExtractor(SSDResNetFpnFeatureExtractor):
  """SSDResNetFpnFeatureExtractor with resnet_depth=101 (RetinaNet-101)."""

  def __init__(self, **kwargs):
    super().__init__(resnet_depth=101, **kwargs)


class SSDResNet152FpnFeatureExtractor(SSDResNetFpnFeatureExtractor):
  """SSDResNetFpnFeatureExtractor with resnet_depth=152."""

  def __init__(self, **kwargs):
    super().__init__(resnet_depth=152, **kwargs)
