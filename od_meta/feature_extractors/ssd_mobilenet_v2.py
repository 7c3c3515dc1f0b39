"""SSD feature extractor on keras.applications.MobileNetV2 (SSDLite layout).

Layout of the TF OD API `ssd_mobilenet_v2` extractor (Sandler et al. 2018,
"MobileNetV2", section 6.2; Huang et al. 2017, section 3.6.3 for the
MobileNet family: two backbone maps then extra layers of depths 512, 256,
256, 128 halving the resolution, ReLU6 and batch norm):

  * 'block_13_expand_relu' (stride 16, the expansion of the first stride-32
    block, 576 * alpha channels) and 'out_relu' (stride 32, 1280 channels),
  * extra layers: 1x1 conv to depth/2, then 3x3 stride-2 conv to depth
    (depthwise separable with `use_depthwise`, the SSDLite head), depths
    512, 256, 256, 128 scaled by `depth_multiplier` with `min_depth`.

Small-image option: `first_feature_layer='block_6_expand_relu'` prepends the
stride-8 map (192 * alpha channels), and `num_layers` caps the total number
of maps, e.g. 128 px digits scenes with 16-56 px objects:
`first_feature_layer='block_6_expand_relu', num_layers=4` gives maps of
16x16, 8x8, 4x4, 2x2 (strides 8, 16, 32, 64).

MobileNetV2 layer strides in keras.applications (for `from_layers`):
block_1/2/3_expand_relu: 2/4/4, block_4..6: 8, block_7..13: 16,
block_14..16 and 'out_relu': 32 (the expansion of block k runs at the input
resolution of block k, before its depthwise stride).
"""

from typing import Optional, Sequence

import tensorflow as tf

from od_meta.feature_extractors import batch_norm
from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.feature_extractors import ssd_feature_extractor

DEFAULT_FROM_LAYERS = ('block_13_expand_relu', 'out_relu')
DEFAULT_EXTRA_LAYER_DEPTHS = (512, 256, 256, 128)


def mobilenet_v2_preprocess(images: tf.Tensor) -> tf.Tensor:
  """Maps RGB [0, 255] to [-1, 1]: `(2 / 255) * x - 1` (MobileNet training).

  Args:
    images: float [B, H, W, 3] in [0, 255].

  Returns:
    float32 tensor of the same shape in [-1, 1].
  """
  images = tf.convert_to_tensor(images, tf.float32)
  return (2.0 / 255.0) * images - 1.0


class SSDMobileNetV2FeatureExtractor(
    ssd_feature_extractor.SSDFeatureExtractor):
  """SSD MobileNetV2 feature extractor (see the module docstring).

  Args (keyword-only), beyond `SSDFeatureExtractor`'s:
    from_layers: names of MobileNetV2 layers used as feature maps, in
      increasing stride order (default 'block_13_expand_relu', 'out_relu').
    first_feature_layer: optional layer name prepended to `from_layers`
      (e.g. 'block_6_expand_relu', stride 8) for small objects.
    num_layers: total number of feature maps (backbone maps plus extra
      layers, TF OD API meaning); default 6. The number of extra layers is
      `num_layers - len(backbone maps)`.
    extra_layer_depths: depths of the extra layers before
      `depth_multiplier` (default 512, 256, 256, 128); the first
      `num_extra` are used.

  `depth_multiplier` is also the MobileNetV2 `alpha` (keras.applications
  rounds channel counts to multiples of 8; its last 1280-channel conv is not
  scaled for alpha <= 1; `min_depth` does not apply inside the backbone).

  Raises:
    ValueError: an unknown layer name, maps not in increasing stride order,
      num_layers smaller than the number of backbone maps or larger than
      that plus len(extra_layer_depths), and the base-class errors.
  """

  def __init__(self, *, depth_multiplier: float = 1.0, min_depth: int = 16,
               pad_to_multiple: int = 1, use_depthwise: bool = False,
               weights=None, conv_hyperparams=None,
               from_layers: Sequence[str] = DEFAULT_FROM_LAYERS,
               first_feature_layer: Optional[str] = None,
               num_layers: int = 6,
               extra_layer_depths: Sequence[int] = DEFAULT_EXTRA_LAYER_DEPTHS,
               name: str = 'ssd_mobilenet_v2_feature_extractor'):
    super().__init__(depth_multiplier=depth_multiplier, min_depth=min_depth,
                     pad_to_multiple=pad_to_multiple,
                     use_depthwise=use_depthwise, weights=weights,
                     conv_hyperparams=conv_hyperparams, name=name)
    layer_names = list(from_layers)
    if first_feature_layer:
      layer_names = [first_feature_layer] + layer_names
    if not layer_names:
      raise ValueError('from_layers must name at least one layer')
    num_extra = int(num_layers) - len(layer_names)
    if num_extra < 0:
      raise ValueError(f'num_layers={num_layers} is smaller than the '
                       f'{len(layer_names)} backbone maps {layer_names}')
    if num_extra > len(extra_layer_depths):
      raise ValueError(f'num_layers={num_layers} needs {num_extra} extra '
                       f'layers but extra_layer_depths has only '
                       f'{len(extra_layer_depths)}')

    base = batch_norm.with_fused_batch_norm(tf.keras.applications.MobileNetV2(
        input_shape=(None, None, 3), alpha=depth_multiplier,
        include_top=False,
        weights=ssd_feature_extractor.keras_application_weights(weights)))
    backbone_strides = ssd_feature_extractor.layer_strides(base, layer_names)
    if any(b < a for a, b in zip(backbone_strides, backbone_strides[1:])):
      raise ValueError(f'from_layers {layer_names} must be in increasing '
                       f'stride order, got strides {backbone_strides}')
    self._layer_names = tuple(layer_names)
    self._backbone = tf.keras.Model(
        base.inputs, [base.get_layer(n).output for n in layer_names],
        name='mobilenet_v2_backbone')
    ssd_feature_extractor.configure_backbone_batch_norm(
        self._backbone, self.conv_hyperparams)

    hp = self.conv_hyperparams
    self._extra_layers = []
    for i, depth in enumerate(list(extra_layer_depths)[:num_extra]):
      index = len(layer_names) + i
      self._extra_layers.append(ssd_feature_extractor.build_extra_layer(
          hp, depth=self.depth_fn(depth),
          bottleneck_depth=self.depth_fn(depth // 2), stride=2,
          use_depthwise=self._use_depthwise, name=f'extra_layer_{index}'))
    self._strides = backbone_strides + [
        backbone_strides[-1] * 2 ** (i + 1) for i in range(num_extra)]

  @property
  def feature_map_strides(self):
    """Strides of the maps: backbone strides then x2 per extra layer."""
    return list(self._strides)

  @property
  def from_layer_names(self):
    """Names of the MobileNetV2 layers used as the first feature maps."""
    return list(self._layer_names)

  def preprocess(self, images):
    """float32 [B, H, W, 3] in [0, 255] -> [-1, 1] (`(2/255) x - 1`)."""
    return mobilenet_v2_preprocess(images)

  def _extract_features(self, inputs, training):
    maps = self._backbone(inputs, training=training)
    if not isinstance(maps, (list, tuple)):
      maps = [maps]
    maps = list(maps)
    x = maps[-1]
    for layers in self._extra_layers:
      x = hyperparams_lib.apply_layers(layers, x, training=training)
      maps.append(x)
    return maps
