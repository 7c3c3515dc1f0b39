"""Data augmentation on one decoded example (a tensor dict).

Every step is a pure function `step(tensor_dict, **kwargs) -> tensor_dict`
that takes and returns a dict keyed by `standard_fields.InputDataFields` (as
produced by `od_meta.data.tf_example_decoder.TfExampleDecoder.decode`) and
never mutates its input. Step names and keyword arguments follow the TF Object
Detection API's `preprocessor.py` / `preprocessor.proto`, so a builder maps a
config message's fields one to one onto keyword arguments:

    options = [(random_horizontal_flip,
                {'keypoint_flip_permutation': [0, 2, 1]}),
               (ssd_random_crop, {})]
    tensor_dict = preprocess(tensor_dict, options)

Frames and dtypes:
  * `image`: `[H, W, C]`, uint8 or float32 with values in [0, 255]; every step
    returns float32 in [0, 255] (`preprocess` converts once at the start).
  * `groundtruth_boxes`: float32 `[N, 4]` `[ymin, xmin, ymax, xmax]`
    normalized to [0, 1] of the (current) image.
  * `groundtruth_keypoints`: float32 `[N, K, 2]` normalized (y, x); NaN where
    absent. `groundtruth_keypoint_visibilities`: bool `[N, K]`.
  * other per-box fields (`groundtruth_classes`, `_weights`, `_is_crowd`,
    `_area`, `_difficult`, `_text`, keypoint fields) have leading dim N and are
    kept aligned with the boxes: geometric steps drop boxes that fall out of the
    image and gather every per-box field with the same indices;
    `num_groundtruth_boxes`, when present, is updated.
  * `groundtruth_area` (pixels): crops multiply it by the fraction of the box
    that stays inside the crop window; scale/pad steps leave it unchanged (it
    stays in units of pixels of the decoded image).

Randomness: stateful `tf.random` ops with an optional op-level `seed`, as in
the TF OD API, so every call (every dataset element) draws new values and the
steps work eagerly, inside `tf.function` and inside `tf.data.Dataset.map`.

Sources: TF Object Detection API `object_detection/core/preprocessor.py`;
SSD data augmentation: Liu et al., "SSD: Single Shot MultiBox Detector",
ECCV 2016, Sec. 2.2 "Data augmentation"; random scale-crop-pad as used by
CenterNet (Zhou et al. 2019, Sec. 5 "Training") and EfficientDet (Tan et al.
2020, Sec. 5.1, scale jittering [0.1, 2.0]).
"""

import tensorflow as tf

from od_meta.core import standard_fields

fields = standard_fields.InputDataFields

# Fields whose leading dimension is the number of boxes.
PER_BOX_FIELDS = (
    fields.groundtruth_boxes,
    fields.groundtruth_classes,
    fields.groundtruth_text,
    fields.groundtruth_is_crowd,
    fields.groundtruth_area,
    fields.groundtruth_difficult,
    fields.groundtruth_weights,
    fields.groundtruth_keypoints,
    fields.groundtruth_keypoint_visibilities,
)

_SSD_NUM_OPS = 7


# ----------------------------------------------------------------- helpers
def _check_dict(tensor_dict, name):
  if not isinstance(tensor_dict, dict):
    raise ValueError(f'{name}: tensor_dict must be a dict, got '
                     f'{type(tensor_dict).__name__}')
  if fields.image not in tensor_dict:
    raise ValueError(f'{name}: tensor_dict has no {fields.image!r} field')
  image = tensor_dict[fields.image]
  if image.shape.rank is not None and image.shape.rank != 3:
    raise ValueError(f'{name}: {fields.image!r} must be [H, W, C], got shape '
                     f'{image.shape}')


def _float_image(image):
  """Casts to float32 (values kept in [0, 255])."""
  return tf.cast(image, tf.float32)


def _check_range(name, lo, hi, lo_name, hi_name, min_allowed=None):
  if lo > hi:
    raise ValueError(f'{name}: {lo_name} ({lo}) must be <= {hi_name} ({hi})')
  if min_allowed is not None and lo < min_allowed:
    raise ValueError(f'{name}: {lo_name} must be >= {min_allowed}, got {lo}')


def _check_probability(name, value, arg='probability'):
  if not 0.0 <= value <= 1.0:
    raise ValueError(f'{name}: {arg} must be in [0, 1], got {value}')


def _gather_per_box(tensor_dict, indices):
  """Gathers all per-box fields with `indices` (int [M]); updates the count."""
  out = dict(tensor_dict)
  for key in PER_BOX_FIELDS:
    if key in out:
      out[key] = tf.gather(out[key], indices)
  if fields.num_groundtruth_boxes in out:
    out[fields.num_groundtruth_boxes] = tf.cast(
        tf.size(indices), out[fields.num_groundtruth_boxes].dtype)
  return out


def _area(boxes):
  """Areas of `[N, 4]` yxyx boxes (negative extents count as 0)."""
  h = tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
  w = tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
  return h * w


