"""In-graph post-processing: multi-class (soft) NMS and score converters.

Everything here runs inside a `tf.function` with dynamic numbers of boxes; the
batched function never loops over images in Python (it uses `tf.map_fn` over
(image, class) pairs, or `tf.image.combined_non_max_suppression` for the
fast path).

Coordinate frame: boxes are `[ymin, xmin, ymax, xmax]`, in whatever frame the
caller uses (normalized [0, 1] at od_meta's public boundaries); the clip
window is in the same frame. With `change_coordinate_frame=True` the output
boxes are re-expressed relative to the clip window (normalized to it).

Semantics follow the TF OD API's `object_detection/core/post_processing.py`:
  * per-class NMS keeps boxes whose score is strictly greater than
    `score_thresh` (TF's NMS kernels test `score > score_threshold`);
  * at most `max_size_per_class` boxes per class, then the best
    `max_total_size` over all classes, sorted by decreasing score;
  * with a clip window, boxes are clipped *after* NMS and detections whose
    clipped box has zero area (entirely outside the window) are removed;
  * class ids are 0-based int32 in `[0, num_classes)` (background is not a
    column of `scores`; a meta-architecture using softmax drops column 0
    before calling NMS).

Soft-NMS (Bodla et al. 2017, Gaussian variant, section 3): a selected box
decays the score of each remaining box by `exp(-iou^2 / (2 sigma))`, with
`sigma = soft_nms_sigma`. This is TensorFlow's
`non_max_suppression_with_scores` convention and the TF OD API's, so ported
configs behave the same; the paper writes `exp(-iou^2 / sigma')`, i.e.
`sigma' = 2 * soft_nms_sigma`. TF additionally removes
outright any box with IoU > `iou_thresh` to a selected box, so use
`iou_thresh=1.0` for pure Gaussian Soft-NMS. Scores that decay to
`<= score_thresh` are dropped.
"""

import typing

import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import standard_fields

BoxListFields = standard_fields.BoxListFields

# BoxList field holding, for each detection, the row of the input `boxes` /
# `scores` (the anchor or proposal index) it came from.
ANCHOR_INDICES_FIELD = 'anchor_indices'


class BatchNMSResult(typing.NamedTuple):
  """Output of `batch_multiclass_non_max_suppression`.

  Unpacks as `(nmsed_boxes, nmsed_scores, nmsed_classes,
  nmsed_additional_fields, num_detections, nmsed_anchor_indices)`. Rows at
  and beyond `num_detections[i]` are padding and are all zeros.

  Attributes:
    nmsed_boxes: float32 `[batch, max_total_size, 4]` yxyx (clipped and
      re-framed if requested).
    nmsed_scores: float32 `[batch, max_total_size]`, decreasing per image.
    nmsed_classes: int32 `[batch, max_total_size]`, 0-based class ids.
    nmsed_additional_fields: dict name -> `[batch, max_total_size, ...]`
      (the input fields gathered at each detection's anchor), or None.
    num_detections: int32 `[batch]`, valid rows per image.
    nmsed_anchor_indices: int32 `[batch, max_total_size]`, the input row
      (anchor) of each detection.
  """
  nmsed_boxes: tf.Tensor
  nmsed_scores: tf.Tensor
  nmsed_classes: tf.Tensor
  nmsed_additional_fields: typing.Optional[typing.Dict[str, tf.Tensor]]
  num_detections: tf.Tensor
  nmsed_anchor_indices: tf.Tensor


def _validate_nms_args(iou_thresh, max_size_per_class, max_total_size,
                       soft_nms_sigma, max_classes_per_detection):
  if not 0.0 <= iou_thresh <= 1.0:
    raise ValueError(f'iou_thresh must be in [0, 1], got {iou_thresh}.')
  if int(max_size_per_class) < 1:
    raise ValueError(
        f'max_size_per_class must be >= 1, got {max_size_per_class}.')
  if int(max_total_size) < 0:
    raise ValueError(f'max_total_size must be >= 0, got {max_total_size}.')
  if soft_nms_sigma < 0.0:
    raise ValueError(f'soft_nms_sigma must be >= 0, got {soft_nms_sigma}.')
  if int(max_classes_per_detection) < 1:
    raise ValueError('max_classes_per_detection must be >= 1, got '
                     f'{max_classes_per_detection}.')


