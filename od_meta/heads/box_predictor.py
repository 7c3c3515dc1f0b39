"""Convolutional box predictors of the SSD family (SSD and RetinaNet heads).

Both predictors take a list of feature maps [B, H_i, W_i, C_i] and return

  {'box_encodings': float32 [B, total_anchors, box_code_size],
   'class_predictions_with_background': float32 [B, total_anchors,
                                                  num_class_slots]}

with `total_anchors = sum_i H_i * W_i * A_i` (A_i anchors per location of
map i). Anchor order: feature map by feature map (in the given list order),
and inside a map row-major over (y, x, a): index
`offset_i + (y * W_i + x) * A_i + a`. An anchor generator must enumerate its
anchors in the same (map, y, x, anchor) order. Box encodings are whatever the
box coder defines (raw regression outputs); class predictions are logits:
`num_class_slots = num_classes + 1` (slot 0 = background) for softmax heads,
`num_classes` for sigmoid heads (the key name is kept for both, as in the
TF OD API).

  * ConvolutionalBoxPredictor: SSD (Liu et al. 2016, section 2.1
    "Convolutional predictors for detection": a 3x3 conv per feature map
    predicting A * (classes + 4) values); separate weights per map.
  * WeightSharedConvolutionalBoxPredictor: RetinaNet (Lin et al. 2017b,
    section 4 "Classification / Box Regression Subnet": four 3x3 conv
    layers of 256 channels + ReLU before a 3x3 prediction conv, shared across
    pyramid levels; prior-probability bias init, section 3.3).
"""

import math
from typing import Optional, Sequence

import tensorflow as tf

from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.utils import shape_utils
from od_meta.utils import keras_tracking

BOX_ENCODINGS = 'box_encodings'
CLASS_PREDICTIONS_WITH_BACKGROUND = 'class_predictions_with_background'


def prior_probability_bias(prior_probability: float = 0.01) -> float:
  """Bias b with sigmoid(b) = prior_probability: b = -log((1 - p) / p).

  Lin et al. 2017b, "Focal loss", section 3.3 (Initialization): p = 0.01
  gives b = -log(99) = -4.59512.

  Raises:
    ValueError: p not in (0, 1).
  """
  if not 0.0 < prior_probability < 1.0:
    raise ValueError('prior_probability must be in (0, 1), got '
                     f'{prior_probability}')
  return -math.log((1.0 - prior_probability) / prior_probability)


