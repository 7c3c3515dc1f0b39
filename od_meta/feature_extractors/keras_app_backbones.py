"""keras.applications backbones returning a stage dict {4, 8, 16, 32: map}.

Which keras.applications layer feeds each output stride (the last layer
at that resolution, i.e. the output of the stage):

  resnet50:     4 conv2_block3_out, 8 conv3_block4_out,
                16 conv4_block6_out, 32 conv5_block3_out
  resnet101:    4 conv2_block3_out, 8 conv3_block4_out,
                16 conv4_block23_out, 32 conv5_block3_out
  resnet152:    4 conv2_block3_out, 8 conv3_block8_out,
                16 conv4_block36_out, 32 conv5_block3_out
  mobilenet_v2: 4 block_2_add, 8 block_5_add, 16 block_12_add,
                32 out_relu

Channels: ResNet 256, 512, 1024, 2048 (He et al. 2016, Table 1);
MobileNetV2 24, 32, 96, 1280 at alpha 1 (Sandler et al. 2018, Table 2;
keras.applications rounds `c * alpha` to multiples of 8 and keeps 1280 for
alpha <= 1). The strides are checked by shape inference at construction.

Weights: `weights=''` (or None) builds randomly initialized networks and
never downloads; 'imagenet' downloads the keras.applications ImageNet
weights (only when a config asks for it); any other string is a path that
the caller restores later (`CenterNetFeatureExtractor.restore_backbone_
weights`), the network is then built with random weights. All batch norms
take `batch_norm_momentum` (keras.applications' 0.99 / 0.999 would leave
the moving statistics at their initial values in short from-scratch runs).
"""

from typing import Dict, Optional

import tensorflow as tf

from od_meta.feature_extractors import batch_norm
from od_meta.feature_extractors import resnet_v1_small
from od_meta.feature_extractors import ssd_feature_extractor
from od_meta.utils import keras_tracking

STAGE_STRIDES = (4, 8, 16, 32)

# architecture -> (constructor, layer names for strides 4, 8, 16, 32,
#                  preprocessing function, supports alpha).
_ARCHITECTURES = {
    'resnet50': (
        tf.keras.applications.ResNet50,
        ('conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out',
         'conv5_block3_out'),
        tf.keras.applications.resnet.preprocess_input, False),
    'resnet101': (
        tf.keras.applications.ResNet101,
        ('conv2_block3_out', 'conv3_block4_out', 'conv4_block23_out',
         'conv5_block3_out'),
        tf.keras.applications.resnet.preprocess_input, False),
    'resnet152': (
        tf.keras.applications.ResNet152,
        ('conv2_block3_out', 'conv3_block8_out', 'conv4_block36_out',
         'conv5_block3_out'),
        tf.keras.applications.resnet.preprocess_input, False),
    'mobilenet_v2': (
        tf.keras.applications.MobileNetV2,
        ('block_2_add', 'block_5_add', 'block_12_add', 'out_relu'),
        tf.keras.applications.mobilenet_v2.preprocess_input, True),
}

ARCHITECTURES = tuple(sorted(_ARCHITECTURES))


def stage_layer_names(architecture: str) -> Dict[int, str]:
  """{stride: keras.applications layer name} of an architecture.

  Raises:
    ValueError: unknown architecture.
  """
  if architecture not in _ARCHITECTURES:
    raise ValueError(f'architecture must be one of {ARCHITECTURES}, got '
                     f'{architecture!r}')
  return dict(zip(STAGE_STRIDES, _ARCHITECTURES[architecture][1]))


def keras_weights_argument(weights) -> Optional[str]:
  """Maps our `weights` string to keras.applications' argument.

  Args:
    weights: '' or None (random init), 'imagenet', or a path (random init
      now, restored later by the caller).

  Returns:
    None or 'imagenet'.

  Raises:
    ValueError: weights is not None or a string.
  """
  if weights is None or weights == '':
    return None
  if not isinstance(weights, str):
    raise ValueError(f'weights must be "", "imagenet" or a path, got '
                     f'{weights!r}')
  return ssd_feature_extractor.keras_application_weights(weights)


