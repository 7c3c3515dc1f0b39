"""Box predictors of the two-stage meta-architectures (Faster R-CNN, R-FCN).

  * RPNBoxPredictor: Faster R-CNN's first stage (Ren et al. 2015, section
    3.1 "Region Proposal Networks"): a shared kxk conv (3x3, 512 channels)
    slid over the feature map, then two sibling 1x1 convs predicting, for
    each of the A anchors of a location, 4 box encodings and 2 objectness
    logits (background, object). Huang et al. 2017, section 2.1.2.
  * MaskRCNNBoxPredictor: Faster R-CNN's second-stage box classifier head
    (the TF OD API's MaskRCNNBoxPredictor without masks): global average
    pool of the per-proposal features from the box classifier layers (e.g.
    ResNet conv5), optional dropout, then fully connected class logits
    (num_classes + 1, column 0 = background) and per-class (or shared) box
    encodings. Huang et al. 2017, section 2.1.2 ("fc6"/"fc7" role).
  * RfcnBoxPredictor: R-FCN's position-sensitive head (Dai et al. 2016,
    section 2: k x k x (C + 1) position-sensitive score maps and
    k x k x 4 class-agnostic box maps, position-sensitive RoI pooling and
    voting), with bilinear crops as in Huang et al. 2017, section 3.6.2.

Box encodings are the raw regression outputs of whatever box coder the
meta-architecture uses (Faster R-CNN coder: [ty, tx, th, tw] scaled by
[10, 10, 5, 5], Huang et al. 2017 section 3.2.2); class / objectness outputs
are softmax logits with background at column 0.
"""

from typing import Optional, Sequence, Union

import tensorflow as tf

from od_meta.core import roi_ops
from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.heads import box_predictor
from od_meta.utils import keras_tracking
from od_meta.utils import shape_utils

BOX_ENCODINGS = box_predictor.BOX_ENCODINGS
CLASS_PREDICTIONS_WITH_BACKGROUND = (
    box_predictor.CLASS_PREDICTIONS_WITH_BACKGROUND)
OBJECTNESS_PREDICTIONS_WITH_BACKGROUND = (
    'objectness_predictions_with_background')


def _positive_int(value, name, owner):
  if int(value) < 1:
    raise ValueError(f'{owner}: {name} must be >= 1, got {value}')
  return int(value)


def _positive_pair(value, name, owner):
  """(h, w) positive ints from an int or a 2-sequence."""
  if isinstance(value, int):
    value = (value, value)
  value = tuple(value)
  if len(value) != 2:
    raise ValueError(f'{owner}: {name} must be an int or a (height, width) '
                     f'pair, got {value!r}')
  return (_positive_int(value[0], name, owner),
          _positive_int(value[1], name, owner))


def _check_rank(tensor, rank, name, layout, owner):
  if tensor.shape.rank != rank:
    raise ValueError(f'{owner}: {name} must be {layout} (rank {rank}), got '
                     f'shape {tensor.shape}')


