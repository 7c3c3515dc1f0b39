"""FCOS target assignment: locations inside a box, one size range per level.

Tian et al. 2019, "FCOS: Fully Convolutional One-Stage Object Detection"
(arXiv 1904.01355), Sec. 3.1-3.2, with the "center sampling" improvement of
the FCOS reference code (github.com/tianzhi0549/FCOS,
`fcos_core/modeling/rpn/fcos/loss.py`, `get_sample_region`; seed 002;
also Sec. 3.3 of the extended paper, arXiv 2006.09214):

  * Sec. 3.1: a location (x, y) is a candidate for box B if it falls inside
    B. Here: strictly inside, min(l*, t*, r*, b*) > 0, with l* = x - x0,
    t* = y - y0, r* = x1 - x, b* = y1 - y (input pixels).
  * Center sampling (radius r > 0): the location must instead fall strictly
    inside the "center region" of B on its level, the square of half-side
    r * stride around B's center intersected with B (as the reference code).
  * Sec. 3.2 (multi-level prediction): level i only keeps the locations
    with m_i < max(l*, t*, r*, b*) <= m_{i+1}; `size_ranges` holds
    [m_0, ..., m_L] (see `parse_size_ranges` for the exact convention).
  * Sec. 3.1 (ambiguous samples): a location that is a candidate for
    several boxes takes the box with the minimal area (ties: the lowest
    groundtruth row).

There are no ignored locations: a location matches its box or is negative
(-1).

The module also holds two helpers shared by the other location-based
assigners (`atss_target_assigner`, `sapd_target_assigner`):
`parse_size_ranges` and `select_lowest_cost`.
"""

import math

import tensorflow as tf

from od_meta.core import box_list_ops
from od_meta.core import matcher as matcher_lib
from od_meta.core import target_assigner

_INT32_MAX = 2**31 - 1


def parse_size_ranges(size_ranges):
  """Validates FCOS size-range boundaries and returns them as floats.

  Convention (used by `FCOSTargetAssigner` and `SAPDTargetAssigner`): with
  boundaries [m_0, m_1, ..., m_L], level i (0-based) accepts a regression
  extent e = max(l*, t*, r*, b*) (input pixels) when

    m_i < e <= m_{i+1},

  i.e. each range is open below and closed above, so the ranges are
  disjoint and a location at exactly m_{i+1} belongs to level i (FCOS Sec.
  3.2: "if max(l*, t*, r*, b*) > m_i or max(l*, t*, r*, b*) < m_{i-1}, it
  is set as a negative sample"; the reference code's intervals are closed
  at both ends).

  Special values: a last boundary of -1 or `inf` means no upper limit; a
  first boundary of -1 (the reference code's `object_sizes_of_interest`
  uses [-1, 64] for P3) means no lower limit and is read as 0, which is
  equivalent since e > 0 for every location inside its box. Any other -1 is
  read as infinity, and is then rejected as not increasing.

  Args:
    size_ranges: sequence of L + 1 Python numbers, e.g. [0, 64, 128, 256,
      512, -1] for the 5 levels P3-P7.

  Returns:
    list of L + 1 floats, the first 0 or positive, the last possibly inf.

  Raises:
    ValueError: (naming `size_ranges`) if there are fewer than 2 boundaries,
      a value is not a number, the first is negative (other than -1), or
      the boundaries are not strictly increasing.
  """
  try:
    values = [float(v) for v in size_ranges]
  except (TypeError, ValueError) as e:
    raise ValueError('size_ranges must be a sequence of numbers, got '
                     f'{size_ranges!r}.') from e
  if len(values) < 2:
    raise ValueError('size_ranges needs at least 2 boundaries (one level), '
                     f'got {size_ranges!r}.')
  if any(math.isnan(v) for v in values):
    raise ValueError(f'size_ranges must not hold NaN, got {size_ranges!r}.')
  if values[0] == -1.0:
    values[0] = 0.0
  values = [values[0]] + [math.inf if v == -1.0 else v for v in values[1:]]
  if values[0] < 0.0 or math.isinf(values[0]):
    raise ValueError('size_ranges must start at 0 or -1 (no lower limit) or '
                     f'a positive number, got {size_ranges!r}.')
  if any(b <= a for a, b in zip(values[:-1], values[1:])):
    raise ValueError('size_ranges must be strictly increasing (-1 or inf '
                     f'only as the last boundary), got {size_ranges!r}.')
  return values


