"""In-graph decoding of the heatmap (keypoint-style) detectors.

Shared by CenterNet "Objects as Points" (Zhou et al. 2019), TTFNet (Liu et
al. 2019), and later CornerNet / FCOS meta-architectures. Everything here is
made of TF ops, batched, and runs eagerly and inside `tf.function` with
dynamic map sizes and numbers of detections; no NMS is involved
("Objects as Points", section 4: peaks replace NMS).

Coordinate frames:
  * "output-stride pixels": coordinates on the output map of stride R,
    where location (i, j) sits at (y, x) = (i, j) (CenterNet: a center p of
    the input maps to location floor(p / R) plus an offset p / R -
    floor(p / R); so input pixel = (i + offset) * R).
  * "input pixels": pixels of the (resized, padded) network input.
  * Boxes returned by the box decoders are float32 [ymin, xmin, ymax, xmax]
    normalized by the given image height / width and clipped to [0, 1]
    (od_meta's public box convention).

Functions:
  * extract_peaks: 3x3 max-pool local maxima + top-k over classes and
    locations ("Objects as Points" section 4, "From points to bounding
    boxes"; TTFNet section 3.4; CornerNet section 4.1).
  * gather_at_locations: read a dense prediction at peak locations.
  * decode_center_net_boxes: center + offset +- size / 2 ("Objects as
    Points" section 4, box equation).
  * decode_ltrb_boxes: location center -/+ (top, left, bottom, right)
    distances (TTFNet Eq. 3-4, FCOS Eq. 1), with the pixel-center convention
    of `od_meta.core.target_assigner.coordinates_grid`.
  * snap_keypoints_to_candidates: human-pose refinement, regressed joints
    snapped to the nearest keypoint-heatmap peak inside the person's box
    ("Objects as Points" section 4.3 "Human pose estimation"; TF OD API
    `center_net_meta_arch.refine_keypoints` for the box / radius rules).
  * flip_test_merge: flip-test averaging of heatmaps and sizes (MMDetection
    CenterNet reproduction; offsets are not averaged).
"""

import math
from typing import NamedTuple

import tensorflow as tf

from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_list
from od_meta.utils import shape_utils

# Distances in input pixels, anchors are the locations' centers (points).
_LTRB_CODER = ltrb_distance_box_coder.LtrbDistanceBoxCoder()

_RANKING_MODES = ('min_distance', 'score_distance_ratio')


class Peaks(NamedTuple):
  """Top-k heatmap peaks of a batch (see `extract_peaks`).

  Attributes:
    scores: float32 [B, k], peak probabilities sorted in decreasing order;
      0 where not valid.
    y_indices: int32 [B, k], row of the peak on the output map.
    x_indices: int32 [B, k], column of the peak on the output map.
    classes: int32 [B, k], 0-based class (heatmap channel) of the peak.
    valid: bool [B, k], True for real peaks with score > score_threshold;
      the valid entries are a prefix of each row.
    num_valid: int32 [B], number of valid entries per image.
  """
  scores: tf.Tensor
  y_indices: tf.Tensor
  x_indices: tf.Tensor
  classes: tf.Tensor
  valid: tf.Tensor
  num_valid: tf.Tensor


def _check_rank(tensor, rank, name, layout):
  if tensor.shape.rank is not None and tensor.shape.rank != rank:
    raise ValueError(f'{name} must be {layout} (rank {rank}), got shape '
                     f'{tensor.shape}.')


def _check_last_dim(tensor, size, name, layout):
  last = tensor.shape[-1] if tensor.shape.rank else None
  if last is not None and last != size:
    raise ValueError(f'{name} must be {layout} (last dimension {size}), got '
                     f'shape {tensor.shape}.')


def _check_positive_int(value, name):
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{name} must be a positive int, got {value!r}.')


def _check_kernel(kernel_size, name):
  _check_positive_int(kernel_size, name)
  if kernel_size % 2 != 1:
    raise ValueError(f'{name} must be odd (a centered window), got '
                     f'{kernel_size}.')


def _check_finite_number(value, name):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or (
      not math.isfinite(value)):
    raise ValueError(f'{name} must be a finite number, got {value!r}.')


