"""CenterNet "Objects as Points" dense targets (boxes and keypoints).

Zhou, Wang & Krahenbuhl 2019, "Objects as Points", Sec. 3-4: a box with
center p (input pixels) is represented at its integer output location
p~ = floor(p / R) (R = output stride) by

  * a per-class center heatmap: circular Gaussian with CornerNet's radius
    (CornerNet Sec. 3.2; sigma = (2r + 1) / 6 as in the reference code),
    combined across objects by element-wise maximum;
  * a size target s = (h, w) in output-stride pixels (L1 at p~ only);
  * an offset target p / R - p~ (L1 at p~ only);
  * for human pose (Sec. 4, "Human pose estimation"): per-keypoint heatmaps
    (Gaussians at each visible joint), the joints relative to p~
    (2K values at p~) and the joints' own sub-pixel offsets.

Pixel convention (`od_meta.core.target_assigner.coordinates_grid`): output
location (i, j) covers input pixels [i * R, (i + 1) * R) x [j * R,
(j + 1) * R), so a point at input pixel p lands in location floor(p / R).
Groundtruth boxes are normalized [ymin, xmin, ymax, xmax] relative to the
`height x width` input; they are clipped to [0, 1] and converted to input
pixels internally.
"""

import tensorflow as tf

from od_meta.core import standard_fields
from od_meta.core import target_assigner
from od_meta.target_assigners import gaussian_heatmaps

_INT32_MAX = 2**31 - 1

DTF = standard_fields.DenseTargetFields


def check_groundtruth_lists(groundtruth_boxes_list, groundtruth_classes_list,
                            groundtruth_weights_list, **optional_lists):
  """Validates the per-image groundtruth lists of a dense assigner.

  Args:
    groundtruth_boxes_list: list (or tuple) of `batch` `[N_i, 4]` tensors.
    groundtruth_classes_list: list of `batch` class tensors.
    groundtruth_weights_list: None or a list of `batch` `[N_i]` tensors.
    **optional_lists: other name -> None or list of `batch` entries.

  Returns:
    (batch, weights_list, optional dict) with None lists expanded to
    `batch * [None]`.

  Raises:
    ValueError: naming the argument, if a list is missing, empty or of the
      wrong length.
  """
  if not isinstance(groundtruth_boxes_list, (list, tuple)):
    raise ValueError('groundtruth_boxes_list must be a list of [N_i, 4] '
                     f'tensors, got {type(groundtruth_boxes_list).__name__}.')
  batch = len(groundtruth_boxes_list)
  if batch == 0:
    raise ValueError('groundtruth_boxes_list must hold at least one image.')
  lists = {'groundtruth_classes_list': groundtruth_classes_list,
           'groundtruth_weights_list': groundtruth_weights_list}
  lists.update(optional_lists)
  out = {}
  for name, value in lists.items():
    if value is None:
      if name == 'groundtruth_classes_list':
        raise ValueError('groundtruth_classes_list is required.')
      value = batch * [None]
    if not isinstance(value, (list, tuple)):
      raise ValueError(f'{name} must be a list, got {type(value).__name__}.')
    if len(value) != batch:
      raise ValueError(f'{name} has {len(value)} entries but '
                       f'groundtruth_boxes_list has {batch}.')
    out[name] = list(value)
  weights = out.pop('groundtruth_weights_list')
  out.pop('groundtruth_classes_list')
  return batch, weights, out


def _output_size(height, width, stride):
  """Output map size (height // stride, width // stride) and float sizes."""
  for name, value in (('height', height), ('width', width)):
    if isinstance(value, bool):
      raise ValueError(f'{name} must be an int, got {value!r}.')
    if isinstance(value, int) and value < stride:
      raise ValueError(f'{name} must be >= stride ({stride}), got {value}.')
  out_h = height // stride
  out_w = width // stride
  return out_h, out_w