def _clip_to_window(boxes, window):
  """Clips `[N, 4]` yxyx boxes to `window` `[4]` yxyx (same frame)."""
  y_min = tf.clip_by_value(boxes[:, 0], window[0], window[2])
  x_min = tf.clip_by_value(boxes[:, 1], window[1], window[3])
  y_max = tf.clip_by_value(boxes[:, 2], window[0], window[2])
  x_max = tf.clip_by_value(boxes[:, 3], window[1], window[3])
  return tf.stack([y_min, x_min, y_max, x_max], axis=1)


def _change_coordinate_frame(boxes, window):
  """Re-expresses yxyx boxes relative to `window` (yxyx, same frame).

  box' = (box - [wy0, wx0, wy0, wx0]) / [wh, ww, wh, ww]; the window itself
  maps to [0, 0, 1, 1] (TF OD API box_list_ops.change_coordinate_frame).
  """
  window = tf.cast(window, tf.float32)
  height = window[2] - window[0]
  width = window[3] - window[1]
  offset = tf.stack([window[0], window[1], window[0], window[1]])
  scale = tf.stack([height, width, height, width])
  return (boxes - offset) / scale


def _keypoints_change_frame(keypoints, window):
  """Keypoints `[N, K, 2]` (y, x) relative to `window` yxyx."""
  window = tf.cast(window, tf.float32)
  offset = tf.stack([window[0], window[1]])
  scale = tf.stack([window[2] - window[0], window[3] - window[1]])
  return (keypoints - offset) / scale


def _prune_keypoints_outside_unit_window(tensor_dict):
  """Sets keypoints outside [0, 1]^2 to NaN and their visibility to False."""
  out = dict(tensor_dict)
  if fields.groundtruth_keypoints not in out:
    return out
  kp = out[fields.groundtruth_keypoints]
  inside = tf.reduce_all((kp >= 0.0) & (kp <= 1.0), axis=-1)  # NaN -> False
  out[fields.groundtruth_keypoints] = tf.where(
      inside[..., tf.newaxis], kp, tf.constant(float('nan'), kp.dtype))
  if fields.groundtruth_keypoint_visibilities in out:
    out[fields.groundtruth_keypoint_visibilities] = tf.logical_and(
        tf.cast(out[fields.groundtruth_keypoint_visibilities], tf.bool), inside)
  return out


def _apply_window(tensor_dict, window, overlap_thresh=0.0, clip_boxes=True,
                  keep_center_in_window=False):
  """Re-frames boxes/keypoints to `window` and drops boxes falling out of it.

  Args:
    tensor_dict: the example dict (image already replaced by the caller).
    window: float32 `[4]` yxyx, the new image window expressed in the
      normalized frame of the old image (may extend beyond [0, 1] for pads).
    overlap_thresh: keep a box only if (area of box inside window) /
      (area of box) >= overlap_thresh (TF OD API prune_non_overlapping_boxes).
    clip_boxes: clip kept boxes to the new [0, 1] frame.
    keep_center_in_window: additionally require the box center to lie inside
      the window (the SSD paper's rule, Liu et al. 2016 Sec. 2.2).

  Returns:
    The new dict with per-box fields gathered and re-framed.
  """
  out = dict(tensor_dict)
  if fields.groundtruth_boxes not in out:
    return _keypoints_only(out, window)
  boxes = tf.cast(out[fields.groundtruth_boxes], tf.float32)
  window = tf.cast(window, tf.float32)
  # Completely outside (touching counts as outside).
  outside = ((boxes[:, 0] >= window[2]) | (boxes[:, 1] >= window[3]) |
             (boxes[:, 2] <= window[0]) | (boxes[:, 3] <= window[1]))
  clipped = _clip_to_window(boxes, window)
  inside_fraction = tf.math.divide_no_nan(_area(clipped), _area(boxes))
  keep = tf.logical_not(outside) & (inside_fraction >= overlap_thresh)
  if keep_center_in_window:
    cy = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cx = (boxes[:, 1] + boxes[:, 3]) / 2.0
    keep &= ((cy >= window[0]) & (cy <= window[2]) & (cx >= window[1]) &
             (cx <= window[3]))
  indices = tf.reshape(tf.where(keep), [-1])
  out = _gather_per_box(out, indices)
  new_boxes = _change_coordinate_frame(tf.gather(boxes, indices), window)
  if clip_boxes:
    new_boxes = tf.clip_by_value(new_boxes, 0.0, 1.0)
  out[fields.groundtruth_boxes] = new_boxes
  if fields.groundtruth_area in out:
    area = out[fields.groundtruth_area]
    out[fields.groundtruth_area] = area * tf.cast(
        tf.gather(inside_fraction, indices), area.dtype)
  return _keypoints_only(out, window)


def _keypoints_only(tensor_dict, window):
  out = dict(tensor_dict)
  if fields.groundtruth_keypoints in out:
    out[fields.groundtruth_keypoints] = _keypoints_change_frame(
        tf.cast(out[fields.groundtruth_keypoints], tf.float32), window)
    out = _prune_keypoints_outside_unit_window(out)
  return out


def _sub_seed(seed, index):
  """Distinct op-level seeds for the several random ops of one step."""
  return None if seed is None else int(seed) + 7919 * index


def _uniform(minval, maxval, seed):
  return tf.random.uniform([], minval=minval, maxval=maxval, dtype=tf.float32,
                           seed=seed)


