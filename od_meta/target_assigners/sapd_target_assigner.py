"""SAPD target assignment: soft-weighted anchor points on selected levels.

Zhu et al. 2020, "Soft Anchor-Point Object Detection" (ECCV 2020, arXiv
1911.12448):

  * Positives (Sec. 3.2, after FSAF's effective region): a location is a
    positive for box B when its center lies in B's effective region, B
    shrunk about its center to `shrink_factor` of its height and width
    (0.2 in SAPD / FSAF); the region is closed (a center on its border is
    inside).
  * Soft weights (Sec. 3.2, "soft-weighted anchor points"): a positive at
    distances (l, t, r, b) from its center to B's left, top, right and
    bottom sides (input pixels, each clamped to >= 0) gets

      w = (min(l, r) * min(t, b) / (max(l, r) * max(t, b))) ** eta,

    (0 where the denominator is 0); `eta = 0` gives w = 1 everywhere.
  * Pyramid levels (Sec. 3.3, "soft-selected pyramid levels"): in SAPD a
    meta-selection network picks and weights the levels of each box. This
    assigner provides the deterministic part: with `num_levels_per_box = k
    > 0` box B is assigned to k levels chosen by scale, with `num_levels_per
    _box = 0` to all levels (the model's selection network then weights
    them). See `SAPDTargetAssigner` for the exact level rule.
  * Ambiguous locations: a location positive for several boxes takes the
    box with the smallest area (input pixels^2; ties: the lowest row).

Addition (not in the paper), so that small boxes are never lost: if B's
effective region holds no location center on a level where B is assigned,
the location of that level whose center is nearest to B's center (L2, input
pixels; ties: the HIGHEST anchor index) is a positive for B with soft weight
1 (its formula weight may be 0: the location can lie outside a small box).
On a regular grid of point anchors (centers at i * s + s / 2, even s) this
is the location whose cell [i * s, (i + 1) * s) x [j * s, (j + 1) * s)
contains B's center: the highest-index tie break sends a center on a cell
border to the cell below / right, as the half-open cells do.

`_match` returns the winning row or -1 (nothing is ignored) and float32
`[M]` soft weights (0 for non-positives); `assign` multiplies them into the
class and regression weights of the positives.
"""

import math

import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import box_list_ops
from od_meta.core import matcher as matcher_lib
from od_meta.core import target_assigner
from od_meta.target_assigners import fcos_target_assigner


def _level_centers(size_ranges):
  """Geometric centers (pixels) of the levels' size ranges, Python floats."""
  if len(size_ranges) == 2:
    return [1.0]  # A single level: every box goes there.
  centers = []
  for lower, upper in zip(size_ranges[:-1], size_ranges[1:]):
    if lower <= 0.0:
      lower = upper / 2.0
    if math.isinf(upper):
      upper = 2.0 * lower
    centers.append(math.sqrt(lower * upper))
  return centers