def clip_boxes_to_window(boxes, window):
  """Clips yxyx boxes to a window.

  Args:
    boxes: float32 `[..., 4]` `[ymin, xmin, ymax, xmax]`.
    window: float32 `[4]` `[ymin, xmin, ymax, xmax]` in the boxes' frame, or
      a window with leading dimensions broadcastable against `boxes[..., :]`
      (e.g. `[batch, 1, 4]` for boxes `[batch, N, 4]`).

  Returns:
    float32 tensor of the boxes' shape; each coordinate clamped into the
    window (a box fully outside becomes a zero-area box on the window edge).
  """
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  window = tf.convert_to_tensor(window, tf.float32)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  wy0, wx0, wy1, wx1 = tf.unstack(window, axis=-1)
  ymin = tf.clip_by_value(ymin, wy0, wy1)
  ymax = tf.clip_by_value(ymax, wy0, wy1)
  xmin = tf.clip_by_value(xmin, wx0, wx1)
  xmax = tf.clip_by_value(xmax, wx0, wx1)
  return tf.stack([ymin, xmin, ymax, xmax], axis=-1)


def change_coordinate_frame(boxes, window):
  """Re-expresses yxyx boxes relative to `window` (window becomes [0,0,1,1]).

  Args:
    boxes: float32 `[..., 4]`.
    window: float32 `[4]` or broadcastable `[..., 4]`, same frame as boxes.

  Returns:
    float32 boxes `(box - [wy0, wx0, wy0, wx0]) / [h, w, h, w]`; a window of
    zero height or width gives zeros on that axis (no division by zero).
  """
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  window = tf.convert_to_tensor(window, tf.float32)
  wy0, wx0, wy1, wx1 = tf.unstack(window, axis=-1)
  offset = tf.stack([wy0, wx0, wy0, wx0], axis=-1)
  scale = tf.stack([wy1 - wy0, wx1 - wx0, wy1 - wy0, wx1 - wx0], axis=-1)
  return tf.math.divide_no_nan(boxes - offset, scale)


def get_score_converter(name, logit_scale=1.0):
  """Returns the function turning raw class predictions into scores.

  All converters first divide the logits by `logit_scale` (a temperature, as
  in the TF OD API's `_score_converter_fn_with_logit_scale`).

  Args:
    name: 'IDENTITY', 'SIGMOID' or 'SOFTMAX' (case-insensitive). SOFTMAX is
      taken over the last axis and returns *all* columns, background column
      0 included; the meta-architecture slices it off before NMS.
    logit_scale: float > 0.

  Returns:
    A function float32 `[..., C]` -> float32 `[..., C]`.

  Raises:
    ValueError: on an unknown name or logit_scale <= 0.
  """
  if not logit_scale > 0:
    raise ValueError(f'logit_scale must be > 0, got {logit_scale}.')
  fns = {
      'IDENTITY': tf.identity,
      'SIGMOID': tf.sigmoid,
      'SOFTMAX': lambda x: tf.nn.softmax(x, axis=-1),
  }
  key = str(name).upper()
  if key not in fns:
    raise ValueError(
        f'score_converter must be one of {sorted(fns)}, got {name!r}.')
  fn = fns[key]
  scale = float(logit_scale)

  def convert(logits):
    logits = tf.convert_to_tensor(logits, tf.float32)
    if scale != 1.0:
      logits = logits / scale
    return fn(logits)

  convert.__name__ = f'{key.lower()}_with_logit_scale'
  return convert


