"""SAPD's soft pyramid-level selection network.

Zhu et al. 2020, "Soft Anchor-Point Object Detection" (SAPD), section 3.3
"Soft Selection of Pyramid Levels": instead of assigning each object to one
FPN level by its size, a light network predicts, per object, how much every
level should contribute to the training loss. For each groundtruth box it
RoIAligns the box's features from all L levels, concatenates them along the
channels, runs a few convs and a fully connected layer, and a softmax over
the L outputs gives the per-level weights. This layer returns the logits; the
caller (SAPD's target assigner / loss) applies the softmax and its own
top-k / level-weight scheme.

  RoIAlign(box, P_l) for l = 1..L -> concat [crop, crop, L * C]
    -> `num_convs` x (3x3 conv `depth`, ReLU) -> global average pool
    -> dense (L) -> logits [B, N, L]

RoIAlign here: RoIAlign of He et al. 2017 with half-pixel alignment
(`aligned=True` in Detectron2 / mmcv) and one bilinear sample at the center
of each of the `crop_size` x `crop_size` bins, implemented with
`tf.image.crop_and_resize` on the map padded by one replicated border cell.
Box `[ymin, xmin, ymax, xmax]` normalized to the padded input frame covers
the continuous feature coordinates `[ymin * H_l, ymax * H_l]` (cell i spans
[i, i + 1], its center i + 0.5), which assumes the map covers exactly the
input frame (input size = H_l * stride_l, as for od_meta's padded inputs).
Samples less than half a cell outside the map read the border cell (as
RoIAlign's border clamp), samples further out read 0. Unlike
`roi_ops.crop_and_resize_features` (TF OD API convention, y -> y * (H - 1)),
this stays aligned on coarse levels (a 2x2 or 4x4 P7 map, where the
(H - 1) convention is off by up to half a cell, i.e. half the stride).

No gradient reaches the boxes (`tf.stop_gradient`), as in `roi_ops`.
"""

from typing import Optional

import tensorflow as tf

from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.heads import fcos_head
from od_meta.utils import keras_tracking

# Defaults of the selection network's convs (a dict argument overrides them).
_DEFAULT_HYPERPARAMS = {'activation': 'relu', 'use_batch_norm': False}


def roi_align(features, boxes, crop_size: int) -> tf.Tensor:
  """Half-pixel-aligned RoIAlign, one sample per bin center.

  Args:
    features: float [B, H, W, C] (cast to float32), H and W >= 1.
    boxes: float32 [B, N, 4] `[ymin, xmin, ymax, xmax]` normalized to the
      frame the feature map covers; N may be 0. No gradient flows into it.
    crop_size: positive int, bins per side.

  Returns:
    float32 [B * N, crop_size, crop_size, C], row b * N + n for box n of
    image b. Bin (i, j) holds the bilinear sample of the map at feature
    coordinates (ymin * H + (i + 0.5) * (ymax - ymin) * H / crop_size - 0.5,
    likewise x) in cell-center units (center of cell r at r), clamped to the
    border within half a cell of the map and 0 beyond.
  """
  features = tf.cast(features, tf.float32)
  boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
  shape = tf.shape(features)
  height = tf.cast(shape[1], tf.float32)
  width = tf.cast(shape[2], tf.float32)
  # SYMMETRIC padding by 1 replicates the border cell: padded cell r + 1 is
  # cell r, and padded coordinates 0 / H + 1 are the replicated borders.
  padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]],
                  mode='SYMMETRIC')
  flat = tf.reshape(boxes, [-1, 4])
  ymin, xmin, ymax, xmax = tf.unstack(flat, axis=1)
  half_bin_y = 0.5 * (ymax - ymin) * height / crop_size
  half_bin_x = 0.5 * (xmax - xmin) * width / crop_size
  # Continuous coordinate u (cell i = [i, i + 1]) -> padded center index
  # u - 0.5 + 1; crop_and_resize maps normalized v to v * (H + 2 - 1).
  first_y = (ymin * height + half_bin_y + 0.5) / (height + 1.0)
  last_y = (ymax * height - half_bin_y + 0.5) / (height + 1.0)
  first_x = (xmin * width + half_bin_x + 0.5) / (width + 1.0)
  last_x = (xmax * width - half_bin_x + 0.5) / (width + 1.0)
  sample_boxes = tf.stack([first_y, first_x, last_y, last_x], axis=1)
  box_shape = tf.shape(boxes)
  box_indices = tf.repeat(tf.range(box_shape[0]), box_shape[1])
  crops = tf.image.crop_and_resize(padded, sample_boxes, box_indices,
                                   [crop_size, crop_size], method='bilinear',
                                   extrapolation_value=0.0)
  static_b, static_n = boxes.shape[0], boxes.shape[1]
  total = (static_b * static_n
           if static_b is not None and static_n is not None else None)
  crops.set_shape([total, crop_size, crop_size, features.shape[-1]])
  return crops