def check_size_ranges_levels(size_ranges, levels):
  """Raises ValueError unless there is one more boundary than levels."""
  if len(size_ranges) != len(levels) + 1:
    raise ValueError(
        f'size_ranges has {len(size_ranges)} boundaries but the model has '
        f'{len(levels)} levels; it needs {len(levels) + 1}.')


def select_lowest_cost(candidates, cost):
  """For each anchor (column), the candidate row of lowest cost.

  Args:
    candidates: bool `[N, M]`, True where groundtruth row n may match
      anchor m.
    cost: float32 `[N, M]` (or broadcastable, e.g. `[N, 1]`).

  Returns:
    int32 `[M]`: the candidate row of minimal cost (ties: the lowest row),
    or -1 (unmatched) for a column without candidates. N may be 0.
  """
  cost = tf.broadcast_to(tf.cast(cost, tf.float32), tf.shape(candidates))
  masked = tf.where(candidates, cost, tf.fill(tf.shape(cost), math.inf))
  best = tf.reduce_min(masked, axis=0)
  rows = tf.range(tf.shape(candidates)[0], dtype=tf.int32)[:, tf.newaxis]
  is_best = candidates & tf.equal(masked, best[tf.newaxis])
  winner = tf.reduce_min(tf.where(is_best, rows, _INT32_MAX), axis=0)
  return tf.where(tf.reduce_any(candidates, axis=0), winner,
                  matcher_lib.UNMATCHED)


def pixel_boxes(boxlist, image_shape):
  """float32 `[K, 4]` boxes of a normalized BoxList in pixels."""
  height, width = image_shape[0], image_shape[1]
  return box_list_ops.to_absolute_coordinates(
      boxlist, height, width, check_range=False).get()


def check_image_shape(image_shape, owner):
  """Raises ValueError if `image_shape` is None or has no 2 entries."""
  if image_shape is None:
    raise ValueError(f'{owner} needs image_shape (height, width) in pixels: '
                     'its rules are in input pixels.')
  if isinstance(image_shape, (list, tuple)) and len(image_shape) != 2:
    raise ValueError(f'{owner}: image_shape must be (height, width), got '
                     f'{image_shape!r}.')


def side_distances(points_y, points_x, boxes):
  """(l, t, r, b) from points `[M]` to boxes `[N, 4]`, each `[N, M]`."""
  ymin, xmin, ymax, xmax = [t[:, tf.newaxis] for t in tf.unstack(boxes, axis=1)]
  return (points_x[tf.newaxis] - xmin, points_y[tf.newaxis] - ymin,
          xmax - points_x[tf.newaxis], ymax - points_y[tf.newaxis])


