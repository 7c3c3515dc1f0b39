"""Target assignment: one vocabulary for anchor-based and anchor-free detectors.

The ATSS paper (Zhang et al. 2020, Sec. 3) shows that RetinaNet and FCOS
differ mainly in how they define positive and negative training samples.
od_meta therefore gives every sampling-location detector (SSD, RetinaNet,
Faster R-CNN's RPN and second stage, FCOS, ATSS, SAPD) the same interface:

  `AnchorTargetAssigner.assign(anchors, groundtruth_boxes, ...)` ->
  `TargetAssignment(cls_targets, cls_weights, reg_targets, reg_weights,
  matches)`

where "anchors" are the model's sampling locations on all levels,
concatenated level by level (boxes for anchor-based detectors; for
anchor-point detectors, one box per location whose center is the point and
whose side is the level's stride). The subclasses differ only in
`_match`, their rule for positives:

  * `TargetAssigner` (IoU + a `Matcher`: Argmax, Bipartite): TF OD API
    `object_detection/core/target_assigner.py`;
  * `od_meta.target_assigners.fcos_target_assigner.FCOSTargetAssigner`
    (points inside the box, size range per level, center sampling);
  * `od_meta.target_assigners.atss_target_assigner.ATSSTargetAssigner`
    (k nearest per level, IoU >= mean + std, center inside the box);
  * `od_meta.target_assigners.sapd_target_assigner.SAPDTargetAssigner`
    (shrunk box, soft weights by distance to the center).

From the match vector (`>= 0` matched groundtruth row, -1 unmatched, -2
ignored) the base class builds, per anchor:

  * class targets: the matched groundtruth label row; unmatched and ignored
    anchors get `unmatched_class_label`;
  * class weights: the matched groundtruth weight (times the rule's soft
    positive weight, if any); unmatched anchors get `negative_class_weight`;
    ignored anchors get 0;
  * regression targets: the matched groundtruth box encoded against the
    anchor by the `BoxCoder`; zeros for unmatched and ignored anchors;
  * regression weights: the matched groundtruth weight (times the soft
    weight); 0 otherwise.

Groundtruth rows with weight 0 are invalid rows: they match nothing.

`DenseTargetAssigner` is the interface of the heatmap assigners (CenterNet,
TTFNet, CornerNet) that draw per-pixel maps; it takes a list of
`FeatureLevel`s and returns one dict of targets per level (keys in
`standard_fields.DenseTargetFields`). `coordinates_grid` is the pixel-center
convention shared by both families.
"""

import abc
from typing import List, NamedTuple, Optional, Sequence

import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import box_list_ops
from od_meta.core import matcher as matcher_lib
from od_meta.core import standard_fields

BoxListFields = standard_fields.BoxListFields
TargetAssignmentFields = standard_fields.TargetAssignmentFields


class TargetAssignment(NamedTuple):
  """The result of every `AnchorTargetAssigner` (ATSS paper's one vocabulary).

  Per image, M anchors / locations (a leading batch dimension when batched by
  `batch_assign_targets`):

  Attributes:
    cls_targets: float32 `[M, d, ...]`, the class target rows.
    cls_weights: float32 `[M, d, ...]`, per-anchor weights tiled over the
      label dimensions.
    reg_targets: float32 `[M, code_size]`, box coder encodings.
    reg_weights: float32 `[M]`.
    matches: int32 `[M]`, `>= 0` matched groundtruth row, -1 unmatched
      (negative), -2 ignored.
  """
  cls_targets: tf.Tensor
  cls_weights: tf.Tensor
  reg_targets: tf.Tensor
  reg_weights: tf.Tensor
  matches: tf.Tensor

  def as_dict(self):
    """{`standard_fields.TargetAssignmentFields` key: tensor}."""
    return {
        TargetAssignmentFields.cls_targets: self.cls_targets,
        TargetAssignmentFields.cls_weights: self.cls_weights,
        TargetAssignmentFields.reg_targets: self.reg_targets,
        TargetAssignmentFields.reg_weights: self.reg_weights,
        TargetAssignmentFields.matches: self.matches,
    }

  def match_list(self):
    """`Match` objects, one per image, of a batched assignment."""
    return [matcher_lib.Match(m) for m in tf.unstack(self.matches)]


