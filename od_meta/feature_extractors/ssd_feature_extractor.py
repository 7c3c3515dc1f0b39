"""Base class of the SSD-family feature extractors (Keras 3).

An SSD feature extractor turns a batch of images into a list of feature maps
of decreasing resolution on which a box predictor runs (Liu et al. 2016,
"SSD", section 2.1 "Multi-scale feature maps for detection"; Huang et al.
2017, section 3.6.3). The same class serves RetinaNet-style FPN extractors
(Lin et al. 2017, "Focal loss", section 4).

Contract:
  * `preprocess(images)`: float32 [B, H, W, 3] RGB in [0, 255] -> float32
    [B, H, W, 3] in the range the backbone was trained with. Each extractor
    owns its normalization.
  * `call(preprocessed, training=False)`: optionally pads the batch at the
    bottom / right with zeros so that H and W are multiples of
    `pad_to_multiple`, then returns a list of float32 feature maps
    [B, H_i, W_i, C_i] ordered from the highest resolution (smallest stride)
    to the lowest.
  * `feature_map_strides`: nominal stride in input pixels of each map
    (`H_i ~= ceil(H / stride_i)` for 'same' convolutions). Anchor generators
    should use the actual map shapes where they differ.
"""

from typing import List, Optional, Sequence

import tensorflow as tf

from od_meta.feature_extractors import batch_norm as batch_norm_lib
from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.feature_extractors import fpn as fpn_lib
from od_meta.feature_extractors import resnet_v1_small
from od_meta.utils import keras_tracking

_KERAS_WEIGHTS = (None, 'imagenet')


def keras_application_weights(weights):
  """Maps the extractors' `weights` argument to keras.applications' argument.

  Args:
    weights: None (random init), 'imagenet', or anything else (for example a
      checkpoint path); the last is loaded later by the caller, so the
      backbone is built with random weights.

  Returns:
    None or 'imagenet'.
  """
  return weights if weights in _KERAS_WEIGHTS else None


def configure_backbone_batch_norm(backbone: tf.keras.Model,
                                  hyperparams: hyperparams_lib.ConvHyperparams):
  """Gives a keras.applications backbone's batch norms the config's settings.

  keras.applications builds MobileNetV2's batch norms with momentum 0.999
  (ResNet 0.99): trained from scratch for a few thousand steps, their moving
  statistics would still be dominated by the initial values and evaluation
  (inference-mode batch norm) would fail. As the TF OD API does with
  `conv_hyperparams`, the backbone's batch norms take the config's decay
  (momentum) and epsilon.

  Args:
    backbone: the functional backbone model.
    hyperparams: the extractor's ConvHyperparams.
  """
  for layer in backbone.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      layer.momentum = hyperparams.batch_norm_momentum
      layer.epsilon = hyperparams.batch_norm_epsilon


def layer_strides(model: tf.keras.Model, layer_names: Sequence[str],
                  probe_size: int = 1024) -> List[int]:
  """Returns the stride in input pixels of named layers of a functional model.

  Runs Keras shape inference (no computation) on a [1, probe_size,
  probe_size, C] input and divides.

  Args:
    model: functional Keras model with a single image input.
    layer_names: names of layers of `model`.
    probe_size: input side used for the probe; a power of 2 larger than the
      largest stride.

  Returns:
    list of ints, one per name.

  Raises:
    ValueError: if a layer name is not in the model.
  """
  outputs = []
  for name in layer_names:
    try:
      outputs.append(model.get_layer(name).output)
    except ValueError as e:
      raise ValueError(f'layer {name!r} is not in {model.name}') from e
  probe = tf.keras.Model(model.inputs, outputs)
  channels = model.inputs[0].shape[-1]
  shapes = probe.compute_output_shape((1, probe_size, probe_size, channels))
  if len(layer_names) == 1 and not isinstance(shapes, list):
    shapes = [shapes]
  return [int(round(probe_size / s[1])) for s in shapes]