# -------------------------------------------------------------------- flips
def _check_flip_permutation(name, tensor_dict, keypoint_flip_permutation):
  if fields.groundtruth_keypoints not in tensor_dict:
    return None
  kp = tensor_dict[fields.groundtruth_keypoints]
  num_kp = kp.shape[1] if kp.shape.rank == 3 else None
  if num_kp == 0:
    return None
  if keypoint_flip_permutation is None:
    raise ValueError(
        f'{name}: the tensor dict has {fields.groundtruth_keypoints!r} but '
        'keypoint_flip_permutation is None; a flip swaps left/right keypoints '
        'so the permutation is required')
  perm = [int(i) for i in keypoint_flip_permutation]
  if num_kp is not None and len(perm) != num_kp:
    raise ValueError(
        f'{name}: keypoint_flip_permutation has {len(perm)} entries but '
        f'keypoints have {num_kp}')
  if sorted(perm) != list(range(len(perm))):
    raise ValueError(f'{name}: keypoint_flip_permutation {perm} is not a '
                     'permutation of 0..K-1')
  return perm


def _flip(tensor_dict, axis, keypoint_flip_permutation, probability, seed,
          name):
  _check_dict(tensor_dict, name)
  _check_probability(name, probability)
  perm = _check_flip_permutation(name, tensor_dict, keypoint_flip_permutation)
  out = dict(tensor_dict)
  out[fields.image] = _float_image(out[fields.image])
  keys = [k for k in (fields.image, fields.groundtruth_boxes,
                      fields.groundtruth_keypoints,
                      fields.groundtruth_keypoint_visibilities) if k in out]
  inputs = {k: out[k] for k in keys}

  def _do_flip():
    res = {}
    # axis 1 = width (horizontal flip), axis 0 = height (vertical flip).
    res[fields.image] = tf.reverse(inputs[fields.image], [axis])
    if fields.groundtruth_boxes in inputs:
      b = tf.cast(inputs[fields.groundtruth_boxes], tf.float32)
      if axis == 1:  # x -> 1 - x, xmin and xmax swap.
        res[fields.groundtruth_boxes] = tf.stack(
            [b[:, 0], 1.0 - b[:, 3], b[:, 2], 1.0 - b[:, 1]], axis=1)
      else:
        res[fields.groundtruth_boxes] = tf.stack(
            [1.0 - b[:, 2], b[:, 1], 1.0 - b[:, 0], b[:, 3]], axis=1)
    if fields.groundtruth_keypoints in inputs:
      kp = tf.cast(inputs[fields.groundtruth_keypoints], tf.float32)
      coord = 1 if axis == 1 else 0
      if coord == 1:
        kp = tf.stack([kp[..., 0], 1.0 - kp[..., 1]], axis=-1)
      else:
        kp = tf.stack([1.0 - kp[..., 0], kp[..., 1]], axis=-1)
      if perm is not None:
        kp = tf.gather(kp, perm, axis=1)
      res[fields.groundtruth_keypoints] = kp
    if fields.groundtruth_keypoint_visibilities in inputs:
      vis = inputs[fields.groundtruth_keypoint_visibilities]
      if perm is not None:
        vis = tf.gather(vis, perm, axis=1)
      res[fields.groundtruth_keypoint_visibilities] = vis
    return res

  def _no_flip():
    res = {k: tf.identity(v) for k, v in inputs.items()}
    for k in (fields.groundtruth_boxes, fields.groundtruth_keypoints):
      if k in res:
        res[k] = tf.cast(res[k], tf.float32)
    return res

  do_flip = tf.random.uniform([], seed=seed) < probability
  out.update(tf.cond(do_flip, _do_flip, _no_flip))
  return out


def random_horizontal_flip(tensor_dict, keypoint_flip_permutation=None,
                           probability=0.5, seed=None):
  """Flips image, boxes and keypoints left-right with `probability`.

  Boxes `[ymin, xmin, ymax, xmax]` (normalized) become
  `[ymin, 1 - xmax, ymax, 1 - xmin]`; keypoints (y, x) become (y, 1 - x) and
  are then reordered with `keypoint_flip_permutation` (new keypoint k is old
  keypoint perm[k], e.g. left eye <-> right eye), as are their visibilities.
  Source: TF OD API preprocessor.random_horizontal_flip.

  Args:
    tensor_dict: example dict (see module docstring).
    keypoint_flip_permutation: list of K ints, a permutation of 0..K-1.
      Required when the dict holds keypoints with K > 0.
    probability: float in [0, 1], chance to flip (1.0 always flips).
    seed: optional int op-level seed.

  Returns:
    New dict, image float32 [H, W, C] in [0, 255].

  Raises:
    ValueError: on a bad probability, missing / wrong-length permutation.
  """
  return _flip(tensor_dict, 1, keypoint_flip_permutation, probability, seed,
               'random_horizontal_flip')


def random_vertical_flip(tensor_dict, keypoint_flip_permutation=None,
                         probability=0.5, seed=None):
  """Flips image, boxes and keypoints top-bottom with `probability`.

  Boxes become `[1 - ymax, xmin, 1 - ymin, xmax]`; keypoints (1 - y, x),
  reordered by `keypoint_flip_permutation` (required when keypoints exist).
  Source: TF OD API preprocessor.random_vertical_flip. Same args, returns and
  errors as `random_horizontal_flip`.
  """
  return _flip(tensor_dict, 0, keypoint_flip_permutation, probability, seed,
               'random_vertical_flip')