class SAPDTargetAssigner(target_assigner.AnchorTargetAssigner):
  """SAPD rule for positives and soft weights (see the module docstring).

  Anchors are one box per location (side = the level's stride, centered on
  the location); only their centers are used. Anchors and groundtruth are
  normalized to the `image_shape` frame; the rules are in input pixels.

  Level rule. With size-range boundaries [m_0, ..., m_L] (FCOS convention,
  `fcos_target_assigner.parse_size_ranges`: level i holds scales in
  (m_i, m_{i+1}]) and box scale s = max(h, w) / 2 (input pixels; FCOS's
  max(l*, t*, r*, b*) at the box center):

    * the home level is the level i with m_i < s <= m_{i+1};
    * each level i has the geometric center c_i = sqrt(a_i * b_i) of its
      range [a_i, b_i] = [m_i, m_{i+1}], where a first range starting at 0
      counts as [m_1 / 2, m_1] and an open last range [m_{L-1}, inf) as
      [m_{L-1}, 2 m_{L-1}] (c_0 = 1 for a single level);
    * the box goes to its home level plus the k - 1 other levels of
      smallest |log2(s) - log2(c_i)| (ties: the lower level). A box with no
      home level (s above a finite last boundary) goes to the k levels of
      smallest distance.

  With doubling ranges (e.g. [0, 64, 128, 256, 512, -1]) k = 2 gives the
  home level and the adjacent level nearest in log scale.
  """

  def __init__(self, box_coder, size_ranges, shrink_factor=0.2, eta=1.0,
               num_levels_per_box=2, negative_class_weight=1.0):
    """Creates the assigner.

    Args:
      box_coder: a `BoxCoder` (typically `LtrbDistanceBoxCoder`).
      size_ranges: L + 1 boundaries in input pixels, e.g. [0, 64, 128, 256,
        512, -1]; convention in `fcos_target_assigner.parse_size_ranges`.
      shrink_factor: float in (0, 1], the effective region's fraction of
        the box height and width (0.2).
      eta: float >= 0, the soft weight exponent (1 in SAPD).
      num_levels_per_box: int >= 0, levels per box (0: all levels).
      negative_class_weight: float, classification weight of negatives.

    Raises:
      ValueError: naming the argument, if `size_ranges` has fewer than 2
        boundaries or is not increasing, `shrink_factor` is not in (0, 1],
        `eta` is negative or `num_levels_per_box` is not an int >= 0; if
        `box_coder` has no `encode` method.
    """
    super().__init__(box_coder, negative_class_weight)
    self._size_ranges = fcos_target_assigner.parse_size_ranges(size_ranges)
    if not 0.0 < shrink_factor <= 1.0:
      raise ValueError(
          f'shrink_factor must be in (0, 1], got {shrink_factor}.')
    if not eta >= 0.0:
      raise ValueError(f'eta must be >= 0, got {eta}.')
    if (isinstance(num_levels_per_box, bool) or
        not isinstance(num_levels_per_box, int) or num_levels_per_box < 0):
      raise ValueError('num_levels_per_box must be an int >= 0, got '
                       f'{num_levels_per_box!r}.')
    self._shrink_factor = float(shrink_factor)
    self._eta = float(eta)
    self._num_levels_per_box = num_levels_per_box
    self._level_centers = _level_centers(self._size_ranges)

  @property
  def requires_levels(self):
    return True

  def _select_levels(self, heights, widths):
    """bool `[N, L]`, the levels each box is assigned to (class docstring)."""
    num_levels = len(self._size_ranges) - 1
    num_gt = tf.shape(heights)[0]
    if self._num_levels_per_box == 0:
      return tf.ones(tf.stack([num_gt, num_levels]), tf.bool)
    scale = tf.maximum(tf.maximum(heights, widths) / 2.0, 1e-6)[:, tf.newaxis]
    lower = tf.constant(self._size_ranges[:-1], tf.float32)[tf.newaxis]
    upper = tf.constant(self._size_ranges[1:], tf.float32)[tf.newaxis]
    home = (scale > lower) & (scale <= upper)
    log_centers = tf.math.log(tf.constant(self._level_centers, tf.float32))
    distance = tf.abs(tf.math.log(scale) - log_centers[tf.newaxis]) / math.log(
        2.0)
    score = tf.where(home, -1.0, distance)
    _, chosen = tf.math.top_k(-score, k=self._num_levels_per_box)
    return tf.reduce_any(tf.one_hot(chosen, num_levels, on_value=True,
                                    off_value=False, dtype=tf.bool), axis=1)

  def _match(self, anchors, groundtruth_boxes, valid_rows, levels,
             image_shape):
    """SAPD positives and soft weights of one image.

    Args:
      anchors: BoxList `[M, 4]`, the locations' boxes, normalized.
      groundtruth_boxes: BoxList `[N, 4]`, normalized; N may be 0.
      valid_rows: bool `[N]`.
      levels: list of L `AnchorLevel`.
      image_shape: (height, width) in pixels.

    Returns:
      `MatchResult` with int32 `[M]` matches (row or -1) and float32 `[M]`
      positive weights (0 for negatives).

    Raises:
      ValueError: if `image_shape` is None, `size_ranges` does not have
        len(levels) + 1 boundaries, or `num_levels_per_box` exceeds the
        number of levels.
    """
    fcos_target_assigner.check_image_shape(image_shape, type(self).__name__)
    fcos_target_assigner.check_size_ranges_levels(self._size_ranges, levels)
    if self._num_levels_per_box > len(levels):
      raise ValueError(
          f'num_levels_per_box ({self._num_levels_per_box}) is larger than '
          f'the {len(levels)} levels of the model.')
    anchors_px = fcos_target_assigner.pixel_boxes(anchors, image_shape)
    gt_px = fcos_target_assigner.pixel_boxes(groundtruth_boxes, image_shape)
    anchor_list = box_list.BoxList(anchors_px)
    gt_list = box_list.BoxList(gt_px)
    points_y, points_x, _, _ = anchor_list.get_center_coordinates_and_sizes()
    center_y, center_x, heights, widths = (
        gt_list.get_center_coordinates_and_sizes())

    # Effective region: the box shrunk about its center (closed).
    half_h = (self._shrink_factor * heights / 2.0)[:, tf.newaxis]
    half_w = (self._shrink_factor * widths / 2.0)[:, tf.newaxis]
    in_region = (
        (tf.abs(points_y[tf.newaxis] - center_y[:, tf.newaxis]) <= half_h) &
        (tf.abs(points_x[tf.newaxis] - center_x[:, tf.newaxis]) <= half_w))

    # Fallback: the location nearest the box center on levels where the
    # effective region holds no location center.
    distances = box_list_ops.center_sq_dist(gt_list, anchor_list)  # [N, M]
    fallback = []
    for level_region, level_dist in zip(
        target_assigner.split_by_level(in_region, levels, axis=1),
        target_assigner.split_by_level(distances, levels, axis=1)):
      empty = tf.logical_not(
          tf.reduce_any(level_region, axis=1, keepdims=True))
      nearest = tf.equal(level_dist,
                         tf.reduce_min(level_dist, axis=1, keepdims=True))
      columns = tf.range(tf.shape(level_dist)[1])[tf.newaxis]
      pick = tf.reduce_max(tf.where(nearest, columns, -1), axis=1,
                           keepdims=True)
      fallback.append(tf.equal(columns, pick) & empty)
    fallback = tf.concat(fallback, axis=1)

    selected = tf.gather(self._select_levels(heights, widths),
                         target_assigner.anchor_level_indices(levels), axis=1)
    candidates = ((in_region | fallback) & selected &
                  valid_rows[:, tf.newaxis])
    areas = (heights * widths)[:, tf.newaxis]
    match = fcos_target_assigner.select_lowest_cost(candidates, areas)

    # Soft weights (SAPD Sec. 3.2) of every (box, location) pair.
    left, top, right, bottom = [
        tf.maximum(d, 0.0) for d in fcos_target_assigner.side_distances(
            points_y, points_x, gt_px)]
    if self._eta == 0.0:
      soft = tf.ones_like(left)
    else:
      ratio = tf.math.divide_no_nan(
          tf.minimum(left, right) * tf.minimum(top, bottom),
          tf.maximum(left, right) * tf.maximum(top, bottom))
      soft = tf.pow(ratio, self._eta)
    soft = tf.where(fallback, 1.0, soft)
    rows = tf.range(tf.shape(candidates)[0])[:, tf.newaxis]
    weights = tf.reduce_sum(
        tf.where(tf.equal(rows, match[tf.newaxis]), soft, 0.0), axis=0)
    num_anchors = anchors.num_boxes_static()
    if num_anchors is not None:
      match.set_shape([num_anchors])
      weights.set_shape([num_anchors])
    return target_assigner.MatchResult(matcher_lib.Match(match), weights)