def _gather_rows(params, indices):
  """`tf.gather(params, indices, batch_dims=1)` that tolerates N == 0.

  With no anchors every output row is padding (index 0), which cannot be
  gathered from an empty axis; zeros are returned instead.
  """
  def gather():
    return tf.gather(params, indices, batch_dims=1)

  def zeros():
    shape = tf.concat([tf.shape(indices), tf.shape(params)[2:]], axis=0)
    return tf.zeros(shape, params.dtype)

  out = tf.cond(tf.shape(params)[1] > 0, gather, zeros)
  out.set_shape(indices.shape.concatenate(params.shape[2:]))
  return out


def _nms_padded(boxes, scores, max_output_size, iou_thresh, score_thresh,
                tf_soft_nms_sigma):
  """One (soft) NMS, padded: (indices [S] int32, scores [S], valid [S])."""
  indices, selected_scores, num_valid = tf.raw_ops.NonMaxSuppressionV5(
      boxes=boxes,
      scores=scores,
      max_output_size=max_output_size,
      iou_threshold=tf.constant(iou_thresh, tf.float32),
      score_threshold=tf.constant(score_thresh, tf.float32),
      soft_nms_sigma=tf.constant(tf_soft_nms_sigma, tf.float32),
      pad_to_max_output_size=True)
  valid = tf.range(max_output_size) < num_valid
  return indices, selected_scores, valid


def _per_class_candidates(boxes, scores, max_size_per_class, iou_thresh,
                          score_thresh, tf_sigma):
  """Per-class NMS for every (image, class): candidates [B, C*S]."""
  num_classes = scores.shape[2]
  q = boxes.shape[2]
  batch = tf.shape(scores)[0]
  size = max_size_per_class

  def fn(i):
    b = i // num_classes
    c = i % num_classes
    class_boxes = boxes[b, :, 0] if q == 1 else tf.gather(boxes[b], c, axis=1)
    idx, sc, valid = _nms_padded(class_boxes, scores[b, :, c], size,
                                 iou_thresh, score_thresh, tf_sigma)
    return idx, sc, valid

  idx, sc, valid = tf.map_fn(
      fn, tf.range(batch * num_classes),
      fn_output_signature=(tf.TensorSpec([size], tf.int32),
                           tf.TensorSpec([size], tf.float32),
                           tf.TensorSpec([size], tf.bool)),
      parallel_iterations=32)
  k = num_classes * size
  idx = tf.reshape(idx, [batch, k])
  sc = tf.reshape(sc, [batch, k])
  valid = tf.reshape(valid, [batch, k])
  classes = tf.tile(
      tf.repeat(tf.range(num_classes, dtype=tf.int32), size)[tf.newaxis],
      [batch, 1])
  if q == 1:
    cand_boxes = _gather_rows(boxes[:, :, 0], idx)
  else:
    # boxes[b, idx, class]
    per_anchor = _gather_rows(boxes, idx)  # [B, K, q, 4]
    cand_boxes = tf.gather(per_anchor, classes, axis=2, batch_dims=2)
  return cand_boxes, sc, classes, idx, valid