def pad_to_multiple(images: tf.Tensor, multiple: int) -> tf.Tensor:
  """Zero-pads [B, H, W, C] at the bottom / right to multiples of `multiple`.

  Args:
    images: float tensor [B, H, W, C].
    multiple: positive int; 1 returns `images` unchanged.

  Returns:
    tensor [B, ceil(H / m) * m, ceil(W / m) * m, C]; the original pixels keep
    their (y, x) positions, so normalized boxes of the unpadded image are
    rescaled by the caller if it needs them in the padded frame.
  """
  if multiple == 1:
    return images
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  pad_h = (multiple - height % multiple) % multiple
  pad_w = (multiple - width % multiple) % multiple
  padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
  static = images.shape.as_list()
  if static[1] is not None and static[2] is not None:
    padded.set_shape([static[0], -(-static[1] // multiple) * multiple,
                      -(-static[2] // multiple) * multiple, static[3]])
  return padded


class SSDFeatureExtractor(keras_tracking.CheckpointTrackedCollections,
                          tf.keras.Model):
  """Base SSD feature extractor (Keras model).

  Subclasses implement `preprocess`, `_extract_features` and
  `feature_map_strides`.

  Args (keyword-only):
    depth_multiplier: float > 0 scaling the depth of the layers the extractor
      adds (and the backbone width where the backbone supports it, e.g.
      MobileNet's alpha).
    min_depth: int >= 1, lower bound on depths scaled by `depth_multiplier`.
    pad_to_multiple: int >= 1; inputs are zero-padded at the bottom / right
      to a multiple of it before the backbone (TF OD API semantics).
    use_depthwise: use depthwise separable convolutions in the added layers.
    weights: None (random init), 'imagenet' (keras.applications weights), or
      a checkpoint path (the backbone is then built with random weights and
      the caller restores it; kept in `backbone_weights`).
    conv_hyperparams: None, a `ConvHyperparams` or a dict of its fields; used
      for the added layers.
    name: Keras model name.

  Raises:
    ValueError: depth_multiplier <= 0, min_depth < 1, pad_to_multiple < 1,
      bad conv_hyperparams.
  """

  def __init__(self, *, depth_multiplier: float = 1.0, min_depth: int = 16,
               pad_to_multiple: int = 1, use_depthwise: bool = False,
               weights=None, conv_hyperparams=None,
               name: Optional[str] = None):
    super().__init__(name=name)
    if not depth_multiplier > 0:
      raise ValueError(f'depth_multiplier must be > 0, got {depth_multiplier}')
    if int(min_depth) < 1:
      raise ValueError(f'min_depth must be >= 1, got {min_depth}')
    if int(pad_to_multiple) < 1:
      raise ValueError(f'pad_to_multiple must be >= 1, got {pad_to_multiple}')
    self._depth_multiplier = float(depth_multiplier)
    self._min_depth = int(min_depth)
    self._pad_to_multiple = int(pad_to_multiple)
    self._use_depthwise = bool(use_depthwise)
    self.backbone_weights = weights
    self._conv_hyperparams = hyperparams_lib.ConvHyperparams.create(
        conv_hyperparams)

  # --- helpers ---------------------------------------------------------------

  @property
  def conv_hyperparams(self) -> hyperparams_lib.ConvHyperparams:
    return self._conv_hyperparams

  @property
  def depth_multiplier(self) -> float:
    return self._depth_multiplier

  @property
  def pad_multiple(self) -> int:
    return self._pad_to_multiple

  def depth_fn(self, depth: int) -> int:
    """Returns `max(int(depth * depth_multiplier), min_depth)` (OD API)."""
    return max(int(depth * self._depth_multiplier), self._min_depth)

  def restore_backbone_weights(self):
    """Loads `weights` into the backbone when it names a file.

    `weights` may be a Keras weights file of the backbone (`.h5` /
    `.weights.h5`, e.g. saved with `backbone.save_weights`) or a TF
    checkpoint written as `tf.train.Checkpoint(model=backbone)`. None and
    'imagenet' were handled by keras.applications at construction.

    Returns:
      True when weights were loaded.

    Raises:
      ValueError: if the path does not exist or the backbone has no such
        weights (the message names the path).
    """
    path = self.backbone_weights
    if path in _KERAS_WEIGHTS:
      return False
    backbone = getattr(self, '_backbone', None)
    if backbone is None:
      raise ValueError(f'{type(self).__name__} cannot load weights {path!r}')
    if path.endswith('.h5'):
      if not tf.io.gfile.exists(path):
        raise ValueError(f'feature_extractor.weights: no file {path}')
      backbone.load_weights(path)
      return True
    if not tf.io.gfile.exists(path + '.index'):
      raise ValueError(f'feature_extractor.weights: {path} is neither a .h5 '
                       'weights file nor a TF checkpoint prefix')
    status = tf.train.Checkpoint(model=backbone).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    return True

  # --- contract --------------------------------------------------------------

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """Maps float32 [B, H, W, 3] RGB in [0, 255] to the backbone's range."""
    raise NotImplementedError

  def _extract_features(self, inputs: tf.Tensor,
                        training: bool) -> List[tf.Tensor]:
    """Returns the feature maps for padded, preprocessed inputs."""
    raise NotImplementedError

  @property
  def feature_map_strides(self) -> List[int]:
    """Nominal stride (input pixels per feature cell) of each feature map."""
    raise NotImplementedError

  @property
  def num_feature_maps(self) -> int:
    """Number of feature maps `call` returns."""
    return len(self.feature_map_strides)

  def call(self, inputs, training=False):
    """Computes the feature maps.

    Args:
      inputs: float32 [B, H, W, 3], the output of `preprocess`.
      training: Python bool; batch norm uses batch statistics when True.

    Returns:
      list of `num_feature_maps` tensors [B, H_i, W_i, C_i] in the layer's
      compute dtype (float32, or float16 / bfloat16 under a mixed precision
      policy), highest resolution first.
    """
    inputs = resnet_v1_small.check_images(inputs)
    inputs = pad_to_multiple(inputs, self._pad_to_multiple)
    return list(self._extract_features(inputs, training=training))


def build_extra_layer(hyperparams: hyperparams_lib.ConvHyperparams, *,
                      depth: int, bottleneck_depth: int, stride: int = 2,
                      padding: str = 'same', kernel_size: int = 3,
                      use_depthwise: bool = False,
                      name: str = 'extra') -> list:
  """Layers of one extra SSD feature map (TF OD API multi_resolution maps).

  A 1x1 conv to `bottleneck_depth` (BN, activation) then a `kernel_size`
  conv with `stride` to `depth` (BN, activation); with `use_depthwise` the
  second one is depthwise kxk + pointwise 1x1 (Liu et al. 2016, SSD, Fig. 2:
  conv8_1 1x1 / conv8_2 3x3-s2 pairs).

  Args:
    hyperparams: ConvHyperparams of the new layers.
    depth: output depth.
    bottleneck_depth: depth of the 1x1 conv.
    stride: stride of the kxk conv.
    padding: 'same' or 'valid' for the kxk conv.
    kernel_size: kernel of the second conv.
    use_depthwise: depthwise separable second conv.
    name: prefix of the layer names.

  Returns:
    list of Keras layers to apply in order.
  """
  return (hyperparams.build_conv_block(bottleneck_depth, 1,
                                       name=f'{name}_1x1') +
          hyperparams.build_conv_block(depth, kernel_size, strides=stride,
                                       padding=padding,
                                       use_depthwise=use_depthwise,
                                       name=f'{name}_{kernel_size}x'
                                       f'{kernel_size}'))


class SSDFpnFeatureExtractorBase(SSDFeatureExtractor):
  """Shared body of the FPN extractors: backbone levels -> FPN -> P_min..P_max.

  Subclasses build a `keras.applications` model and pass `level_layers`
  ({level: layer name with stride 2**level}). Levels min_level ..
  min(max_level, max backbone level) come from the backbone; the FPN
  (od_meta.feature_extractors.fpn) adds the rest by stride-2 convs.

  Args (keyword-only), beyond `SSDFeatureExtractor`'s:
    base_model: the functional keras.applications model.
    level_layers: dict {level: layer name}.
    min_level, max_level: FPN output levels (stride 2**level).
    additional_layer_depth: FPN depth before `depth_multiplier`.

  Raises:
    ValueError: min_level not a backbone level, a level whose layer stride
      is not 2**level, a bad level range.
  """

  def __init__(self, *, base_model: tf.keras.Model, level_layers,
               min_level: int, max_level: int, additional_layer_depth: int,
               depth_multiplier: float = 1.0, min_depth: int = 16,
               pad_to_multiple: int = 1, use_depthwise: bool = False,
               weights=None, conv_hyperparams=None,
               name: Optional[str] = None):
    super().__init__(depth_multiplier=depth_multiplier, min_depth=min_depth,
                     pad_to_multiple=pad_to_multiple,
                     use_depthwise=use_depthwise, weights=weights,
                     conv_hyperparams=conv_hyperparams, name=name)
    min_level, max_level = int(min_level), int(max_level)
    if max_level < min_level:
      raise ValueError(f'max_level ({max_level}) must be >= min_level '
                       f'({min_level})')
    if min_level not in level_layers:
      raise ValueError(f'min_level={min_level} is not a backbone level; '
                       f'available levels {sorted(level_layers)}')
    backbone_max = min(max_level, max(level_layers))
    levels = list(range(min_level, backbone_max + 1))
    names = [level_layers[l] for l in levels]
    base_model = batch_norm_lib.with_fused_batch_norm(base_model)
    strides = layer_strides(base_model, names)
    for level, name_, stride in zip(levels, names, strides):
      if stride != 2 ** level:
        raise ValueError(f'layer {name_!r} has stride {stride}, expected '
                         f'2**{level} for level {level}')
    self._levels = levels
    self._min_level = min_level
    self._max_level = max_level
    self._backbone = tf.keras.Model(
        base_model.inputs,
        [base_model.get_layer(n).output for n in names],
        name=f'{base_model.name}_backbone')
    configure_backbone_batch_norm(self._backbone, self.conv_hyperparams)
    self._fpn = fpn_lib.FeaturePyramidNetwork(
        min_level=min_level, max_level=max_level,
        depth=self.depth_fn(additional_layer_depth),
        use_depthwise=use_depthwise, conv_hyperparams=self.conv_hyperparams,
        backbone_max_level=backbone_max, name='fpn')

  @property
  def feature_map_strides(self):
    """[2**min_level, ..., 2**max_level]."""
    return [2 ** l for l in range(self._min_level, self._max_level + 1)]

  @property
  def min_level(self) -> int:
    return self._min_level

  @property
  def max_level(self) -> int:
    return self._max_level

  def _extract_features(self, inputs, training):
    maps = self._backbone(inputs, training=training)
    if not isinstance(maps, (list, tuple)):
      maps = [maps]
    pyramid = self._fpn(dict(zip(self._levels, maps)), training=training)
    return [pyramid[l] for l in range(self._min_level, self._max_level + 1)]