class SoftLevelSelectionNetwork(keras_tracking.CheckpointTrackedCollections,
                                tf.keras.layers.Layer):
  """Per-box logits over the pyramid levels (SAPD section 3.3).

  Args (keyword-only):
    num_levels: L, the number of feature maps per call (and of logits).
    crop_size: RoIAlign bins per side (default 7).
    depth: channels of the convs (default 256).
    num_convs: 3x3 convs after the concatenation (default 2; 0 pools the
      concatenated crops directly).
    conv_hyperparams: None, ConvHyperparams or dict. None / dict: the
      defaults `activation='relu'`, `use_batch_norm=False` (convs with bias),
      a dict overriding the keys it names; a ConvHyperparams is used as
      given (with batch norm if it says so). Its initializer and regularizer
      also apply to the dense layer.
    name: layer name.

  Call:
    feature_maps: list of L float tensors [B, H_l, W_l, C] (same static C).
    boxes: float32 [B, N, 4] normalized `[ymin, xmin, ymax, xmax]` in the
      padded input frame; N may be 0 or dynamic.
    training: Python bool (batch norm, if configured).
    Returns float32 [B, N, L] logits (softmax over the last axis gives the
    level weights).

  Raises:
    ValueError: bad constructor values, a wrong number of feature maps,
      maps not of rank 4 or of different / unknown depths, boxes not
      [B, N, 4].
  """

  def __init__(self, *, num_levels: int, crop_size: int = 7, depth: int = 256,
               num_convs: int = 2, conv_hyperparams=None,
               name: Optional[str] = None, **kwargs):
    super().__init__(name=name, **kwargs)
    for arg, value, minimum in (('num_levels', num_levels, 1),
                                ('crop_size', crop_size, 1),
                                ('depth', depth, 1),
                                ('num_convs', num_convs, 0)):
      if int(value) < minimum:
        raise ValueError(f'{arg} must be >= {minimum}, got {value}')
    self._num_levels = int(num_levels)
    self._crop_size = int(crop_size)
    self._depth = int(depth)
    self._num_convs = int(num_convs)
    hp = fcos_head.resolve_conv_hyperparams(conv_hyperparams,
                                            _DEFAULT_HYPERPARAMS)
    self._hp = hp
    self._convs = [hp.build_conv_block(self._depth, 3, name=f'conv{j}')
                   for j in range(self._num_convs)]
    self._logits = tf.keras.layers.Dense(
        self._num_levels, kernel_initializer=hp.kernel_initializer(),
        kernel_regularizer=hp.kernel_regularizer(), name='level_logits')

  @property
  def num_levels(self) -> int:
    return self._num_levels

  def _check(self, feature_maps, boxes):
    owner = type(self).__name__
    if not isinstance(feature_maps, (list, tuple)):
      raise ValueError(f'{owner} expects a list of feature maps, got '
                       f'{type(feature_maps).__name__}')
    if len(feature_maps) != self._num_levels:
      raise ValueError(f'{owner}: got {len(feature_maps)} feature maps but '
                       f'num_levels is {self._num_levels}')
    for i, fmap in enumerate(feature_maps):
      if len(fmap.shape) != 4:
        raise ValueError(f'{owner}: feature map {i} must be [B, H, W, C], '
                         f'got shape {fmap.shape}')
    depths = [f.shape[-1] for f in feature_maps]
    if None in depths or len(set(depths)) != 1:
      raise ValueError(f'{owner}: all feature maps must have the same static '
                       f'depth, got {depths}')
    if boxes.shape.rank != 3 or (boxes.shape[-1] is not None and
                                 boxes.shape[-1] != 4):
      raise ValueError(f'{owner}: boxes must be [B, N, 4], got shape '
                       f'{boxes.shape}')

  def build(self, *args, **kwargs):
    # Sub-layers build on first use; shapes are checked in call.
    self.built = True

  def call(self, feature_maps, boxes, training=None):
    boxes = tf.stop_gradient(tf.cast(tf.convert_to_tensor(boxes),
                                     tf.float32))
    self._check(feature_maps, boxes)
    crops = [roi_align(fmap, boxes, self._crop_size) for fmap in feature_maps]
    x = tf.concat(crops, axis=-1)  # [B * N, crop, crop, L * C]
    # TF's CPU conv2d returns its *input* for an empty batch (then the bias
    # add fails), so with no boxes one zero row is appended and dropped
    # again; with boxes nothing is added (batch-norm statistics unchanged).
    num_rois = tf.shape(x)[0]
    x = tf.concat([x, tf.zeros(tf.concat(
        [[tf.maximum(1 - num_rois, 0)], tf.shape(x)[1:]], axis=0))], axis=0)
    for block in self._convs:
      x = hyperparams_lib.apply_layers(block, x, training=training)
    x = tf.reduce_mean(x, axis=[1, 2])
    logits = tf.cast(self._logits(x), tf.float32)[:num_rois]  # [B * N, L]
    box_shape = tf.shape(boxes)
    logits = tf.reshape(logits, tf.stack(
        [box_shape[0], box_shape[1], self._num_levels]))
    logits.set_shape([boxes.shape[0], boxes.shape[1], self._num_levels])
    return logits