def _check_positive_number(value, name):
  _check_finite_number(value, name)
  if value <= 0:
    raise ValueError(f'{name} must be > 0, got {value!r}.')


def _to_float(tensor, name):
  try:
    return tf.cast(tf.convert_to_tensor(tensor), tf.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name} must be a numeric tensor: {e}') from e


def _to_int(tensor, name):
  try:
    return tf.cast(tf.convert_to_tensor(tensor), tf.int32)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name} must be an integer tensor: {e}') from e


def _masked_local_maxima(heatmap, kernel_size):
  """[B, h, w, C] -> same shape, -inf where not a local maximum.

  NaN entries are set to -inf first (never peaks, and they do not hide
  their neighbours). A location is a local maximum when it equals the max
  of its kernel_size x kernel_size neighbourhood (SAME padding), so equal
  neighbours on a plateau all survive, as in CenterNet's `_nms`.
  """
  neg_inf = tf.constant(-math.inf, tf.float32)
  heatmap = tf.where(tf.math.is_nan(heatmap), neg_inf, heatmap)
  pooled = tf.nn.max_pool2d(heatmap, ksize=kernel_size, strides=1,
                            padding='SAME')
  return tf.where(tf.equal(heatmap, pooled), heatmap, neg_inf)


def _min_size(limit, size):
  """min(limit, size) as a Python int when size is static, else a tensor."""
  if isinstance(size, int):
    return min(limit, size)
  return tf.minimum(tf.constant(limit, tf.int32), size)


def extract_peaks(heatmap, max_pool_kernel_size=3, max_detections=100,
                  score_threshold=0.0):
  """Top-k local maxima of a class heatmap, over all classes and locations.

  "Objects as Points" section 4: a heatmap entry is a peak when it is >=
  its 8 neighbours (implemented as equality with a 3x3 max-pool, SAME
  padding), and the top 100 peaks over all classes are kept; the same
  decoding is used by TTFNet (section 3.4) and for CornerNet's corners.

  Args:
    heatmap: float32 [B, h, w, C] probabilities (after the sigmoid); h, w
      in output-stride pixels; C classes. NaN entries are never peaks.
    max_pool_kernel_size: positive odd int, the peak neighbourhood.
    max_detections: positive int; k = min(max_detections, h * w * C), so
      maps with fewer entries than max_detections work (k is a Python int
      when h, w, C are static, else dynamic).
    score_threshold: float; a peak is valid when its score is strictly
      greater than it.

  Returns:
    `Peaks(scores, y_indices, x_indices, classes, valid, num_valid)`:
    scores float32 [B, k] sorted decreasingly (0 where not valid), y / x
    indices and 0-based classes int32 [B, k], valid bool [B, k] (a prefix
    of each row), num_valid int32 [B]. Rows past num_valid hold non-peak
    or below-threshold locations and must be ignored.

  Raises:
    ValueError: heatmap not rank 4; bad max_pool_kernel_size,
      max_detections or score_threshold.
  """
  heatmap = _to_float(heatmap, 'heatmap')
  _check_rank(heatmap, 4, 'heatmap', '[B, h, w, C]')
  _check_kernel(max_pool_kernel_size, 'max_pool_kernel_size')
  _check_positive_int(max_detections, 'max_detections')
  _check_finite_number(score_threshold, 'score_threshold')

  batch, height, width, channels = (
      shape_utils.combined_static_and_dynamic_shape(heatmap))
  masked = _masked_local_maxima(heatmap, max_pool_kernel_size)
  num_entries = height * width * channels
  flat = tf.reshape(masked, tf.stack([batch, num_entries]))
  k = _min_size(max_detections, num_entries)
  top_scores, flat_indices = tf.math.top_k(flat, k=k, sorted=True)
  flat_indices = tf.cast(flat_indices, tf.int32)
  channels_t = tf.cast(channels, tf.int32)
  width_t = tf.cast(width, tf.int32)
  classes = flat_indices % channels_t
  location = flat_indices // channels_t
  x_indices = location % width_t
  y_indices = location // width_t
  valid = top_scores > float(score_threshold)
  scores = tf.where(valid, top_scores, tf.zeros_like(top_scores))
  num_valid = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
  return Peaks(scores=scores, y_indices=y_indices, x_indices=x_indices,
               classes=classes, valid=valid, num_valid=num_valid)


