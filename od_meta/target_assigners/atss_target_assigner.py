"""ATSS target assignment: IoU threshold adapted per box (mean + std).

Zhang et al. 2020, "Bridging the Gap Between Anchor-based and Anchor-free
Detection via Adaptive Training Sample Selection" (arXiv 1912.02424), Sec.
3.2, Algorithm 1, as in the reference code (github.com/sfzhang15/ATSS,
`atss_core/modeling/rpn/atss/loss.py`, `prepare_targets`). For each valid
groundtruth box g:

  1. on each pyramid level, the `top_k` anchors whose centers are closest to
     g's center (L2 distance in input pixels; ties: the lower anchor index)
     are candidates C_g (top_k x L of them);
  2. D_g = IoU(g, C_g), computed with the anchors scaled by `anchor_scale`
     about their centers;
  3. t_g = mean(D_g) + std(D_g), with the UNBIASED standard deviation
     sqrt(sum (D - mean)^2 / (|C_g| - 1)) as the reference's `torch.std`;
     with a single candidate the std is 0 (torch would give NaN);
  4. positives: candidates with IoU >= t_g whose center lies strictly
     inside g (min(l, t, r, b) > 0 in pixels; the reference uses > 0.01);
  5. an anchor positive for several boxes takes the box of highest IoU
     (ties: the lowest groundtruth row).

Everything else is negative (-1); nothing is ignored.

Anchor-free use (ATSS Sec. 3.2 / 4, "ATSS" on FCOS): each location carries
one square "anchor" of side 8 * stride. With od_meta's location anchors of
side = stride, pass `anchor_scale=8`; with RetinaNet anchors, 1. The scale
only affects the IoUs; the regression targets are encoded against the
anchors as given.
"""

import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import box_list_ops
from od_meta.core import matcher as matcher_lib
from od_meta.core import target_assigner
from od_meta.target_assigners import fcos_target_assigner


