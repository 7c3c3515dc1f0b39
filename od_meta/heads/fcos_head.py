"""FCOS head: one fully convolutional head shared by all pyramid levels.

Tian et al. 2019, "FCOS: Fully Convolutional One-Stage Object Detection",
sections 3.1-3.3 and Fig. 2. On every FPN level P_l the same head runs

  * a classification tower and a regression tower, each
    `num_layers_before_predictor` (4) kxk convs of `depth` (256) channels,
    each conv followed by GroupNorm (32 groups) and ReLU;
  * a classification conv (kxk, `num_class_slots` sigmoid logits, no
    background slot) with the prior-probability bias
    -log((1 - 0.01) / 0.01) (Lin et al. 2017b, section 3.3);
  * a regression conv (kxk, 4 channels) whose output x gives the distances
    exp(s_l * x) with one learnable scalar s_l per level, initialized to 1
    (section 3.2, "exp(s_i x)"), so the predictions are always positive;
  * a centerness conv (kxk, 1 logit), on the regression tower (the later
    FCOS improvement, the reference implementation's default
    `CENTERNESS_ON_REG`) or on the classification tower (the paper's Fig. 2).

All weights, the GroupNorm parameters included, are shared by the levels
(GroupNorm normalizes each sample on its own, so sharing it is exact, unlike
batch norm); only the scales s_l are per level.

The layer has the call / return contract of
`box_predictor.WeightSharedConvolutionalBoxPredictor` with one "anchor"
(anchor point) per location:

  {'box_encodings': float32 [B, A, box_code_size] positive distances,
   'class_predictions_with_background': float32 [B, A, num_class_slots]
                                        logits,
   'centerness': float32 [B, A, 1] logits (when predict_centerness)}

with A = sum_l H_l * W_l, level-major then row-major (index
`offset_l + y * W_l + x`), the flattening of `box_predictor`. The distances are
in the box coder's units: for FCOS with `LtrbDistanceBoxCoder(scale=stride)`
(or normalized regression targets) that is distance / stride, so exp(0) = 1 is
one stride at initialization.

Design choices:
  * Tower convs keep a (zero-initialized) bias even with GroupNorm, as the
    reference implementation (tianzhi0549/FCOS `fcos_head.py`): unlike batch
    norm, GroupNorm over groups of several channels only removes the group
    mean of a per-channel bias, so the bias is not fully redundant.
  * Initialization as FCOS (section 4 follows RetinaNet): kernels
    N(0, 0.01^2), biases 0 except the class bias. A `conv_hyperparams`
    ConvHyperparams object is used as given (its initializer, regularizer and
    activation); a dict only overrides the keys it names, on top of the FCOS
    defaults `activation='relu'`, `initializer='random_normal'`,
    `initializer_stddev=0.01` (the L2 weight decay keeps the ConvHyperparams
    default). Its batch-norm fields are ignored: the towers use GroupNorm or
    nothing.
  * GroupNorm epsilon 1e-5 (PyTorch's `nn.GroupNorm` default, used by FCOS;
    Keras' default is 1e-3).
  * Overflow guard: s_l * x is clipped to at most `MAX_LOG_DISTANCE` = 10
    before the exp (exp(10) ~ 2.2e4 strides, far beyond any image), so a
    diverging regression output gives a large finite distance instead of
    inf / NaN in the loss. The clip is straight-through: the gradient of the
    clipped value w.r.t. s_l * x is 1, so an output stuck above the clip still
    gets a gradient pulling it back (a plain `tf.minimum` would zero it).
"""

from typing import Optional

import tensorflow as tf

from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.heads import box_predictor
from od_meta.utils import keras_tracking

BOX_ENCODINGS = box_predictor.BOX_ENCODINGS
CLASS_PREDICTIONS_WITH_BACKGROUND = (
    box_predictor.CLASS_PREDICTIONS_WITH_BACKGROUND)
CENTERNESS = 'centerness'

# The flattening of box_predictor (same anchor order as the SSD heads).
# pylint: disable-next=protected-access
_flatten = box_predictor._flatten_predictions

# Upper clip of s_l * x before the exp (see the module docstring).
MAX_LOG_DISTANCE = 10.0

# FCOS defaults for the conv hyperparameters (a dict argument overrides them).
_FCOS_HYPERPARAMS = {'activation': 'relu', 'initializer': 'random_normal',
                     'initializer_stddev': 0.01}