def _class_agnostic_candidates(boxes, scores, selection_size, iou_thresh,
                               score_thresh, tf_sigma,
                               max_classes_per_detection):
  """One NMS per image on the best class score: candidates [B, S*k]."""
  q = boxes.shape[2]
  num_classes = scores.shape[2]
  max_scores = tf.reduce_max(scores, axis=2)
  top_class = tf.argmax(scores, axis=2, output_type=tf.int32)
  if q == 1:
    anchor_boxes = boxes[:, :, 0]
  else:
    anchor_boxes = tf.gather(boxes, top_class, axis=2, batch_dims=2)
  size = selection_size

  def fn(b):
    return _nms_padded(anchor_boxes[b], max_scores[b], size, iou_thresh,
                       score_thresh, tf_sigma)

  idx, nms_scores, valid = tf.map_fn(
      fn, tf.range(tf.shape(scores)[0]),
      fn_output_signature=(tf.TensorSpec([size], tf.int32),
                           tf.TensorSpec([size], tf.float32),
                           tf.TensorSpec([size], tf.bool)))
  sel_boxes = _gather_rows(anchor_boxes, idx)  # [B, S, 4]
  k = min(int(max_classes_per_detection), num_classes)
  if k == 1:
    classes = _gather_rows(top_class, idx)
    return sel_boxes, nms_scores, classes, idx, valid
  sel_scores = _gather_rows(scores, idx)  # [B, S, C]
  top_scores, top_classes = tf.math.top_k(sel_scores, k=k)
  # Soft-NMS decay of the best score, applied to every class of the box.
  decay = tf.math.divide_no_nan(nms_scores,
                                _gather_rows(max_scores, idx))
  top_scores = top_scores * decay[..., tf.newaxis]
  cand_valid = tf.logical_and(valid[..., tf.newaxis],
                              top_scores > score_thresh)
  batch = tf.shape(scores)[0]
  total = size * k
  cand_boxes = tf.reshape(
      tf.tile(sel_boxes[:, :, tf.newaxis], [1, 1, k, 1]), [batch, total, 4])
  cand_idx = tf.reshape(tf.tile(idx[..., tf.newaxis], [1, 1, k]),
                        [batch, total])
  return (cand_boxes, tf.reshape(top_scores, [batch, total]),
          tf.reshape(top_classes, [batch, total]), cand_idx,
          tf.reshape(cand_valid, [batch, total]))


def _combined_candidates(boxes, scores, max_size_per_class, max_total_size,
                         iou_thresh, score_thresh):
  """tf.image.combined_non_max_suppression, with the anchor rows recovered."""
  q = boxes.shape[2]
  nmsed_boxes, nmsed_scores, nmsed_classes, num_valid = (
      tf.image.combined_non_max_suppression(
          boxes, scores, max_output_size_per_class=max_size_per_class,
          max_total_size=max_total_size, iou_threshold=iou_thresh,
          score_threshold=score_thresh, pad_per_class=False,
          clip_boxes=False))
  classes = tf.cast(nmsed_classes, tf.int32)
  valid = tf.range(max_total_size)[tf.newaxis] < num_valid[:, tf.newaxis]
  # The combined op does not return input rows: find, for each detection,
  # the anchor whose class score (and, for q == 1, box) equals it exactly
  # (the op copies values, so equality is exact). Lowest index wins a tie.
  class_scores = tf.gather(tf.transpose(scores, [0, 2, 1]), classes,
                           batch_dims=1)  # [B, T, N]
  match = tf.equal(class_scores, nmsed_scores[..., tf.newaxis])
  if q == 1:
    same_box = tf.reduce_all(
        tf.equal(boxes[:, tf.newaxis, :, 0], nmsed_boxes[:, :, tf.newaxis]),
        axis=-1)
    match = tf.logical_and(match, same_box)
  idx = tf.cond(
      tf.shape(scores)[1] > 0,
      lambda: tf.argmax(tf.cast(match, tf.int32), axis=2,
                        output_type=tf.int32),
      lambda: tf.zeros_like(classes))
  return nmsed_boxes, nmsed_scores, classes, idx, valid


