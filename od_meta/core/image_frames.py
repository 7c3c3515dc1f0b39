"""Image frames shared by the meta-architectures.

A batch entering `predict` is padded to one size `[B, H, W, 3]` (the padded
frame); each image's valid content is its true window, the top-left
`true_image_shapes[b, :2]` pixels. Groundtruth and detections at the
`DetectionModel` boundary are normalized to the true window; inside the
meta-architectures they are normalized to the padded frame. These helpers
convert between the two.
"""

import tensorflow as tf

from od_meta.core import box_list


def preprocess_batch(inputs, true_image_shapes, image_resizer_fn,
                     normalize_fn, model_name):
  """Resizes (unless already done) and normalizes a batch of images.

  The `DetectionModel.preprocess` of every meta-architecture.

  Args:
    inputs: float32 (or castable) `[B, H, W, 3]` in [0, 255].
    true_image_shapes: None, or int32 `[B, 3]` when the input pipeline has
      already resized the images with this model's resizer (then only
      `normalize_fn` is applied).
    image_resizer_fn: the model's resizer (see `resize_batch`).
    normalize_fn: the feature extractor's `preprocess`, float32 images ->
      normalized float32 images of the same shape.
    model_name: used in the error message.

  Returns:
    (preprocessed float32 `[B, H', W', 3]`, true_image_shapes int32
    `[B, 3]`).

  Raises:
    ValueError: if `inputs` is not `[batch, height, width, 3]`.
  """
  inputs = tf.convert_to_tensor(inputs)
  if inputs.shape.rank != 4 or inputs.shape[-1] not in (3, None):
    raise ValueError(
        f'{model_name} preprocess expects [batch, height, width, 3] images, '
        f'got shape {inputs.shape}')
  inputs = tf.cast(inputs, tf.float32)
  if true_image_shapes is None:
    resized, true_image_shapes = resize_batch(inputs, image_resizer_fn)
  else:
    resized = inputs
  return normalize_fn(resized), tf.cast(true_image_shapes, tf.int32)


def resize_batch(images, image_resizer_fn):
  """Resizes each image of a batch with `image_resizer_fn`.

  Args:
    images: float32 `[B, H, W, 3]`.
    image_resizer_fn: `fn(image [H, W, 3]) -> (resized [H', W', 3], true
      shape int32 [3])`, the same for every image of the batch.

  Returns:
    (resized float32 `[B, H', W', 3]`, true_image_shapes int32 `[B, 3]`).
  """
  if images.shape[0] == 1:
    resized, true_shape = image_resizer_fn(images[0])
    return resized[tf.newaxis], tf.reshape(true_shape, [1, 3])
  resized, true_shapes = tf.map_fn(
      image_resizer_fn, images,
      fn_output_signature=(tf.TensorSpec(None, tf.float32),
                           tf.TensorSpec([3], tf.int32)))
  return resized, true_shapes


def window_scale(preprocessed_inputs, true_image_shapes):
  """float32 `[B, 2]`: (true height / padded height, true w / padded w)."""
  shape = tf.shape(preprocessed_inputs)
  padded = tf.cast(tf.stack([shape[1], shape[2]]), tf.float32)
  true_hw = tf.cast(true_image_shapes[:, :2], tf.float32)
  return true_hw / padded


def true_window(preprocessed_inputs, true_image_shapes):
  """float32 `[B, 4]` clip windows `[0, 0, h/H, w/W]` in the padded frame."""
  scale = window_scale(preprocessed_inputs, true_image_shapes)
  zeros = tf.zeros_like(scale)
  return tf.concat([zeros, scale], axis=1)


def to_window_frame(boxes, window):
  """Maps `[B, A, 4]` padded-frame boxes to the frame of each window.

  Args:
    boxes: float32 `[B, A, 4]` normalized `[ymin, xmin, ymax, xmax]` in the
      padded frame.
    window: float32 `[B, 4]` windows in the padded frame (`true_window`).

  Returns:
    float32 `[B, A, 4]` normalized to each window (not clipped).
  """
  origin = tf.tile(window[:, tf.newaxis, :2], [1, 1, 2])
  size = tf.tile(window[:, tf.newaxis, 2:] - window[:, tf.newaxis, :2],
                 [1, 1, 2])
  return (boxes - origin) / size


def groundtruth_in_padded_frame(boxes_list, preprocessed_inputs,
                                true_image_shapes):
  """Rescales groundtruth boxes from the true-window frame to the padded one.

  Args:
    boxes_list: list (one per image) of float32 `[N_i, 4]` normalized
      `[ymin, xmin, ymax, xmax]` of the true image window.
    preprocessed_inputs: float32 `[B, H, W, 3]`, the padded batch.
    true_image_shapes: int32 `[B, 3]`.

  Returns:
    list of `BoxList`s with the boxes normalized to the padded image.
  """
  scale = window_scale(preprocessed_inputs, true_image_shapes)
  return [box_list.BoxList(
              tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]) *
              tf.tile(scale[i], [2]))
          for i, boxes in enumerate(boxes_list)]
