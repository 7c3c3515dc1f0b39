"""Operations on `BoxList`s: areas, overlaps, clipping, pruning, gathering, NMS.

Modelled on the TF Object Detection API's
`object_detection/core/box_list_ops.py`
(same function names and argument names where the concept is the same),
written fresh for TensorFlow 2. Every function works eagerly and inside
`tf.function`, with a dynamic number of boxes, including zero.

Boxes are float32 `[ymin, xmin, ymax, xmax]`. Unless a function says
otherwise, it is frame-agnostic (normalized or absolute pixels: the output is
in the frame of the input). Functions that return a new `BoxList` copy the
extra fields of the input (gathered where boxes are removed) unless `fields`
restricts them.

The overlap measures (`intersection`, `iou`, `ioa`, `giou` and their
`matched_` and `batch_` forms) are written on raw tensors with broadcasting
(`_pairwise_*`), so that the per-image and batched forms share one
implementation. They are small enough that we write them here instead of
going through `official.vision.ops.box_ops` (whose module pulls in tf_keras
at import time); their numbers agree with `box_ops.bbox_overlap` for
well-formed boxes.
"""

import tensorflow as tf

from od_meta.core import box_list
from od_meta.utils import shape_utils


class SortOrder:
  """Sort orders for `sort_by_field`."""
  ascend = 1
  descend = 2


def _check_boxlist(boxlist, name='boxlist'):
  if not isinstance(boxlist, box_list.BoxList):
    raise ValueError(f'{name} must be a BoxList, got {type(boxlist).__name__}')


def _as_window(window):
  """Converts `window` to a float32 [4] tensor, raising on a bad shape."""
  window = tf.convert_to_tensor(window, dtype=tf.float32)
  if window.shape.rank is not None and window.shape.as_list() != [4]:
    raise ValueError(f'window must have shape [4], got {window.shape}')
  return window


def _copy_extra_fields(boxlist_to_copy_to, boxlist_to_copy_from):
  """Copies the extra fields of one BoxList to another (same number of rows)."""
  for field in boxlist_to_copy_from.get_extra_fields():
    boxlist_to_copy_to.add_field(field, boxlist_to_copy_from.get_field(field))
  return boxlist_to_copy_to


def area(boxlist):
  """Computes the area of each box.

  Args:
    boxlist: BoxList with N boxes.

  Returns:
    float32 `[N]`, `(ymax - ymin) * (xmax - xmin)` in squared units of the
    boxes' frame. Malformed boxes (max < min on one axis) give negative areas,
    as in the TF OD API.
  """
  _check_boxlist(boxlist)
  return _area(boxlist.get())


def _area(boxes):
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return (ymax - ymin) * (xmax - xmin)


def height_width(boxlist):
  """Returns `(heights, widths)`, each float32 `[N]`, in the boxes' frame."""
  _check_boxlist(boxlist)
  ymin, xmin, ymax, xmax = tf.unstack(boxlist.get(), axis=1)
  return ymax - ymin, xmax - xmin


def scale(boxlist, y_scale, x_scale):
  """Multiplies y coordinates by `y_scale` and x coordinates by `x_scale`.

  Args:
    boxlist: BoxList with N boxes.
    y_scale: float scalar (Python or tensor).
    x_scale: float scalar (Python or tensor).

  Returns:
    BoxList with the scaled boxes and the extra fields of `boxlist`.
    Keypoints are not rescaled (use the keypoint ops for those).
  """
  _check_boxlist(boxlist)
  y_scale = tf.cast(y_scale, tf.float32)
  x_scale = tf.cast(x_scale, tf.float32)
  ymin, xmin, ymax, xmax = tf.unstack(boxlist.get(), axis=1)
  scaled = box_list.BoxList(tf.stack(
      [ymin * y_scale, xmin * x_scale, ymax * y_scale, xmax * x_scale],
      axis=1))
  return _copy_extra_fields(scaled, boxlist)