def _finalize(cand_boxes, cand_scores, cand_classes, cand_idx, cand_valid,
              max_total_size, clip_window, change_frame, additional_fields):
  """Clip, drop empty, sort, keep the top max_total_size, re-frame, pad."""
  window = None
  if clip_window is not None:
    window = tf.convert_to_tensor(clip_window, tf.float32)
    if window.shape.rank == 1:
      window = tf.tile(window[tf.newaxis], [tf.shape(cand_boxes)[0], 1])
    window = window[:, tf.newaxis, :]  # [B, 1, 4]
    cand_boxes = clip_boxes_to_window(cand_boxes, window)
    ymin, xmin, ymax, xmax = tf.unstack(cand_boxes, axis=-1)
    cand_valid = tf.logical_and(cand_valid,
                                (ymax - ymin) * (xmax - xmin) > 0.0)
  num_candidates = cand_scores.shape[1]
  k = min(max_total_size, num_candidates)
  masked = tf.where(cand_valid, cand_scores,
                    tf.fill(tf.shape(cand_scores), -float('inf')))
  _, order = tf.math.top_k(masked, k=k, sorted=True)
  boxes = tf.gather(cand_boxes, order, batch_dims=1)
  scores = tf.gather(cand_scores, order, batch_dims=1)
  classes = tf.gather(cand_classes, order, batch_dims=1)
  indices = tf.gather(cand_idx, order, batch_dims=1)
  valid = tf.gather(cand_valid, order, batch_dims=1)
  if window is not None and change_frame:
    boxes = change_coordinate_frame(boxes, window)
  num_detections = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
  validf = tf.cast(valid, tf.float32)
  boxes = boxes * validf[..., tf.newaxis]
  scores = scores * validf
  classes = tf.where(valid, classes, tf.zeros_like(classes))
  indices = tf.where(valid, indices, tf.zeros_like(indices))
  pad = max_total_size - k
  if pad > 0:
    boxes = tf.pad(boxes, [[0, 0], [0, pad], [0, 0]])
    scores = tf.pad(scores, [[0, 0], [0, pad]])
    classes = tf.pad(classes, [[0, 0], [0, pad]])
    indices = tf.pad(indices, [[0, 0], [0, pad]])
    valid = tf.pad(valid, [[0, 0], [0, pad]])
  nmsed_fields = None
  if additional_fields is not None:
    nmsed_fields = {}
    for name, field in additional_fields.items():
      gathered = _gather_rows(field, indices)
      mask = tf.reshape(valid, tf.concat(
          [tf.shape(valid), tf.ones([tf.rank(gathered) - 2], tf.int32)], 0))
      nmsed_fields[name] = tf.where(mask, gathered, tf.zeros_like(gathered))
  return BatchNMSResult(boxes, scores, classes, nmsed_fields, num_detections,
                        indices)


