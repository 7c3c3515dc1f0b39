"""CenterNet-style feature extractor: backbone (+ neck) -> stride-4 maps.

Shared by CenterNet "Objects as Points" (Zhou et al. 2019, Sec. 4: ResNet
+ up-convolutions, DLA, Hourglass-104), TTFNet (Liu et al. 2019, Sec. 3.4:
ResNet / Darknet-53 + up-sampling with shortcuts) and CornerNet (Law & Deng
2018: Hourglass-104). Mirrors the TF OD API's `CenterNetFeatureExtractor`:

  * `preprocess(images)`: float32 RGB [0, 255] [B, H, W, 3] ->
    channels flipped to BGR if `bgr_ordering`, then
    `(x - channel_means) / channel_stds` (means / stds in the fed channel
    order). With both empty the backbone's own preprocessing is used
    (`backbone.preprocess`: x / 127.5 - 1 for our ResNet-18/34, Darknet and
    Hourglass, keras.applications' preprocess_input for the others).
  * `call(preprocessed, training)`: a LIST of float32 [B, ceil(H / 4),
    ceil(W / 4), C] maps: one for stage-dict backbones (the neck's output),
    `num_stacks` for an Hourglass (intermediate supervision: the loss
    covers every map, inference uses the last).

`BACKBONES` maps the config type strings to factories
`f(*, weights='', depth_multiplier=1.0, batch_norm_momentum=0.9)`.
"""

from typing import List, Optional, Sequence

import tensorflow as tf

from od_meta.feature_extractors import darknet
from od_meta.feature_extractors import hourglass
from od_meta.feature_extractors import keras_app_backbones
from od_meta.feature_extractors import resnet_v1_small
from od_meta.feature_extractors import up_convolution_neck
from od_meta.utils import keras_tracking

_NO_FILE = ('', None, 'imagenet')


def _no_imagenet(architecture: str, weights):
  if weights == 'imagenet':
    raise ValueError(f'weights="imagenet": no ImageNet weights are bundled '
                     f'for {architecture}; give "" or a weights file path')


def _resnet_v1_small(depth):
  def factory(*, weights='', depth_multiplier=1.0, batch_norm_momentum=0.9):
    _no_imagenet(f'resnet_v1_{depth}', weights)
    return resnet_v1_small.ResNetV1Small(
        depth=depth, depth_multiplier=depth_multiplier,
        batch_norm_momentum=batch_norm_momentum)
  return factory


def _keras_app(architecture):
  def factory(*, weights='', depth_multiplier=1.0, batch_norm_momentum=0.9):
    return keras_app_backbones.KerasApplicationsBackbone(
        architecture=architecture, weights=weights,
        depth_multiplier=depth_multiplier,
        batch_norm_momentum=batch_norm_momentum)
  return factory


def _darknet_53(*, weights='', depth_multiplier=1.0, batch_norm_momentum=0.9):
  _no_imagenet('darknet_53', weights)
  return darknet.DarkNet53(depth_multiplier=depth_multiplier,
                           batch_norm_momentum=batch_norm_momentum)


def _hourglass(preset_fn, architecture):
  def factory(*, weights='', depth_multiplier=1.0, batch_norm_momentum=0.9,
              upsampling_interpolation='nearest'):
    _no_imagenet(architecture, weights)
    return preset_fn(depth_multiplier=depth_multiplier,
                     batch_norm_momentum=batch_norm_momentum,
                     upsampling_interpolation=upsampling_interpolation)
  return factory


# Config type string -> backbone factory(*, weights, depth_multiplier,
# batch_norm_momentum). 'hourglass_*' return lists of maps and take no neck
# (their factories also take `upsampling_interpolation`, see
# `UPSAMPLING_BACKBONES`); the others return stage dicts {4, 8, 16, 32: map}.
BACKBONES = {
    'resnet_v1_18': _resnet_v1_small(18),
    'resnet_v1_34': _resnet_v1_small(34),
    'resnet_v1_50': _keras_app('resnet50'),
    'resnet_v1_101': _keras_app('resnet101'),
    'mobilenet_v2': _keras_app('mobilenet_v2'),
    'darknet_53': _darknet_53,
    'hourglass_104': _hourglass(hourglass.hourglass_104, 'hourglass_104'),
    'hourglass_small': _hourglass(hourglass.hourglass_small,
                                  'hourglass_small'),
}


# Backbones whose factory takes `upsampling_interpolation` (the 2x
# upsampling inside each hourglass module).
UPSAMPLING_BACKBONES = ('hourglass_104', 'hourglass_small')


def returns_map_list(backbone) -> bool:
  """True for backbones whose call returns a list of stride-4 maps."""
  return isinstance(backbone, hourglass.HourglassNetwork)


def _check_channel_stats(name: str, values: Sequence[float]):
  values = tuple(float(v) for v in values)
  if values and len(values) != 3:
    raise ValueError(f'{name} must be empty or 3 values, got {values}')
  return values