def clip_to_window(boxlist, window, filter_nonoverlapping=True):
  """Clips boxes to a window.

  Args:
    boxlist: BoxList with N boxes.
    window: float32 `[4]` `[ymin, xmin, ymax, xmax]`, same frame as the boxes.
    filter_nonoverlapping: if True, drops the boxes whose clipped area is
      zero (those that did not overlap the window).

  Returns:
    BoxList with the clipped boxes (and fewer rows if filtering) and the
    extra fields of `boxlist` (gathered likewise).

  Raises:
    ValueError: if `window` does not have shape [4].
  """
  _check_boxlist(boxlist)
  window = _as_window(window)
  ymin, xmin, ymax, xmax = tf.unstack(boxlist.get(), axis=1)
  win_ymin, win_xmin, win_ymax, win_xmax = tf.unstack(window)
  ymin = tf.maximum(tf.minimum(ymin, win_ymax), win_ymin)
  ymax = tf.maximum(tf.minimum(ymax, win_ymax), win_ymin)
  xmin = tf.maximum(tf.minimum(xmin, win_xmax), win_xmin)
  xmax = tf.maximum(tf.minimum(xmax, win_xmax), win_xmin)
  clipped = box_list.BoxList(tf.stack([ymin, xmin, ymax, xmax], axis=1))
  clipped = _copy_extra_fields(clipped, boxlist)
  if filter_nonoverlapping:
    nonzero = tf.reshape(tf.where(area(clipped) > 0.0), [-1])
    clipped = gather(clipped, nonzero)
  return clipped


def prune_outside_window(boxlist, window):
  """Removes the boxes that extend beyond the window on any side.

  Args:
    boxlist: BoxList with N boxes.
    window: float32 `[4]` `[ymin, xmin, ymax, xmax]`, same frame.

  Returns:
    (pruned BoxList with its extra fields, int64 `[M]` indices of the kept
    boxes in `boxlist`).

  Raises:
    ValueError: if `window` does not have shape [4].
  """
  _check_boxlist(boxlist)
  window = _as_window(window)
  ymin, xmin, ymax, xmax = tf.unstack(boxlist.get(), axis=1)
  win_ymin, win_xmin, win_ymax, win_xmax = tf.unstack(window)
  violations = tf.stack([
      ymin < win_ymin, xmin < win_xmin, ymax > win_ymax, xmax > win_xmax],
                        axis=1)
  valid_indices = tf.reshape(
      tf.where(tf.logical_not(tf.reduce_any(violations, axis=1))), [-1])
  return gather(boxlist, valid_indices), valid_indices


def prune_completely_outside_window(boxlist, window):
  """Removes the boxes that do not overlap the window at all.

  Boxes touching the window only on an edge count as outside.

  Args:
    boxlist: BoxList with N boxes.
    window: float32 `[4]` `[ymin, xmin, ymax, xmax]`, same frame.

  Returns:
    (pruned BoxList with its extra fields, int64 `[M]` kept indices).

  Raises:
    ValueError: if `window` does not have shape [4].
  """
  _check_boxlist(boxlist)
  window = _as_window(window)
  ymin, xmin, ymax, xmax = tf.unstack(boxlist.get(), axis=1)
  win_ymin, win_xmin, win_ymax, win_xmax = tf.unstack(window)
  violations = tf.stack([
      ymin >= win_ymax, xmin >= win_xmax, ymax <= win_ymin, xmax <= win_xmin],
                        axis=1)
  valid_indices = tf.reshape(
      tf.where(tf.logical_not(tf.reduce_any(violations, axis=1))), [-1])
  return gather(boxlist, valid_indices), valid_indices


def prune_small_boxes(boxlist, min_side):
  """Keeps the boxes whose height and width are both >= `min_side`.

  Args:
    boxlist: BoxList with N boxes.
    min_side: float scalar, minimum side length in the boxes' frame.

  Returns:
    BoxList with the kept boxes and their extra fields.
  """
  heights, widths = height_width(boxlist)
  min_side = tf.cast(min_side, tf.float32)
  is_valid = tf.logical_and(widths >= min_side, heights >= min_side)
  return gather(boxlist, tf.reshape(tf.where(is_valid), [-1]))