class ATSSTargetAssigner(target_assigner.AnchorTargetAssigner):
  """ATSS rule for positives (see the module docstring).

  Anchors (all levels concatenated, `levels` describing the concatenation)
  and groundtruth are normalized to the `image_shape` frame; distances and
  the center-inside test are evaluated in input pixels.

  `top_k` counts anchors, not locations: with A anchors per location the
  reference code takes 9 * A per level, so pass `top_k=9 * A` to match it.
  If a level has fewer anchors than `top_k` its candidates are all its
  anchors when the count is dynamic; a static count raises (see `_match`).
  """

  def __init__(self, box_coder, top_k=9, anchor_scale=1.0,
               negative_class_weight=1.0):
    """Creates the assigner.

    Args:
      box_coder: a `BoxCoder`; encodes the matched boxes against the
        (unscaled) anchors.
      top_k: positive int, candidates per level and box (9 in ATSS).
      anchor_scale: positive float, factor applied to the anchors' height
        and width about their centers for the IoU (8 for location anchors
        of side = stride, 1 for RetinaNet anchors).
      negative_class_weight: float, classification weight of negatives.

    Raises:
      ValueError: on a non-positive `top_k` or `anchor_scale`, or if
        `box_coder` has no `encode` method.
    """
    super().__init__(box_coder, negative_class_weight)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
      raise ValueError(f'top_k must be a positive int, got {top_k!r}.')
    if not anchor_scale > 0:
      raise ValueError(f'anchor_scale must be positive, got {anchor_scale}.')
    self._top_k = top_k
    self._anchor_scale = float(anchor_scale)

  @property
  def requires_levels(self):
    return True

  def _check_top_k(self, levels):
    for i, level in enumerate(levels):
      count = tf.get_static_value(level.num_anchors)
      if count is not None and self._top_k > int(count):
        raise ValueError(
            f'atss top_k ({self._top_k}) is larger than the {int(count)} '
            f'anchors of levels[{i}] (stride {level.stride}); lower top_k '
            'or drop the level.')

  def _match(self, anchors, groundtruth_boxes, valid_rows, levels,
             image_shape):
    """ATSS positives of one image.

    Args:
      anchors: BoxList `[M, 4]`, normalized.
      groundtruth_boxes: BoxList `[N, 4]`, normalized; N may be 0.
      valid_rows: bool `[N]`.
      levels: list of L `AnchorLevel`.
      image_shape: (height, width) in pixels.

    Returns:
      `MatchResult` with int32 `[M]` matches (row or -1).

    Raises:
      ValueError: if `image_shape` is None, or `top_k` exceeds a level's
        static anchor count (naming `top_k` and the level).
    """
    fcos_target_assigner.check_image_shape(image_shape, type(self).__name__)
    self._check_top_k(levels)
    anchors_px = fcos_target_assigner.pixel_boxes(anchors, image_shape)
    gt_px = fcos_target_assigner.pixel_boxes(groundtruth_boxes, image_shape)
    anchor_list = box_list.BoxList(anchors_px)
    gt_list = box_list.BoxList(gt_px)
    center_y, center_x, heights, widths = (
        anchor_list.get_center_coordinates_and_sizes())
    half_h = self._anchor_scale * heights / 2.0
    half_w = self._anchor_scale * widths / 2.0
    scaled = box_list.BoxList(tf.stack(
        [center_y - half_h, center_x - half_w, center_y + half_h,
         center_x + half_w], axis=1))
    ious = box_list_ops.iou(gt_list, scaled)  # [N, M]
    distances = box_list_ops.center_sq_dist(gt_list, anchor_list)  # [N, M]
    inside = tf.reduce_min(tf.stack(fcos_target_assigner.side_distances(
        center_y, center_x, gt_px)), axis=0) > 0.0

    candidate_ids, candidate_ious = [], []
    offset = 0
    for level, level_dist, level_iou in zip(
        levels, target_assigner.split_by_level(distances, levels, axis=1),
        target_assigner.split_by_level(ious, levels, axis=1)):
      count = tf.get_static_value(level.num_anchors)
      if count is not None:
        k = min(self._top_k, int(count))
      else:
        k = tf.minimum(self._top_k, tf.cast(level.num_anchors, tf.int32))
      _, ids = tf.math.top_k(-level_dist, k=k, sorted=True)  # [N, k]
      candidate_ious.append(tf.gather(level_iou, ids, batch_dims=1))
      candidate_ids.append(ids + offset)
      offset = offset + level.num_anchors
    candidate_ids = tf.concat(candidate_ids, axis=1)  # [N, K]
    candidate_ious = tf.concat(candidate_ious, axis=1)
    num_candidates = tf.cast(tf.shape(candidate_ious)[1], tf.float32)
    mean = tf.reduce_mean(candidate_ious, axis=1, keepdims=True)
    variance = tf.reduce_sum(tf.square(candidate_ious - mean), axis=1,
                             keepdims=True) / tf.maximum(
                                 num_candidates - 1.0, 1.0)
    threshold = mean + tf.sqrt(variance)
    candidate_inside = tf.gather(inside, candidate_ids, batch_dims=1)
    candidate_positive = ((candidate_ious >= threshold) & candidate_inside &
                          valid_rows[:, tf.newaxis])

    num_gt = tf.shape(ious)[0]
    rows = tf.broadcast_to(tf.range(num_gt)[:, tf.newaxis],
                           tf.shape(candidate_ids))
    indices = tf.reshape(tf.stack([rows, candidate_ids], axis=-1), [-1, 2])
    positive = tf.scatter_nd(
        indices, tf.reshape(tf.cast(candidate_positive, tf.int32), [-1]),
        tf.shape(ious)) > 0
    match = fcos_target_assigner.select_lowest_cost(positive, -ious)
    num_anchors = anchors.num_boxes_static()
    if num_anchors is not None:
      match.set_shape([num_anchors])
    return target_assigner.MatchResult(matcher_lib.Match(match))