class CenterNetFeatureExtractor(keras_tracking.CheckpointTrackedCollections,
                                tf.keras.layers.Layer):
  """Backbone (+ neck) producing stride-4 maps (see the module docstring).

  Args (keyword-only):
    backbone: a stage-dict backbone (ResNetV1Small, DarkNet53,
      KerasApplicationsBackbone) or a HourglassNetwork.
    neck: a layer mapping the stage dict to one map (UpConvolutionNeck); None
      means `UpConvolutionNeck()` (256, 128, 64, bilinear init) for
      stage-dict backbones and no neck for an Hourglass.
    channel_means: () or 3 floats subtracted from the [0, 255] inputs (in
      the fed channel order, i.e. B, G, R when bgr_ordering).
    channel_stds: () or 3 floats > 0 dividing the centered inputs. One of
      the two empty means 0 / 1 for it; both empty = backbone's default.
    bgr_ordering: flip RGB inputs to BGR before normalizing.
    weights: the backbone's weights source: '' (random) or 'imagenet'
      (both handled when the backbone was built) or a path to a Keras
      weights file (.h5 / .weights.h5) or a TF checkpoint prefix written as
      `tf.train.Checkpoint(model=backbone)`, loaded by
      `restore_backbone_weights()`.
    name: layer name.

  Raises:
    ValueError: a backbone that is not a Keras layer, a neck given with an
      Hourglass, channel_means / channel_stds not of length 0 or 3, a
      non-positive std.
  """

  def __init__(self, *, backbone, neck=None,
               channel_means: Sequence[float] = (),
               channel_stds: Sequence[float] = (),
               bgr_ordering: bool = False, weights: str = '',
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    if not isinstance(backbone, tf.keras.layers.Layer):
      raise ValueError('backbone must be a Keras layer, got '
                       f'{type(backbone).__name__}')
    self.backbone = backbone
    if returns_map_list(backbone):
      if neck is not None:
        raise ValueError('neck must be None for an Hourglass backbone (it '
                         'outputs stride-4 maps itself)')
      self.neck = None
    else:
      self.neck = neck if neck is not None else (
          up_convolution_neck.UpConvolutionNeck())
    means = _check_channel_stats('channel_means', channel_means)
    stds = _check_channel_stats('channel_stds', channel_stds)
    if stds and min(stds) <= 0:
      raise ValueError(f'channel_stds must be > 0, got {stds}')
    self._use_backbone_preprocess = not means and not stds
    self._channel_means = means or (0.0, 0.0, 0.0)
    self._channel_stds = stds or (1.0, 1.0, 1.0)
    self._bgr_ordering = bool(bgr_ordering)
    self.backbone_weights = weights or ''

  @property
  def out_stride(self) -> int:
    """Output stride of every map (input pixels per cell): 4."""
    return 4

  @property
  def num_feature_outputs(self) -> int:
    """Length of the list `call` returns (num_stacks for an Hourglass)."""
    if returns_map_list(self.backbone):
      return self.backbone.num_stacks
    return 1

  @property
  def out_channels(self) -> Optional[int]:
    """Channels of the output maps (None when the neck does not say)."""
    if returns_map_list(self.backbone):
      return self.backbone.out_channels
    return getattr(self.neck, 'out_channels', None)

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """float32 RGB [0, 255] [B, H, W, 3] -> normalized float32, same shape.

    Raises:
      ValueError: images not rank 4 with 3 channels.
    """
    images = resnet_v1_small.check_images(images)
    if images.shape[-1] != 3:
      raise ValueError(f'images must have 3 channels, got {images.shape}')
    if self._bgr_ordering:
      images = images[..., ::-1]
    if self._use_backbone_preprocess:
      if hasattr(self.backbone, 'preprocess'):
        return self.backbone.preprocess(images)
      return resnet_v1_small.image_to_minus_one_one(images)
    return ((images - tf.constant(self._channel_means, tf.float32)) /
            tf.constant(self._channel_stds, tf.float32))

  def build(self, input_shape):
    """Sublayers build on their first call (skips Keras 3's symbolic trace)."""
    del input_shape

  def call(self, inputs, training=False) -> List[tf.Tensor]:
    """Returns the list of stride-4 maps (see the class docstring).

    Args:
      inputs: float32 [B, H, W, 3], the output of `preprocess`.
      training: Python bool, batch statistics in BN when True.

    Returns:
      list of `num_feature_outputs` float32 [B, ceil(H/4), ceil(W/4), C].
    """
    features = self.backbone(resnet_v1_small.check_images(inputs),
                             training=training)
    if self.neck is None:
      return list(features)
    return [self.neck(features, training=training)]

  def restore_backbone_weights(self) -> bool:
    """Loads `weights` into the backbone when it names a file.

    Call it after the first forward pass (the variables must exist).
    '.h5' paths are Keras weights files of the backbone (for a
    KerasApplicationsBackbone: of its `keras_model`, so a keras.applications
    '..._notop.h5' file works); other paths are TF checkpoint prefixes
    written as `tf.train.Checkpoint(model=backbone)`.

    Returns:
      True when weights were loaded, False for '' / 'imagenet'.

    Raises:
      ValueError: the backbone is not built yet, or the file / checkpoint
        does not exist (the message names the path).
    """
    path = self.backbone_weights
    if path in _NO_FILE:
      return False
    if not self.backbone.built:
      raise ValueError('restore_backbone_weights: call the extractor once '
                       'before restoring weights')
    if path.endswith('.h5'):
      if not tf.io.gfile.exists(path):
        raise ValueError(f'feature_extractor.weights: no file {path}')
      target = getattr(self.backbone, 'keras_model', self.backbone)
      target.load_weights(path)
      return True
    if not tf.io.gfile.exists(path + '.index'):
      raise ValueError(f'feature_extractor.weights: {path} is neither a .h5 '
                       'weights file nor a TF checkpoint prefix')
    # read() (not restore()) so that checkpoints from both `save()` and
    # `write()` load: it neither needs nor restores the save counter.
    status = tf.train.Checkpoint(model=self.backbone).read(path)
    status.expect_partial().assert_existing_objects_matched()
    return True