# ---------------------------------------------------------------------------
# Overlaps. `_pairwise_*` take boxes1 `[..., N, 4]` and boxes2 `[..., M, 4]` and
# return `[..., N, M]`; `_matched_*` take two `[..., N, 4]` and return
# `[..., N]`.


def _pairwise_intersection(boxes1, boxes2):
  ymin1, xmin1, ymax1, xmax1 = tf.split(boxes1, 4, axis=-1)  # [..., N, 1]
  ymin2, xmin2, ymax2, xmax2 = [
      tf.expand_dims(t, -2) for t in tf.unstack(boxes2, axis=-1)]  # [..,1,M]
  heights = tf.maximum(
      0.0, tf.minimum(ymax1, ymax2) - tf.maximum(ymin1, ymin2))
  widths = tf.maximum(
      0.0, tf.minimum(xmax1, xmax2) - tf.maximum(xmin1, xmin2))
  return heights * widths


def _matched_intersection(boxes1, boxes2):
  ymin1, xmin1, ymax1, xmax1 = tf.unstack(boxes1, axis=-1)
  ymin2, xmin2, ymax2, xmax2 = tf.unstack(boxes2, axis=-1)
  heights = tf.maximum(
      0.0, tf.minimum(ymax1, ymax2) - tf.maximum(ymin1, ymin2))
  widths = tf.maximum(
      0.0, tf.minimum(xmax1, xmax2) - tf.maximum(xmin1, xmin2))
  return heights * widths


def _iou_from(intersections, areas1, areas2):
  unions = areas1 + areas2 - intersections
  return tf.where(intersections == 0.0, tf.zeros_like(intersections),
                  tf.math.divide_no_nan(intersections, unions))


def _pairwise_iou(boxes1, boxes2):
  intersections = _pairwise_intersection(boxes1, boxes2)
  areas1 = tf.expand_dims(_area(boxes1), -1)
  areas2 = tf.expand_dims(_area(boxes2), -2)
  return _iou_from(intersections, areas1, areas2)


def _matched_iou(boxes1, boxes2):
  intersections = _matched_intersection(boxes1, boxes2)
  return _iou_from(intersections, _area(boxes1), _area(boxes2))


def _giou_from(intersections, areas1, areas2, enclosing):
  unions = areas1 + areas2 - intersections
  iou = tf.math.divide_no_nan(intersections, unions)
  return iou - tf.math.divide_no_nan(enclosing - unions, enclosing)


def _pairwise_giou(boxes1, boxes2):
  intersections = _pairwise_intersection(boxes1, boxes2)
  areas1 = tf.expand_dims(_area(boxes1), -1)
  areas2 = tf.expand_dims(_area(boxes2), -2)
  ymin1, xmin1, ymax1, xmax1 = tf.split(boxes1, 4, axis=-1)
  ymin2, xmin2, ymax2, xmax2 = [
      tf.expand_dims(t, -2) for t in tf.unstack(boxes2, axis=-1)]
  enclosing = (
      tf.maximum(0.0, tf.maximum(ymax1, ymax2) - tf.minimum(ymin1, ymin2)) *
      tf.maximum(0.0, tf.maximum(xmax1, xmax2) - tf.minimum(xmin1, xmin2)))
  return _giou_from(intersections, areas1, areas2, enclosing)


def _matched_giou(boxes1, boxes2):
  intersections = _matched_intersection(boxes1, boxes2)
  ymin1, xmin1, ymax1, xmax1 = tf.unstack(boxes1, axis=-1)
  ymin2, xmin2, ymax2, xmax2 = tf.unstack(boxes2, axis=-1)
  enclosing = (
      tf.maximum(0.0, tf.maximum(ymax1, ymax2) - tf.minimum(ymin1, ymin2)) *
      tf.maximum(0.0, tf.maximum(xmax1, xmax2) - tf.minimum(xmin1, xmin2)))
  return _giou_from(intersections, _area(boxes1), _area(boxes2), enclosing)