def batch_multiclass_non_max_suppression(boxes,
                                         scores,
                                         score_thresh,
                                         iou_thresh,
                                         max_size_per_class,
                                         max_total_size=0,
                                         clip_window=None,
                                         change_coordinate_frame=False,
                                         soft_nms_sigma=0.0,
                                         use_class_agnostic_nms=False,
                                         max_classes_per_detection=1,
                                         additional_fields=None,
                                         use_combined_nms=False,
                                         scope=None):
  """Multi-class (soft) NMS over a batch, with fixed-size padded outputs.

  Args:
    boxes: float32 `[batch, N, q, 4]` yxyx; q is 1 (boxes shared by all
      classes) or num_classes (class-specific boxes). N may be dynamic.
    scores: float32 `[batch, N, num_classes]` (num_classes static), e.g.
      sigmoid scores or softmax scores without the background column.
    score_thresh: float; only scores `> score_thresh` are kept.
    iou_thresh: float in [0, 1]; IoU above which boxes suppress each other.
    max_size_per_class: int >= 1; NMS outputs per class (or, with
      class-agnostic NMS and `max_total_size == 0`, per image).
    max_total_size: int >= 0; detections per image; 0 means
      `num_classes * max_size_per_class` (class-agnostic:
      `max_size_per_class * max_classes_per_detection`). Class-agnostic NMS
      selects `max_total_size` boxes (TF OD API semantics) when it is > 0.
    clip_window: optional float32 `[4]` or `[batch, 4]` `[ymin, xmin, ymax,
      xmax]` in the boxes' frame; boxes are clipped to it after NMS and
      detections left with zero area are removed.
    change_coordinate_frame: if True (and clip_window is given), output
      boxes are relative to the clip window.
    soft_nms_sigma: float >= 0; > 0 enables Gaussian Soft-NMS, decay
      `exp(-iou^2 / (2 * soft_nms_sigma))` (see the module docstring).
    use_class_agnostic_nms: one NMS per image on each anchor's best class
      score (the box of that class when q > 1); each kept box then reports
      its top `max_classes_per_detection` classes (scores decayed like the
      best one under Soft-NMS, kept if `> score_thresh`).
    max_classes_per_detection: int >= 1, only used with class-agnostic NMS.
    additional_fields: optional dict name -> `[batch, N, ...]` per-anchor
      tensors (e.g. keypoints `[batch, N, K, 2]`, multiclass scores),
      gathered at each detection's anchor.
    use_combined_nms: use `tf.image.combined_non_max_suppression` (fast
      path; no Soft-NMS, no class-agnostic NMS). Anchor indices are then
      recovered by exact score (and for q == 1 box) equality; on exact ties
      the lowest anchor index is reported.
    scope: optional name scope.

  Returns:
    A `BatchNMSResult` (unpacks as `(nmsed_boxes, nmsed_scores,
    nmsed_classes, nmsed_additional_fields, num_detections,
    nmsed_anchor_indices)`), all with static second dimension
    `max_total_size` (resolved as above).

  Raises:
    ValueError: on inconsistent shapes, a q other than 1 or num_classes,
      out-of-range parameters, or Soft-NMS / class-agnostic NMS combined
      with `use_combined_nms`.
  """
  _validate_nms_args(iou_thresh, max_size_per_class, max_total_size,
                     soft_nms_sigma, max_classes_per_detection)
  with tf.name_scope(scope or 'BatchMultiClassNonMaxSuppression'):
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    if boxes.shape.rank != 4 or boxes.shape[3] != 4:
      raise ValueError(
          f'boxes must be [batch, N, q, 4], got shape {boxes.shape}.')
    if scores.shape.rank != 3 or scores.shape[2] is None:
      raise ValueError('scores must be [batch, N, num_classes] with a static '
                       f'num_classes, got shape {scores.shape}.')
    num_classes = scores.shape[2]
    q = boxes.shape[2]
    if q is None or q not in (1, num_classes):
      raise ValueError(f'boxes.shape[2] (q) must be 1 or num_classes '
                       f'({num_classes}), got {q}.')
    if (boxes.shape[1] is not None and scores.shape[1] is not None and
        boxes.shape[1] != scores.shape[1]):
      raise ValueError(f'boxes and scores disagree on N: {boxes.shape} vs '
                       f'{scores.shape}.')
    if additional_fields is not None:
      additional_fields = {k: tf.convert_to_tensor(v)
                           for k, v in additional_fields.items()}
      for name, field in additional_fields.items():
        if field.shape.rank is None or field.shape.rank < 2:
          raise ValueError(f'additional_fields[{name!r}] must be [batch, N, '
                           f'...], got shape {field.shape}.')
    if clip_window is not None:
      clip_window = tf.convert_to_tensor(clip_window, tf.float32)
      if clip_window.shape.rank not in (1, 2) or clip_window.shape[-1] != 4:
        raise ValueError('clip_window must be [4] or [batch, 4], got shape '
                         f'{clip_window.shape}.')
    # NaN scores are never selected.
    scores = tf.where(tf.math.is_nan(scores),
                      tf.fill(tf.shape(scores), -float('inf')), scores)
    max_size_per_class = int(max_size_per_class)
    max_total_size = int(max_total_size)
    tf_sigma = float(soft_nms_sigma)
    if use_combined_nms:
      if soft_nms_sigma > 0 or use_class_agnostic_nms:
        raise ValueError('use_combined_nms supports neither soft_nms_sigma > '
                         '0 nor use_class_agnostic_nms.')
      total = max_total_size or num_classes * max_size_per_class
      candidates = _combined_candidates(boxes, scores, max_size_per_class,
                                        total, iou_thresh, score_thresh)
    elif use_class_agnostic_nms:
      k = min(int(max_classes_per_detection), num_classes)
      selection = max_total_size or max_size_per_class
      total = max_total_size or selection * k
      candidates = _class_agnostic_candidates(
          boxes, scores, selection, iou_thresh, score_thresh, tf_sigma,
          max_classes_per_detection)
    else:
      total = max_total_size or num_classes * max_size_per_class
      candidates = _per_class_candidates(boxes, scores, max_size_per_class,
                                         iou_thresh, score_thresh, tf_sigma)
    return _finalize(*candidates, max_total_size=total,
                     clip_window=clip_window,
                     change_frame=change_coordinate_frame,
                     additional_fields=additional_fields)


