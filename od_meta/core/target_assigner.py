"""Target assignment: classification and regression targets per anchor.

`TargetAssigner` is the anchor-based assigner of the TF OD API
(`object_detection/core/target_assigner.py`): compare groundtruth boxes with
anchors (a `RegionSimilarityCalculator`), match each anchor to at most one
groundtruth row (a `Matcher`: >= 0 matched row, -1 unmatched, -2 ignored),
then build, per anchor:

  * class targets: the matched groundtruth label row; unmatched and ignored
    anchors get `unmatched_class_label`;
  * class weights: the matched groundtruth weight; unmatched anchors get
    `negative_class_weight`; ignored anchors get 0;
  * regression targets: the matched groundtruth box encoded against the
    anchor by the `BoxCoder`; zeros for unmatched and ignored anchors;
  * regression weights: the matched groundtruth weight; 0 otherwise.

Groundtruth rows with weight 0 are passed to the matcher as invalid rows
(`valid_rows`), so they match nothing.

`DenseTargetAssigner` is the interface of the anchor-free (per-pixel)
assigners (CenterNet, TTFNet, CornerNet, FCOS) that live in
`od_meta/target_assigners/`; `coordinates_grid` is their shared pixel-center
convention.
"""

import abc

import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import standard_fields

BoxListFields = standard_fields.BoxListFields


class TargetAssigner:
  """Assigns classification and regression targets to anchors.

  Args:
    similarity_calc: a `RegionSimilarityCalculator` (e.g. IouSimilarity)
      whose `compare(groundtruth_boxlist, anchors_boxlist)` returns float32
      `[num_gt, num_anchors]`.
    matcher: a `Matcher` whose `match(similarity, valid_rows=...)` returns a
      `Match` over the anchors (columns).
    box_coder: a `BoxCoder`; `encode(boxes, anchors)` gives the regression
      targets `[num_anchors, code_size]`.
    negative_class_weight: float, classification weight of unmatched
      (negative) anchors.

  Raises:
    ValueError: if a component lacks the required method.
  """

  def __init__(self, similarity_calc, matcher, box_coder,
               negative_class_weight=1.0):
    for name, obj, method in (('similarity_calc', similarity_calc, 'compare'),
                              ('matcher', matcher, 'match'),
                              ('box_coder', box_coder, 'encode')):
      if not callable(getattr(obj, method, None)):
        raise ValueError(f'{name} must have a {method}() method, got '
                         f'{type(obj).__name__}.')
    self._similarity_calc = similarity_calc
    self._matcher = matcher
    self._box_coder = box_coder
    self._negative_class_weight = float(negative_class_weight)

  @property
  def box_coder(self):
    """The `BoxCoder` used for regression targets."""
    return self._box_coder

  def assign(self, anchors, groundtruth_boxes, groundtruth_labels=None,
             unmatched_class_label=None, groundtruth_weights=None):
    """Assigns targets to the anchors of one image.

    Args:
      anchors: BoxList with M anchors (yxyx, same frame as the groundtruth,
        normalized at od_meta's boundaries).
      groundtruth_boxes: BoxList with N groundtruth boxes. If it has a
        'keypoints' field (`[N, K, 2]`), the matched keypoints are carried to
        the box coder (for keypoint coders).
      groundtruth_labels: float32 `[N, d_1, ..., d_k]` (typically `[N, d]`
        one-hot or multi-hot, e.g. d = num_classes + 1 with background in
        column 0 for softmax heads, or num_classes for sigmoid heads).
        Default: ones `[N, 1]` (RPN objectness).
      unmatched_class_label: float32 `[d_1, ..., d_k]`, the class target of
        unmatched and ignored anchors. Default: zeros `[d_1, ..., d_k]`
        (so `[0]` for the default labels).
      groundtruth_weights: float32 `[N]`, per-box weights; 0 drops a box.
        Default: ones.

    Returns:
      cls_targets: float32 `[M, d_1, ..., d_k]`.
      cls_weights: float32 `[M, d_1, ..., d_k]` (the per-anchor weight
        tiled over the label dimensions, as in the TF OD API).
      reg_targets: float32 `[M, code_size]`.
      reg_weights: float32 `[M]`.
      match: the `Match` (match_results int32 `[M]`).

    Raises:
      ValueError: if anchors / groundtruth_boxes are not BoxLists, or the
        static shapes of labels, weights and boxes disagree.
    """
    if not isinstance(anchors, box_list.BoxList):
      raise ValueError('anchors must be a BoxList.')
    if not isinstance(groundtruth_boxes, box_list.BoxList):
      raise ValueError('groundtruth_boxes must be a BoxList.')
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

    with tf.name_scope('TargetAssigner'):
      similarity = self._similarity_calc.compare(groundtruth_boxes, anchors)
      match = self._matcher.match(
          similarity, valid_rows=tf.greater(groundtruth_weights, 0.0))
      reg_targets = self._create_regression_targets(anchors,
                                                    groundtruth_boxes, match)
      cls_targets = match.gather_based_on_match(
          groundtruth_labels, unmatched_value=unmatched_class_label,
          ignored_value=unmatched_class_label)
      reg_weights = match.gather_based_on_match(
          groundtruth_weights, unmatched_value=0.0, ignored_value=0.0)
      cls_weights = match.gather_based_on_match(
          groundtruth_weights, unmatched_value=self._negative_class_weight,
          ignored_value=0.0)
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
    return cls_targets, cls_weights, reg_targets, reg_weights, match

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