def _flatten_yxa(x, code_size):
  """[B, H, W, A * code_size] -> [B, H * W * A, code_size], (y, x, a) order.

  Channel a * code_size + c of location (y, x) becomes row
  (y * W + x) * A + a, column c: the order of GridAnchorGenerator.
  """
  shape = shape_utils.combined_static_and_dynamic_shape(x)
  if all(isinstance(d, int) for d in shape[1:]):
    num = shape[1] * shape[2] * (shape[3] // code_size)
  else:
    num = -1
  return tf.reshape(x, [shape[0], num, code_size])


class RPNBoxPredictor(keras_tracking.CheckpointTrackedCollections,
                      tf.keras.layers.Layer):
  """Region proposal network head (Faster R-CNN first stage).

  Ren et al. 2015, section 3.1: an n x n (n = 3) conv of `depth` (512 for
  VGG-16) channels over the shared feature map, then two sibling 1x1 convs:
  box regression (A * 4 outputs per location) and objectness
  (A * 2 logits per location). As the TF OD API's first stage: the shared
  conv is `kernel_size` x `kernel_size` with dilation `atrous_rate`,
  followed by the hyperparams' batch norm (then no conv bias) or a bias, and
  the hyperparams' activation (ReLU6 / ReLU ...); the 1x1 convs have a bias
  and neither batch norm nor activation.

  Args:
    num_anchors_per_location: A, anchors per feature map location (the
      anchor generator's num_anchors_per_location()[0]).
    depth: channels of the shared conv (default 512).
    kernel_size: shared conv kernel (default 3).
    atrous_rate: shared conv dilation (default 1).
    conv_hyperparams: None (ConvHyperparams() defaults), a ConvHyperparams
      or a dict of its fields.
    box_code_size: values per box encoding (default 4).
    name: layer name.

  Call:
    feature_map: float32 [B, H, W, C].
    training: Python bool or None (batch norm).
    Returns {'box_encodings': float32 [B, H * W * A, box_code_size],
             'objectness_predictions_with_background': float32
                 [B, H * W * A, 2] (logits: background, object)},
    rows in (y, x, anchor) order: row (y * W + x) * A + a, the order of
    od_meta's GridAnchorGenerator.

  Raises:
    ValueError: non-positive constructor values; a feature map that is not
      rank 4.
  """

  def __init__(self, num_anchors_per_location: int, depth: int = 512,
               kernel_size: int = 3, atrous_rate: int = 1,
               conv_hyperparams=None, box_code_size: int = 4,
               name: Optional[str] = 'rpn_box_predictor', **kwargs):
    super().__init__(name=name, **kwargs)
    owner = type(self).__name__
    self._num_anchors = _positive_int(num_anchors_per_location,
                                      'num_anchors_per_location', owner)
    self._depth = _positive_int(depth, 'depth', owner)
    self._kernel_size = _positive_int(kernel_size, 'kernel_size', owner)
    self._atrous_rate = _positive_int(atrous_rate, 'atrous_rate', owner)
    self._box_code_size = _positive_int(box_code_size, 'box_code_size', owner)
    hp = hyperparams_lib.ConvHyperparams.create(conv_hyperparams)
    self._hp = hp
    self._shared_layers = hp.build_conv_block(
        self._depth, self._kernel_size, dilation_rate=self._atrous_rate,
        name='rpn_shared')
    self._box_conv = hp.build_conv2d(
        self._num_anchors * self._box_code_size, 1, use_bias=True,
        name='rpn_box_encoding')
    self._objectness_conv = hp.build_conv2d(
        self._num_anchors * 2, 1, use_bias=True, name='rpn_objectness')

  @property
  def num_anchors_per_location(self) -> int:
    return self._num_anchors

  def call(self, feature_map, training=None):
    feature_map = tf.convert_to_tensor(feature_map)
    _check_rank(feature_map, 4, 'feature_map', '[B, H, W, C]',
                type(self).__name__)
    x = hyperparams_lib.apply_layers(self._shared_layers, feature_map,
                                     training=training)
    boxes = _flatten_yxa(self._box_conv(x), self._box_code_size)
    objectness = _flatten_yxa(self._objectness_conv(x), 2)
    return {BOX_ENCODINGS: tf.cast(boxes, tf.float32),
            OBJECTNESS_PREDICTIONS_WITH_BACKGROUND:
                tf.cast(objectness, tf.float32)}


class MaskRCNNBoxPredictor(keras_tracking.CheckpointTrackedCollections,
                           tf.keras.layers.Layer):
  """Faster R-CNN second-stage box classifier (no mask branch).

  As the TF OD API's MaskRCNNBoxPredictor (MaskRCNNClassHead +
  MaskRCNNBoxHead): the per-proposal features are averaged over space, then
    * class head: dropout (rate 1 - dropout_keep_probability, training
      only, if `use_dropout`) -> Dense(num_classes + 1) logits;
    * box head: its own dropout -> Dense(num_box_classes * box_code_size),
      num_box_classes = 1 if `share_box_across_classes` else num_classes.
  Dense layers use `fc_hyperparams`' kernel initializer and L2 regularizer,
  with a bias and no activation.

  Args:
    num_classes: foreground classes (background excluded), >= 1.
    fc_hyperparams: None (ConvHyperparams() defaults), a ConvHyperparams or
      a dict of its fields; only the initializer and weight decay are used.
    use_dropout: dropout on the pooled features.
    dropout_keep_probability: keep probability in (0, 1].
    box_code_size: values per box encoding (default 4).
    share_box_across_classes: one class-agnostic box per proposal.
    name: layer name.

  Call:
    box_classifier_features: float32 [M, h, w, C] (M = B * N proposals,
      row b * N + n), M may be 0.
    training: Python bool or None (dropout).
    Returns {'box_encodings': float32 [M, num_box_classes, box_code_size]
                 (column k = foreground class id k),
             'class_predictions_with_background': float32
                 [M, num_classes + 1] logits (column 0 = background,
                 column k + 1 = class id k)}.

  Raises:
    ValueError: bad constructor values; features that are not rank 4.
  """

  def __init__(self, num_classes: int, fc_hyperparams=None,
               use_dropout: bool = False,
               dropout_keep_probability: float = 0.5,
               box_code_size: int = 4, share_box_across_classes: bool = False,
               name: Optional[str] = 'mask_rcnn_box_predictor', **kwargs):
    super().__init__(name=name, **kwargs)
    owner = type(self).__name__
    self._num_classes = _positive_int(num_classes, 'num_classes', owner)
    self._box_code_size = _positive_int(box_code_size, 'box_code_size', owner)
    if not 0.0 < float(dropout_keep_probability) <= 1.0:
      raise ValueError(f'{owner}: dropout_keep_probability must be in (0, 1], '
                       f'got {dropout_keep_probability}')
    self._use_dropout = bool(use_dropout)
    self._keep_prob = float(dropout_keep_probability)
    self._share_box = bool(share_box_across_classes)
    self._num_box_classes = 1 if self._share_box else self._num_classes
    hp = hyperparams_lib.ConvHyperparams.create(fc_hyperparams)
    self._hp = hp
    rate = 1.0 - self._keep_prob
    self._class_dropout = tf.keras.layers.Dropout(rate, name='class_dropout')
    self._box_dropout = tf.keras.layers.Dropout(rate, name='box_dropout')
    self._class_dense = tf.keras.layers.Dense(
        self._num_classes + 1, kernel_initializer=hp.kernel_initializer(),
        kernel_regularizer=hp.kernel_regularizer(), name='class_predictor')
    self._box_dense = tf.keras.layers.Dense(
        self._num_box_classes * self._box_code_size,
        kernel_initializer=hp.kernel_initializer(),
        kernel_regularizer=hp.kernel_regularizer(), name='box_encoding')

  @property
  def num_classes(self) -> int:
    return self._num_classes

  def call(self, box_classifier_features, training=None):
    features = tf.cast(tf.convert_to_tensor(box_classifier_features),
                       tf.float32)
    _check_rank(features, 4, 'box_classifier_features', '[M, h, w, C]',
                type(self).__name__)
    pooled = tf.reduce_mean(features, axis=[1, 2])  # [M, C]
    class_in, box_in = pooled, pooled
    if self._use_dropout:
      class_in = self._class_dropout(pooled, training=training)
      box_in = self._box_dropout(pooled, training=training)
    classes = self._class_dense(class_in)
    boxes = tf.reshape(self._box_dense(box_in),
                       [-1, self._num_box_classes, self._box_code_size])
    return {BOX_ENCODINGS: boxes, CLASS_PREDICTIONS_WITH_BACKGROUND: classes}


class RfcnBoxPredictor(keras_tracking.CheckpointTrackedCollections,
                       tf.keras.layers.Layer):
  """R-FCN head: position-sensitive score maps, pooling and voting.

  Dai et al. 2016, section 2: a 1x1 conv reduces the backbone features to
  `depth` (1024) channels (hyperparams' batch norm or bias, then
  activation); sibling 1x1 convs (bias, no batch norm, no activation) give
  k_h * k_w * (num_classes + 1) position-sensitive class score maps and
  k_h * k_w * box_code_size box maps (class-agnostic regression, the paper's
  default; `share_box_across_classes=False` gives per-class boxes as the TF
  OD API's RfcnBoxPredictor). Both are cropped per proposal with
  `roi_ops.position_sensitive_crop_regions` (bilinear bins of
  crop_size / num_spatial_bins cells, averaged, then voted over the bins;
  Huang et al. 2017, section 3.6.2: 3x3 bins / 12x12 crop for Inception v2
  and MobileNet, 7x7 / 21x21 for ResNet-101). Channel groups are bin-major:
  bin (i, j) reads channels [(i * k_w + j) * D, (i * k_w + j + 1) * D) with
  D = num_classes + 1 (class maps) or the box code depth (box maps).

  Args:
    num_classes: foreground classes (background excluded), >= 1.
    conv_hyperparams: None (ConvHyperparams() defaults), a ConvHyperparams
      or a dict of its fields.
    num_spatial_bins: (k_h, k_w) or an int (default (3, 3)).
    depth: channels of the reduction conv (default 1024).
    crop_size: (crop_h, crop_w) or an int, multiples of the bins
      (default (12, 12)).
    box_code_size: values per box encoding (default 4).
    share_box_across_classes: class-agnostic boxes (default True).
    name: layer name.

  Call:
    feature_map: float32 [B, H, W, C].
    proposal_boxes: float32 [B, N, 4], `[ymin, xmin, ymax, xmax]` normalized
      to the feature map's frame (the padded input image); N may be 0.
      No gradient flows into the boxes.
    training: Python bool or None (batch norm).
    Returns {'box_encodings': float32 [B * N, 1, box_code_size] (or
                 [B * N, num_classes, box_code_size] when not shared),
             'class_predictions_with_background': float32
                 [B * N, num_classes + 1] logits (column 0 = background)},
    row b * N + n for proposal n of image b.

  Raises:
    ValueError: bad constructor values (crop size not a multiple of the
      bins); inputs of the wrong rank.
  """

  def __init__(self, num_classes: int, conv_hyperparams=None,
               num_spatial_bins: Union[int, Sequence[int]] = (3, 3),
               depth: int = 1024,
               crop_size: Union[int, Sequence[int]] = (12, 12),
               box_code_size: int = 4, share_box_across_classes: bool = True,
               name: Optional[str] = 'rfcn_box_predictor', **kwargs):
    super().__init__(name=name, **kwargs)
    owner = type(self).__name__
    self._num_classes = _positive_int(num_classes, 'num_classes', owner)
    self._depth = _positive_int(depth, 'depth', owner)
    self._box_code_size = _positive_int(box_code_size, 'box_code_size', owner)
    self._num_spatial_bins = _positive_pair(num_spatial_bins,
                                            'num_spatial_bins', owner)
    self._crop_size = _positive_pair(crop_size, 'crop_size', owner)
    if (self._crop_size[0] % self._num_spatial_bins[0] or
        self._crop_size[1] % self._num_spatial_bins[1]):
      raise ValueError(f'{owner}: crop_size {self._crop_size} must be a '
                       'multiple of num_spatial_bins '
                       f'{self._num_spatial_bins}')
    self._share_box = bool(share_box_across_classes)
    self._num_box_classes = 1 if self._share_box else self._num_classes
    total_bins = self._num_spatial_bins[0] * self._num_spatial_bins[1]
    hp = hyperparams_lib.ConvHyperparams.create(conv_hyperparams)
    self._hp = hp
    self._shared_layers = hp.build_conv_block(self._depth, 1,
                                              name='reduce_depth')
    self._class_conv = hp.build_conv2d(
        total_bins * (self._num_classes + 1), 1, use_bias=True,
        name='class_score_maps')
    self._box_conv = hp.build_conv2d(
        total_bins * self._num_box_classes * self._box_code_size, 1,
        use_bias=True, name='box_encoding_maps')

  @property
  def num_classes(self) -> int:
    return self._num_classes

  def call(self, feature_map, proposal_boxes, training=None):
    owner = type(self).__name__
    feature_map = tf.cast(tf.convert_to_tensor(feature_map), tf.float32)
    proposal_boxes = tf.convert_to_tensor(proposal_boxes)
    _check_rank(feature_map, 4, 'feature_map', '[B, H, W, C]', owner)
    _check_rank(proposal_boxes, 3, 'proposal_boxes', '[B, N, 4]', owner)
    x = hyperparams_lib.apply_layers(self._shared_layers, feature_map,
                                     training=training)
    class_maps = self._class_conv(x)
    box_maps = self._box_conv(x)
    classes = roi_ops.position_sensitive_crop_regions(
        class_maps, proposal_boxes, self._crop_size, self._num_spatial_bins,
        global_pool=True)
    boxes = roi_ops.position_sensitive_crop_regions(
        box_maps, proposal_boxes, self._crop_size, self._num_spatial_bins,
        global_pool=True)
    classes = tf.reshape(classes, [-1, self._num_classes + 1])
    boxes = tf.reshape(boxes, [-1, self._num_box_classes,
                               self._box_code_size])
    return {BOX_ENCODINGS: boxes, CLASS_PREDICTIONS_WITH_BACKGROUND: classes}