def gather_at_locations(feature_map, y_indices, x_indices):
  """Values of a dense prediction map at given locations, per image.

  Args:
    feature_map: [B, h, w, D] tensor (any dtype), e.g. size / offset /
      distance / keypoint-offset predictions.
    y_indices: int [B, k], rows in [0, h).
    x_indices: int [B, k], columns in [0, w).

  Returns:
    [B, k, D] tensor of feature_map's dtype: out[b, n] =
    feature_map[b, y_indices[b, n], x_indices[b, n]]. Out-of-range indices
    raise an error on CPU (TF's gather_nd) and give zeros on GPU.

  Raises:
    ValueError: wrong ranks.
  """
  feature_map = tf.convert_to_tensor(feature_map)
  y_indices = _to_int(y_indices, 'y_indices')
  x_indices = _to_int(x_indices, 'x_indices')
  _check_rank(feature_map, 4, 'feature_map', '[B, h, w, D]')
  _check_rank(y_indices, 2, 'y_indices', '[B, k]')
  _check_rank(x_indices, 2, 'x_indices', '[B, k]')
  indices = tf.stack([y_indices, x_indices], axis=-1)
  return tf.gather_nd(feature_map, indices, batch_dims=1)


def _image_size(value, name):
  """Image height / width as float32 broadcastable to [B, k]."""
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    _check_positive_number(value, name)
  value = _to_float(value, name)
  if value.shape.rank is not None and value.shape.rank > 1:
    raise ValueError(f'{name} must be a scalar or [B], got shape '
                     f'{value.shape}.')
  if value.shape.rank == 1:
    value = value[:, tf.newaxis]
  return value


def _normalize_and_clip(ymin, xmin, ymax, xmax, image_height, image_width):
  height = _image_size(image_height, 'image_height')
  width = _image_size(image_width, 'image_width')
  boxes = tf.stack([ymin / height, xmin / width, ymax / height,
                    xmax / width], axis=-1)
  return tf.clip_by_value(boxes, 0.0, 1.0)


def decode_center_net_boxes(y_indices, x_indices, sizes, offsets, stride,
                            image_height, image_width):
  """CenterNet boxes from peak locations, sizes and offsets.

  "Objects as Points" section 4: the box of peak (x_i, y_i) is
  (x_i + dx_i - w_i / 2, y_i + dy_i - h_i / 2, x_i + dx_i + w_i / 2,
  y_i + dy_i + h_i / 2) in output-stride pixels; times the stride R it is in
  input pixels:

    center_y = (y + dy) * R,   ymin = center_y - h * R / 2,
    ymax = center_y + h * R / 2   (same for x with dx, w),

  then divided by image_height / image_width and clipped to [0, 1].
  Negative predicted sizes are clamped to 0 (so ymin <= ymax).

  Args:
    y_indices: int [B, k], peak rows on the output map.
    x_indices: int [B, k], peak columns.
    sizes: float [B, k, 2], (h, w) in output-stride pixels (e.g. gathered
      from the size head).
    offsets: float [B, k, 2], (dy, dx) in output-stride pixels (the
      sub-pixel center offset), or None for zeros.
    stride: positive number R, the output stride in input pixels.
    image_height: positive number, scalar or [B] tensor: input pixels the
      normalization refers to (the true image window).
    image_width: same for the width.

  Returns:
    float32 [B, k, 4] [ymin, xmin, ymax, xmax] normalized to [0, 1].
    NaN sizes / offsets give NaN coordinates.

  Raises:
    ValueError: wrong ranks / last dimensions, non-positive stride or
      static image size.
  """
  _check_positive_number(stride, 'stride')
  y = tf.cast(_to_int(y_indices, 'y_indices'), tf.float32)
  x = tf.cast(_to_int(x_indices, 'x_indices'), tf.float32)
  _check_rank(y, 2, 'y_indices', '[B, k]')
  _check_rank(x, 2, 'x_indices', '[B, k]')
  sizes = _to_float(sizes, 'sizes')
  _check_rank(sizes, 3, 'sizes', '[B, k, 2]')
  _check_last_dim(sizes, 2, 'sizes', '[B, k, 2]')
  if offsets is None:
    offsets = tf.zeros_like(sizes)
  offsets = _to_float(offsets, 'offsets')
  _check_rank(offsets, 3, 'offsets', '[B, k, 2]')
  _check_last_dim(offsets, 2, 'offsets', '[B, k, 2]')
  stride = float(stride)
  sizes = tf.maximum(sizes, 0.0)
  center_y = (y + offsets[..., 0]) * stride
  center_x = (x + offsets[..., 1]) * stride
  half_h = sizes[..., 0] * (stride / 2.0)
  half_w = sizes[..., 1] * (stride / 2.0)
  return _normalize_and_clip(center_y - half_h, center_x - half_w,
                             center_y + half_h, center_x + half_w,
                             image_height, image_width)


