"""Image resizers: one image `[H, W, C]` -> (resized image, true image shape).

Every resizer returns `(resized_image, true_image_shape)`:
  * `resized_image`: float32 `[H', W', C]`, values in the input's range
    (images are [0, 255] in od_meta), possibly padded (bottom/right);
  * `true_image_shape`: int32 `[3]`, (height, width, channels) of the resized
    image *before* padding, i.e. the valid window at the top-left corner.

Frame convention (as in the TF Object Detection API, and DESIGN.md):
normalized groundtruth boxes and keypoints stay normalized to the TRUE image
window. Resizing without padding does not change them; when a resizer pads,
the boxes are NOT rescaled: the model receives `true_image_shapes` and maps
normalized coordinates to pixels of the true window (pixel = normalized x
true size), so no resizer takes or returns boxes.

Argument names follow the TF OD API's `image_resizer.proto` so a builder can
pass config fields as keyword arguments (`functools.partial`). `method` is one
of 'bilinear', 'nearest' (alias 'nearest_neighbor'), 'bicubic', 'area', or a
`tf.image.ResizeMethod`.

Source: TF OD API `object_detection/core/preprocessor.py` (resize_image,
resize_to_range, resize_pad_to_multiple, ...) and
`builders/image_resizer_builder.py`.
"""

import tensorflow as tf

_METHODS = {
    'bilinear': tf.image.ResizeMethod.BILINEAR,
    'nearest': tf.image.ResizeMethod.NEAREST_NEIGHBOR,
    'nearest_neighbor': tf.image.ResizeMethod.NEAREST_NEIGHBOR,
    'bicubic': tf.image.ResizeMethod.BICUBIC,
    'area': tf.image.ResizeMethod.AREA,
}


def _resize_method(method, name):
  if isinstance(method, str) and method.lower() in _METHODS:
    return _METHODS[method.lower()]
  if method in set(_METHODS.values()):
    return method
  raise ValueError(f'{name}: method must be one of {sorted(_METHODS)}, got '
                   f'{method!r}')


def _check_image(image, name):
  image = tf.convert_to_tensor(image)
  if image.shape.rank is not None and image.shape.rank != 3:
    raise ValueError(f'{name}: image must be [H, W, C], got shape '
                     f'{image.shape}')
  return image


def _resize(image, size, method):
  resized = tf.image.resize(image, size, method=method)
  return tf.cast(resized, tf.float32)


def _pad_bottom_right(image, height, width, per_channel_pad_value, name):
  """Pads `image` at the bottom/right to [height, width] with a color."""
  channels = image.shape[-1]
  values = tf.constant(per_channel_pad_value, tf.float32)
  if channels is not None and len(per_channel_pad_value) != channels:
    raise ValueError(f'{name}: per_channel_pad_value must have {channels} '
                     f'values, got {per_channel_pad_value}')
  shape = tf.shape(image)
  padded = tf.pad(image - values, [[0, height - shape[0]],
                                   [0, width - shape[1]], [0, 0]]) + values
  return padded


def identity_resizer(image):
  """Returns the image unchanged (as float32) and its shape.

  Args:
    image: `[H, W, C]` uint8 or float32.

  Returns:
    (float32 `[H, W, C]`, int32 `[3]` = (H, W, C)).

  Raises:
    ValueError: if the image is not rank 3.
  """
  image = _check_image(image, 'identity_resizer')
  return tf.cast(image, tf.float32), tf.shape(image, out_type=tf.int32)


def fixed_shape_resizer(image, height, width, method='bilinear'):
  """Resizes to exactly `height` x `width` (aspect ratio not kept).

  Args:
    image: `[H, W, C]` uint8 or float32.
    height, width: positive ints, pixels.
    method: resize method (module docstring).

  Returns:
    (float32 `[height, width, C]` (static shape), int32 `[3]`
    = (height, width, C)).

  Raises:
    ValueError: on non-positive sizes, a bad method or a non rank-3 image.
  """
  name = 'fixed_shape_resizer'
  image = _check_image(image, name)
  if int(height) <= 0 or int(width) <= 0:
    raise ValueError(f'{name}: height and width must be positive, got '
                     f'{height}x{width}')
  method = _resize_method(method, name)
  resized = _resize(image, [int(height), int(width)], method)
  resized.set_shape([int(height), int(width), image.shape[-1]])
  true_shape = tf.stack([int(height), int(width), tf.shape(image)[2]])
  return resized, tf.cast(true_shape, tf.int32)


def _keep_aspect_ratio_size(image, min_dimension, max_dimension):
  """New (height, width) int32 [2] (TF OD API resize_to_range semantics).

  scale = min_dimension / min(H, W); if then max(round(H*s), round(W*s)) >
  max_dimension, scale = max_dimension / max(H, W) instead. Sides are rounded
  half to even (tf.round), e.g. 300x1000, min 600, max 1024: 600x2000 is too
  long, so 1024/1000 = 1.024 -> round(307.2) = 307 -> 307x1024.
  """
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  large_scale = min_dimension / tf.reduce_min(shape)
  large = tf.cast(tf.round(shape * large_scale), tf.int32)
  if not max_dimension:
    return large
  small_scale = max_dimension / tf.reduce_max(shape)
  small = tf.cast(tf.round(shape * small_scale), tf.int32)
  return tf.where(tf.cast(tf.reduce_max(large), tf.float32) > max_dimension,
                  small, large)