# --------------------------------------------------------------- color ops
def _with_image(tensor_dict, image):
  out = dict(tensor_dict)
  out[fields.image] = tf.clip_by_value(image, 0.0, 255.0)
  return out


def random_pixel_value_scale(tensor_dict, minval=0.9, maxval=1.1, seed=None):
  """Multiplies every pixel value by its own factor ~ U[minval, maxval].

  Result clipped to [0, 255]. Source: TF OD API random_pixel_value_scale.

  Args:
    tensor_dict: example dict; only the image changes (float32 [H, W, C]).
    minval, maxval: floats, minval <= maxval.
    seed: optional op-level seed.

  Raises:
    ValueError: if minval > maxval.
  """
  name = 'random_pixel_value_scale'
  _check_dict(tensor_dict, name)
  _check_range(name, minval, maxval, 'minval', 'maxval')
  image = _float_image(tensor_dict[fields.image])
  factor = tf.random.uniform(tf.shape(image), minval=minval, maxval=maxval,
                             dtype=tf.float32, seed=seed)
  return _with_image(tensor_dict, image * factor)


def _adjust_01(image, fn):
  """Applies `fn` on the image scaled to [0, 1], returns [0, 255]."""
  return tf.clip_by_value(fn(image / 255.0), 0.0, 1.0) * 255.0


def random_adjust_brightness(tensor_dict, max_delta=0.2, seed=None):
  """Adds delta ~ U[-max_delta, max_delta] to the image scaled to [0, 1].

  Source: TF OD API random_adjust_brightness (tf.image.adjust_brightness).

  Raises:
    ValueError: if max_delta < 0.
  """
  name = 'random_adjust_brightness'
  _check_dict(tensor_dict, name)
  if max_delta < 0:
    raise ValueError(f'{name}: max_delta must be >= 0, got {max_delta}')
  delta = _uniform(-max_delta, max_delta, seed)
  image = _float_image(tensor_dict[fields.image])
  return _with_image(tensor_dict, _adjust_01(
      image, lambda x: tf.image.adjust_brightness(x, delta)))


def random_adjust_contrast(tensor_dict, min_delta=0.8, max_delta=1.25,
                           seed=None):
  """Scales contrast by factor ~ U[min_delta, max_delta] (per channel mean).

  Source: TF OD API random_adjust_contrast (tf.image.adjust_contrast).

  Raises:
    ValueError: if min_delta > max_delta or min_delta < 0.
  """
  name = 'random_adjust_contrast'
  _check_dict(tensor_dict, name)
  _check_range(name, min_delta, max_delta, 'min_delta', 'max_delta', 0.0)
  factor = _uniform(min_delta, max_delta, seed)
  image = _float_image(tensor_dict[fields.image])
  return _with_image(tensor_dict, _adjust_01(
      image, lambda x: tf.image.adjust_contrast(x, factor)))


def random_adjust_hue(tensor_dict, max_delta=0.02, seed=None):
  """Rotates hue by delta ~ U[-max_delta, max_delta] (fraction of a turn).

  Source: TF OD API random_adjust_hue (tf.image.adjust_hue).

  Raises:
    ValueError: if max_delta is not in [0, 0.5].
  """
  name = 'random_adjust_hue'
  _check_dict(tensor_dict, name)
  if not 0.0 <= max_delta <= 0.5:
    raise ValueError(f'{name}: max_delta must be in [0, 0.5], got {max_delta}')
  delta = _uniform(-max_delta, max_delta, seed)
  image = _float_image(tensor_dict[fields.image])
  return _with_image(tensor_dict, _adjust_01(
      image, lambda x: tf.image.adjust_hue(x, delta)))


def random_adjust_saturation(tensor_dict, min_delta=0.8, max_delta=1.25,
                             seed=None):
  """Scales saturation by factor ~ U[min_delta, max_delta].

  Source: TF OD API random_adjust_saturation (tf.image.adjust_saturation).

  Raises:
    ValueError: if min_delta > max_delta or min_delta < 0.
  """
  name = 'random_adjust_saturation'
  _check_dict(tensor_dict, name)
  _check_range(name, min_delta, max_delta, 'min_delta', 'max_delta', 0.0)
  factor = _uniform(min_delta, max_delta, seed)
  image = _float_image(tensor_dict[fields.image])
  return _with_image(tensor_dict, _adjust_01(
      image, lambda x: tf.image.adjust_saturation(x, factor)))


