"""SSD MobileNetV2 FPN(-lite) feature extractor (keras.applications).

The TF OD API `ssd_mobilenet_v2_fpn_keras` layout: MobileNetV2 endpoints
C2..C5 ('block_2_add' stride 4, 'block_5_add' stride 8, 'block_12_add'
stride 16, 'out_relu' stride 32) feed a top-down FPN (Lin et al. 2017,
section 3) on levels min_level..max_level (default 3..7, strides 8..128);
levels 6, 7 come from stride-2 convs on P5. "FPN-lite"
(ssd_mobilenet_v2_fpnlite configs): depthwise separable 3x3 convs and
`additional_layer_depth=128`, which are this class's defaults.

Difference from the OD API: its FPN-lite MobileNetV2 shrinks the last
1x1 conv to 256 channels; keras.applications keeps 1280 (the 1x1 lateral
projects it to the FPN depth anyway).
"""

import tensorflow as tf

from od_meta.feature_extractors import ssd_feature_extractor
from od_meta.feature_extractors import ssd_mobilenet_v2

MOBILENET_V2_LEVEL_LAYERS = {
    2: 'block_2_add',
    3: 'block_5_add',
    4: 'block_12_add',
    5: 'out_relu',
}


class SSDMobileNetV2FpnFeatureExtractor(
    ssd_feature_extractor.SSDFpnFeatureExtractorBase):
  """MobileNetV2 + FPN feature extractor; maps P_min_level..P_max_level.

  Args (keyword-only):
    depth_multiplier: MobileNetV2 alpha and FPN depth multiplier.
    min_depth: lower bound of the FPN depth after the multiplier.
    pad_to_multiple: zero-pad inputs to a multiple (bottom / right).
    use_depthwise: depthwise separable FPN convs (default True: FPN-lite).
    weights: None, 'imagenet' or a checkpoint path (see the base class).
    conv_hyperparams: ConvHyperparams / dict for the FPN convs.
    min_level: finest level, 2..5 (default 3, stride 8).
    max_level: coarsest level (default 7, stride 128).
    additional_layer_depth: FPN depth before the multiplier (default 128).
    name: model name.

  Output: list of float32 [B, ceil(H / 2**l), ceil(W / 2**l), depth] for
  l = min_level..max_level, depth = max(int(128 * depth_multiplier),
  min_depth).

  Raises:
    ValueError: min_level outside 2..5, max_level < min_level, and the base
      class errors.
  """

  def __init__(self, *, depth_multiplier: float = 1.0, min_depth: int = 16,
               pad_to_multiple: int = 1, use_depthwise: bool = True,
               weights=None, conv_hyperparams=None, min_level: int = 3,
               max_level: int = 7, additional_layer_depth: int = 128,
               name: str = 'ssd_mobilenet_v2_fpn_feature_extractor'):
    base = tf.keras.applications.MobileNetV2(
        input_shape=(None, None, 3), alpha=depth_multiplier,
        include_top=False,
        weights=ssd_feature_extractor.keras_application_weights(weights))
    super().__init__(base_model=base, level_layers=MOBILENET_V2_LEVEL_LAYERS,
                     min_level=min_level, max_level=max_level,
                     additional_layer_depth=additional_layer_depth,
                     depth_multiplier=depth_multiplier, min_depth=min_depth,
                     pad_to_multiple=pad_to_multiple,
                     use_depthwise=use_depthwise, weights=weights,
                     conv_hyperparams=conv_hyperparams, name=name)

  def preprocess(self, images):
    """float32 [B, H, W, 3] in [0, 255] -> [-1, 1] (`(2/255) x - 1`)."""
    return ssd_mobilenet_v2.mobilenet_v2_preprocess(images)