def batch_assign_targets(target_assigner, anchors_batch, gt_box_batch,
                         gt_class_targets_batch, unmatched_class_label=None,
                         gt_weights_batch=None):
  """Runs `target_assigner.assign` on each image and stacks the results.

  Args:
    target_assigner: a `TargetAssigner`.
    anchors_batch: a BoxList of anchors shared by all images, or a list of
      `batch` BoxLists with the same number of anchors M.
    gt_box_batch: list of `batch` groundtruth BoxLists.
    gt_class_targets_batch: list of `batch` float32 `[N_i, d, ...]` label
      tensors (entries may be None: objectness labels), or None.
    unmatched_class_label: float32 `[d, ...]` (see `assign`).
    gt_weights_batch: optional list of `batch` float32 `[N_i]` weights.

  Returns:
    batch_cls_targets: float32 `[batch, M, d, ...]`.
    batch_cls_weights: float32 `[batch, M, d, ...]`.
    batch_reg_targets: float32 `[batch, M, code_size]`.
    batch_reg_weights: float32 `[batch, M]`.
    match_list: list of `batch` Match objects.

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
                             unmatched_class_label, gt_weights)
      for anchors, gt_boxes, gt_labels, gt_weights in zip(
          anchors_batch, gt_box_batch, gt_class_targets_batch,
          gt_weights_batch)
  ]
  cls_targets, cls_weights, reg_targets, reg_weights, matches = zip(*results)
  return (tf.stack(cls_targets), tf.stack(cls_weights), tf.stack(reg_targets),
          tf.stack(reg_weights), list(matches))


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
  """Interface of anchor-free, per-pixel target assigners.

  Implementations (in `od_meta/target_assigners/`): CenterNet center
  heatmaps + size/offset, TTFNet elliptical Gaussian heatmaps + Gaussian
  weighted ltrb regression, CornerNet corner heatmaps + embeddings/offsets,
  FCOS per-level ltrb + centerness. They turn groundtruth given in
  normalized coordinates into dense targets at the output stride, computed
  in absolute pixels of the (padded) input image internally.

  Output location `(i, j)` has its center at input pixel
  `(i * stride + stride // 2, j * stride + stride // 2)`; see
  `coordinates_grid`, which implementations should use.
  """

  @property
  @abc.abstractmethod
  def stride(self):
    """Positive int, the output stride in input pixels."""

  @abc.abstractmethod
  def assign(self, height, width, groundtruth_boxes_list,
             groundtruth_classes_list, groundtruth_weights_list=None,
             **kwargs):
    """Builds batched dense targets.

    Args:
      height: int or int32 scalar, input image height in pixels (the output
        map has `height // stride` rows).
      width: int or int32 scalar, input image width in pixels.
      groundtruth_boxes_list: list of `batch` float32 `[N_i, 4]` normalized
        `[ymin, xmin, ymax, xmax]` (relative to the `height x width` input).
      groundtruth_classes_list: list of `batch` float32 `[N_i, num_classes]`
        one-hot (or int32 `[N_i]` 0-based ids, as the implementation
        documents).
      groundtruth_weights_list: optional list of `batch` float32 `[N_i]`;
        boxes with weight 0 produce no target.
      **kwargs: implementation-specific inputs (e.g. keypoints).

    Returns:
      dict name -> batched per-pixel target tensor at the output stride,
      e.g. `heatmap` float32 `[batch, height // stride, width // stride,
      num_classes]` plus regression targets and their weights; each
      implementation documents its keys, shapes, units and frame.
    """