def random_distort_color(tensor_dict, color_ordering=0, seed=None):
  """Color jitter: brightness, saturation, hue and contrast in a fixed order.

  color_ordering 0: brightness(32/255), saturation[0.5, 1.5], hue(0.2),
  contrast[0.5, 1.5]; 1: brightness, contrast, saturation, hue. Values as in
  the TF OD API random_distort_color (from the Inception preprocessing).

  Raises:
    ValueError: if color_ordering is not 0 or 1.
  """
  name = 'random_distort_color'
  _check_dict(tensor_dict, name)
  if color_ordering not in (0, 1):
    raise ValueError(f'{name}: color_ordering must be 0 or 1, got '
                     f'{color_ordering}')
  brightness = lambda d: random_adjust_brightness(
      d, 32.0 / 255.0, seed=_sub_seed(seed, 1))
  saturation = lambda d: random_adjust_saturation(
      d, 0.5, 1.5, seed=_sub_seed(seed, 2))
  hue = lambda d: random_adjust_hue(d, 0.2, seed=_sub_seed(seed, 3))
  contrast = lambda d: random_adjust_contrast(
      d, 0.5, 1.5, seed=_sub_seed(seed, 4))
  if color_ordering == 0:
    steps = (brightness, saturation, hue, contrast)
  else:
    steps = (brightness, contrast, saturation, hue)
  out = dict(tensor_dict)
  for step in steps:
    out = step(out)
  return out


def random_rgb_to_gray(tensor_dict, probability=0.1, seed=None):
  """Converts the image to gray (kept 3 channels) with `probability`.

  Source: TF OD API random_rgb_to_gray.

  Raises:
    ValueError: on a probability outside [0, 1].
  """
  name = 'random_rgb_to_gray'
  _check_dict(tensor_dict, name)
  _check_probability(name, probability)
  image = _float_image(tensor_dict[fields.image])
  gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
  do_gray = tf.random.uniform([], seed=seed) < probability
  return _with_image(tensor_dict, tf.where(do_gray, gray, image))