def decode_ltrb_boxes(y_indices, x_indices, distances, stride, image_height,
                      image_width):
  """Boxes from per-location distances to the four sides (TTFNet, FCOS).

  The location (i, j) has its center at (y, x) = (i * stride + stride // 2,
  j * stride + stride // 2) input pixels (`target_assigner.coordinates_grid`
  convention; FCOS section 3.1). With distances (t, l, b, r) in input
  pixels (TTFNet Eq. 3-4 after multiplying by s = 16; FCOS Eq. 1 after its
  exp / stride scaling; the caller applies those):

    box = [y - t, x - l, y + b, x + r]

  (decoded by `LtrbDistanceBoxCoder`, the one ltrb decoding of od_meta),
  divided by image_height / image_width and clipped to [0, 1]. Negative
  distances are clamped to 0 (the location lies in its box).

  Args:
    y_indices: int [B, k], rows on the output map.
    x_indices: int [B, k], columns.
    distances: float [B, k, 4], (top, left, bottom, right) in input pixels
      (the `LtrbDistanceBoxCoder` code order with scale 1).
    stride: positive int, output stride in input pixels.
    image_height: positive number, scalar or [B] tensor (input pixels).
    image_width: same for the width.

  Returns:
    float32 [B, k, 4] [ymin, xmin, ymax, xmax] normalized to [0, 1].

  Raises:
    ValueError: wrong ranks / last dimension, stride not a positive int,
      non-positive static image size.
  """
  _check_positive_int(stride, 'stride')
  y = tf.cast(_to_int(y_indices, 'y_indices'), tf.float32)
  x = tf.cast(_to_int(x_indices, 'x_indices'), tf.float32)
  _check_rank(y, 2, 'y_indices', '[B, k]')
  _check_rank(x, 2, 'x_indices', '[B, k]')
  distances = _to_float(distances, 'distances')
  _check_rank(distances, 3, 'distances', '[B, k, 4]')
  _check_last_dim(distances, 4, 'distances', '[B, k, 4]')
  distances = tf.maximum(distances, 0.0)
  half = float(stride // 2)
  centers = tf.stack([y * float(stride) + half, x * float(stride) + half],
                     axis=-1)
  boxes = _LTRB_CODER.decode(
      tf.reshape(distances, [-1, 4]),
      box_list.BoxList(tf.reshape(tf.tile(centers, [1, 1, 2]), [-1, 4])))
  ymin, xmin, ymax, xmax = tf.unstack(
      tf.reshape(boxes.get(), tf.shape(distances)), num=4, axis=-1)
  return _normalize_and_clip(ymin, xmin, ymax, xmax, image_height,
                             image_width)


def _keypoint_candidates(keypoint_heatmap, keypoint_offsets,
                         per_keypoint_offset, num_candidates, kernel_size,
                         score_threshold):
  """Per-keypoint-type peaks refined by their offsets.

  Returns:
    coords float32 [B, K, n + 1, 2] (y, x) output-stride pixels, scores
    float32 [B, K, n + 1], valid bool [B, K, n + 1]; the last candidate is
    an always-invalid pad so the candidate axis is never empty.
  """
  batch, height, width, num_keypoints = (
      shape_utils.combined_static_and_dynamic_shape(keypoint_heatmap))
  masked = _masked_local_maxima(keypoint_heatmap, kernel_size)
  num_locations = height * width
  per_type = tf.reshape(tf.transpose(masked, [0, 3, 1, 2]),
                        tf.stack([batch, num_keypoints, num_locations]))
  n = _min_size(num_candidates, num_locations)
  scores, flat = tf.math.top_k(per_type, k=n, sorted=True)
  flat = tf.cast(flat, tf.int32)
  width_t = tf.cast(width, tf.int32)
  cand_y = flat // width_t  # [B, K, n]
  cand_x = flat % width_t
  coords = tf.cast(tf.stack([cand_y, cand_x], axis=-1), tf.float32)
  if keypoint_offsets is not None:
    indices = tf.stack([cand_y, cand_x], axis=-1)  # [B, K, n, 2]
    if per_keypoint_offset:
      # [B, h, w, 2K] -> [B, K, h, w, 2]; channels (2k, 2k + 1) = (dy, dx)
      # of keypoint type k.
      offsets = tf.reshape(
          keypoint_offsets, tf.stack([batch, height, width, num_keypoints,
                                      2]))
      offsets = tf.transpose(offsets, [0, 3, 1, 2, 4])
      gathered = tf.gather_nd(offsets, indices, batch_dims=2)
    else:
      gathered = tf.gather_nd(keypoint_offsets, indices, batch_dims=1)
    coords = coords + gathered
  valid = tf.math.is_finite(scores) & (scores >= score_threshold)
  # Pad one invalid candidate: argmax over the candidate axis needs n >= 1.
  coords = tf.pad(coords, [[0, 0], [0, 0], [0, 1], [0, 0]])
  scores = tf.pad(scores, [[0, 0], [0, 0], [0, 1]])
  valid = tf.pad(valid, [[0, 0], [0, 0], [0, 1]], constant_values=False)
  return coords, scores, valid


def snap_keypoints_to_candidates(
    regressed_keypoints, keypoint_heatmap, keypoint_offsets, boxes, *,
    num_candidates_per_keypoint=100, keypoint_candidate_score_threshold=0.1,
    peak_max_pool_kernel_size=3, candidate_ranking_mode='min_distance',
    box_scale=1.2, candidate_search_scale=0.3, unmatched_keypoint_score=0.1,
    score_distance_offset=1e-6, per_keypoint_offset=None):
  """Snaps center-regressed keypoints to keypoint-heatmap peaks.

  "Objects as Points" section 4.3 (human pose): joints l_j regressed from
  the object center are assigned to the closest detected keypoint of their
  type, arg min_{l in L_j} (l - l_j)^2, considering only keypoint
  detections inside the object's bounding box. Following the TF OD API's
  `refine_keypoints`:

    * candidates L_j: per keypoint type j, the local maxima of the keypoint
      heatmap (peak_max_pool_kernel_size max-pool), top
      num_candidates_per_keypoint with score >= keypoint_candidate_score_
      threshold, each refined by the keypoint offset at its location
      ((i + dy, j + dx) output-stride pixels);
    * a candidate is admissible for a detection when it lies in the
      detection's box scaled by box_scale about its center (borders
      included) and within candidate_search_scale * max(box height, box
      width) (unscaled box) of the regressed keypoint;
    * among admissible candidates the regressed keypoint takes the one
      with the smallest distance ('min_distance') or the largest
      score / (distance + score_distance_offset) ('score_distance_ratio'),
      and that candidate's heatmap score;
    * with no admissible candidate it keeps its regressed position and
      gets unmatched_keypoint_score.

  Unlike the TF OD API (which picks the nearest candidate first, then
  rejects it if outside the box / radius), admissibility is tested first,
  as the paper states, so a nearer candidate in another person's box does
  not hide an admissible one.

  Args:
    regressed_keypoints: float [B, k, K, 2], (y, x) in output-stride pixels
      (center location + center offset + regressed joint offset).
    keypoint_heatmap: float [B, h, w, K] keypoint probabilities (after
      sigmoid); K static.
    keypoint_offsets: float [B, h, w, 2] (shared by all keypoint types) or
      [B, h, w, 2K] (per type: channels 2j, 2j + 1 are (dy, dx) of type j),
      output-stride pixels; or None for no refinement.
    boxes: float [B, k, 4] [ymin, xmin, ymax, xmax] in output-stride pixels,
      the detections the keypoints belong to; or None for no box / radius
      constraint.
    num_candidates_per_keypoint: positive int, candidates per keypoint type
      (capped at h * w).
    keypoint_candidate_score_threshold: float, minimum candidate score.
    peak_max_pool_kernel_size: positive odd int.
    candidate_ranking_mode: 'min_distance' or 'score_distance_ratio'.
    box_scale: positive float, scale of the box a candidate must lie in.
    candidate_search_scale: non-negative float, search radius as a
      fraction of max(box height, box width).
    unmatched_keypoint_score: float, score of keypoints left unsnapped.
    score_distance_offset: positive float, added to distances in
      'score_distance_ratio' mode.
    per_keypoint_offset: None (infer from the static channels of
      keypoint_offsets: 2 shared, 2K per type), or bool.

  Returns:
    keypoints: float32 [B, k, K, 2], (y, x) output-stride pixels.
    scores: float32 [B, k, K].

  Raises:
    ValueError: wrong ranks / channel counts, unknown ranking mode, bad
      scalar arguments, undeterminable offset layout.
  """
  _check_positive_int(num_candidates_per_keypoint,
                      'num_candidates_per_keypoint')
  _check_finite_number(keypoint_candidate_score_threshold,
                       'keypoint_candidate_score_threshold')
  _check_kernel(peak_max_pool_kernel_size, 'peak_max_pool_kernel_size')
  if candidate_ranking_mode not in _RANKING_MODES:
    raise ValueError(f'candidate_ranking_mode must be one of {_RANKING_MODES}'
                     f', got {candidate_ranking_mode!r}.')
  _check_positive_number(box_scale, 'box_scale')
  _check_finite_number(candidate_search_scale, 'candidate_search_scale')
  if candidate_search_scale < 0:
    raise ValueError('candidate_search_scale must be >= 0, got '
                     f'{candidate_search_scale}.')
  _check_finite_number(unmatched_keypoint_score, 'unmatched_keypoint_score')
  _check_positive_number(score_distance_offset, 'score_distance_offset')

  regressed = _to_float(regressed_keypoints, 'regressed_keypoints')
  _check_rank(regressed, 4, 'regressed_keypoints', '[B, k, K, 2]')
  _check_last_dim(regressed, 2, 'regressed_keypoints', '[B, k, K, 2]')
  heatmap = _to_float(keypoint_heatmap, 'keypoint_heatmap')
  _check_rank(heatmap, 4, 'keypoint_heatmap', '[B, h, w, K]')
  num_keypoints = heatmap.shape[-1]
  if num_keypoints is None:
    raise ValueError('keypoint_heatmap needs a static last dimension K, got '
                     f'shape {heatmap.shape}.')
  if regressed.shape[2] is not None and regressed.shape[2] != num_keypoints:
    raise ValueError(
        f'regressed_keypoints has {regressed.shape[2]} keypoints but '
        f'keypoint_heatmap has {num_keypoints} channels.')
  if keypoint_offsets is not None:
    keypoint_offsets = _to_float(keypoint_offsets, 'keypoint_offsets')
    _check_rank(keypoint_offsets, 4, 'keypoint_offsets',
                '[B, h, w, 2] or [B, h, w, 2K]')
    channels = keypoint_offsets.shape[-1]
    allowed = {2: False, 2 * num_keypoints: True}
    if per_keypoint_offset is None:
      if channels is None:
        raise ValueError('keypoint_offsets needs a static last dimension (2 '
                         'or 2K) when per_keypoint_offset is None.')
      if channels not in allowed:
        raise ValueError(f'keypoint_offsets must have 2 or 2K = '
                         f'{2 * num_keypoints} channels, got {channels}.')
      per_keypoint_offset = allowed[channels]
    else:
      per_keypoint_offset = bool(per_keypoint_offset)
      expected = 2 * num_keypoints if per_keypoint_offset else 2
      if channels is not None and channels != expected:
        raise ValueError(
            f'keypoint_offsets must have {expected} channels with '
            f'per_keypoint_offset={per_keypoint_offset}, got {channels}.')

  cand_coords, cand_scores, cand_valid = _keypoint_candidates(
      heatmap, keypoint_offsets, per_keypoint_offset,
      num_candidates_per_keypoint, peak_max_pool_kernel_size,
      float(keypoint_candidate_score_threshold))

  # [B, k, K, 1, 2] - [B, 1, K, n, 2] -> distances [B, k, K, n].
  diff = regressed[:, :, :, tf.newaxis, :] - cand_coords[:, tf.newaxis]
  distances = tf.sqrt(tf.reduce_sum(tf.square(diff), axis=-1))
  admissible = cand_valid[:, tf.newaxis]  # [B, 1, K, n]
  if boxes is not None:
    boxes = _to_float(boxes, 'boxes')
    _check_rank(boxes, 3, 'boxes', '[B, k, 4]')
    _check_last_dim(boxes, 4, 'boxes', '[B, k, 4]')
    # [B, k, 1, 1] each.
    ymin, xmin, ymax, xmax = tf.unstack(
        boxes[:, :, tf.newaxis, tf.newaxis, :], num=4, axis=-1)
    box_h = ymax - ymin
    box_w = xmax - xmin
    center_y = (ymin + ymax) / 2.0
    center_x = (xmin + xmax) / 2.0
    half_h = box_h * (float(box_scale) / 2.0)
    half_w = box_w * (float(box_scale) / 2.0)
    cand_y = cand_coords[:, tf.newaxis, :, :, 0]  # [B, 1, K, n]
    cand_x = cand_coords[:, tf.newaxis, :, :, 1]
    inside = ((cand_y >= center_y - half_h) & (cand_y <= center_y + half_h) &
              (cand_x >= center_x - half_w) & (cand_x <= center_x + half_w))
    radius = float(candidate_search_scale) * tf.maximum(box_h, box_w)
    admissible = admissible & inside & (distances <= radius)
  else:
    admissible = admissible & tf.math.is_finite(distances)

  if candidate_ranking_mode == 'min_distance':
    ranking = -distances
  else:
    ranking = cand_scores[:, tf.newaxis] / (
        distances + float(score_distance_offset))
  ranking = tf.where(admissible, ranking,
                     tf.constant(-math.inf, tf.float32))
  best = tf.argmax(ranking, axis=-1, output_type=tf.int32)  # [B, k, K]
  matched = tf.reduce_any(admissible, axis=-1)  # [B, k, K]

  # Gather the chosen candidate per (b, detection, keypoint type).
  best_t = tf.transpose(best, [0, 2, 1])  # [B, K, k]
  chosen_coords = tf.gather(cand_coords, best_t, axis=2, batch_dims=2)
  chosen_scores = tf.gather(cand_scores, best_t, axis=2, batch_dims=2)
  chosen_coords = tf.transpose(chosen_coords, [0, 2, 1, 3])  # [B, k, K, 2]
  chosen_scores = tf.transpose(chosen_scores, [0, 2, 1])  # [B, k, K]

  keypoints = tf.where(matched[..., tf.newaxis], chosen_coords, regressed)
  scores = tf.where(matched, chosen_scores,
                    tf.fill(tf.shape(matched), float(unmatched_keypoint_score)))
  return keypoints, scores


def flip_test_merge(heatmap, heatmap_flipped, size, size_flipped):
  """Flip-test merge of heatmaps and sizes (feature-level averaging).

  The MMDetection CenterNet reproduction (following the CenterNet code)
  runs the image and its horizontal mirror, mirrors the second output maps
  back along the width axis and averages heatmap and size maps before
  decoding; the offset maps are NOT averaged (averaging them cost 0.2 AP),
  so the caller keeps the original image's offsets. Sizes (h, w) are
  mirror-invariant magnitudes, so they are averaged without sign changes.
  Mirroring a map is exact when the input width is a multiple of the
  stride.

  Args:
    heatmap: float [B, h, w, C] probabilities (after sigmoid) of the image.
    heatmap_flipped: float [B, h, w, C], those of the mirrored image (in
      the mirrored frame).
    size: float [B, h, w, 2] size map (h, w) of the image.
    size_flipped: float [B, h, w, 2], that of the mirrored image.

  Returns:
    heatmap: float32 [B, h, w, C], (heatmap + mirror(heatmap_flipped)) / 2.
    size: float32 [B, h, w, 2], (size + mirror(size_flipped)) / 2.

  Raises:
    ValueError: ranks other than 4 or static shapes that differ.
  """
  tensors = {}
  for name, value in (('heatmap', heatmap),
                      ('heatmap_flipped', heatmap_flipped), ('size', size),
                      ('size_flipped', size_flipped)):
    tensors[name] = _to_float(value, name)
    _check_rank(tensors[name], 4, name, '[B, h, w, D]')
  for a, b in (('heatmap', 'heatmap_flipped'), ('size', 'size_flipped')):
    if not tensors[a].shape.is_compatible_with(tensors[b].shape):
      raise ValueError(f'{b} has shape {tensors[b].shape}, expected that of '
                       f'{a}: {tensors[a].shape}.')
  merged_heatmap = (tensors['heatmap'] +
                    tf.reverse(tensors['heatmap_flipped'], axis=[2])) / 2.0
  merged_size = (tensors['size'] +
                 tf.reverse(tensors['size_flipped'], axis=[2])) / 2.0
  return merged_heatmap, merged_size


def unflip_keypoint_maps(keypoint_heatmap_flipped, keypoint_regression_flipped,
                         flip_permutation):
  """Maps a mirrored image's keypoint maps back to the image's frame.

  CenterNet's pose flip test (Zhou et al. 2019, reference `multi_pose`
  decoding: `flip_lr` / `flip_lr_off`) averages the keypoint heatmaps and
  the center-to-keypoint regressions of the image and its mirror. The
  mirror's maps are reversed along the width axis, their keypoint types are
  swapped back (the mirror's left eye is the image's right eye) and the x
  components of the regression vectors change sign. The local keypoint
  offsets are not merged (as in the reference code).

  Args:
    keypoint_heatmap_flipped: float [B, h, w, K] keypoint heatmaps of the
      mirrored image (any monotonic scale; probabilities for averaging).
    keypoint_regression_flipped: float [B, h, w, 2K] interleaved
      (dy0, dx0, dy1, ...) center-to-keypoint vectors of the mirrored image,
      output-stride pixels.
    flip_permutation: K ints, the augmentation convention (TF OD API
      `keypoint_flip_permutation`): keypoint k of a mirrored image is
      keypoint `flip_permutation[k]` of the original, e.g. [0, 2, 1] for
      (nose, left_eye, right_eye).

  Returns:
    heatmap: float32 [B, h, w, K] in the image's frame and keypoint order.
    regression: float32 [B, h, w, 2K] in the image's frame and order.

  Raises:
    ValueError: a permutation that is not one of range(K), or ranks /
      channel counts that do not match it.
  """
  heatmap = _to_float(keypoint_heatmap_flipped, 'keypoint_heatmap_flipped')
  regression = _to_float(keypoint_regression_flipped,
                         'keypoint_regression_flipped')
  _check_rank(heatmap, 4, 'keypoint_heatmap_flipped', '[B, h, w, K]')
  _check_rank(regression, 4, 'keypoint_regression_flipped', '[B, h, w, 2K]')
  perm = [int(k) for k in flip_permutation]
  num = len(perm)
  if sorted(perm) != list(range(num)):
    raise ValueError(f'flip_permutation {perm} is not a permutation of '
                     f'0..{num - 1}.')
  if heatmap.shape[-1] != num or regression.shape[-1] != 2 * num:
    raise ValueError(
        f'flip_permutation has {num} entries but the maps have '
        f'{heatmap.shape[-1]} heatmap and {regression.shape[-1]} regression '
        'channels (expected K and 2K).')
  # Type j of the image is type k of the mirror where perm[k] == j.
  inverse = [0] * num
  for k, j in enumerate(perm):
    inverse[j] = k
  heatmap = tf.gather(tf.reverse(heatmap, axis=[2]), inverse, axis=3)
  shape = tf.shape(regression)
  vectors = tf.reshape(tf.reverse(regression, axis=[2]),
                       tf.concat([shape[:3], [num, 2]], 0))
  vectors = tf.gather(vectors * tf.constant([1.0, -1.0]), inverse, axis=3)
  return heatmap, tf.reshape(vectors, shape)