def _check_matched(boxlist1, boxlist2):
  _check_boxlist(boxlist1, 'boxlist1')
  _check_boxlist(boxlist2, 'boxlist2')
  n1, n2 = boxlist1.num_boxes_static(), boxlist2.num_boxes_static()
  if n1 is not None and n2 is not None and n1 != n2:
    raise ValueError(
        f'boxlist1 and boxlist2 must hold the same number of boxes, got {n1} '
        f'and {n2}')


def intersection(boxlist1, boxlist2):
  """Pairwise intersection areas.

  Args:
    boxlist1: BoxList with N boxes.
    boxlist2: BoxList with M boxes, same frame.

  Returns:
    float32 `[N, M]`, intersection areas (0 for disjoint boxes).
  """
  _check_boxlist(boxlist1, 'boxlist1')
  _check_boxlist(boxlist2, 'boxlist2')
  return _pairwise_intersection(boxlist1.get(), boxlist2.get())


def matched_intersection(boxlist1, boxlist2):
  """Intersection areas of corresponding boxes.

  Args:
    boxlist1: BoxList with N boxes.
    boxlist2: BoxList with N boxes, same frame.

  Returns:
    float32 `[N]`, the intersection of box i of `boxlist1` with box i of
    `boxlist2`.

  Raises:
    ValueError: if the static numbers of boxes differ.
  """
  _check_matched(boxlist1, boxlist2)
  return _matched_intersection(boxlist1.get(), boxlist2.get())


def iou(boxlist1, boxlist2):
  """Pairwise intersection-over-union.

  Args:
    boxlist1: BoxList with N boxes.
    boxlist2: BoxList with M boxes, same frame.

  Returns:
    float32 `[N, M]` in [0, 1]; 0 where the boxes do not intersect
    (including pairs of zero-area boxes).
  """
  _check_boxlist(boxlist1, 'boxlist1')
  _check_boxlist(boxlist2, 'boxlist2')
  return _pairwise_iou(boxlist1.get(), boxlist2.get())


def matched_iou(boxlist1, boxlist2):
  """IoU of corresponding boxes: float32 `[N]` for two BoxLists of N boxes.

  Raises:
    ValueError: if the static numbers of boxes differ.
  """
  _check_matched(boxlist1, boxlist2)
  return _matched_iou(boxlist1.get(), boxlist2.get())


def ioa(boxlist1, boxlist2):
  """Pairwise intersection-over-area: intersection / area of the box in
  `boxlist2` (not symmetric, as in the TF OD API).

  Args:
    boxlist1: BoxList with N boxes.
    boxlist2: BoxList with M boxes, same frame.

  Returns:
    float32 `[N, M]`, `intersection(b1_i, b2_j) / area(b2_j)`; 0 where
    `b2_j` has zero area.
  """
  _check_boxlist(boxlist1, 'boxlist1')
  _check_boxlist(boxlist2, 'boxlist2')
  intersections = _pairwise_intersection(boxlist1.get(), boxlist2.get())
  areas = tf.expand_dims(_area(boxlist2.get()), 0)
  return tf.math.divide_no_nan(intersections, areas)


def giou(boxlist1, boxlist2):
  """Pairwise generalized IoU (Rezatofighi et al. 2019, Algorithm 1).

  `GIoU = IoU - (|C| - |U|) / |C|`, where C is the smallest box enclosing
  both boxes and U their union. Ratios with a zero denominator are 0, so two
  identical zero-area boxes have GIoU 0.

  Args:
    boxlist1: BoxList with N boxes.
    boxlist2: BoxList with M boxes, same frame.

  Returns:
    float32 `[N, M]` in [-1, 1].
  """
  _check_boxlist(boxlist1, 'boxlist1')
  _check_boxlist(boxlist2, 'boxlist2')
  return _pairwise_giou(boxlist1.get(), boxlist2.get())