class AnchorLevel(NamedTuple):
  """One pyramid level of a concatenated anchor set.

  Attributes:
    stride: the level's output stride in input pixels (Python number or
      float32 scalar tensor).
    num_anchors: anchors of the level (locations x anchors per location),
      Python int or int32 scalar; levels are concatenated in order.
  """
  stride: float
  num_anchors: int


class FeatureLevel(NamedTuple):
  """One output map of a dense (heatmap) detector.

  Attributes:
    stride: positive Python int, output stride in input pixels.
    height: rows of the map (int or int32 scalar).
    width: columns of the map.
  """
  stride: int
  height: int
  width: int


class MatchResult(NamedTuple):
  """What an assigner's positive-sample rule returns (see `_match`).

  Attributes:
    match: a `Match` over the M anchors.
    positive_weights: optional float32 `[M]` soft weight of each positive
      (SAPD); None means 1.
  """
  match: matcher_lib.Match
  positive_weights: Optional[tf.Tensor] = None


class GroundtruthCoverage(NamedTuple):
  """Which groundtruth boxes of one image a detector's rule can learn from.

  Used by `scripts/analyze_dataset.py` and the training start-up check: a
  groundtruth box that no anchor / location can take as a positive gives no
  regression target and only a forced (poor) match, if any.

  Attributes:
    num_positives: int32 `[N]`, anchors / locations that are positives for
      the box under the assigner's own rule (IoU assigners: IoU >= the
      matcher's `matched_threshold`, without forced matches).
    level: int32 `[N]`, index (into the `levels` given) of the level holding
      most of the box's positives, ties to the finer level; -1 when it has
      none.
    best_iou: float32 `[N]`, the largest IoU of the box with any anchor (the
      "best possible" match quality); NaN where the rule has no anchor boxes
      (heatmap assigners).
    level_strides: float32 `[L]`, the stride (input pixels) of each level
      that `level` indexes; NaN where the levels were not given.
  """
  num_positives: tf.Tensor
  level: tf.Tensor
  best_iou: tf.Tensor
  level_strides: tf.Tensor

  @property
  def matched(self):
    """bool `[N]`: the box has at least one positive."""
    return tf.greater(self.num_positives, 0)


def _coverage_from_positives(positive, anchors, groundtruth_boxes, levels):
  """`GroundtruthCoverage` from a bool `[N, M]` positive-pair matrix."""
  positive = tf.cast(positive, tf.int32)
  num_positives = tf.reduce_sum(positive, axis=1)
  if levels:
    level_ids = anchor_level_indices(levels)
    per_level = tf.transpose(tf.math.unsorted_segment_sum(
        tf.transpose(positive), level_ids, len(levels)))  # [N, L]
    level = tf.argmax(per_level, axis=1, output_type=tf.int32)
    strides = tf.stack([tf.cast(l.stride, tf.float32) for l in levels])
  else:
    level = tf.zeros_like(num_positives)
    strides = tf.constant([float('nan')], tf.float32)
  level = tf.where(num_positives > 0, level, -1)
  iou = box_list_ops.iou(groundtruth_boxes, anchors)
  best_iou = tf.reduce_max(
      tf.concat([iou, tf.zeros_like(iou[:, :1])], axis=1), axis=1)
  return GroundtruthCoverage(num_positives, level, best_iou, strides)


def split_by_level(tensor, levels: Sequence[AnchorLevel], axis=0):
  """Splits a concatenated per-anchor tensor into its levels.

  Args:
    tensor: a tensor whose `axis` has sum(num_anchors) entries.
    levels: the `AnchorLevel`s of the concatenation.
    axis: the anchor axis.

  Returns:
    list of tensors, one per level.
  """
  return tf.split(tensor, [level.num_anchors for level in levels], axis=axis)


def anchor_strides(levels: Sequence[AnchorLevel]):
  """float32 `[M]`, the stride of each anchor's level, input pixels."""
  return tf.concat([
      tf.fill(tf.reshape(tf.cast(level.num_anchors, tf.int32), [1]),
              tf.cast(level.stride, tf.float32)) for level in levels], 0)