def _flatten_predictions(x: tf.Tensor, code_size: int) -> tf.Tensor:
  """[B, H, W, A * code_size] -> [B, H * W * A, code_size] (y, x, a order)."""
  shape = shape_utils.combined_static_and_dynamic_shape(x)
  batch, height, width = shape[0], shape[1], shape[2]
  if all(isinstance(d, int) for d in (height, width)) and isinstance(
      shape[3], int):
    num = height * width * (shape[3] // code_size)
  else:
    num = -1
  return tf.reshape(x, [batch, num, code_size])


def _check_feature_maps(feature_maps, expected: int, owner: str):
  if not isinstance(feature_maps, (list, tuple)):
    raise ValueError(f'{owner} expects a list of feature maps, got '
                     f'{type(feature_maps).__name__}')
  if len(feature_maps) != expected:
    raise ValueError(
        f'{owner}: got {len(feature_maps)} feature maps but '
        f'num_predictions_per_location_list has {expected} entries')
  for i, fmap in enumerate(feature_maps):
    if len(fmap.shape) != 4:
      raise ValueError(f'{owner}: feature map {i} must be [B, H, W, C], got '
                       f'shape {fmap.shape}')


def _validate_common(num_class_slots, num_predictions_per_location_list,
                     kernel_size, box_code_size, dropout_keep_prob):
  if int(num_class_slots) < 1:
    raise ValueError(f'num_class_slots must be >= 1, got {num_class_slots}')
  counts = [int(a) for a in num_predictions_per_location_list]
  if not counts:
    raise ValueError('num_predictions_per_location_list must not be empty')
  if any(a < 1 for a in counts):
    raise ValueError('num_predictions_per_location_list entries must be '
                     f'>= 1, got {counts}')
  if int(kernel_size) < 1:
    raise ValueError(f'kernel_size must be >= 1, got {kernel_size}')
  if int(box_code_size) < 1:
    raise ValueError(f'box_code_size must be >= 1, got {box_code_size}')
  if not 0.0 < dropout_keep_prob <= 1.0:
    raise ValueError('dropout_keep_prob must be in (0, 1], got '
                     f'{dropout_keep_prob}')
  return counts


class ConvolutionalBoxPredictor(keras_tracking.CheckpointTrackedCollections,
                                tf.keras.layers.Layer):
  """SSD box predictor: separate conv heads on each feature map.

  Per feature map i (TF OD API ConvolutionalBoxPredictor):
    * `num_layers_before_predictor` 1x1 conv -> BN -> activation layers
      (shared by the box and class heads of that map) of depth
      `C_i` if max_depth == 0 else max(min(C_i, max_depth), min_depth);
    * box head: `kernel_size` conv (bias, no BN / activation) to
      A_i * box_code_size channels;
    * class head: optional dropout (rate 1 - dropout_keep_prob), then a
      `kernel_size` conv to A_i * num_class_slots channels, bias initialized
      to `class_prediction_bias_init`;
    * with `use_depthwise` each head is depthwise kxk -> BN -> activation ->
      1x1 conv (SSDLite, Sandler et al. 2018, section 6.2).

  Args (keyword-only):
    num_class_slots: logits per anchor (num_classes + 1 for softmax with
      background, num_classes for sigmoid).
    num_predictions_per_location_list: anchors per location A_i, one int per
      feature map.
    kernel_size: head conv kernel (default 3).
    box_code_size: values per box encoding (default 4).
    use_dropout: dropout before the class head.
    dropout_keep_prob: keep probability of that dropout.
    use_depthwise: depthwise separable heads.
    class_prediction_bias_init: initial class-logit bias.
    conv_hyperparams: None, ConvHyperparams or dict (initializer,
      regularizer, BN and activation of the hidden layers).
    num_layers_before_predictor: hidden 1x1 layers per map (default 0).
    min_depth, max_depth: depth bounds of the hidden layers (see above).
    name: layer name.

  Call:
    feature_maps: list of float32 [B, H_i, W_i, C_i].
    training: Python bool (dropout, batch norm).
    Returns the dict described in the module docstring.

  Raises:
    ValueError: bad constructor values; a feature map count different from
      len(num_predictions_per_location_list).
  """

  def __init__(self, *, num_class_slots: int,
               num_predictions_per_location_list: Sequence[int],
               kernel_size: int = 3, box_code_size: int = 4,
               use_dropout: bool = False, dropout_keep_prob: float = 0.8,
               use_depthwise: bool = False,
               class_prediction_bias_init: float = 0.0,
               conv_hyperparams=None, num_layers_before_predictor: int = 0,
               min_depth: int = 0, max_depth: int = 0,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    self._num_predictions = _validate_common(
        num_class_slots, num_predictions_per_location_list, kernel_size,
        box_code_size, dropout_keep_prob)
    if int(num_layers_before_predictor) < 0:
      raise ValueError('num_layers_before_predictor must be >= 0, got '
                       f'{num_layers_before_predictor}')
    if int(min_depth) < 0 or int(max_depth) < 0:
      raise ValueError(f'min_depth and max_depth must be >= 0, got '
                       f'{min_depth}, {max_depth}')
    self._num_class_slots = int(num_class_slots)
    self._kernel_size = int(kernel_size)
    self._box_code_size = int(box_code_size)
    self._use_dropout = bool(use_dropout)
    self._dropout_keep_prob = float(dropout_keep_prob)
    self._use_depthwise = bool(use_depthwise)
    self._class_prediction_bias_init = float(class_prediction_bias_init)
    self._hp = hyperparams_lib.ConvHyperparams.create(conv_hyperparams)
    self._num_layers_before_predictor = int(num_layers_before_predictor)
    self._min_depth = int(min_depth)
    self._max_depth = int(max_depth)
    self._dropout = tf.keras.layers.Dropout(
        1.0 - self._dropout_keep_prob, name='class_dropout')
    self._built_for = None

  @property
  def num_predictions_per_location_list(self):
    return list(self._num_predictions)

  @property
  def num_class_slots(self) -> int:
    return self._num_class_slots

  def _head(self, filters, bias_init, name):
    hp = self._hp
    k = self._kernel_size
    bias = tf.keras.initializers.Constant(bias_init)
    if self._use_depthwise and k > 1:
      return [hp.build_depthwise_conv2d(k, name=f'{name}_depthwise'),
              hp.build_batch_norm(name=f'{name}_depthwise_bn'),
              hp.build_activation(name=f'{name}_depthwise_act'),
              hp.build_conv2d(filters, 1, use_bias=True,
                              bias_initializer=bias, name=f'{name}_conv')]
    return [hp.build_conv2d(filters, k, use_bias=True, bias_initializer=bias,
                            name=f'{name}_conv')]

  def build(self, input_shape):
    shapes = list(input_shape)
    _check_feature_maps_shapes(shapes, len(self._num_predictions),
                               type(self).__name__)
    self._hidden = []
    self._box_heads = []
    self._class_heads = []
    for i, (shape, num) in enumerate(zip(shapes, self._num_predictions)):
      in_depth = shape[-1]
      hidden = []
      if self._num_layers_before_predictor:
        if self._max_depth == 0:
          if in_depth is None:
            raise ValueError(f'feature map {i} needs a static depth')
          depth = int(in_depth)
        else:
          depth = max(min(int(in_depth or self._max_depth), self._max_depth),
                      self._min_depth)
        for j in range(self._num_layers_before_predictor):
          hidden += self._hp.build_conv_block(
              depth, 1, name=f'map{i}_hidden{j}')
      self._hidden.append(hidden)
      self._box_heads.append(self._head(
          num * self._box_code_size, 0.0, name=f'map{i}_box_encoding'))
      self._class_heads.append(self._head(
          num * self._num_class_slots, self._class_prediction_bias_init,
          name=f'map{i}_class_predictor'))
    self.built = True

  def call(self, feature_maps, training=None):
    _check_feature_maps(feature_maps, len(self._num_predictions),
                        type(self).__name__)
    boxes, classes = [], []
    for i, fmap in enumerate(feature_maps):
      x = hyperparams_lib.apply_layers(self._hidden[i], fmap,
                                       training=training)
      box = hyperparams_lib.apply_layers(self._box_heads[i], x,
                                         training=training)
      cls_in = self._dropout(x, training=training) if self._use_dropout else x
      cls = hyperparams_lib.apply_layers(self._class_heads[i], cls_in,
                                         training=training)
      boxes.append(_flatten_predictions(box, self._box_code_size))
      classes.append(_flatten_predictions(cls, self._num_class_slots))
    # Float32 outputs under a mixed precision policy: the box decoding, the
    # losses and NMS run in float32 (Keras mixed precision guide).
    return {BOX_ENCODINGS: tf.cast(tf.concat(boxes, axis=1), tf.float32),
            CLASS_PREDICTIONS_WITH_BACKGROUND:
                tf.cast(tf.concat(classes, axis=1), tf.float32)}


def _check_feature_maps_shapes(shapes, expected, owner):
  if len(shapes) != expected:
    raise ValueError(
        f'{owner}: got {len(shapes)} feature maps but '
        f'num_predictions_per_location_list has {expected} entries')
  for i, shape in enumerate(shapes):
    if len(shape) != 4:
      raise ValueError(f'{owner}: feature map {i} must be [B, H, W, C], got '
                       f'shape {shape}')


class WeightSharedConvolutionalBoxPredictor(
    keras_tracking.CheckpointTrackedCollections, tf.keras.layers.Layer):
  """RetinaNet box predictor: conv towers and heads shared across levels.

  For every feature map (TF OD API WeightSharedConvolutionalBoxPredictor):
    * box tower: `num_layers_before_predictor` kxk convs of `depth` channels,
      each followed by batch norm (if `apply_batch_norm`; a separate BN per
      feature map, as in the OD API, since level statistics differ) and the
      activation; conv weights shared by all maps;
    * class tower: the same structure with its own weights, or the box tower
      itself when `share_prediction_tower`;
    * box head: shared kxk conv to A * box_code_size;
    * class head: optional dropout, shared kxk conv to A * num_class_slots
      with bias `class_prediction_bias_init` (default -log((1 - 0.01) /
      0.01) = -4.59512, i.e. sigmoid(bias) = 0.01, Lin et al. 2017b
      section 3.3);
    * with `use_depthwise` all convs are depthwise separable.

  Args (keyword-only):
    num_class_slots: logits per anchor (num_classes for sigmoid heads).
    num_predictions_per_location_list: anchors per location, one per
      feature map; all entries must be equal (heads are shared).
    depth: tower depth (default 256).
    num_layers_before_predictor: tower depth in layers (default 4).
    kernel_size: conv kernel (default 3).
    box_code_size: values per box encoding (default 4).
    class_prediction_bias_init: class-logit bias init (default prior 0.01).
    use_dropout, dropout_keep_prob: dropout before the class head.
    share_prediction_tower: one tower for box and class heads.
    use_depthwise: depthwise separable convs.
    apply_batch_norm: batch norm in the towers (tower convs then have no
      bias).
    conv_hyperparams: None, ConvHyperparams or dict (initializer,
      regularizer, BN parameters, activation).
    name: layer name.

  Call:
    feature_maps: list of float32 [B, H_i, W_i, C], the same C for all maps.
    training: Python bool (dropout, batch norm).
    Returns the dict described in the module docstring.

  Raises:
    ValueError: unequal anchors per location, bad constructor values,
      feature maps of different depths, a feature map count different from
      len(num_predictions_per_location_list).
  """

  def __init__(self, *, num_class_slots: int,
               num_predictions_per_location_list: Sequence[int],
               depth: int = 256, num_layers_before_predictor: int = 4,
               kernel_size: int = 3, box_code_size: int = 4,
               class_prediction_bias_init: float = prior_probability_bias(
                   0.01),
               use_dropout: bool = False, dropout_keep_prob: float = 0.8,
               share_prediction_tower: bool = False,
               use_depthwise: bool = False, apply_batch_norm: bool = True,
               conv_hyperparams=None, name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    counts = _validate_common(num_class_slots,
                              num_predictions_per_location_list, kernel_size,
                              box_code_size, dropout_keep_prob)
    if len(set(counts)) != 1:
      raise ValueError('WeightSharedConvolutionalBoxPredictor needs the same '
                       'number of anchors per location on every map; '
                       f'num_predictions_per_location_list={counts}')
    if int(depth) < 1:
      raise ValueError(f'depth must be >= 1, got {depth}')
    if int(num_layers_before_predictor) < 0:
      raise ValueError('num_layers_before_predictor must be >= 0, got '
                       f'{num_layers_before_predictor}')
    self._num_predictions = counts
    self._num_class_slots = int(num_class_slots)
    self._depth = int(depth)
    self._num_layers = int(num_layers_before_predictor)
    self._kernel_size = int(kernel_size)
    self._box_code_size = int(box_code_size)
    self._use_dropout = bool(use_dropout)
    self._dropout_keep_prob = float(dropout_keep_prob)
    self._share_tower = bool(share_prediction_tower)
    self._use_depthwise = bool(use_depthwise)
    self._apply_batch_norm = bool(apply_batch_norm)
    hp = hyperparams_lib.ConvHyperparams.create(conv_hyperparams)
    self._hp = hp
    num_maps = len(counts)
    num = counts[0]

    self._box_tower = self._tower('box_tower', num_maps)
    self._class_tower = (None if self._share_tower
                         else self._tower('class_tower', num_maps))
    self._box_head = self._conv(num * self._box_code_size, use_bias=True,
                                bias_init=0.0, name='box_predictor')
    self._class_head = self._conv(
        num * self._num_class_slots, use_bias=True,
        bias_init=float(class_prediction_bias_init), name='class_predictor')
    self._dropout = tf.keras.layers.Dropout(
        1.0 - self._dropout_keep_prob, name='class_dropout')
    self._activation = hp.build_activation(name='tower_activation')

  def _conv(self, filters, *, use_bias, bias_init, name):
    hp = self._hp
    bias = tf.keras.initializers.Constant(bias_init)
    if self._use_depthwise:
      return hp.build_separable_conv2d(filters, self._kernel_size,
                                       use_bias=use_bias,
                                       bias_initializer=bias, name=name)
    return hp.build_conv2d(filters, self._kernel_size, use_bias=use_bias,
                           bias_initializer=bias, name=name)

  def _tower(self, name, num_maps):
    """Returns (shared convs, per-map BN lists [map][layer])."""
    convs = [self._conv(self._depth, use_bias=not self._apply_batch_norm,
                        bias_init=0.0, name=f'{name}_conv{j}')
             for j in range(self._num_layers)]
    norms = []
    for i in range(num_maps):
      if self._apply_batch_norm:
        bn_hp = self._hp.replace(use_batch_norm=True)
        norms.append([bn_hp.build_batch_norm(name=f'{name}_bn{j}_map{i}')
                      for j in range(self._num_layers)])
      else:
        norms.append([])
    return convs, norms

  @property
  def num_predictions_per_location_list(self):
    return list(self._num_predictions)

  @property
  def num_class_slots(self) -> int:
    return self._num_class_slots

  def build(self, input_shape):
    shapes = list(input_shape)
    _check_feature_maps_shapes(shapes, len(self._num_predictions),
                               type(self).__name__)
    depths = [s[-1] for s in shapes]
    if None in depths or len(set(depths)) != 1:
      raise ValueError('WeightSharedConvolutionalBoxPredictor: all feature '
                       f'maps must have the same static depth, got {depths}')
    self.built = True

  def _apply_tower(self, tower, x, map_index, training):
    convs, norms = tower
    for j, conv in enumerate(convs):
      x = conv(x)
      if self._apply_batch_norm:
        x = norms[map_index][j](x, training=training)
      x = self._activation(x)
    return x

  def call(self, feature_maps, training=None):
    _check_feature_maps(feature_maps, len(self._num_predictions),
                        type(self).__name__)
    depths = [f.shape[-1] for f in feature_maps]
    if len(set(depths)) != 1:
      raise ValueError('WeightSharedConvolutionalBoxPredictor: all feature '
                       f'maps must have the same depth, got {depths}')
    boxes, classes = [], []
    for i, fmap in enumerate(feature_maps):
      box_x = self._apply_tower(self._box_tower, fmap, i, training)
      cls_x = (box_x if self._share_tower else
               self._apply_tower(self._class_tower, fmap, i, training))
      if self._use_dropout:
        cls_x = self._dropout(cls_x, training=training)
      boxes.append(_flatten_predictions(self._box_head(box_x),
                                        self._box_code_size))
      classes.append(_flatten_predictions(self._class_head(cls_x),
                                          self._num_class_slots))
    # Float32 outputs under a mixed precision policy: the box decoding, the
    # losses and NMS run in float32 (Keras mixed precision guide).
    return {BOX_ENCODINGS: tf.cast(tf.concat(boxes, axis=1), tf.float32),
            CLASS_PREDICTIONS_WITH_BACKGROUND:
                tf.cast(tf.concat(classes, axis=1), tf.float32)}
