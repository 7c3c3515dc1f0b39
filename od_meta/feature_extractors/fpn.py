"""Feature Pyramid Network neck as a reusable Keras layer.

Lin et al. 2017, "Feature Pyramid Networks for Object Detection", section 3
(top-down pathway and lateral connections): each backbone map C_l gets a 1x1
lateral projection to `depth`; going down from the coarsest level, the
running top-down map is upsampled 2x (nearest neighbour) and added to the
lateral of the next finer level, then smoothed by a 3x3 conv. Levels above
the coarsest backbone level (RetinaNet P6, P7; Lin et al. 2017b "Focal loss",
section 4) are computed by 3x3 stride-2 convs.

Details follow the TF OD API Keras FPN (`fpn_top_down_feature_maps` and the
SSD FPN extractors):
  * laterals are 1x1 convs with bias, no batch norm, no activation;
  * the coarsest backbone level output is its lateral (no 3x3 smoothing);
  * smoothing convs and the stride-2 extra-level convs are conv -> BN ->
    activation from `conv_hyperparams`; with `use_depthwise` they are
    depthwise separable ("FPN-lite", as in ssd_mobilenet_v2_fpnlite);
  * the first extra level is computed from the coarsest FPN output (not from
    C5), each next one from the previous extra level.

Level l has stride 2**l. Maps whose sizes are not exact multiples are
handled by cropping the 2x-upsampled map to the lateral's size
(ceil(H / 2**l) sizes from 'same' convs always upsample to >= the lateral).
"""

from typing import Dict, Optional

import tensorflow as tf

from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.utils import keras_tracking


def upsample_nearest_2x_to(x: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """Nearest-neighbour 2x upsampling of `x`, cropped to `target`'s H and W.

  Args:
    x: float [B, h, w, C].
    target: float [B, H, W, C'] with H <= 2h and W <= 2w.

  Returns:
    float [B, H, W, C].
  """
  up = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
  target_shape = tf.shape(target)
  up = up[:, :target_shape[1], :target_shape[2], :]
  static = target.shape.as_list()
  up.set_shape([x.shape[0], static[1], static[2], x.shape[-1]])
  return up


class FeaturePyramidNetwork(keras_tracking.CheckpointTrackedCollections,
                            tf.keras.layers.Layer):
  """FPN neck: {level: C_level} -> {level: P_level} for min..max level.

  Args:
    min_level: finest output level (stride 2**min_level), >= 1.
    max_level: coarsest output level, >= min_level.
    depth: channel count of every output map.
    use_depthwise: depthwise separable 3x3 convs (FPN-lite).
    conv_hyperparams: None, ConvHyperparams or a dict of its fields.
    backbone_max_level: coarsest level taken from the backbone; levels above
      it are computed by stride-2 convs. Default `min(max_level, 5)` (C5).
    name: layer name.

  Call:
    inputs: dict {int level: float32 [B, H_l, W_l, C_l]} holding at least
      the levels min_level..backbone_max_level (other levels are ignored);
      channel counts may differ between levels.
    training: Python bool, for batch norm.
    Returns dict {level: float32 [B, H_l, W_l, depth]} for
      min_level..max_level, H_l ~= ceil(H_image / 2**l).

  Raises:
    ValueError: bad level range or depth (constructor); a missing level in
      the input dict (call).
  """

  def __init__(self, min_level: int = 3, max_level: int = 7,
               depth: int = 256, use_depthwise: bool = False,
               conv_hyperparams=None,
               backbone_max_level: Optional[int] = None,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    min_level, max_level = int(min_level), int(max_level)
    if min_level < 1:
      raise ValueError(f'min_level must be >= 1, got {min_level}')
    if max_level < min_level:
      raise ValueError(f'max_level ({max_level}) must be >= min_level '
                       f'({min_level})')
    if int(depth) < 1:
      raise ValueError(f'depth must be >= 1, got {depth}')
    if backbone_max_level is None:
      backbone_max_level = min(max_level, 5)
    backbone_max_level = int(backbone_max_level)
    if not min_level <= backbone_max_level <= max_level:
      raise ValueError(f'backbone_max_level ({backbone_max_level}) must be in '
                       f'[min_level, max_level] = [{min_level}, {max_level}]')
    self._min_level = min_level
    self._max_level = max_level
    self._backbone_max_level = backbone_max_level
    self._depth = int(depth)
    self._use_depthwise = bool(use_depthwise)
    hp = hyperparams_lib.ConvHyperparams.create(conv_hyperparams)
    self._conv_hyperparams = hp

    backbone_levels = range(min_level, backbone_max_level + 1)
    # Lists indexed by level - min_level (Keras tracks lists of layers).
    self._laterals = [
        tf.keras.layers.Conv2D(
            self._depth, 1, padding='same', use_bias=True,
            kernel_initializer=hp.kernel_initializer(),
            kernel_regularizer=hp.kernel_regularizer(),
            name=f'lateral_p{level}')
        for level in backbone_levels]
    self._smoothing = [
        self._conv_block(stride=1, name=f'smoothing_p{level}')
        for level in range(min_level, backbone_max_level)]
    self._downsample = [
        self._conv_block(stride=2, name=f'downsample_p{level}')
        for level in range(backbone_max_level + 1, max_level + 1)]

  def _conv_block(self, stride, name):
    hp = self._conv_hyperparams
    if self._use_depthwise:
      conv = hp.build_separable_conv2d(self._depth, 3, strides=stride,
                                       name=f'{name}_separable_conv')
    else:
      conv = hp.build_conv2d(self._depth, 3, strides=stride,
                             name=f'{name}_conv')
    return [conv, hp.build_batch_norm(name=f'{name}_bn'),
            hp.build_activation(name=f'{name}_act')]

  @property
  def min_level(self) -> int:
    return self._min_level

  @property
  def max_level(self) -> int:
    return self._max_level

  @property
  def backbone_max_level(self) -> int:
    return self._backbone_max_level

  @property
  def depth(self) -> int:
    return self._depth

  def call(self, inputs: Dict[int, tf.Tensor], training=None):
    if not isinstance(inputs, dict):
      raise ValueError('FeaturePyramidNetwork inputs must be a dict '
                       f'{{level: map}}, got {type(inputs).__name__}')
    features = {int(k): v for k, v in inputs.items()}
    needed = list(range(self._min_level, self._backbone_max_level + 1))
    missing = [l for l in needed if l not in features]
    if missing:
      raise ValueError(f'FeaturePyramidNetwork inputs lack levels {missing}; '
                       f'got {sorted(features)}, need {needed}')
    outputs = {}
    top = self._backbone_max_level
    top_down = self._laterals[top - self._min_level](features[top])
    outputs[top] = top_down
    for level in range(top - 1, self._min_level - 1, -1):
      lateral = self._laterals[level - self._min_level](features[level])
      top_down = lateral + upsample_nearest_2x_to(top_down, lateral)
      outputs[level] = hyperparams_lib.apply_layers(
          self._smoothing[level - self._min_level], top_down,
          training=training)
    x = outputs[top]
    for level in range(top + 1, self._max_level + 1):
      x = hyperparams_lib.apply_layers(
          self._downsample[level - top - 1], x, training=training)
      outputs[level] = x
    return {level: outputs[level]
            for level in range(self._min_level, self._max_level + 1)}

  def get_config(self):
    config = super().get_config()
    config.update({
        'min_level': self._min_level,
        'max_level': self._max_level,
        'depth': self._depth,
        'use_depthwise': self._use_depthwise,
        'backbone_max_level': self._backbone_max_level,
    })
    return config