def anchor_level_indices(levels: Sequence[AnchorLevel]):
  """int32 `[M]`, the index (0-based, in `levels`) of each anchor's level."""
  return tf.concat([
      tf.fill(tf.reshape(tf.cast(level.num_anchors, tf.int32), [1]), i)
      for i, level in enumerate(levels)], 0)


class AnchorTargetAssigner(abc.ABC):
  """Base of the per-anchor (per-location) target assigners.

  Args:
    box_coder: a `BoxCoder`; `encode(boxes, anchors)` gives the regression
      targets `[num_anchors, code_size]`.
    negative_class_weight: float, classification weight of unmatched
      (negative) anchors.

  Raises:
    ValueError: if `box_coder` has no `encode` method.
  """

  def __init__(self, box_coder, negative_class_weight=1.0):
    if not callable(getattr(box_coder, 'encode', None)):
      raise ValueError('box_coder must have a encode() method, got '
                       f'{type(box_coder).__name__}.')
    self._box_coder = box_coder
    self._negative_class_weight = float(negative_class_weight)

  @property
  def box_coder(self):
    """The `BoxCoder` used for regression targets."""
    return self._box_coder

  @property
  def requires_levels(self) -> bool:
    """True when `assign` needs `levels` (rules that work per level)."""
    return False

  @abc.abstractmethod
  def _match(self, anchors, groundtruth_boxes, valid_rows, levels,
             image_shape) -> MatchResult:
    """The rule for positives of one image.

    Args:
      anchors: BoxList `[M, 4]`, normalized to the `image_shape` frame.
      groundtruth_boxes: BoxList `[N, 4]`, same frame.
      valid_rows: bool `[N]`, False for boxes that must match nothing.
      levels: list of `AnchorLevel` or None.
      image_shape: (height, width) in pixels of the frame, or None.

    Returns:
      a `MatchResult`.
    """

  def groundtruth_coverage(self, anchors, groundtruth_boxes, *,
                           levels: Optional[List[AnchorLevel]] = None,
                           image_shape=None) -> GroundtruthCoverage:
    """Which groundtruth boxes of one image this rule gives positives.

    The default counts, per box, the anchors whose `_match` result is that
    box (so overlapping boxes compete for anchors, as in training).

    Args:
      anchors: BoxList `[M, 4]`, normalized (padded input frame), levels
        concatenated.
      groundtruth_boxes: BoxList `[N, 4]`, same frame.
      levels: the `AnchorLevel`s of `anchors` (required by per-level rules;
        without them every box reports level 0).
      image_shape: (height, width) pixels of the frame.

    Returns:
      a `GroundtruthCoverage` over the N boxes.

    Raises:
      ValueError: if this rule needs `levels` and they are missing or do
        not add up to the anchors.
    """
    if self.requires_levels:
      _check_levels(levels, anchors, type(self).__name__)
    num_gt = groundtruth_boxes.num_boxes()
    result = self._match(anchors, groundtruth_boxes,
                         tf.ones(tf.reshape(num_gt, [1]), tf.bool), levels,
                         image_shape)
    positive = tf.equal(result.match.match_results[tf.newaxis, :],
                        tf.range(num_gt)[:, tf.newaxis])
    return _coverage_from_positives(positive, anchors, groundtruth_boxes,
                                    levels)

  def assign(self, anchors, groundtruth_boxes, groundtruth_labels=None,
             unmatched_class_label=None, groundtruth_weights=None, *,
             levels: Optional[List[AnchorLevel]] = None,
             image_shape=None) -> TargetAssignment:
    """Assigns targets to the anchors of one image.

    Args:
      anchors: BoxList with M anchors (yxyx, same frame as the groundtruth,
        normalized at od_meta's boundaries), all levels concatenated.
      groundtruth_boxes: BoxList with N groundtruth boxes. If it has a
        'keypoints' field (`[N, K, 2]`), the matched keypoints are carried to
        the box coder (for keypoint coders).
      groundtruth_labels: float32 `[N, d_1, ..., d_k]` (typically `[N, d]`
        one-hot or multi-hot, e.g. d = num_classes + 1 with background in
        column 0 for softmax heads, or num_classes for sigmoid heads).
        Default: ones `[N, 1]` (RPN objectness).
      unmatched_class_label: float32 `[d_1, ..., d_k]`, the class target of
        unmatched and ignored anchors. Default: zeros `[d_1, ..., d_k]`.
      groundtruth_weights: float32 `[N]`, per-box weights; 0 drops a box.
        Default: ones.
      levels: list of `AnchorLevel` describing how `anchors` concatenates
        the pyramid levels; required by per-level rules (FCOS, ATSS, SAPD).
      image_shape: (height, width), Python numbers or scalar tensors, the
        pixel size of the frame the boxes are normalized to; required by
        rules with pixel hyperparameters (FCOS size ranges, ATSS center
        distances).

    Returns:
      a `TargetAssignment` (see its attributes).

    Raises:
      ValueError: if anchors / groundtruth_boxes are not BoxLists, the static
        shapes of labels, weights and boxes disagree, or `levels` is
        required and missing or does not add up to the anchors.
    """
    if not isinstance(anchors, box_list.BoxList):
      raise ValueError('anchors must be a BoxList.')
    if not isinstance(groundtruth_boxes, box_list.BoxList):
      raise ValueError('groundtruth_boxes must be a BoxList.')
    if self.requires_levels:
      _check_levels(levels, anchors, type(self).__name__)
    num_gt_static = groundtruth_boxes.num_boxes_static()
    num_gt = groundtruth_boxes.num_boxes()
    if groundtruth_labels is None:
      groundtruth_labels = tf.ones(tf.stack([num_gt, 1]), tf.float32)
      if num_gt_static is not None:
        groundtruth_labels.set_shape([num_gt_static, 1])
    groundtruth_labels = tf.cast(
        tf.convert_to_tensor(groundtruth_labels), tf.float32)
    if groundtruth_labels.shape.rank is not None:
      if groundtruth_labels.shape.rank < 2:
        raise ValueError('groundtruth_labels must be [N, d, ...], got shape '
                         f'{groundtruth_labels.shape}.')
      if (num_gt_static is not None and
          groundtruth_labels.shape[0] is not None and
          groundtruth_labels.shape[0] != num_gt_static):
        raise ValueError(
            f'groundtruth_labels has {groundtruth_labels.shape[0]} rows but '
            f'groundtruth_boxes has {num_gt_static}.')
    label_shape = tf.shape(groundtruth_labels)[1:]
    if unmatched_class_label is None:
      unmatched_class_label = tf.zeros(label_shape, tf.float32)
      unmatched_class_label.set_shape(groundtruth_labels.shape[1:])
    unmatched_class_label = tf.cast(
        tf.convert_to_tensor(unmatched_class_label), tf.float32)
    if (unmatched_class_label.shape.is_fully_defined() and
        groundtruth_labels.shape[1:].is_fully_defined() and
        unmatched_class_label.shape != groundtruth_labels.shape[1:]):
      raise ValueError(
          f'unmatched_class_label has shape {unmatched_class_label.shape}, '
          f'expected {groundtruth_labels.shape[1:]} (groundtruth_labels '
          'without the first dimension).')
    if groundtruth_weights is None:
      groundtruth_weights = tf.ones(tf.reshape(num_gt, [1]), tf.float32)
      if num_gt_static is not None:
        groundtruth_weights.set_shape([num_gt_static])
    groundtruth_weights = tf.cast(
        tf.convert_to_tensor(groundtruth_weights), tf.float32)
    if groundtruth_weights.shape.rank is not None:
      if groundtruth_weights.shape.rank != 1:
        raise ValueError('groundtruth_weights must be [N], got shape '
                         f'{groundtruth_weights.shape}.')
      if (num_gt_static is not None and
          groundtruth_weights.shape[0] is not None and
          groundtruth_weights.shape[0] != num_gt_static):
        raise ValueError(
            f'groundtruth_weights has {groundtruth_weights.shape[0]} rows '
            f'but groundtruth_boxes has {num_gt_static}.')

    with tf.name_scope(type(self).__name__):
      result = self._match(anchors, groundtruth_boxes,
                           tf.greater(groundtruth_weights, 0.0), levels,
                           image_shape)
      match = result.match
      reg_targets = self._create_regression_targets(anchors,
                                                    groundtruth_boxes, match)
      cls_targets = match.gather_based_on_match(
          groundtruth_labels, unmatched_value=unmatched_class_label,
          ignored_value=unmatched_class_label)
      positive_weights = match.gather_based_on_match(
          groundtruth_weights, unmatched_value=0.0, ignored_value=0.0)
      if result.positive_weights is not None:
        positive_weights = positive_weights * tf.cast(
            result.positive_weights, tf.float32)
      reg_weights = positive_weights
      matched = tf.greater_equal(match.match_results, 0)
      unmatched = tf.equal(match.match_results, -1)
      cls_weights = tf.where(
          matched, positive_weights,
          tf.where(unmatched, self._negative_class_weight, 0.0))
      # Per-anchor class weights tiled over the label dimensions.
      label_rank = groundtruth_labels.shape.rank - 1
      cls_weights = tf.reshape(
          cls_weights, tf.concat([tf.shape(cls_weights),
                                  tf.ones([label_rank], tf.int32)], 0))
      cls_weights = tf.tile(
          cls_weights, tf.concat([[1], tf.shape(cls_targets)[1:]], 0))

    num_anchors = anchors.num_boxes_static()
    if num_anchors is not None:
      reg_targets.set_shape([num_anchors, self._box_coder.code_size])
      label_shape = tf.TensorShape([num_anchors]).concatenate(
          groundtruth_labels.shape[1:])
      cls_targets.set_shape(label_shape)
      cls_weights.set_shape(label_shape)
      reg_weights.set_shape([num_anchors])
    return TargetAssignment(cls_targets, cls_weights, reg_targets,
                            reg_weights, match.match_results)

  def _create_regression_targets(self, anchors, groundtruth_boxes, match):
    """Encodes the matched groundtruth; zeros for unmatched / ignored."""
    zeros_box = tf.zeros([4], tf.float32)
    matched_gt_boxes = match.gather_based_on_match(
        groundtruth_boxes.get(), unmatched_value=zeros_box,
        ignored_value=zeros_box)
    matched_gt_boxlist = box_list.BoxList(matched_gt_boxes)
    if groundtruth_boxes.has_field(BoxListFields.keypoints):
      keypoints = groundtruth_boxes.get_field(BoxListFields.keypoints)
      zeros_kp = tf.zeros(tf.shape(keypoints)[1:], keypoints.dtype)
      matched_keypoints = match.gather_based_on_match(
          keypoints, unmatched_value=zeros_kp, ignored_value=zeros_kp)
      matched_gt_boxlist.add_field(BoxListFields.keypoints, matched_keypoints)
    matched_reg_targets = self._box_coder.encode(matched_gt_boxlist, anchors)
    matched = tf.greater_equal(match.match_results, 0)
    # Unmatched rows encode a zero box (may be -inf / NaN): select zeros.
    return tf.where(matched[:, tf.newaxis], matched_reg_targets,
                    tf.zeros_like(matched_reg_targets))