def multiclass_non_max_suppression(boxes,
                                   scores,
                                   score_thresh,
                                   iou_thresh,
                                   max_size_per_class,
                                   max_total_size=0,
                                   clip_window=None,
                                   change_coordinate_frame=False,
                                   soft_nms_sigma=0.0,
                                   use_class_agnostic_nms=False,
                                   max_classes_per_detection=1,
                                   additional_fields=None,
                                   scope=None):
  """Multi-class (soft) NMS for one image; returns the kept detections.

  Same semantics as `batch_multiclass_non_max_suppression` (which it calls
  with a batch of one).

  Args:
    boxes: float32 `[N, q, 4]` yxyx, q = 1 or num_classes.
    scores: float32 `[N, num_classes]`.
    score_thresh, iou_thresh, max_size_per_class, max_total_size,
      change_coordinate_frame, soft_nms_sigma, use_class_agnostic_nms,
      max_classes_per_detection: see the batched function.
    clip_window: optional float32 `[4]`.
    additional_fields: optional dict name -> `[N, ...]`.
    scope: optional name scope.

  Returns:
    A `BoxList` with `num_detections` (dynamic) boxes sorted by decreasing
    score, and fields 'scores' (float32), 'classes' (int32, 0-based),
    `ANCHOR_INDICES_FIELD` (int32 input row) and every additional field.

  Raises:
    ValueError: on bad shapes or parameters.
  """
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  scores = tf.convert_to_tensor(scores, tf.float32)
  if boxes.shape.rank != 3:
    raise ValueError(f'boxes must be [N, q, 4], got shape {boxes.shape}.')
  if scores.shape.rank != 2:
    raise ValueError(
        f'scores must be [N, num_classes], got shape {scores.shape}.')
  if clip_window is not None:
    clip_window = tf.convert_to_tensor(clip_window, tf.float32)
    if clip_window.shape.rank != 1:
      raise ValueError(f'clip_window must be [4], got {clip_window.shape}.')
  batched_fields = None
  if additional_fields is not None:
    batched_fields = {k: tf.convert_to_tensor(v)[tf.newaxis]
                      for k, v in additional_fields.items()}
  result = batch_multiclass_non_max_suppression(
      boxes[tf.newaxis], scores[tf.newaxis], score_thresh, iou_thresh,
      max_size_per_class, max_total_size=max_total_size,
      clip_window=clip_window,
      change_coordinate_frame=change_coordinate_frame,
      soft_nms_sigma=soft_nms_sigma,
      use_class_agnostic_nms=use_class_agnostic_nms,
      max_classes_per_detection=max_classes_per_detection,
      additional_fields=batched_fields, scope=scope or
      'MultiClassNonMaxSuppression')
  num = result.num_detections[0]
  boxlist = box_list.BoxList(result.nmsed_boxes[0, :num])
  boxlist.add_field(BoxListFields.scores, result.nmsed_scores[0, :num])
  boxlist.add_field(BoxListFields.classes, result.nmsed_classes[0, :num])
  boxlist.add_field(ANCHOR_INDICES_FIELD,
                    result.nmsed_anchor_indices[0, :num])
  if result.nmsed_additional_fields:
    for name, field in result.nmsed_additional_fields.items():
      boxlist.add_field(name, field[0, :num])
  return boxlist
