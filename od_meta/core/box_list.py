"""BoxList: a set of boxes with named per-box fields.

Modelled on the TF Object Detection API's `object_detection/core/box_list.py`
(written fresh for TensorFlow 2). A `BoxList` holds a float32 tensor of boxes
`[N, 4]` as `[ymin, xmin, ymax, xmax]` and any number of extra fields, each a
tensor whose first dimension is `N` (e.g. 'scores' `[N]`, 'classes' `[N]`,
'keypoints' `[N, K, 2]`).

The coordinate frame is whatever the caller put in: normalized `[0, 1]` at
public boundaries (DESIGN.md) or absolute pixels inside meta-architectures.
`box_list_ops.to_normalized_coordinates` / `to_absolute_coordinates` convert.

Everything works eagerly and inside `tf.function` with a dynamic `N`.
"""

import tensorflow as tf


class BoxList:
  """Boxes `[N, 4]` float32 `[ymin, xmin, ymax, xmax]` plus named fields.

  The boxes are stored under the reserved field name 'boxes'. Extra fields
  must have the same first dimension as the boxes (not checked at run time
  for dynamic shapes; checked statically where both are known).
  """

  def __init__(self, boxes):
    """Creates a BoxList.

    Args:
      boxes: float32 tensor (or array-like) of shape `[N, 4]`,
        `[ymin, xmin, ymax, xmax]` in any frame.

    Raises:
      ValueError: if `boxes` is not rank 2 with last dimension 4, or is not
        float32.
    """
    self.data = {'boxes': _check_boxes(boxes)}

  def num_boxes(self):
    """Returns the number of boxes as an int32 scalar tensor."""
    return tf.shape(self.data['boxes'])[0]

  def num_boxes_static(self):
    """Returns the number of boxes as a Python int, or None if dynamic."""
    return self.data['boxes'].shape[0]

  def get_all_fields(self):
    """Returns the list of all field names, including 'boxes'."""
    return list(self.data.keys())

  def get_extra_fields(self):
    """Returns the list of field names other than 'boxes'."""
    return [k for k in self.data.keys() if k != 'boxes']

  def add_field(self, field, field_data):
    """Adds (or replaces) a field.

    Args:
      field: str, the field name (not 'boxes'; use `set`).
      field_data: tensor whose first dimension is N.

    Raises:
      ValueError: if `field` is 'boxes' or the static first dimension of
        `field_data` differs from the number of boxes.
    """
    if field == 'boxes':
      raise ValueError("field 'boxes' is reserved; use BoxList.set()")
    field_data = tf.convert_to_tensor(field_data)
    n = self.num_boxes_static()
    if (field_data.shape.rank is not None and field_data.shape.rank > 0 and
        n is not None and field_data.shape[0] is not None and
        field_data.shape[0] != n):
      raise ValueError(
          f'field {field!r} has first dimension {field_data.shape[0]}, '
          f'expected {n} (number of boxes)')
    if field_data.shape.rank == 0:
      raise ValueError(f'field {field!r} must have rank >= 1')
    self.data[field] = field_data

  def has_field(self, field):
    """Returns True if `field` is present."""
    return field in self.data

  def get(self):
    """Returns the boxes, float32 `[N, 4]`."""
    return self.get_field('boxes')

  def set(self, boxes):
    """Replaces the boxes.

    Args:
      boxes: float32 tensor `[N, 4]`.

    Raises:
      ValueError: if `boxes` does not have shape `[N, 4]` or is a tensor of
        another dtype than float32.
    """
    self.data['boxes'] = _check_boxes(boxes)

  def get_field(self, field):
    """Returns the tensor stored under `field`.

    Raises:
      ValueError: if the field does not exist.
    """
    if not self.has_field(field):
      raise ValueError(f'field {field!r} does not exist in BoxList '
                       f'(fields: {self.get_all_fields()})')
    return self.data[field]

  def set_field(self, field, value):
    """Sets the tensor of an existing field.

    Raises:
      ValueError: if the field does not exist.
    """
    if not self.has_field(field):
      raise ValueError(f'field {field!r} does not exist in BoxList')
    if field == 'boxes':
      self.set(value)
    else:
      self.add_field(field, value)

  def get_center_coordinates_and_sizes(self):
    """Returns `[ycenter, xcenter, height, width]`, each float32 `[N]`.

    Same frame as the boxes. Sizes can be negative for malformed boxes.
    """
    ymin, xmin, ymax, xmax = tf.unstack(self.get(), axis=1)
    height = ymax - ymin
    width = xmax - xmin
    ycenter = ymin + height / 2.
    xcenter = xmin + width / 2.
    return [ycenter, xcenter, height, width]

  def transpose_coordinates(self):
    """Swaps y and x in place: `[ymin, xmin, ymax, xmax]` -> `[xmin, ymin,
    xmax, ymax]`."""
    ymin, xmin, ymax, xmax = tf.split(self.get(), 4, axis=1)
    self.set(tf.concat([xmin, ymin, xmax, ymax], axis=1))

  def as_tensor_dict(self, fields=None):
    """Returns a dict `{field_name: tensor}`.

    Args:
      fields: optional list of field names to include; all by default.

    Raises:
      ValueError: if a requested field does not exist.
    """
    if fields is None:
      fields = self.get_all_fields()
    out = {}
    for field in fields:
      out[field] = self.get_field(field)
    return out


def _check_boxes(boxes):
  """Returns `boxes` as a float32 `[N, 4]` tensor or raises ValueError.

  Tensors must already be float32; array-likes are cast.
  """
  if isinstance(boxes, (tf.Tensor, tf.Variable)):
    if boxes.dtype != tf.float32:
      raise ValueError(f'boxes must be float32, got {boxes.dtype.name}')
    boxes = tf.convert_to_tensor(boxes)
  else:
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
  if boxes.shape.rank != 2 or boxes.shape[-1] != 4:
    raise ValueError(f'boxes must have shape [N, 4], got {boxes.shape}')
  return boxes