def keep_aspect_ratio_resizer(image, min_dimension, max_dimension,
                              pad_to_max_dimension=False,
                              per_channel_pad_value=(0, 0, 0),
                              method='bilinear'):
  """Resizes keeping the aspect ratio (Faster R-CNN's 600 / 1024 rule).

  The shorter side becomes `min_dimension` unless the longer side would then
  exceed `max_dimension`, in which case the longer side becomes
  `max_dimension`. Examples: 300x400 (min 600, max 1024) -> 600x800;
  300x1000 -> 307x1024. With `pad_to_max_dimension` the result is padded at
  the bottom/right with `per_channel_pad_value` to `max_dimension` squared;
  boxes stay normalized to the true (unpadded) window returned as
  `true_image_shape`. Source: Ren et al., "Faster R-CNN", NIPS 2015, Sec. 3.3
  (shorter side 600); TF OD API keep_aspect_ratio_resizer / resize_to_range.

  Args:
    image: `[H, W, C]` uint8 or float32.
    min_dimension: positive int, pixels.
    max_dimension: int >= min_dimension, pixels (0 or None: no limit;
      then pad_to_max_dimension must be False).
    pad_to_max_dimension: bool.
    per_channel_pad_value: C floats, padding color.
    method: resize method (module docstring).

  Returns:
    (float32 `[H', W', C]` (static `[max_dimension, max_dimension, C]` when
    padding), int32 `[3]` = (H', W', C) before padding).

  Raises:
    ValueError: on bad dimensions, method or pad value.
  """
  name = 'keep_aspect_ratio_resizer'
  image = _check_image(image, name)
  if int(min_dimension) <= 0:
    raise ValueError(f'{name}: min_dimension must be positive, got '
                     f'{min_dimension}')
  if max_dimension and int(max_dimension) < int(min_dimension):
    raise ValueError(f'{name}: max_dimension ({max_dimension}) must be >= '
                     f'min_dimension ({min_dimension})')
  if pad_to_max_dimension and not max_dimension:
    raise ValueError(f'{name}: pad_to_max_dimension needs a max_dimension')
  method = _resize_method(method, name)
  size = _keep_aspect_ratio_size(image, float(min_dimension),
                                 float(max_dimension or 0))
  resized = _resize(image, size, method)
  true_shape = tf.concat([size, tf.shape(image)[2:3]], axis=0)
  if pad_to_max_dimension:
    max_dim = int(max_dimension)
    resized = _pad_bottom_right(resized, max_dim, max_dim,
                                per_channel_pad_value, name)
    resized.set_shape([max_dim, max_dim, image.shape[-1]])
  else:
    resized.set_shape([None, None, image.shape[-1]])
  return resized, true_shape


def conditional_shape_resizer(image, condition='greater', size_threshold=300,
                              method='bilinear'):
  """Resizes (aspect ratio kept) only when a size condition holds.

  'greater': if max(H, W) > size_threshold, scale so max side =
  size_threshold; 'smaller': if min(H, W) < size_threshold, scale so min side
  = size_threshold; otherwise the image is returned as is. Sides are rounded
  half to even. Source: TF OD API conditional_shape_resizer.

  Args:
    image: `[H, W, C]` uint8 or float32.
    condition: 'greater' or 'smaller'.
    size_threshold: positive int, pixels.
    method: resize method.

  Returns:
    (float32 `[H', W', C]`, int32 `[3]`).

  Raises:
    ValueError: on a bad condition, threshold or method.
  """
  name = 'conditional_shape_resizer'
  image = _check_image(image, name)
  condition = str(condition).lower()
  if condition not in ('greater', 'smaller'):
    raise ValueError(f"{name}: condition must be 'greater' or 'smaller', got "
                     f'{condition!r}')
  if int(size_threshold) <= 0:
    raise ValueError(f'{name}: size_threshold must be positive, got '
                     f'{size_threshold}')
  method = _resize_method(method, name)
  threshold = float(size_threshold)
  shape_i = tf.shape(image)[:2]
  shape = tf.cast(shape_i, tf.float32)
  if condition == 'greater':
    side = tf.reduce_max(shape)
    needed = side > threshold
  else:
    side = tf.reduce_min(shape)
    needed = side < threshold
  new_size = tf.where(needed,
                      tf.cast(tf.round(shape * threshold / side), tf.int32),
                      shape_i)
  resized = _resize(image, new_size, method)
  resized.set_shape([None, None, image.shape[-1]])
  true_shape = tf.concat([new_size, tf.shape(image)[2:3]], axis=0)
  return resized, true_shape


def pad_to_multiple_resizer(image, multiple, per_channel_pad_value=(0, 0, 0)):
  """Pads (no resize) bottom/right so both sides are multiples of `multiple`.

  E.g. 65x100 with multiple 32 -> 96x128; the true image shape stays
  (65, 100, C) and boxes stay normalized to that window. Source: TF OD API
  pad_to_multiple in feature extractors / resize_pad_to_multiple.

  Args:
    image: `[H, W, C]` uint8 or float32.
    multiple: positive int.
    per_channel_pad_value: C floats.

  Returns:
    (float32 `[ceil(H/m)*m, ceil(W/m)*m, C]`, int32 `[3]` = (H, W, C)).

  Raises:
    ValueError: on a non-positive multiple or a bad pad value.
  """
  name = 'pad_to_multiple_resizer'
  image = _check_image(image, name)
  if int(multiple) <= 0:
    raise ValueError(f'{name}: multiple must be positive, got {multiple}')
  multiple = int(multiple)
  shape = tf.shape(image)
  target = (shape[:2] + multiple - 1) // multiple * multiple
  padded = _pad_bottom_right(tf.cast(image, tf.float32), target[0], target[1],
                             per_channel_pad_value, name)
  static = image.shape.as_list()
  static_hw = [None if d is None else -(-d // multiple) * multiple
               for d in static[:2]]
  padded.set_shape(static_hw + [static[2]])
  return padded, tf.cast(shape, tf.int32)