class KerasApplicationsBackbone(keras_tracking.CheckpointTrackedCollections,
                                tf.keras.Model):
  """A keras.applications network as a stage-dict backbone.

  Args:
    architecture: 'resnet50', 'resnet101', 'resnet152' or 'mobilenet_v2'
      (layer names in the module docstring).
    weights: '' / None (random, no download), 'imagenet' (download), or a
      file path (random now; kept in `weights_path` for the caller).
    depth_multiplier: MobileNetV2's alpha (> 0); must be 1.0 for ResNets,
      which have no width multiplier. With 'imagenet' keras.applications
      only accepts alpha in {0.35, 0.5, 0.75, 1.0, 1.3, 1.4}.
    batch_norm_momentum: momentum in [0, 1] given to every BN layer.
    name: model name (default the architecture).

  Call:
    images: float32 [B, H, W, 3], preprocessed by `preprocess` (the
      architecture's keras.applications preprocess_input).
    training: Python bool.
    Returns {4: C2, 8: C3, 16: C4, 32: C5}, float32
    [B, ~H / s, ~W / s, stage_channels[s]] (exactly H / s when H and W are
    multiples of 32).

  Raises:
    ValueError: unknown architecture, depth_multiplier != 1 for a ResNet or
      <= 0, bad momentum or weights, a layer whose stride is not the
      expected one.
  """

  def __init__(self, architecture: str = 'resnet50', weights: str = '',
               depth_multiplier: float = 1.0,
               batch_norm_momentum: float = 0.9,
               name: Optional[str] = None):
    layer_names = stage_layer_names(architecture)
    resnet_v1_small.check_width_args(depth_multiplier, 1,
                                     batch_norm_momentum)
    constructor, _, preprocess_fn, has_alpha = _ARCHITECTURES[architecture]
    if not has_alpha and depth_multiplier != 1.0:
      raise ValueError(f'depth_multiplier must be 1.0 for {architecture} '
                       f'(no width multiplier), got {depth_multiplier}')
    keras_weights = keras_weights_argument(weights)
    super().__init__(name=name or architecture)
    self.architecture = architecture
    self.weights_path = weights if (weights and keras_weights is None) else ''
    self._preprocess_fn = preprocess_fn
    kwargs = dict(input_shape=(None, None, 3), include_top=False,
                  weights=keras_weights)
    if has_alpha:
      kwargs['alpha'] = depth_multiplier
    base = batch_norm.with_fused_batch_norm(constructor(**kwargs))
    names = [layer_names[s] for s in STAGE_STRIDES]
    strides = ssd_feature_extractor.layer_strides(base, names)
    if tuple(strides) != STAGE_STRIDES:
      raise ValueError(f'{architecture}: layers {names} have strides '
                       f'{strides}, expected {STAGE_STRIDES}')
    self.keras_model = tf.keras.Model(
        base.inputs, [base.get_layer(n).output for n in names],
        name=f'{architecture}_stages')
    for layer in self.keras_model.layers:
      if isinstance(layer, tf.keras.layers.BatchNormalization):
        layer.momentum = float(batch_norm_momentum)
    self._stage_channels = {
        s: int(base.get_layer(n).output.shape[-1])
        for s, n in zip(STAGE_STRIDES, names)}

  @property
  def stage_channels(self) -> Dict[int, int]:
    """{stride: channels} of the stage dict's maps."""
    return dict(self._stage_channels)

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """keras.applications preprocessing of float RGB [0, 255] images.

    ResNets: caffe style, RGB -> BGR minus [103.939, 116.779, 123.68];
    MobileNetV2: `x / 127.5 - 1`. Returns float32, same shape.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    return self._preprocess_fn(images)

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=False):
    maps = self.keras_model(resnet_v1_small.check_images(inputs),
                            training=training)
    return dict(zip(STAGE_STRIDES, maps))