# ------------------------------------------------------------------- crops
def _crop(tensor_dict, min_object_covered, aspect_ratio_range, area_range,
          overlap_thresh, clip_boxes, keep_center_in_window, seed):
  """One sample_distorted_bounding_box crop (no random_coef)."""
  image = _float_image(tensor_dict[fields.image])
  if fields.groundtruth_boxes in tensor_dict:
    boxes = tf.cast(tensor_dict[fields.groundtruth_boxes], tf.float32)
  else:
    boxes = tf.zeros([0, 4], tf.float32)
  sample_boxes = tf.clip_by_value(boxes, 0.0, 1.0)[tf.newaxis]
  begin, size, window = tf.image.sample_distorted_bounding_box(
      tf.shape(image),
      bounding_boxes=sample_boxes,
      seed=seed or 0,
      min_object_covered=min_object_covered,
      aspect_ratio_range=list(aspect_ratio_range),
      area_range=list(area_range),
      max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  new_image = tf.slice(image, begin, size)
  new_image.set_shape([None, None, image.shape[-1]])
  out = dict(tensor_dict)
  out[fields.image] = new_image
  return _apply_window(out, tf.reshape(window, [4]), overlap_thresh,
                       clip_boxes, keep_center_in_window)


def _identity_like(tensor_dict):
  out = {k: tf.identity(v) for k, v in tensor_dict.items()}
  out[fields.image] = _float_image(out[fields.image])
  for k in (fields.groundtruth_boxes, fields.groundtruth_keypoints):
    if k in out:
      out[k] = tf.cast(out[k], tf.float32)
  return out


def _maybe(tensor_dict, fn, random_coef, seed):
  """Applies fn unless U[0,1) < random_coef (then returns the input)."""
  if random_coef <= 0.0:
    return fn(tensor_dict)
  do_it = tf.random.uniform([], seed=_sub_seed(seed, 1)) >= random_coef
  return tf.cond(do_it, lambda: fn(tensor_dict),
                 lambda: _identity_like(tensor_dict))


def random_crop_image(tensor_dict, min_object_covered=1.0,
                      aspect_ratio_range=(0.75, 1.33),
                      area_range=(0.1, 1.0), overlap_thresh=0.3,
                      clip_boxes=True, random_coef=0.0,
                      keep_center_in_window=False, seed=None):
  """Random crop sampled by tf.image.sample_distorted_bounding_box.

  The crop window covers at least `min_object_covered` of some groundtruth
  box (the whole image counts as the box when there are none), has aspect
  ratio (w/h) in `aspect_ratio_range` and area fraction in `area_range`.
  Boxes completely outside the window, or with less than `overlap_thresh` of
  their own area inside it, are dropped together with all their per-box
  fields; kept boxes are re-expressed in the crop's normalized frame (change
  of coordinate frame) and clipped to [0, 1] if `clip_boxes`; keypoints
  outside the crop become NaN (visibility False). With probability
  `random_coef` the example is returned unchanged.
  Source: TF OD API preprocessor.random_crop_image.

  Args:
    tensor_dict: example dict.
    min_object_covered: float in [0, 1].
    aspect_ratio_range: (min, max) width / height of the crop.
    area_range: (min, max) crop area as a fraction of the image, in (0, 1].
    overlap_thresh: float in [0, 1], min fraction of a box inside the crop.
    clip_boxes: bool.
    random_coef: float in [0, 1], chance of returning the input unchanged.
    keep_center_in_window: bool, also drop boxes whose center is outside the
      crop (SSD paper rule; not in the TF OD API).
    seed: optional op-level seed.

  Returns:
    New dict; image float32 [h', w', C].

  Raises:
    ValueError: on out-of-range arguments.
  """
  name = 'random_crop_image'
  _check_dict(tensor_dict, name)
  _check_crop_args(name, min_object_covered, aspect_ratio_range, area_range,
                   overlap_thresh, random_coef)
  fn = lambda d: _crop(d, min_object_covered, aspect_ratio_range, area_range,
                       overlap_thresh, clip_boxes, keep_center_in_window, seed)
  return _maybe(tensor_dict, fn, random_coef, seed)


def _check_crop_args(name, min_object_covered, aspect_ratio_range, area_range,
                     overlap_thresh, random_coef):
  _check_probability(name, min_object_covered, 'min_object_covered')
  _check_probability(name, overlap_thresh, 'overlap_thresh')
  _check_probability(name, random_coef, 'random_coef')
  if len(aspect_ratio_range) != 2 or len(area_range) != 2:
    raise ValueError(f'{name}: aspect_ratio_range and area_range must be '
                     '(min, max) pairs')
  _check_range(name, aspect_ratio_range[0], aspect_ratio_range[1],
               'aspect_ratio_range[0]', 'aspect_ratio_range[1]', 1e-6)
  _check_range(name, area_range[0], area_range[1], 'area_range[0]',
               'area_range[1]', 1e-6)
  if area_range[1] > 1.0:
    raise ValueError(f'{name}: area_range[1] must be <= 1, got {area_range[1]}')


def ssd_random_crop(tensor_dict,
                    min_object_covered=(0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
                    aspect_ratio_range=((0.5, 2.0),) * _SSD_NUM_OPS,
                    area_range=((0.1, 1.0),) * _SSD_NUM_OPS,
                    overlap_thresh=(0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
                    clip_boxes=(True,) * _SSD_NUM_OPS,
                    random_coef=(0.15,) * _SSD_NUM_OPS,
                    keep_center_in_window=False,
                    seed=None):
  """The SSD patch sampler: one of several crop operations, chosen uniformly.

  Liu et al. 2016, Sec. 2.2: each training image is used whole, or a patch is
  sampled with a minimum overlap of 0.1, 0.3, 0.5, 0.7 or 0.9 with some
  object, or a random patch; patch size in [0.1, 1] of the image, aspect
  ratio in [1/2, 2]. Following the TF OD API (preprocessor.ssd_random_crop),
  operation i is `random_crop_image` with the i-th entry of every argument;
  "use the original image" comes from each op's `random_coef` (0.15 by
  default); note that the op with min_object_covered=1.0 is a crop that
  contains a whole box, which can still be smaller than the image.

  Args:
    tensor_dict: example dict.
    min_object_covered, overlap_thresh, random_coef: sequences of floats, one
      per operation.
    aspect_ratio_range, area_range: sequences of (min, max) pairs.
    clip_boxes: sequence of bools.
    keep_center_in_window: bool, the SSD paper's "keep the box if its center
      is in the patch" rule on top of overlap_thresh.
    seed: optional op-level seed.

  Returns:
    New dict; image float32 [h', w', C].

  Raises:
    ValueError: if the sequences are empty or have different lengths, or a
      value is out of range.
  """
  name = 'ssd_random_crop'
  _check_dict(tensor_dict, name)
  per_op = [min_object_covered, aspect_ratio_range, area_range, overlap_thresh,
            clip_boxes, random_coef]
  num_ops = len(min_object_covered)
  if num_ops == 0 or any(len(p) != num_ops for p in per_op):
    raise ValueError(
        f'{name}: min_object_covered, aspect_ratio_range, area_range, '
        'overlap_thresh, clip_boxes and random_coef must be non-empty and of '
        f'equal length, got lengths {[len(p) for p in per_op]}')
  for i in range(num_ops):
    _check_crop_args(f'{name} op {i}', min_object_covered[i],
                     aspect_ratio_range[i], area_range[i], overlap_thresh[i],
                     random_coef[i])
  inputs = _identity_like(tensor_dict)

  def _branch(i):
    return lambda: random_crop_image(
        inputs, min_object_covered=min_object_covered[i],
        aspect_ratio_range=aspect_ratio_range[i], area_range=area_range[i],
        overlap_thresh=overlap_thresh[i], clip_boxes=clip_boxes[i],
        random_coef=random_coef[i],
        keep_center_in_window=keep_center_in_window, seed=seed)

  index = tf.random.uniform([], 0, num_ops, dtype=tf.int32,
                            seed=_sub_seed(seed, 2))
  out = tf.switch_case(index, [_branch(i) for i in range(num_ops)])
  out[fields.image].set_shape([None, None, inputs[fields.image].shape[-1]])
  return out


# ------------------------------------------------------------- scale / pad
def random_image_scale(tensor_dict, min_scale_ratio=0.5, max_scale_ratio=2.0,
                       seed=None):
  """Resizes the image by one factor ~ U[min, max] (both sides).

  Normalized boxes and keypoints are unchanged. Source: TF OD API
  random_image_scale.

  Raises:
    ValueError: if min_scale_ratio > max_scale_ratio or min <= 0.
  """
  name = 'random_image_scale'
  _check_dict(tensor_dict, name)
  _check_range(name, min_scale_ratio, max_scale_ratio, 'min_scale_ratio',
               'max_scale_ratio', 1e-6)
  image = _float_image(tensor_dict[fields.image])
  size = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = _uniform(min_scale_ratio, max_scale_ratio, seed)
  new_size = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
  out = dict(tensor_dict)
  out[fields.image] = tf.image.resize(image, new_size)
  return out


def random_pad_image(tensor_dict, min_image_size=None, max_image_size=None,
                     pad_color=None, seed=None):
  """Pads the image to a random size at a random offset ("zoom out").

  Target height/width ~ U{max(min_image_size, image), max(max_image_size,
  image)} (default: image size .. 2 x image size), offset uniform. The
  padding becomes part of the image, so boxes and keypoints are re-expressed
  in the padded frame (they shrink). Source: TF OD API random_pad_image; the
  SSD paper's "zoom out" expansion (Liu et al. 2016, Sec. 3.6).

  Args:
    tensor_dict: example dict.
    min_image_size: optional (height, width) ints, pixels.
    max_image_size: optional (height, width) ints, pixels.
    pad_color: optional C floats in [0, 255]; default the image's mean color.
    seed: optional op-level seed.

  Raises:
    ValueError: on sizes that are not pairs or a pad_color of wrong length.
  """
  name = 'random_pad_image'
  _check_dict(tensor_dict, name)
  for arg, value in (('min_image_size', min_image_size),
                     ('max_image_size', max_image_size)):
    if value is not None and len(value) != 2:
      raise ValueError(f'{name}: {arg} must be (height, width), got {value}')
  image = _float_image(tensor_dict[fields.image])
  channels = image.shape[-1]
  if (pad_color is not None and channels is not None and
      len(pad_color) != channels):
    raise ValueError(f'{name}: pad_color must have {channels} values, got '
                     f'{pad_color}')
  shape = tf.shape(image)
  hw = shape[:2]
  max_size = (hw * 2 if max_image_size is None else
              tf.constant(max_image_size, tf.int32))
  min_size = hw if min_image_size is None else tf.constant(min_image_size,
                                                           tf.int32)
  max_size = tf.maximum(max_size, hw)
  min_size = tf.minimum(tf.maximum(min_size, hw), max_size)

  def _rand_int(lo, hi, i):  # inclusive
    return tf.random.uniform([], lo, hi + 1, dtype=tf.int32,
                             seed=_sub_seed(seed, i))

  target_h = _rand_int(min_size[0], max_size[0], 0)
  target_w = _rand_int(min_size[1], max_size[1], 1)
  off_y = _rand_int(0, target_h - hw[0], 2)
  off_x = _rand_int(0, target_w - hw[1], 3)
  if pad_color is None:
    color = tf.reduce_mean(image, axis=[0, 1])
  else:
    color = tf.constant(pad_color, tf.float32)
  new_image = tf.pad(image - color, [[off_y, target_h - hw[0] - off_y],
                                     [off_x, target_w - hw[1] - off_x],
                                     [0, 0]]) + color
  out = dict(tensor_dict)
  out[fields.image] = new_image
  hw_f = tf.cast(hw, tf.float32)
  window = tf.cast(tf.stack([-off_y, -off_x, target_h - off_y,
                             target_w - off_x]), tf.float32)
  window /= tf.stack([hw_f[0], hw_f[1], hw_f[0], hw_f[1]])
  if fields.groundtruth_boxes in out:
    out[fields.groundtruth_boxes] = _change_coordinate_frame(
        tf.cast(out[fields.groundtruth_boxes], tf.float32), window)
  return _keypoints_only(out, window)


def random_scale_crop_and_pad_to_square(tensor_dict, output_size=512,
                                        scale_min=0.1, scale_max=2.0,
                                        seed=None):
  """Random scale, random crop and pad to an `output_size` square.

  The longer side is resized to `s * output_size`, s ~ U[scale_min,
  scale_max], keeping the aspect ratio; a random `output_size` square window
  is cut (offset 0 along sides shorter than output_size) and the result is
  padded with 0 at the bottom/right to `output_size` x `output_size`. The
  output square (padding included) is the new image frame: boxes and
  keypoints are re-framed, boxes completely outside are dropped and the rest
  clipped to [0, 1]. Source: TF OD API random_scale_crop_and_pad_to_square
  (CenterNet / EfficientDet scale jittering).

  Args:
    tensor_dict: example dict.
    output_size: int, output side in pixels.
    scale_min, scale_max: floats, 0 < scale_min <= scale_max.
    seed: optional op-level seed.

  Returns:
    New dict; image float32 [output_size, output_size, C].

  Raises:
    ValueError: on a non-positive output_size or a bad scale range.
  """
  name = 'random_scale_crop_and_pad_to_square'
  _check_dict(tensor_dict, name)
  if int(output_size) <= 0:
    raise ValueError(f'{name}: output_size must be positive, got {output_size}')
  _check_range(name, scale_min, scale_max, 'scale_min', 'scale_max', 1e-6)
  output_size = int(output_size)
  image = _float_image(tensor_dict[fields.image])
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = _uniform(scale_min, scale_max, seed)
  max_dim = tf.reduce_max(shape)
  scaled = tf.maximum(
      tf.cast(scale * output_size * shape / max_dim, tf.int32), 1)
  offset_range = tf.cast(tf.maximum(scaled - output_size, 0), tf.float32)
  fraction = tf.random.uniform([2], 0.0, 1.0, seed=_sub_seed(seed, 1))
  offset = tf.cast(offset_range * fraction, tf.int32)
  scaled_image = tf.image.resize(image, scaled)
  cropped = scaled_image[offset[0]:offset[0] + output_size,
                         offset[1]:offset[1] + output_size, :]
  out_image = tf.image.pad_to_bounding_box(cropped, 0, 0, output_size,
                                           output_size)
  out = dict(tensor_dict)
  out[fields.image] = out_image
  scaled_f = tf.cast(scaled, tf.float32)
  offset_f = tf.cast(offset, tf.float32)
  window = tf.stack([offset_f[0], offset_f[1], offset_f[0] + output_size,
                     offset_f[1] + output_size])
  window /= tf.stack([scaled_f[0], scaled_f[1], scaled_f[0], scaled_f[1]])
  return _apply_window(out, window, overlap_thresh=0.0, clip_boxes=True)


# ----------------------------------------------------------------- padding
_PAD_VALUES = {
    fields.groundtruth_boxes: 0.0,
    fields.groundtruth_classes: -1,
    fields.groundtruth_text: '',
    fields.groundtruth_is_crowd: False,
    fields.groundtruth_area: 0.0,
    fields.groundtruth_difficult: False,
    fields.groundtruth_weights: 0.0,
    fields.groundtruth_keypoints: 0.0,
    fields.groundtruth_keypoint_visibilities: False,
}


def pad_to_fixed_size(tensor_dict, max_number_of_boxes):
  """Pads (or truncates) every per-box field to `max_number_of_boxes` rows.

  Boxes beyond `max_number_of_boxes` are dropped (the first ones are kept, in
  decoder order). Padded rows hold: boxes 0, classes -1 (not a class id;
  tf.one_hot(-1) is all zeros), weights 0, is_crowd / difficult / keypoint
  visibilities False, area 0, keypoints 0, text ''. `num_groundtruth_boxes`
  (int32 scalar) is set to the number of valid rows. Static shapes become
  `[max_number_of_boxes, ...]`. Source: TF OD API
  inputs.pad_input_data_to_static_shapes.

  Args:
    tensor_dict: example dict with `groundtruth_boxes`.
    max_number_of_boxes: positive int.

  Returns:
    New dict.

  Raises:
    ValueError: if max_number_of_boxes is not positive or boxes are missing.
  """
  name = 'pad_to_fixed_size'
  if int(max_number_of_boxes) <= 0:
    raise ValueError(f'{name}: max_number_of_boxes must be positive, got '
                     f'{max_number_of_boxes}')
  if fields.groundtruth_boxes not in tensor_dict:
    raise ValueError(f'{name}: tensor_dict has no '
                     f'{fields.groundtruth_boxes!r} field')
  max_boxes = int(max_number_of_boxes)
  out = dict(tensor_dict)
  num = tf.minimum(tf.shape(out[fields.groundtruth_boxes])[0], max_boxes)
  for key in PER_BOX_FIELDS:
    if key not in out:
      continue
    value = tf.convert_to_tensor(out[key])[:max_boxes]
    tail = value.shape.as_list()[1:]
    pad = max_boxes - tf.shape(value)[0]
    paddings = tf.concat([[[0, pad]], tf.zeros([value.shape.rank - 1, 2],
                                               tf.int32)], axis=0)
    value = tf.pad(value, paddings,
                   constant_values=tf.constant(_PAD_VALUES[key], value.dtype))
    value.set_shape([max_boxes] + tail)
    out[key] = value
  out[fields.num_groundtruth_boxes] = tf.cast(num, tf.int32)
  return out


# ------------------------------------------------------------------ driver
def preprocess(tensor_dict, preprocess_options):
  """Applies augmentation steps in order.

  Args:
    tensor_dict: example dict (see module docstring); the image is cast to
      float32 (values [0, 255]) first.
    preprocess_options: list of `(function, kwargs_dict)` pairs, e.g.
      `[(random_horizontal_flip, {}), (ssd_random_crop, {'seed': 1})]`.

  Returns:
    New dict after all steps.

  Raises:
    ValueError: if an option is not a (callable, dict) pair, or a step
      rejects its arguments.
  """
  _check_dict(tensor_dict, 'preprocess')
  if preprocess_options is None:
    preprocess_options = []
  out = dict(tensor_dict)
  out[fields.image] = _float_image(out[fields.image])
  # Trailing static dims (e.g. the 4 of boxes) that tf.cond / tf.switch_case
  # may blur in graph mode; restored after every step.
  trailing = {k: tf.convert_to_tensor(out[k]).shape[1:] for k in PER_BOX_FIELDS
              if k in out}
  channels = out[fields.image].shape[-1]
  for i, option in enumerate(preprocess_options):
    if (not isinstance(option, (tuple, list)) or len(option) != 2 or
        not callable(option[0]) or not isinstance(option[1], dict)):
      raise ValueError(f'preprocess_options[{i}] must be a (function, kwargs '
                       f'dict) pair, got {option!r}')
    fn, kwargs = option
    out = dict(fn(out, **kwargs))
    for key, tail in trailing.items():
      if key in out:
        out[key] = tf.ensure_shape(out[key], tf.TensorShape([None]) + tail)
    out[fields.image] = tf.ensure_shape(out[fields.image],
                                        [None, None, channels])
  return out