def _check_levels(levels, anchors, owner):
  if not levels:
    raise ValueError(f'{owner} needs levels (a list of AnchorLevel), got '
                     f'{levels!r}.')
  counts = [l.num_anchors for l in levels]
  num = anchors.num_boxes_static()
  if num is not None and all(isinstance(c, int) for c in counts):
    if sum(counts) != num:
      raise ValueError(f'{owner}: the levels hold {sum(counts)} anchors '
                       f'({counts}) but anchors has {num}.')


class TargetAssigner(AnchorTargetAssigner):
  """IoU-based assigner: a similarity and a `Matcher` define positives.

  The TF OD API's `TargetAssigner`: compare groundtruth boxes with anchors
  (a `RegionSimilarityCalculator`), match each anchor to at most one
  groundtruth row (Argmax with thresholds, or Bipartite).

  Args:
    similarity_calc: a `RegionSimilarityCalculator` (e.g. IouSimilarity)
      whose `compare(groundtruth_boxlist, anchors_boxlist)` returns float32
      `[num_gt, num_anchors]`.
    matcher: a `Matcher` whose `match(similarity, valid_rows=...)` returns a
      `Match` over the anchors (columns).
    box_coder: a `BoxCoder`.
    negative_class_weight: float, classification weight of unmatched
      (negative) anchors.

  Raises:
    ValueError: if a component lacks the required method.
  """

  def __init__(self, similarity_calc, matcher, box_coder,
               negative_class_weight=1.0):
    for name, obj, method in (('similarity_calc', similarity_calc, 'compare'),
                              ('matcher', matcher, 'match')):
      if not callable(getattr(obj, method, None)):
        raise ValueError(f'{name} must have a {method}() method, got '
                         f'{type(obj).__name__}.')
    super().__init__(box_coder, negative_class_weight)
    self._similarity_calc = similarity_calc
    self._matcher = matcher

  def _match(self, anchors, groundtruth_boxes, valid_rows, levels,
             image_shape):
    del levels, image_shape  # IoU is the same in every frame and level.
    similarity = self._similarity_calc.compare(groundtruth_boxes, anchors)
    return MatchResult(self._matcher.match(similarity, valid_rows=valid_rows))

  def groundtruth_coverage(self, anchors, groundtruth_boxes, *, levels=None,
                           image_shape=None):
    """Boxes with an anchor at or above the matcher's `matched_threshold`.

    Forced matches (`force_match_for_each_row`) are not counted: they give
    every box one anchor however poor its overlap. For matchers without a
    threshold (bipartite) the matcher's own matches are counted. See
    `AnchorTargetAssigner.groundtruth_coverage` for the arguments.
    """
    threshold = getattr(self._matcher, 'matched_threshold', None)
    if threshold is None:
      return super().groundtruth_coverage(
          anchors, groundtruth_boxes, levels=levels, image_shape=image_shape)
    similarity = self._similarity_calc.compare(groundtruth_boxes, anchors)
    return _coverage_from_positives(similarity >= threshold, anchors,
                                    groundtruth_boxes, levels)


