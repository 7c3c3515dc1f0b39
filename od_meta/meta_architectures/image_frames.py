"""Image frames shared by the meta-architectures.

A batch entering `predict` is padded to one size `[B, H, W, 3]` (the padded
frame); each image's valid content is its true window, the top-left
`true_image_shapes[b, :2]` pixels. Groundtruth and detections at the
`DetectionModel` boundary are normalized to the true window; inside the
meta-architectures they are normalized to the padded frame. These helpers
convert between the two.
"""

import tensorflow as tf


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