def matched_giou(boxlist1, boxlist2):
  """Generalized IoU of corresponding boxes, float32 `[N]` in [-1, 1].

  See `giou`; the GIoU loss is `1 - matched_giou` (TTFNet Eq. 4 uses it for
  box regression).

  Raises:
    ValueError: if the static numbers of boxes differ.
  """
  _check_matched(boxlist1, boxlist2)
  return _matched_giou(boxlist1.get(), boxlist2.get())


def batch_iou(boxes1, boxes2):
  """Pairwise IoU on batched tensors.

  Args:
    boxes1: float32 `[batch, N, 4]` `[ymin, xmin, ymax, xmax]`.
    boxes2: float32 `[batch, M, 4]`, same frame.

  Returns:
    float32 `[batch, N, M]`.
  """
  return _pairwise_iou(tf.convert_to_tensor(boxes1, tf.float32),
                       tf.convert_to_tensor(boxes2, tf.float32))


def batch_matched_iou(boxes1, boxes2):
  """IoU of corresponding boxes: `[..., N, 4]` x `[..., N, 4]` -> `[..., N]`."""
  return _matched_iou(tf.convert_to_tensor(boxes1, tf.float32),
                      tf.convert_to_tensor(boxes2, tf.float32))


def batch_matched_giou(boxes1, boxes2):
  """GIoU of corresponding boxes: `[..., N, 4]` x `[..., N, 4]` -> `[..., N]`.

  Used by the GIoU loss (Rezatofighi et al. 2019; TTFNet Eq. 4) on decoded
  boxes of any leading shape.
  """
  return _matched_giou(tf.convert_to_tensor(boxes1, tf.float32),
                       tf.convert_to_tensor(boxes2, tf.float32))


def sq_dist(boxlist1, boxlist2):
  """Pairwise squared Euclidean distances between boxes as 4-d points.

  As in the TF OD API: each box `[ymin, xmin, ymax, xmax]` is a point in R^4.

  Returns:
    float32 `[N, M]`.
  """
  _check_boxlist(boxlist1, 'boxlist1')
  _check_boxlist(boxlist2, 'boxlist2')
  b1 = tf.expand_dims(boxlist1.get(), 1)
  b2 = tf.expand_dims(boxlist2.get(), 0)
  return tf.reduce_sum(tf.square(b1 - b2), axis=-1)


def center_sq_dist(boxlist1, boxlist2):
  """Pairwise squared Euclidean distances between box centers.

  Returns:
    float32 `[N, M]`, `(yc1 - yc2)^2 + (xc1 - xc2)^2` in squared units of
    the boxes' frame (ATSS ranks anchors by this distance).
  """
  _check_boxlist(boxlist1, 'boxlist1')
  _check_boxlist(boxlist2, 'boxlist2')
  yc1, xc1, _, _ = boxlist1.get_center_coordinates_and_sizes()
  yc2, xc2, _, _ = boxlist2.get_center_coordinates_and_sizes()
  dy = tf.expand_dims(yc1, 1) - tf.expand_dims(yc2, 0)
  dx = tf.expand_dims(xc1, 1) - tf.expand_dims(xc2, 0)
  return tf.square(dy) + tf.square(dx)


# ---------------------------------------------------------------------------
# Frames.


def change_coordinate_frame(boxlist, window):
  """Expresses boxes relative to `window` (window becomes [0, 0, 1, 1]).

  `y' = (y - win_ymin) / (win_ymax - win_ymin)`, likewise for x. Used to
  make boxes relative to a crop.

  Args:
    boxlist: BoxList with N boxes.
    window: float32 `[4]` `[ymin, xmin, ymax, xmax]` in the boxes' frame.

  Returns:
    BoxList in the window's normalized frame, with the extra fields.

  Raises:
    ValueError: if `window` does not have shape [4].
  """
  _check_boxlist(boxlist)
  window = _as_window(window)
  win_height = window[2] - window[0]
  win_width = window[3] - window[1]
  shifted = box_list.BoxList(
      boxlist.get() - tf.stack([window[0], window[1], window[0], window[1]]))
  shifted = scale(shifted, 1.0 / win_height, 1.0 / win_width)
  return _copy_extra_fields(shifted, boxlist)