def prepare_image_groundtruth(height, width, stride, num_classes, boxes,
                              classes, weights=None):
  """Per-object quantities shared by the CenterNet and TTFNet assigners.

  Boxes are clipped to the image ([0, 1] normalized) and converted to input
  pixels. An object is valid (produces targets) iff its coordinates are
  finite, its weight is > 0, its clipped box has positive height and width
  and its class row has a positive entry.

  Args:
    height: int or int32 scalar, input height in pixels.
    width: int or int32 scalar, input width in pixels.
    stride: positive int, the output stride.
    num_classes: positive int.
    boxes: float32 `[N, 4]` normalized [ymin, xmin, ymax, xmax].
    classes: int32 `[N]` 0-based class ids (out-of-range ids give an
      all-zero row, so the object is invalid) or float32 `[N, num_classes]`
      one-hot rows.
    weights: optional float32 `[N]`; default ones.

  Returns:
    dict with (N objects; "out" = output-stride pixels):
      'boxes_pixels': float32 `[N, 4]` clipped box in input pixels.
      'sizes': float32 `[N, 2]` (h, w) out.
      'centers': float32 `[N, 2]` (y, x) center out (center pixel / stride).
      'center_locations': int32 `[N, 2]` floor(centers), clamped to the map.
      'class_rows': float32 `[N, num_classes]`.
      'weights': float32 `[N]`.
      'valid': bool `[N]`.
      'areas': float32 `[N]` clipped box area in input pixels^2.
      'priority': int32 `[N]`, a permutation of 0..N-1: the rank of the
        object when sorted by area ascending (ties by index); smaller wins
        shared pixels.

  Raises:
    ValueError: if a static shape is wrong, naming the argument.
  """
  boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
  if boxes.shape.rank is not None and (
      boxes.shape.rank != 2 or
      (boxes.shape[1] is not None and boxes.shape[1] != 4)):
    raise ValueError('groundtruth boxes must be [N, 4], got shape '
                     f'{boxes.shape}.')
  num_boxes = tf.shape(boxes)[0]
  classes = tf.convert_to_tensor(classes)
  if classes.shape.rank == 1:
    if classes.dtype.is_floating:
      raise ValueError('groundtruth classes of shape [N] must be integer '
                       f'class ids, got dtype {classes.dtype.name}.')
    class_rows = tf.one_hot(tf.cast(classes, tf.int32), num_classes,
                            dtype=tf.float32)
  elif classes.shape.rank == 2:
    if (classes.shape[1] is not None and
        classes.shape[1] != num_classes):
      raise ValueError(f'groundtruth classes must be [N, {num_classes}] '
                       f'one-hot, got shape {classes.shape}.')
    class_rows = tf.cast(classes, tf.float32)
  else:
    raise ValueError('groundtruth classes must be [N] int ids or [N, '
                     f'num_classes] one-hot, got shape {classes.shape}.')
  if weights is None:
    weights = tf.ones([num_boxes], tf.float32)
  weights = tf.cast(tf.convert_to_tensor(weights), tf.float32)
  if weights.shape.rank is not None and weights.shape.rank != 1:
    raise ValueError(f'groundtruth weights must be [N], got shape '
                     f'{weights.shape}.')
  for name, tensor in (('classes', class_rows), ('weights', weights)):
    if (boxes.shape[0] is not None and tensor.shape[0] is not None and
        tensor.shape[0] != boxes.shape[0]):
      raise ValueError(f'groundtruth {name} has {tensor.shape[0]} rows but '
                       f'groundtruth boxes has {boxes.shape[0]}.')

  out_h, out_w = _output_size(height, width, stride)
  finite = tf.reduce_all(tf.math.is_finite(boxes), axis=1)
  boxes = tf.where(finite[:, tf.newaxis], boxes, tf.zeros_like(boxes))
  boxes = tf.clip_by_value(boxes, 0.0, 1.0)
  h_f = tf.cast(height, tf.float32)
  w_f = tf.cast(width, tf.float32)
  boxes_pixels = boxes * tf.stack([h_f, w_f, h_f, w_f])
  ymin, xmin, ymax, xmax = tf.unstack(boxes_pixels, axis=1)
  box_h = ymax - ymin
  box_w = xmax - xmin
  class_weight = tf.where(tf.math.is_finite(weights), weights,
                          tf.zeros_like(weights))
  valid = (finite & (class_weight > 0.0) & (box_h > 0.0) & (box_w > 0.0) &
           (tf.reduce_max(tf.concat(
               [class_rows, tf.zeros([num_boxes, 1])], axis=1), axis=1) > 0.0))
  s = float(stride)
  centers = tf.stack([(ymin + ymax) / 2.0, (xmin + xmax) / 2.0], axis=1) / s
  max_loc = tf.stack([out_h - 1, out_w - 1])
  locations = tf.clip_by_value(tf.cast(tf.floor(centers), tf.int32), 0,
                               tf.cast(max_loc, tf.int32)[tf.newaxis, :])
  areas = box_h * box_w
  order = tf.argsort(areas, stable=True)
  priority = tf.math.invert_permutation(order)
  return {
      'boxes_pixels': boxes_pixels,
      'sizes': tf.stack([box_h, box_w], axis=1) / s,
      'centers': centers,
      'center_locations': locations,
      'class_rows': class_rows,
      'weights': class_weight,
      'valid': valid,
      'areas': areas,
      'priority': priority,
  }