class FCOSTargetAssigner(target_assigner.AnchorTargetAssigner):
  """FCOS rule for positives (see the module docstring).

  Anchors are the FCOS locations: one box per location whose center is the
  location (for a location of a level with stride s, the square of side s
  centered on it, as `coordinates_grid` places it); only their centers are
  used by the rule. Anchors and groundtruth are normalized to the
  `image_shape` frame; every rule is evaluated in input pixels (y times
  height, x times width).

  `_match` returns a `Match` whose entries are the winning groundtruth row
  or -1 (no ignored anchors) and no soft weights.
  """

  def __init__(self, box_coder, size_ranges, center_sampling_radius=0.0,
               negative_class_weight=1.0):
    """Creates the assigner.

    Args:
      box_coder: a `BoxCoder` (typically `LtrbDistanceBoxCoder`); encodes
        the matched boxes against the location anchors.
      size_ranges: L + 1 boundaries in input pixels, e.g. [0, 64, 128,
        256, 512, -1] (FCOS Sec. 3.2); convention in `parse_size_ranges`
        (level i: m_i < max(l*, t*, r*, b*) <= m_{i+1}).
      center_sampling_radius: float >= 0; 0 disables center sampling, r > 0
        keeps locations inside the box's center region of half-side
        r * stride clipped to the box (1.5 in the reference code).
      negative_class_weight: float, classification weight of negative
        locations.

    Raises:
      ValueError: naming `size_ranges` if it has fewer than 2 boundaries or
        is not increasing; on a negative `center_sampling_radius`; if
        `box_coder` has no `encode` method.
    """
    super().__init__(box_coder, negative_class_weight)
    self._size_ranges = parse_size_ranges(size_ranges)
    if not center_sampling_radius >= 0:
      raise ValueError('center_sampling_radius must be >= 0, got '
                       f'{center_sampling_radius}.')
    self._center_sampling_radius = float(center_sampling_radius)

  @property
  def requires_levels(self):
    return True

  @property
  def size_ranges(self):
    """list of L + 1 float boundaries (0 first, inf for no upper limit)."""
    return list(self._size_ranges)

  def _match(self, anchors, groundtruth_boxes, valid_rows, levels,
             image_shape):
    """FCOS positives of one image.

    Args:
      anchors: BoxList `[M, 4]`, the locations' boxes, normalized.
      groundtruth_boxes: BoxList `[N, 4]`, normalized; N may be 0.
      valid_rows: bool `[N]`.
      levels: list of L `AnchorLevel` (stride in input pixels).
      image_shape: (height, width) in pixels.

    Returns:
      `MatchResult` with int32 `[M]` matches (row or -1).

    Raises:
      ValueError: if `image_shape` is None, or `size_ranges` does not have
        len(levels) + 1 boundaries.
    """
    check_image_shape(image_shape, type(self).__name__)
    check_size_ranges_levels(self._size_ranges, levels)
    anchors_px = pixel_boxes(anchors, image_shape)
    gt_px = pixel_boxes(groundtruth_boxes, image_shape)
    points_y = (anchors_px[:, 0] + anchors_px[:, 2]) / 2.0
    points_x = (anchors_px[:, 1] + anchors_px[:, 3]) / 2.0
    left, top, right, bottom = side_distances(points_y, points_x, gt_px)
    if self._center_sampling_radius > 0:
      radius = (self._center_sampling_radius *
                target_assigner.anchor_strides(levels))[tf.newaxis]
      center_y = ((gt_px[:, 0] + gt_px[:, 2]) / 2.0)[:, tf.newaxis]
      center_x = ((gt_px[:, 1] + gt_px[:, 3]) / 2.0)[:, tf.newaxis]
      ymin = tf.maximum(center_y - radius, gt_px[:, 0:1])
      xmin = tf.maximum(center_x - radius, gt_px[:, 1:2])
      ymax = tf.minimum(center_y + radius, gt_px[:, 2:3])
      xmax = tf.minimum(center_x + radius, gt_px[:, 3:4])
      inside = tf.reduce_min(tf.stack([
          points_x[tf.newaxis] - xmin, points_y[tf.newaxis] - ymin,
          xmax - points_x[tf.newaxis], ymax - points_y[tf.newaxis]]),
                             axis=0) > 0.0
    else:
      inside = tf.reduce_min(tf.stack([left, top, right, bottom]),
                             axis=0) > 0.0
    extent = tf.reduce_max(tf.stack([left, top, right, bottom]), axis=0)
    level_ids = target_assigner.anchor_level_indices(levels)
    lower = tf.gather(tf.constant(self._size_ranges[:-1], tf.float32),
                      level_ids)
    upper = tf.gather(tf.constant(self._size_ranges[1:], tf.float32),
                      level_ids)
    in_range = ((extent > lower[tf.newaxis]) &
                (extent <= upper[tf.newaxis]))
    candidates = inside & in_range & valid_rows[:, tf.newaxis]
    areas = ((gt_px[:, 2] - gt_px[:, 0]) *
             (gt_px[:, 3] - gt_px[:, 1]))[:, tf.newaxis]
    match = select_lowest_cost(candidates, areas)
    num_anchors = anchors.num_boxes_static()
    if num_anchors is not None:
      match.set_shape([num_anchors])
    return target_assigner.MatchResult(matcher_lib.Match(match))