def batch_assign_targets(target_assigner, anchors_batch, gt_box_batch,
                         gt_class_targets_batch, unmatched_class_label=None,
                         gt_weights_batch=None, *, levels=None,
                         image_shape=None) -> TargetAssignment:
  """Runs `target_assigner.assign` on each image and stacks the results.

  Args:
    target_assigner: an `AnchorTargetAssigner`.
    anchors_batch: a BoxList of anchors shared by all images, or a list of
      `batch` BoxLists with the same number of anchors M.
    gt_box_batch: list of `batch` groundtruth BoxLists.
    gt_class_targets_batch: list of `batch` float32 `[N_i, d, ...]` label
      tensors (entries may be None: objectness labels), or None.
    unmatched_class_label: float32 `[d, ...]` (see `assign`).
    gt_weights_batch: optional list of `batch` float32 `[N_i]` weights.
    levels: optional list of `AnchorLevel` (see `assign`).
    image_shape: optional (height, width) pixels (see `assign`).

  Returns:
    a `TargetAssignment` with a leading batch dimension: cls_targets /
    cls_weights float32 `[batch, M, d, ...]`, reg_targets `[batch, M,
    code_size]`, reg_weights `[batch, M]`, matches int32 `[batch, M]`.

  Raises:
    ValueError: if the lists have different lengths or an anchors entry is
      not a BoxList.
  """
  if not isinstance(gt_box_batch, (list, tuple)):
    raise ValueError('gt_box_batch must be a list of BoxLists.')
  batch = len(gt_box_batch)
  if not isinstance(anchors_batch, (list, tuple)):
    anchors_batch = batch * [anchors_batch]
  if not all(isinstance(a, box_list.BoxList) for a in anchors_batch):
    raise ValueError('anchors_batch must be a BoxList or a list of BoxLists.')
  if gt_class_targets_batch is None:
    gt_class_targets_batch = batch * [None]
  if gt_weights_batch is None:
    gt_weights_batch = batch * [None]
  if not (len(anchors_batch) == batch == len(gt_class_targets_batch) ==
          len(gt_weights_batch)):
    raise ValueError(
        'anchors_batch, gt_box_batch, gt_class_targets_batch and '
        'gt_weights_batch must have the same length, got '
        f'{len(anchors_batch)}, {batch}, {len(gt_class_targets_batch)}, '
        f'{len(gt_weights_batch)}.')
  results = [
      target_assigner.assign(anchors, gt_boxes, gt_labels,
                             unmatched_class_label, gt_weights,
                             levels=levels, image_shape=image_shape)
      for anchors, gt_boxes, gt_labels, gt_weights in zip(
          anchors_batch, gt_box_batch, gt_class_targets_batch,
          gt_weights_batch)
  ]
  return TargetAssignment(*[tf.stack(list(parts)) for parts in zip(*results)])