def scatter_winners(flat_indices, priorities, valid, values, num_pixels):
  """Scatters entries onto a flat map; one winner per pixel.

  Among the valid entries that fall on one pixel, the one with the smallest
  priority wins (priorities must be distinct among valid entries).

  Args:
    flat_indices: int32 `[M]`, row-major pixel index (y * width + x).
    priorities: int32 `[M]`.
    valid: bool `[M]`; invalid entries are dropped.
    values: float32 `[M, D]` (static D).
    num_pixels: int or int32 scalar.

  Returns:
    dense: float32 `[num_pixels, D]`, zeros where nothing landed.
    mask: float32 `[num_pixels]`, 1 where an entry landed.
    winner: bool `[M]`, which entries were written.
  """
  segments = tf.where(valid, flat_indices, tf.cast(num_pixels, tf.int32))
  prios = tf.where(valid, priorities, tf.fill(tf.shape(priorities),
                                              _INT32_MAX))
  min_prio = tf.math.unsorted_segment_min(prios, segments, num_pixels + 1)
  winner = valid & tf.equal(prios, tf.gather(min_prio, segments))
  indices = tf.boolean_mask(flat_indices, winner)[:, tf.newaxis]
  depth = values.shape[1]
  dense = tf.scatter_nd(indices, tf.boolean_mask(values, winner),
                        tf.stack([num_pixels, depth]))
  mask = tf.scatter_nd(indices, tf.ones(tf.shape(indices)[:1], tf.float32),
                       tf.reshape(num_pixels, [1]))
  return dense, mask, winner


