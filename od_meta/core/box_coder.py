"""Box coders: encode boxes relative to anchors and decode them back.

Modelled on the TF Object Detection API's `object_detection/core/box_coder.py`.
A coder maps a box and its anchor (same frame, same number of rows) to a
`code_size` vector that a network regresses, and back. Coders take
`(boxes, anchors)` in that order, always (DESIGN.md).
"""

import abc

import tensorflow as tf

from od_meta.core import box_list


class BoxCoder(abc.ABC):
  """Abstract box coder.

  Subclasses implement `code_size`, `_encode` and `_decode`.
  """

  @property
  @abc.abstractmethod
  def code_size(self):
    """int, the length of one encoded box."""

  def encode(self, boxes, anchors):
    """Encodes boxes relative to anchors.

    Args:
      boxes: BoxList with N boxes (the targets), any frame.
      anchors: BoxList with N anchors, same frame as `boxes`.

    Returns:
      float32 `[N, code_size]`.

    Raises:
      ValueError: if an argument is not a BoxList, or the static numbers of
        boxes differ.
    """
    _check_pair(boxes, anchors)
    with tf.name_scope('Encode'):
      return self._encode(boxes, anchors)

  def decode(self, rel_codes, anchors):
    """Decodes codes relative to anchors.

    Args:
      rel_codes: float32 `[N, code_size]`.
      anchors: BoxList with N anchors.

    Returns:
      BoxList with N boxes in the anchors' frame (plus coder-specific fields,
      e.g. 'keypoints').

    Raises:
      ValueError: if `anchors` is not a BoxList or `rel_codes` is not
        `[N, code_size]`.
    """
    if not isinstance(anchors, box_list.BoxList):
      raise ValueError(
          f'anchors must be a BoxList, got {type(anchors).__name__}')
    rel_codes = tf.convert_to_tensor(rel_codes, dtype=tf.float32)
    if rel_codes.shape.rank != 2 or rel_codes.shape[-1] != self.code_size:
      raise ValueError(
          f'rel_codes must have shape [N, {self.code_size}], got '
          f'{rel_codes.shape}')
    with tf.name_scope('Decode'):
      return self._decode(rel_codes, anchors)

  @abc.abstractmethod
  def _encode(self, boxes, anchors):
    """Returns float32 `[N, code_size]`."""

  @abc.abstractmethod
  def _decode(self, rel_codes, anchors):
    """Returns a BoxList."""


def _check_pair(boxes, anchors):
  for name, b in (('boxes', boxes), ('anchors', anchors)):
    if not isinstance(b, box_list.BoxList):
      raise ValueError(f'{name} must be a BoxList, got {type(b).__name__}')
  n, m = boxes.num_boxes_static(), anchors.num_boxes_static()
  if n is not None and m is not None and n != m:
    raise ValueError(
        f'boxes ({n}) and anchors ({m}) must have the same number of rows')


def batch_decode(encoded_boxes, box_coder, anchors):
  """Decodes a batch of codes against one set of anchors.

  Args:
    encoded_boxes: float32 `[batch, num_anchors, code_size]` (batch may be
      dynamic).
    box_coder: a BoxCoder.
    anchors: BoxList with num_anchors anchors, shared by the batch.

  Returns:
    float32 `[batch, num_anchors, 4]` decoded boxes in the anchors' frame
    (coder-specific extra outputs such as keypoints are dropped; decode
    per image or reshape yourself to keep them).

  Raises:
    ValueError: if `encoded_boxes` is not rank 3, its last dimension is not
      `box_coder.code_size`, or its static number of anchors differs from
      `anchors`.
  """
  encoded_boxes = tf.convert_to_tensor(encoded_boxes, dtype=tf.float32)
  if encoded_boxes.shape.rank != 3:
    raise ValueError(
        f'encoded_boxes must be rank 3, got shape {encoded_boxes.shape}')
  if encoded_boxes.shape[2] != box_coder.code_size:
    raise ValueError(
        f'encoded_boxes last dimension {encoded_boxes.shape[2]} != '
        f'box_coder.code_size {box_coder.code_size}')
  num_anchors = anchors.num_boxes_static()
  if (encoded_boxes.shape[1] is not None and num_anchors is not None and
      encoded_boxes.shape[1] != num_anchors):
    raise ValueError(
        f'encoded_boxes has {encoded_boxes.shape[1]} anchors, anchors has '
        f'{num_anchors}')
  shape = tf.shape(encoded_boxes)
  batch, n = shape[0], shape[1]
  tiled = box_list.BoxList(
      tf.reshape(tf.tile(tf.expand_dims(anchors.get(), 0), [batch, 1, 1]),
                 [-1, 4]))
  decoded = box_coder.decode(
      tf.reshape(encoded_boxes, [-1, box_coder.code_size]), tiled).get()
  out = tf.reshape(decoded, tf.stack([batch, n, 4]))
  out.set_shape([encoded_boxes.shape[0], encoded_boxes.shape[1], 4])
  return out