def coordinates_grid(height, width, stride):
  """Input-image pixel coordinates of the centers of output locations.

  Convention shared by the dense (anchor-free) detectors: output location
  `(i, j)` of a map with output stride `stride` covers input pixels
  `[i * stride, (i + 1) * stride)` vertically (same for j horizontally) and
  its center is `(y, x) = (i * stride + stride // 2, j * stride + stride //
  2)` in input-image pixels (FCOS section 3.1 uses `floor(s / 2) + j * s`;
  CenterNet maps a center `p` to location `floor(p / stride)`, consistent
  with this). For stride 1 the center is the pixel itself.

  Args:
    height: int or int32 scalar tensor, rows of the output map (H // stride).
    width: int or int32 scalar tensor, columns of the output map.
    stride: positive Python int, the output stride in input pixels.

  Returns:
    float32 `[height, width, 2]`, (y, x) in input-image pixels.

  Raises:
    ValueError: if stride is not a positive int, or a static height / width
      is negative.
  """
  if isinstance(stride, bool) or not isinstance(stride, int) or stride <= 0:
    raise ValueError(f'stride must be a positive int, got {stride!r}.')
  for name, value in (('height', height), ('width', width)):
    if isinstance(value, int) and value < 0:
      raise ValueError(f'{name} must be >= 0, got {value}.')
  offset = float(stride // 2)
  ys = tf.cast(tf.range(height), tf.float32) * float(stride) + offset
  xs = tf.cast(tf.range(width), tf.float32) * float(stride) + offset
  grid_y, grid_x = tf.meshgrid(ys, xs, indexing='ij')
  return tf.stack([grid_y, grid_x], axis=-1)


class DenseTargetAssigner(abc.ABC):
  """Interface of the heatmap (per-pixel map) target assigners.

  Implementations (in `od_meta/target_assigners/`): CenterNet center
  heatmaps + size/offset, TTFNet elliptical Gaussian heatmaps + Gaussian
  weighted box regression, CornerNet corner heatmaps + embeddings/offsets.
  They turn groundtruth given in normalized coordinates into dense maps, one
  dict per output level, computed in absolute pixels of the (padded) input
  image internally; the dict keys are `standard_fields.DenseTargetFields`.

  Output location `(i, j)` of a level with stride s has its center at input
  pixel `(i * s + s // 2, j * s + s // 2)`; see `coordinates_grid`, which
  implementations should use.
  """

  @property
  @abc.abstractmethod
  def strides(self) -> List[int]:
    """The output strides (input pixels) of the levels this assigner draws."""

  def groundtruth_coverage(self, height, width,
                           levels: Sequence[FeatureLevel], groundtruth_boxes,
                           groundtruth_classes) -> GroundtruthCoverage:
    """Which groundtruth boxes of one image get their own heatmap peak.

    A heatmap detector (CenterNet, TTFNet) learns a box from the peak at
    its center cell; two boxes of the same class whose centers fall into
    the same cell of the output map share one peak, and only one of them
    can be detected (CenterNet, Zhou et al. 2019, Sec. 4, "center point
    collisions"). Per box: 1 positive when no other box of its class claims
    its center cell on the finest level (the later box loses a tie), else
    0; `best_iou` is NaN (no anchors).

    Args:
      height: input image height, pixels (padded frame).
      width: input image width, pixels.
      levels: the model's `FeatureLevel`s, finest first.
      groundtruth_boxes: float32 `[N, 4]` normalized yxyx, padded frame.
      groundtruth_classes: int32 `[N]` 0-based class ids.

    Returns:
      a `GroundtruthCoverage` (level 0 or -1; `level_strides` holds the
      finest level's stride).
    """
    stride = tf.cast(levels[0].stride, tf.float32)
    boxes = tf.cast(tf.reshape(groundtruth_boxes, [-1, 4]), tf.float32)
    size = tf.cast(tf.stack([height, width]), tf.float32)
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0 * size
    cells = tf.cast(tf.floor(centers / stride), tf.int32)
    classes = tf.cast(tf.reshape(groundtruth_classes, [-1]), tf.int32)
    key = tf.stack([classes, cells[:, 0], cells[:, 1]], axis=1)
    same = tf.reduce_all(key[:, tf.newaxis, :] == key[tf.newaxis, :, :],
                         axis=2)
    num = tf.shape(key)[0]
    earlier = tf.range(num)[tf.newaxis, :] < tf.range(num)[:, tf.newaxis]
    lost = tf.reduce_any(tf.logical_and(same, earlier), axis=1)
    num_positives = tf.where(lost, 0, 1)
    return GroundtruthCoverage(
        num_positives, tf.where(lost, -1, 0),
        tf.fill(tf.reshape(num, [1]), float('nan')), stride[tf.newaxis])

  @abc.abstractmethod
  def assign_levels(self, height, width, levels: Sequence[FeatureLevel],
                    groundtruth_boxes_list, groundtruth_classes_list,
                    groundtruth_weights_list=None, **kwargs) -> List[dict]:
    """Builds batched dense targets for every level.

    Args:
      height: int or int32 scalar, input image height in pixels.
      width: int or int32 scalar, input image width in pixels.
      levels: the `FeatureLevel`s of the model's output maps, finest first;
        their strides must equal `self.strides`.
      groundtruth_boxes_list: list of `batch` float32 `[N_i, 4]` normalized
        `[ymin, xmin, ymax, xmax]` (relative to the `height x width` input).
      groundtruth_classes_list: list of `batch` int32 `[N_i]` 0-based ids or
        float32 `[N_i, num_classes]` one-hot rows.
      groundtruth_weights_list: optional list of `batch` float32 `[N_i]`;
        boxes with weight 0 produce no target.
      **kwargs: implementation-specific inputs (e.g. keypoints).

    Returns:
      list (one per level) of dicts `DenseTargetFields` key -> batched
      target tensor `[batch, level.height, level.width, ...]` (plus per-image
      counts such as `num_objects` `[batch]`); each implementation documents
      its keys, shapes, units and frame.

    Raises:
      ValueError: if the levels' strides differ from `self.strides`.
    """


class SingleLevelDenseTargetAssigner(DenseTargetAssigner):
  """A dense assigner drawing one level (CenterNet, TTFNet): the one-level
  case of `DenseTargetAssigner`. Subclasses implement `stride` and
  `assign(height, width, ...)` returning the level's dict."""

  @property
  @abc.abstractmethod
  def stride(self) -> int:
    """Positive int, the output stride in input pixels."""

  @property
  def strides(self):
    return [self.stride]

  @abc.abstractmethod
  def assign(self, height, width, groundtruth_boxes_list,
             groundtruth_classes_list, groundtruth_weights_list=None,
             **kwargs) -> dict:
    """Targets of the single level; see `assign_levels`."""

  def assign_levels(self, height, width, levels, groundtruth_boxes_list,
                    groundtruth_classes_list, groundtruth_weights_list=None,
                    **kwargs):
    strides = [int(level.stride) for level in levels]
    if strides != self.strides:
      raise ValueError(f'{type(self).__name__} draws levels of strides '
                       f'{self.strides}, the model gives {strides}.')
    return [self.assign(height, width, groundtruth_boxes_list,
                        groundtruth_classes_list, groundtruth_weights_list,
                        **kwargs)]