def to_normalized_coordinates(boxlist, height, width, check_range=True):
  """Converts absolute pixel boxes to normalized [0, 1] coordinates.

  Args:
    boxlist: BoxList in absolute pixels.
    height: scalar (int or tensor), image height in pixels.
    width: scalar (int or tensor), image width in pixels.
    check_range: if True, asserts (at run time, also in graph mode) that the
      boxes look absolute: their maximum coordinate is > 1.01 (an empty
      BoxList passes), as in the TF OD API.

  Returns:
    BoxList normalized by (height, width), with the extra fields.

  Raises:
    tf.errors.InvalidArgumentError: (at run time) if `check_range` fails.
  """
  _check_boxlist(boxlist)
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  boxes = boxlist.get()
  if check_range:
    max_val = tf.reduce_max(boxes)
    ok = tf.logical_or(tf.equal(tf.size(boxes), 0), max_val > 1.01)
    with tf.control_dependencies([tf.debugging.Assert(
        ok, ['to_normalized_coordinates: boxes look normalized already; max '
             'coordinate', max_val])]):
      boxes = tf.identity(boxes)
  out = box_list.BoxList(boxes)
  out = _copy_extra_fields(out, boxlist)
  return scale(out, 1.0 / height, 1.0 / width)


def to_absolute_coordinates(boxlist, height, width, check_range=True,
                            maximum_normalized_coordinate=1.1):
  """Converts normalized boxes to absolute pixel coordinates.

  Args:
    boxlist: BoxList normalized to [0, 1].
    height: scalar, image height in pixels.
    width: scalar, image width in pixels.
    check_range: if True, asserts (at run time) that the maximum coordinate
      is <= `maximum_normalized_coordinate`, as in the TF OD API.
    maximum_normalized_coordinate: float, the bound checked above.

  Returns:
    BoxList in pixels, with the extra fields.

  Raises:
    tf.errors.InvalidArgumentError: (at run time) if `check_range` fails.
  """
  _check_boxlist(boxlist)
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  boxes = boxlist.get()
  if check_range:
    max_val = tf.reduce_max(boxes)  # -inf for zero boxes: passes.
    with tf.control_dependencies([tf.debugging.Assert(
        max_val <= maximum_normalized_coordinate,
        ['to_absolute_coordinates: boxes are not normalized; max coordinate',
         max_val])]):
      boxes = tf.identity(boxes)
  out = box_list.BoxList(boxes)
  out = _copy_extra_fields(out, boxlist)
  return scale(out, height, width)


# ---------------------------------------------------------------------------
# Selection.


def _fields_to_keep(boxlist, fields):
  if fields is None:
    return boxlist.get_extra_fields()
  for field in fields:
    if not boxlist.has_field(field):
      raise ValueError(f'fields: boxlist has no field {field!r}')
  return [f for f in fields if f != 'boxes']


def gather(boxlist, indices, fields=None):
  """Gathers boxes (and fields) by index.

  Args:
    boxlist: BoxList with N boxes.
    indices: int32 or int64 `[M]`, indices into the N boxes (may repeat).
    fields: optional list of extra fields to keep; all by default.

  Returns:
    BoxList with M boxes.

  Raises:
    ValueError: if `indices` is not rank 1 or not an integer tensor, or a
      requested field is missing.
  """
  _check_boxlist(boxlist)
  indices = tf.convert_to_tensor(indices)
  if indices.shape.rank != 1:
    raise ValueError(f'indices must be rank 1, got shape {indices.shape}')
  if indices.dtype not in (tf.int32, tf.int64):
    raise ValueError(f'indices must be int32 or int64, got {indices.dtype}')
  keep = _fields_to_keep(boxlist, fields)
  out = box_list.BoxList(tf.gather(boxlist.get(), indices))
  for field in keep:
    out.add_field(field, tf.gather(boxlist.get_field(field), indices))
  return out