class CenterNetTargetAssigner(target_assigner.SingleLevelDenseTargetAssigner):
  """CenterNet "Objects as Points" targets: center heatmap, size, offset.

  Optionally also the human-pose targets (Sec. 4). Output maps are at
  `h = height // stride`, `w = width // stride`; all regression targets are
  in output-stride pixels, (y, x) order.

  Rules:
    * An object produces targets iff it is valid: finite coordinates,
      weight > 0, positive clipped height and width, a positive class entry.
    * Heatmap peak value = the box weight (1.0 for weight 1): the one-hot
      class row times the weight scales the Gaussian (as in the TF OD API).
      The heatmap radius is computed from the box size in output-stride
      pixels, without CenterNet's `ceil` of h and w (as the TF OD API).
    * Two valid objects on one center pixel: the smaller-area box (clipped
      box, input pixels^2) writes size, offset and keypoint regression;
      ties go to the lower index.
    * A center at or beyond the last row/column (only possible when the
      input size is not a multiple of the stride) is clamped to the map;
      its offset is then p / stride - clamped location (may exceed 1).
  """

  def __init__(self, *, stride, num_classes, min_overlap=0.7,
               keypoint_std_devs=None, compute_keypoints=False,
               per_keypoint_offset=False, offset_peak_radius=0):
    """Creates the assigner.

    Args:
      stride: positive int, output stride R (4 in CenterNet).
      num_classes: positive int, number of object classes C.
      min_overlap: float in (0, 1), CornerNet's IoU for the Gaussian radius.
      keypoint_std_devs: optional list of K positive floats scaling the
        object's radius and sigma for each keypoint heatmap (default 1 for
        every keypoint, CenterNet's choice).
      compute_keypoints: bool, whether `assign` builds the keypoint targets
        (then `groundtruth_keypoints_list` is required).
      per_keypoint_offset: bool, one sub-pixel offset target per keypoint
        type (`keypoint_offset` has 2K channels) instead of one shared
        2-channel map (TF OD API `per_keypoint_offset`).
      offset_peak_radius: int >= 0, keypoint offsets are also trained at
        the pixels within this Chebyshev radius (output-stride pixels) of the
        keypoint's pixel, with target keypoint / stride - pixel (TF OD API
        `offset_peak_radius`); 0 = only the keypoint's own pixel.

    Raises:
      ValueError: on a non-positive stride / num_classes, min_overlap out of
        (0, 1), a non-positive keypoint std dev or a negative
        offset_peak_radius.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride <= 0:
      raise ValueError(f'stride must be a positive int, got {stride!r}.')
    if (isinstance(num_classes, bool) or not isinstance(num_classes, int) or
        num_classes <= 0):
      raise ValueError(
          f'num_classes must be a positive int, got {num_classes!r}.')
    if not 0.0 < min_overlap < 1.0:
      raise ValueError(f'min_overlap must be in (0, 1), got {min_overlap}.')
    if keypoint_std_devs is not None:
      keypoint_std_devs = [float(v) for v in keypoint_std_devs]
      if not keypoint_std_devs or not all(v > 0 for v in keypoint_std_devs):
        raise ValueError('keypoint_std_devs must be a non-empty list of '
                         f'positive floats, got {keypoint_std_devs}.')
    self._stride = stride
    self._num_classes = num_classes
    self._min_overlap = float(min_overlap)
    self._keypoint_std_devs = keypoint_std_devs
    self._compute_keypoints = bool(compute_keypoints)
    if (isinstance(offset_peak_radius, bool) or
        not isinstance(offset_peak_radius, int) or offset_peak_radius < 0):
      raise ValueError('offset_peak_radius must be an int >= 0, got '
                       f'{offset_peak_radius!r}.')
    self._per_keypoint_offset = bool(per_keypoint_offset)
    self._offset_peak_radius = offset_peak_radius

  @property
  def stride(self):
    return self._stride

  @property
  def num_classes(self):
    return self._num_classes

  @property
  def per_keypoint_offset(self):
    return self._per_keypoint_offset

  # Plain tensor code (no tensor-dependent Python control flow): AutoGraph
  # conversion is skipped to keep tracing cheap inside tf.function.
  @tf.autograph.experimental.do_not_convert
  def assign(self, height, width, groundtruth_boxes_list,
             groundtruth_classes_list, groundtruth_weights_list=None,
             groundtruth_keypoints_list=None,
             groundtruth_keypoint_visibilities_list=None):
    """Builds the batched CenterNet targets.

    Args:
      height: int or int32 scalar, input height in pixels (>= stride).
      width: int or int32 scalar, input width in pixels (>= stride).
      groundtruth_boxes_list: list of `batch` float32 `[N_i, 4]` normalized
        [ymin, xmin, ymax, xmax] relative to the `height x width` input.
      groundtruth_classes_list: list of `batch` int32 `[N_i]` 0-based class
        ids or float32 `[N_i, num_classes]` one-hot rows.
      groundtruth_weights_list: optional list of `batch` float32 `[N_i]`;
        weight 0 drops a box.
      groundtruth_keypoints_list: list of `batch` float32 `[N_i, K, 2]`
        normalized (y, x), NaN where absent. Required when the assigner was
        built with `compute_keypoints=True`; ignored otherwise.
      groundtruth_keypoint_visibilities_list: optional list of `batch` bool
        `[N_i, K]`; default: the keypoint is finite. A keypoint is used iff
        visible, finite, of a valid object and inside the output map
        (0 <= p / stride < h, same for x).

    Returns:
      dict of float32 tensors (B = batch, h = height // stride,
      w = width // stride, "out" = output-stride pixels):
        DTF.heatmap: `[B, h, w, C]` circular Gaussians, element-wise max.
        DTF.size: `[B, h, w, 2]` (box height, width) out at center pixels.
        DTF.offset: `[B, h, w, 2]` (y, x) center / stride - location.
        DTF.center_weights: `[B, h, w]` 1 at the center pixels of valid boxes.
        DTF.num_objects: `[B]` number of valid boxes.
      and with `compute_keypoints`:
        DTF.keypoint_heatmap: `[B, h, w, K]` Gaussians at visible keypoints
          (sigma and radius of the object times keypoint_std_devs[k]).
        DTF.keypoint_regression: `[B, h, w, 2K]` interleaved
          (y0, x0, y1, x1, ...): keypoint / stride - object center location,
          out, at the object's center pixel.
        DTF.keypoint_regression_weights: `[B, h, w, 2K]` 1 at the center
          pixel for visible keypoints (both y and x entries).
        DTF.keypoint_offset: `[B, h, w, 2]` keypoint / stride - pixel at each
          visible keypoint's own pixel floor(keypoint / stride) and, with
          `offset_peak_radius` r, at the pixels within Chebyshev distance r
          of it (if several land on one pixel, the nearer one wins, then the
          one of the smaller box, then the lower keypoint index). With
          `per_keypoint_offset`: `[B, h, w, 2K]` interleaved (y0, x0, y1,
          ...), keypoint type k on channels 2k, 2k + 1.
        DTF.keypoint_offset_weights: `[B, h, w]`, or `[B, h, w, 2K]` with
          `per_keypoint_offset`.
        DTF.num_keypoints: `[B]` number of visible keypoints used.

    Raises:
      ValueError: on missing / mismatched lists or bad static shapes,
        naming the argument.
    """
    batch, weights_list, extra = check_groundtruth_lists(
        groundtruth_boxes_list, groundtruth_classes_list,
        groundtruth_weights_list,
        groundtruth_keypoints_list=(groundtruth_keypoints_list
                                    if self._compute_keypoints else None),
        groundtruth_keypoint_visibilities_list=(
            groundtruth_keypoint_visibilities_list
            if self._compute_keypoints else None))
    keypoints_list = extra['groundtruth_keypoints_list']
    visibilities_list = extra['groundtruth_keypoint_visibilities_list']
    if self._compute_keypoints and groundtruth_keypoints_list is None:
      raise ValueError('groundtruth_keypoints_list is required when '
                       'compute_keypoints=True.')
    per_image = []
    with tf.name_scope('CenterNetTargetAssigner'):
      for i in range(batch):
        per_image.append(self._assign_image(
            height, width, groundtruth_boxes_list[i],
            groundtruth_classes_list[i], weights_list[i], keypoints_list[i],
            visibilities_list[i]))
      return {key: tf.stack([t[key] for t in per_image])
              for key in per_image[0]}

  def _assign_image(self, height, width, boxes, classes, weights, keypoints,
                    visibilities):
    """Targets for one image; see `assign`."""
    out_h, out_w = _output_size(height, width, self._stride)
    num_pixels = out_h * out_w
    gt = prepare_image_groundtruth(height, width, self._stride,
                                   self._num_classes, boxes, classes, weights)
    valid = gt['valid']
    valid_f = tf.cast(valid, tf.float32)
    sizes = gt['sizes']
    radius, sigma = gaussian_heatmaps.center_net_radius_and_sigma(
        sizes[:, 0], sizes[:, 1], self._min_overlap)
    locations = gt['center_locations']
    class_weights = (gt['class_rows'] * (gt['weights'] * valid_f)
                     [:, tf.newaxis])
    heatmap = gaussian_heatmaps.draw_gaussian_heatmaps(
        out_h, out_w, locations, tf.stack([sigma, sigma], axis=1),
        class_weights, tf.stack([radius, radius], axis=1))

    flat = locations[:, 0] * out_w + locations[:, 1]
    offsets = gt['centers'] - tf.cast(locations, tf.float32)
    values = tf.concat([sizes, offsets], axis=1)
    dense, mask, winner = scatter_winners(flat, gt['priority'], valid, values,
                                          num_pixels)
    map_shape = tf.stack([out_h, out_w])
    dense = tf.reshape(dense, tf.concat([map_shape, [4]], 0))
    targets = {
        DTF.heatmap: heatmap,
        DTF.size: dense[:, :, :2],
        DTF.offset: dense[:, :, 2:],
        DTF.center_weights: tf.reshape(mask, map_shape),
        DTF.num_objects: tf.reduce_sum(valid_f),
    }
    if self._compute_keypoints:
      targets.update(self._keypoint_targets(
          height, width, out_h, out_w, gt, radius, sigma, flat, winner,
          keypoints, visibilities))
    static = (height // self._stride if isinstance(height, int) else None,
              width // self._stride if isinstance(width, int) else None)
    for key, value in targets.items():
      if key not in ('num_objects', 'num_keypoints'):
        value.set_shape(static + tuple(value.shape[2:]))
    return targets

  def _keypoint_targets(self, height, width, out_h, out_w, gt, radius, sigma,
                        center_flat, center_winner, keypoints, visibilities):
    """Keypoint heatmap / regression / offset targets for one image."""
    keypoints = tf.cast(tf.convert_to_tensor(keypoints), tf.float32)
    if keypoints.shape.rank is not None and (
        keypoints.shape.rank != 3 or keypoints.shape[2] != 2):
      raise ValueError('groundtruth keypoints must be [N, K, 2], got shape '
                       f'{keypoints.shape}.')
    num_keypoints = keypoints.shape[1]
    if num_keypoints is None:
      raise ValueError('groundtruth keypoints need a static number of '
                       'keypoints K (shape [N, K, 2]).')
    std_devs = self._keypoint_std_devs
    if std_devs is None:
      std_devs = [1.0] * num_keypoints
    if len(std_devs) != num_keypoints:
      raise ValueError(f'keypoint_std_devs has {len(std_devs)} entries but '
                       f'the groundtruth keypoints have K={num_keypoints}.')
    finite = tf.reduce_all(tf.math.is_finite(keypoints), axis=2)
    if visibilities is None:
      visible = finite
    else:
      visibilities = tf.convert_to_tensor(visibilities)
      if visibilities.shape.rank is not None and visibilities.shape.rank != 2:
        raise ValueError('groundtruth keypoint visibilities must be [N, K], '
                         f'got shape {visibilities.shape}.')
      visible = tf.cast(visibilities, tf.bool) & finite
    h_f = tf.cast(height, tf.float32)
    w_f = tf.cast(width, tf.float32)
    s = float(self._stride)
    kp = tf.where(finite[:, :, tf.newaxis], keypoints, tf.zeros_like(keypoints))
    kp = kp * tf.stack([h_f, w_f]) / s  # Output-stride pixels.
    limits = tf.cast(tf.stack([out_h, out_w]), tf.float32)
    inside = tf.reduce_all((kp >= 0.0) & (kp < limits), axis=2)
    visible = visible & inside & gt['valid'][:, tf.newaxis]
    visible_f = tf.cast(visible, tf.float32)
    kp = kp * visible_f[:, :, tf.newaxis]
    kp_loc = tf.cast(tf.floor(kp), tf.int32)
    num_boxes = tf.shape(kp)[0]
    map_shape = tf.stack([out_h, out_w])

    # Heatmaps: one Gaussian per visible keypoint, channel k.
    # Not `x * ones` when every std dev is 1: grappler's arithmetic
    # optimizer rewrites a Mul by an all-ones constant into a Tile and
    # divides by the input's dimensions, which crashes the process (SIGFPE)
    # when a tf.function is traced with statically zero objects.
    if all(v == 1.0 for v in std_devs):
      kp_sigma = tf.reshape(tf.tile(sigma[:, tf.newaxis], [1, num_keypoints]),
                            [-1])
      kp_radius = tf.reshape(
          tf.tile(radius[:, tf.newaxis], [1, num_keypoints]), [-1])
    else:
      std = tf.constant(std_devs, tf.float32)[tf.newaxis, :]
      kp_sigma = tf.reshape(sigma[:, tf.newaxis] * std, [-1])
      kp_radius = tf.reshape(radius[:, tf.newaxis] * std, [-1])
    channel = tf.one_hot(tf.tile(tf.range(num_keypoints), [num_boxes]),
                         num_keypoints, dtype=tf.float32)
    entry_weight = tf.reshape(visible_f * gt['weights'][:, tf.newaxis], [-1])
    keypoint_heatmap = gaussian_heatmaps.draw_gaussian_heatmaps(
        out_h, out_w, tf.reshape(kp_loc, [-1, 2]),
        tf.stack([kp_sigma, kp_sigma], axis=1),
        channel * entry_weight[:, tf.newaxis],
        tf.stack([kp_radius, kp_radius], axis=1))

    # Regression from the object's integer center, at its center pixel.
    center = tf.cast(gt['center_locations'], tf.float32)
    regression = (kp - center[:, tf.newaxis, :]) * visible_f[:, :, tf.newaxis]
    regression = tf.reshape(regression, [-1, 2 * num_keypoints])
    reg_weights = tf.reshape(
        tf.tile(visible_f[:, :, tf.newaxis], [1, 1, 2]),
        [-1, 2 * num_keypoints])
    winner_idx = tf.where(center_winner)
    scatter_idx = tf.gather(center_flat, winner_idx[:, 0])[:, tf.newaxis]
    dense_shape = tf.stack([out_h * out_w, 2 * num_keypoints])
    regression_map = tf.scatter_nd(
        scatter_idx, tf.gather_nd(regression, winner_idx), dense_shape)
    reg_weight_map = tf.scatter_nd(
        scatter_idx, tf.gather_nd(reg_weights, winner_idx), dense_shape)
    reg_shape = tf.concat([map_shape, [2 * num_keypoints]], 0)

    # Sub-pixel offsets at each keypoint's pixel and, with a peak radius,
    # its neighbours: entries [N, K, n] for the n = (2r + 1)^2 shifts,
    # nearest shift first in the priority.
    r = self._offset_peak_radius
    shifts = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    shifts.sort(key=lambda d: (max(abs(d[0]), abs(d[1])), abs(d[0]) +
                               abs(d[1])))
    num_shifts = len(shifts)
    shift = tf.constant(shifts, tf.int32)  # [n, 2]
    pixels = kp_loc[:, :, tf.newaxis, :] + shift  # [N, K, n, 2]
    in_map = tf.reduce_all(
        (pixels >= 0) & (pixels < tf.stack([out_h, out_w])), axis=3)
    entry_valid = tf.reshape(visible[:, :, tf.newaxis] & in_map, [-1])
    kp_offset = tf.reshape(
        kp[:, :, tf.newaxis, :] - tf.cast(pixels, tf.float32), [-1, 2])
    kp_offset.set_shape([None, 2])
    pixel_flat = pixels[..., 0] * out_w + pixels[..., 1]  # [N, K, n]
    # Priority: shift rank, then box priority, then keypoint index.
    box_prio = gt['priority'][:, tf.newaxis, tf.newaxis]
    kp_index = tf.range(num_keypoints)[tf.newaxis, :, tf.newaxis]
    shift_rank = tf.range(num_shifts)[tf.newaxis, tf.newaxis, :]
    kp_prio = (shift_rank * (num_boxes * num_keypoints) +
               box_prio * num_keypoints + kp_index)
    if self._per_keypoint_offset:
      # One segment per (pixel, keypoint type): no competition across types.
      pixel_flat = pixel_flat * num_keypoints + kp_index
      offset_map, offset_mask, _ = scatter_winners(
          tf.reshape(pixel_flat, [-1]), tf.reshape(kp_prio, [-1]),
          entry_valid, kp_offset, out_h * out_w * num_keypoints)
      offset_shape = tf.concat([map_shape, [2 * num_keypoints]], 0)
      offset_map = tf.reshape(offset_map, offset_shape)
      offset_mask = tf.reshape(
          tf.repeat(tf.reshape(offset_mask, [-1, 1]), 2, axis=1),
          offset_shape)
      offset_map.set_shape([None, None, 2 * num_keypoints])
      offset_mask.set_shape([None, None, 2 * num_keypoints])
    else:
      offset_map, offset_mask, _ = scatter_winners(
          tf.reshape(pixel_flat, [-1]), tf.reshape(kp_prio, [-1]),
          entry_valid, kp_offset, out_h * out_w)
      offset_map = tf.reshape(offset_map, tf.concat([map_shape, [2]], 0))
      offset_mask = tf.reshape(offset_mask, map_shape)
    return {
        DTF.keypoint_heatmap: keypoint_heatmap,
        DTF.keypoint_regression: tf.reshape(regression_map, reg_shape),
        DTF.keypoint_regression_weights: tf.reshape(reg_weight_map, reg_shape),
        DTF.keypoint_offset: offset_map,
        DTF.keypoint_offset_weights: offset_mask,
        DTF.num_keypoints: tf.reduce_sum(visible_f),
    }
