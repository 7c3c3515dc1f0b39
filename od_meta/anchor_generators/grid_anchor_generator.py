"""Grid anchor generator (Faster R-CNN).

As in the TF OD API's `anchor_generators/grid_anchor_generator.py`: one
feature map; at each location (i, j) a set of anchors centered at
`(i * stride_y + offset_y, j * stride_x + offset_x)` with, for each
(aspect ratio a, scale s),

  height = s / sqrt(a) * base_height,   width = s * sqrt(a) * base_width

(Ren et al. 2015, Sec. 3.1.1: 3 scales x 3 aspect ratios; aspect ratio is
width / height). Anchors are in **absolute pixel coordinates** of the
(resized) input image, as in the TF OD API; convert with
`box_list_ops.to_normalized_coordinates(..., check_range=False)`.

Order at each location: aspect ratio outer, scale inner.
"""

import tensorflow as tf

from od_meta.core import anchor_generator
from od_meta.core import box_list


def _pair(value, name):
  value = list(value)
  if len(value) != 2:
    raise ValueError(f'{name} must have 2 entries (y, x), got {value}')
  return value


class GridAnchorGenerator(anchor_generator.AnchorGenerator):
  """Anchors on one regular grid, in absolute pixels."""

  def __init__(self, scales=(0.5, 1.0, 2.0), aspect_ratios=(0.5, 1.0, 2.0),
               base_anchor_size=None, anchor_stride=None, anchor_offset=None):
    """Creates the generator.

    Args:
      scales: non-empty list of positive floats, relative to
        `base_anchor_size`.
      aspect_ratios: non-empty list of positive floats, width / height.
      base_anchor_size: (height, width) in pixels; default (256, 256).
      anchor_stride: (y, x) distance in pixels between anchor centers;
        default (16, 16).
      anchor_offset: (y, x) pixel center of the anchors at location (0, 0);
        default (0, 0) as in the TF OD API.

    Raises:
      ValueError: on empty or non-positive scales / aspect ratios, or a
        size, stride or offset without 2 entries.
    """
    self._scales = [float(s) for s in scales]
    self._aspect_ratios = [float(a) for a in aspect_ratios]
    if not self._scales or any(s <= 0 for s in self._scales):
      raise ValueError(f'scales must be non-empty and positive, got {scales}')
    if not self._aspect_ratios or any(a <= 0 for a in self._aspect_ratios):
      raise ValueError('aspect_ratios must be non-empty and positive, got '
                       f'{aspect_ratios}')
    self._base_anchor_size = _pair(
        (256, 256) if base_anchor_size is None else base_anchor_size,
        'base_anchor_size')
    self._anchor_stride = _pair(
        (16, 16) if anchor_stride is None else anchor_stride, 'anchor_stride')
    self._anchor_offset = _pair(
        (0, 0) if anchor_offset is None else anchor_offset, 'anchor_offset')

  def name_scope(self):
    return 'GridAnchorGenerator'

  def num_anchors_per_location(self):
    return [len(self._scales) * len(self._aspect_ratios)]

  def _generate(self, feature_map_shape_list):
    """Generates `[H * W * A, 4]` anchors for the single feature map.

    Raises:
      ValueError: if there is not exactly one feature map.
    """
    if len(feature_map_shape_list) != 1:
      raise ValueError('feature_map_shape_list must hold exactly one (height, '
                       f'width) pair, got {len(feature_map_shape_list)}')
    grid_height, grid_width = feature_map_shape_list[0]
    scales = [s for _ in self._aspect_ratios for s in self._scales]
    aspect_ratios = [a for a in self._aspect_ratios for _ in self._scales]
    anchors = tile_anchors(grid_height, grid_width, scales, aspect_ratios,
                           self._base_anchor_size, self._anchor_stride,
                           self._anchor_offset)
    n = anchors.num_boxes_static()
    anchors.add_field('feature_map_index',
                      tf.zeros([n] if n is not None else
                               tf.reshape(anchors.num_boxes(), [1])))
    return [anchors]


def tile_anchors(grid_height, grid_width, scales, aspect_ratios,
                 base_anchor_size, anchor_stride, anchor_offset):
  """Tiles anchor shapes over a grid.

  Args:
    grid_height: int or int32 scalar tensor, rows of the grid.
    grid_width: int or int32 scalar tensor, columns of the grid.
    scales: list or float32 `[A]` scales (one per anchor shape).
    aspect_ratios: list or float32 `[A]` width/height ratios (paired with
      `scales`).
    base_anchor_size: (height, width) floats or scalar tensors.
    anchor_stride: (y, x) distance between centers.
    anchor_offset: (y, x) center of the anchors at location (0, 0).

  Returns:
    BoxList of `grid_height * grid_width * A` anchors `[ymin, xmin, ymax,
    xmax]` in the frame of the size / stride / offset arguments, ordered
    y, x, anchor shape.
  """
  scales = tf.cast(tf.convert_to_tensor(scales), tf.float32)
  aspect_ratios = tf.cast(tf.convert_to_tensor(aspect_ratios), tf.float32)
  ratio_sqrts = tf.sqrt(aspect_ratios)
  heights = scales / ratio_sqrts * tf.cast(base_anchor_size[0], tf.float32)
  widths = scales * ratio_sqrts * tf.cast(base_anchor_size[1], tf.float32)
  y_centers = (tf.cast(tf.range(grid_height), tf.float32) *
               tf.cast(anchor_stride[0], tf.float32) +
               tf.cast(anchor_offset[0], tf.float32))
  x_centers = (tf.cast(tf.range(grid_width), tf.float32) *
               tf.cast(anchor_stride[1], tf.float32) +
               tf.cast(anchor_offset[1], tf.float32))
  # [H, W, A] grids.
  shape = tf.stack([tf.size(y_centers), tf.size(x_centers), tf.size(heights)])
  yc = tf.broadcast_to(y_centers[:, tf.newaxis, tf.newaxis], shape)
  xc = tf.broadcast_to(x_centers[tf.newaxis, :, tf.newaxis], shape)
  h = tf.broadcast_to(heights[tf.newaxis, tf.newaxis, :], shape)
  w = tf.broadcast_to(widths[tf.newaxis, tf.newaxis, :], shape)
  corners = tf.stack([yc - h / 2., xc - w / 2., yc + h / 2., xc + w / 2.],
                     axis=-1)
  return box_list.BoxList(tf.reshape(corners, [-1, 4]))