def boolean_mask(boxlist, indicator, fields=None):
  """Keeps the boxes where `indicator` is True.

  Args:
    boxlist: BoxList with N boxes.
    indicator: bool `[N]`.
    fields: optional list of extra fields to keep; all by default.

  Returns:
    BoxList with the selected boxes, in their original order.

  Raises:
    ValueError: if `indicator` is not a rank-1 bool tensor.
  """
  _check_boxlist(boxlist)
  indicator = tf.convert_to_tensor(indicator)
  if indicator.shape.rank != 1:
    raise ValueError(f'indicator must be rank 1, got shape {indicator.shape}')
  if indicator.dtype != tf.bool:
    raise ValueError(f'indicator must be bool, got {indicator.dtype}')
  keep = _fields_to_keep(boxlist, fields)
  out = box_list.BoxList(tf.boolean_mask(boxlist.get(), indicator))
  for field in keep:
    out.add_field(field, tf.boolean_mask(boxlist.get_field(field), indicator))
  return out


def concatenate(boxlists, fields=None):
  """Concatenates BoxLists along the box dimension.

  Args:
    boxlists: non-empty list of BoxLists.
    fields: optional list of extra fields to concatenate; by default the
      extra fields of the first BoxList, which every BoxList must have.

  Returns:
    BoxList with all boxes.

  Raises:
    ValueError: if `boxlists` is empty or not a list of BoxLists, or a
      BoxList lacks a field.
  """
  if not isinstance(boxlists, (list, tuple)) or not boxlists:
    raise ValueError('boxlists must be a non-empty list of BoxLists')
  for i, b in enumerate(boxlists):
    _check_boxlist(b, f'boxlists[{i}]')
  if fields is None:
    fields = boxlists[0].get_extra_fields()
  out = box_list.BoxList(tf.concat([b.get() for b in boxlists], axis=0))
  for field in fields:
    for i, b in enumerate(boxlists):
      if not b.has_field(field):
        raise ValueError(f'boxlists[{i}] has no field {field!r}')
    out.add_field(field,
                  tf.concat([b.get_field(field) for b in boxlists], axis=0))
  return out


def sort_by_field(boxlist, field, order=SortOrder.descend):
  """Sorts boxes by a rank-1 (or `[N, 1]`) field; ties keep their order.

  Args:
    boxlist: BoxList with N boxes.
    field: str, name of a float or int field of shape `[N]` or `[N, 1]`.
    order: `SortOrder.descend` (default) or `SortOrder.ascend`.

  Returns:
    BoxList with all fields reordered.

  Raises:
    ValueError: if the field is missing, has the wrong rank, or `order` is
      unknown.
  """
  _check_boxlist(boxlist)
  if order not in (SortOrder.ascend, SortOrder.descend):
    raise ValueError(f'order must be SortOrder.ascend or .descend, got '
                     f'{order}')
  values = boxlist.get_field(field)
  if values.shape.rank == 2 and values.shape[1] == 1:
    values = tf.squeeze(values, 1)
  if values.shape.rank != 1:
    raise ValueError(f'field {field!r} must be rank 1, got {values.shape}')
  direction = 'DESCENDING' if order == SortOrder.descend else 'ASCENDING'
  indices = tf.argsort(values, direction=direction, stable=True)
  return gather(boxlist, indices)


def filter_scores_greater_than(boxlist, thresh):
  """Keeps the boxes whose 'scores' field is > `thresh` (NaN scores dropped).

  Args:
    boxlist: BoxList with a 'scores' field of shape `[N]` or `[N, 1]`.
    thresh: float scalar.

  Returns:
    BoxList with the kept boxes, in their original order.

  Raises:
    ValueError: if there is no 'scores' field or it has the wrong shape.
  """
  _check_boxlist(boxlist)
  if not boxlist.has_field('scores'):
    raise ValueError("boxlist must have a 'scores' field")
  scores = boxlist.get_field('scores')
  if scores.shape.rank == 2 and scores.shape[1] == 1:
    scores = tf.squeeze(scores, 1)
  if scores.shape.rank != 1:
    raise ValueError(f"'scores' must be [N] or [N, 1], got {scores.shape}")
  keep = tf.reshape(tf.where(scores > thresh), [-1])
  return gather(boxlist, keep)