def resolve_conv_hyperparams(value, defaults
                             ) -> hyperparams_lib.ConvHyperparams:
  """ConvHyperparams from None / dict (on top of `defaults`) / object.

  None gives `ConvHyperparams(**defaults)`; a dict overrides only the keys it
  names; a ConvHyperparams is returned unchanged.
  """
  if value is None:
    return hyperparams_lib.ConvHyperparams.create(dict(defaults))
  if isinstance(value, hyperparams_lib.ConvHyperparams):
    return value
  if isinstance(value, dict):
    merged = dict(defaults)
    merged.update(value)
    return hyperparams_lib.ConvHyperparams.create(merged)
  return hyperparams_lib.ConvHyperparams.create(value)  # raises ValueError


def _clip_straight_through(x, max_value):
  """min(x, max_value) in the forward pass, identity gradient."""
  return x + tf.stop_gradient(tf.minimum(x, max_value) - x)


class FCOSHead(keras_tracking.CheckpointTrackedCollections,
               tf.keras.layers.Layer):
  """FCOS head shared by `num_levels` pyramid levels (see module docstring).

  Args (keyword-only):
    num_class_slots: sigmoid logits per location (num_classes, no
      background).
    num_levels: number of feature maps (pyramid levels) per call.
    depth: tower channels (default 256).
    num_layers_before_predictor: convs per tower (default 4; 0 puts the
      prediction convs directly on the feature maps).
    kernel_size: kernel of every conv (default 3).
    use_group_norm: GroupNorm after each tower conv (default True).
    group_norm_groups: GroupNorm groups (default 32); `depth` must be
      divisible by it.
    class_prediction_bias_init: class-logit bias (default prior 0.01).
    predict_centerness: add the centerness output (default True).
    centerness_on_regression_branch: centerness conv on the regression
      tower (default) or, False, on the classification tower (paper Fig. 2).
    use_scales: learnable per-level scalar s_l in exp(s_l * x) (default
      True); False uses exp(x).
    box_code_size: regression outputs per location (default 4).
    use_depthwise: depthwise separable convs (SeparableConv2D) everywhere.
    conv_hyperparams: None, ConvHyperparams or dict (see module docstring).
    name: layer name.

  Call:
    feature_maps: list of `num_levels` float tensors [B, H_l, W_l, C], the
      same static C for all levels.
    training: unused by the layers (GroupNorm has no train / eval mode);
      passed on for API compatibility.
    Returns the dict of the module docstring (all float32).

  Raises:
    ValueError: bad constructor values (`depth` not divisible by
      `group_norm_groups` when use_group_norm), a wrong number of feature
      maps, feature maps not of rank 4 or of different depths.
  """

  def __init__(self, *, num_class_slots: int, num_levels: int,
               depth: int = 256, num_layers_before_predictor: int = 4,
               kernel_size: int = 3, use_group_norm: bool = True,
               group_norm_groups: int = 32,
               class_prediction_bias_init: float = (
                   box_predictor.prior_probability_bias(0.01)),
               predict_centerness: bool = True,
               centerness_on_regression_branch: bool = True,
               use_scales: bool = True, box_code_size: int = 4,
               use_depthwise: bool = False, conv_hyperparams=None,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    for arg, value, minimum in (
        ('num_class_slots', num_class_slots, 1),
        ('num_levels', num_levels, 1), ('depth', depth, 1),
        ('num_layers_before_predictor', num_layers_before_predictor, 0),
        ('kernel_size', kernel_size, 1), ('box_code_size', box_code_size, 1),
        ('group_norm_groups', group_norm_groups, 1)):
      if int(value) < minimum:
        raise ValueError(f'{arg} must be >= {minimum}, got {value}')
    if use_group_norm and int(depth) % int(group_norm_groups):
      raise ValueError(
          f'depth {depth} must be divisible by group_norm_groups '
          f'{group_norm_groups} when use_group_norm is True')
    self._num_class_slots = int(num_class_slots)
    self._num_levels = int(num_levels)
    self._depth = int(depth)
    self._num_layers = int(num_layers_before_predictor)
    self._kernel_size = int(kernel_size)
    self._use_group_norm = bool(use_group_norm)
    self._group_norm_groups = int(group_norm_groups)
    self._predict_centerness = bool(predict_centerness)
    self._centerness_on_reg = bool(centerness_on_regression_branch)
    self._use_scales = bool(use_scales)
    self._box_code_size = int(box_code_size)
    self._use_depthwise = bool(use_depthwise)
    self._hp = resolve_conv_hyperparams(conv_hyperparams, _FCOS_HYPERPARAMS)

    self._class_tower = self._tower('class_tower')
    self._box_tower = self._tower('box_tower')
    self._class_head = self._conv(
        self._num_class_slots, float(class_prediction_bias_init),
        'class_predictor')
    self._box_head = self._conv(self._box_code_size, 0.0, 'box_predictor')
    self._centerness_head = (
        self._conv(1, 0.0, 'centerness_predictor')
        if self._predict_centerness else None)
    self._activation = self._hp.build_activation(name='tower_activation')
    self._scales = []

  def _conv(self, filters, bias_init, name):
    bias = tf.keras.initializers.Constant(bias_init)
    if self._use_depthwise:
      return self._hp.build_separable_conv2d(
          filters, self._kernel_size, use_bias=True, bias_initializer=bias,
          name=name)
    return self._hp.build_conv2d(filters, self._kernel_size, use_bias=True,
                                 bias_initializer=bias, name=name)

  def _tower(self, name):
    """[(conv, GroupNorm or None)] * num_layers, shared by all levels."""
    layers = []
    for j in range(self._num_layers):
      conv = self._conv(self._depth, 0.0, f'{name}_conv{j}')
      norm = (tf.keras.layers.GroupNormalization(
          groups=self._group_norm_groups, epsilon=1e-5,
          name=f'{name}_gn{j}') if self._use_group_norm else None)
      layers.append([conv, norm] if norm is not None else [conv])
    return layers

  @property
  def num_class_slots(self) -> int:
    return self._num_class_slots

  @property
  def num_predictions_per_location_list(self):
    return [1] * self._num_levels

  @property
  def predict_centerness(self) -> bool:
    """Whether the head has the centerness output."""
    return self._predict_centerness

  @property
  def scales(self):
    """The per-level scale variables s_l ([] when use_scales is False)."""
    return list(self._scales)

  def _check(self, shapes):
    owner = type(self).__name__
    if len(shapes) != self._num_levels:
      raise ValueError(f'{owner}: got {len(shapes)} feature maps but '
                       f'num_levels is {self._num_levels}')
    for i, shape in enumerate(shapes):
      if len(shape) != 4:
        raise ValueError(f'{owner}: feature map {i} must be [B, H, W, C], '
                         f'got shape {tuple(shape)}')
    depths = [shape[-1] for shape in shapes]
    if None in depths or len(set(depths)) != 1:
      raise ValueError(f'{owner}: all feature maps must have the same static '
                       f'depth, got {depths}')

  def build(self, input_shape):
    if not isinstance(input_shape, (list, tuple)) or (
        input_shape and not isinstance(input_shape[0], (list, tuple))):
      raise ValueError(f'{type(self).__name__} expects a list of feature '
                       f'maps, got input shape {input_shape}')
    self._check([tuple(s) for s in input_shape])
    if self._use_scales:
      self._scales = [
          self.add_weight(name=f'scale_{level}', shape=(),
                          initializer=tf.keras.initializers.Constant(1.0),
                          trainable=True)
          for level in range(self._num_levels)]
    self.built = True

  def _apply_tower(self, tower, x):
    for layers in tower:
      for layer in layers:
        x = layer(x)
      x = self._activation(x)
    return x

  def call(self, feature_maps, training=None):
    del training  # GroupNorm and the convs behave alike in training / eval.
    if not isinstance(feature_maps, (list, tuple)):
      raise ValueError(f'{type(self).__name__} expects a list of feature '
                       f'maps, got {type(feature_maps).__name__}')
    self._check([tuple(f.shape) for f in feature_maps])
    boxes, classes, centerness = [], [], []
    for level, fmap in enumerate(feature_maps):
      cls_x = self._apply_tower(self._class_tower, fmap)
      box_x = self._apply_tower(self._box_tower, fmap)
      raw = tf.cast(self._box_head(box_x), tf.float32)
      if self._use_scales:
        raw = raw * tf.cast(self._scales[level], tf.float32)
      distances = tf.exp(_clip_straight_through(raw, MAX_LOG_DISTANCE))
      boxes.append(_flatten(distances, self._box_code_size))
      classes.append(_flatten(
          tf.cast(self._class_head(cls_x), tf.float32),
          self._num_class_slots))
      if self._predict_centerness:
        ctr_x = box_x if self._centerness_on_reg else cls_x
        centerness.append(_flatten(
            tf.cast(self._centerness_head(ctr_x), tf.float32), 1))
    outputs = {BOX_ENCODINGS: tf.concat(boxes, axis=1),
               CLASS_PREDICTIONS_WITH_BACKGROUND: tf.concat(classes, axis=1)}
    if self._predict_centerness:
      outputs[CENTERNESS] = tf.concat(centerness, axis=1)
    return outputs