def non_max_suppression(boxlist, iou_thresh, max_output_size,
                        score_thresh=float('-inf'), soft_nms_sigma=0.0,
                        pad_to_max_output_size=False):
  """Class-agnostic non-maximum suppression on a BoxList with 'scores'.

  Wraps `tf.image.non_max_suppression_with_scores` (greedy NMS; Soft-NMS
  with a Gaussian penalty when `soft_nms_sigma > 0`, Bodla et al. 2017).

  Args:
    boxlist: BoxList with N boxes and a float32 'scores' field `[N]`.
    iou_thresh: float in [0, 1], boxes overlapping a kept box with IoU above
      this are suppressed (ignored by Soft-NMS when sigma > 0 as in TF).
    max_output_size: int, maximum number of boxes kept.
    score_thresh: float, boxes with score <= this are dropped first.
    soft_nms_sigma: float >= 0; 0 means hard NMS.
    pad_to_max_output_size: if True, pads the output with zero boxes and
      zero fields to exactly `max_output_size` rows (static shape).

  Returns:
    (BoxList of the kept boxes sorted by decreasing score, with every extra
    field gathered and 'scores' replaced by the (Soft-NMS updated) scores;
    int32 scalar number of valid rows).

  Raises:
    ValueError: if 'scores' is missing or not rank 1, `iou_thresh` is out of
      [0, 1], `max_output_size` < 0 or `soft_nms_sigma` < 0.
  """
  _check_boxlist(boxlist)
  if not boxlist.has_field('scores'):
    raise ValueError("boxlist must have a 'scores' field")
  scores = boxlist.get_field('scores')
  if scores.shape.rank != 1:
    raise ValueError(f"'scores' must be rank 1, got shape {scores.shape}")
  if not 0.0 <= iou_thresh <= 1.0:
    raise ValueError(f'iou_thresh must be in [0, 1], got {iou_thresh}')
  if isinstance(max_output_size, int) and max_output_size < 0:
    raise ValueError(f'max_output_size must be >= 0, got {max_output_size}')
  if soft_nms_sigma < 0:
    raise ValueError(f'soft_nms_sigma must be >= 0, got {soft_nms_sigma}')
  selected, new_scores = tf.image.non_max_suppression_with_scores(
      boxlist.get(), tf.cast(scores, tf.float32),
      max_output_size=max_output_size, iou_threshold=iou_thresh,
      score_threshold=score_thresh, soft_nms_sigma=soft_nms_sigma)
  num_valid = tf.size(selected, out_type=tf.int32)
  out = gather(boxlist, selected)
  out.add_field('scores', tf.cast(new_scores, scores.dtype))
  if pad_to_max_output_size:
    out = pad_or_clip_box_list(out, max_output_size)
  return out, num_valid


def pad_or_clip_box_list(boxlist, num_boxes):
  """Pads (with zeros) or clips a BoxList and all its fields to `num_boxes`.

  Args:
    boxlist: BoxList with N boxes.
    num_boxes: int (static size wanted) or int32 scalar tensor.

  Returns:
    BoxList with exactly `num_boxes` rows (padding rows are zeros, False or
    empty strings).
  """
  _check_boxlist(boxlist)

  def _pad(t):
    return shape_utils.pad_or_clip_nd(
        t, [num_boxes] + [None] * (t.shape.rank - 1),
        constant_value=tf.zeros([], t.dtype))

  out = box_list.BoxList(_pad(boxlist.get()))
  for field in boxlist.get_extra_fields():
    out.add_field(field, _pad(boxlist.get_field(field)))
  return out
