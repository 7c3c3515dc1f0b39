"""Anchor points of the anchor-free FPN detectors (FCOS, ATSS, SAPD).

FCOS (Tian et al. 2019, Sec. 3.1) regresses a box from every location of
every FPN level; od_meta represents the location `(i, j)` of a level with
stride s as an "anchor": the s x s square centered on the location's center
`(i * s + s // 2, j * s + s // 2)` input pixels (the pixel-center convention
of `core.target_assigner.coordinates_grid`). Its center is the anchor point;
its side, the stride, is what `LtrbDistanceBoxCoder(normalize_by_anchor_size=
True)` divides the distances by, and ATSS scales it by 8 to compute IoUs
(Zhang et al. 2020, Sec. 3.2). One anchor per location.
"""

import tensorflow as tf

from od_meta.core import anchor_generator
from od_meta.core import box_list
from od_meta.core import target_assigner


class PointAnchorGenerator(anchor_generator.AnchorGenerator):
  """One stride x stride square per location of levels min..max_level.

  Args:
    min_level: int, the finest level (stride 2**min_level pixels).
    max_level: int >= min_level.

  Raises:
    ValueError: if max_level < min_level or min_level < 0.
  """

  def __init__(self, min_level, max_level):
    min_level, max_level = int(min_level), int(max_level)
    if min_level < 0:
      raise ValueError(f'min_level must be >= 0, got {min_level}')
    if max_level < min_level:
      raise ValueError(
          f'max_level ({max_level}) must be >= min_level ({min_level})')
    self._strides = [2 ** level for level in range(min_level, max_level + 1)]

  @property
  def strides(self):
    """Input-pixel strides of the levels, finest first."""
    return list(self._strides)

  def name_scope(self):
    return 'PointAnchorGenerator'

  def num_anchors_per_location(self):
    return [1] * len(self._strides)

  def _generate(self, feature_map_shape_list, im_height=None, im_width=None):
    """Generates the squares of each level.

    Args:
      feature_map_shape_list: (height, width) of each level's map.
      im_height: image height in pixels (int or scalar tensor).
      im_width: image width in pixels.

    Returns:
      list of BoxLists `[h * w, 4]` normalized `[ymin, xmin, ymax, xmax]`
      (row-major locations), with a float32 'feature_map_index' field.

    Raises:
      ValueError: if the image size is not given.
    """
    if im_height is None or im_width is None:
      raise ValueError('PointAnchorGenerator needs im_height and im_width '
                       '(pixels)')
    height = tf.cast(im_height, tf.float32)
    width = tf.cast(im_width, tf.float32)
    anchors_list = []
    for index, (shape, stride) in enumerate(zip(feature_map_shape_list,
                                                self._strides)):
      centers = tf.reshape(
          target_assigner.coordinates_grid(shape[0], shape[1], stride),
          [-1, 2])
      half = stride / 2.0
      boxes = tf.concat([centers - half, centers + half], axis=1)
      boxes = boxes / tf.stack([height, width, height, width])
      count = (shape[0] * shape[1] if isinstance(shape[0], int) and
               isinstance(shape[1], int) else None)
      boxes.set_shape([count, 4])
      anchors = box_list.BoxList(boxes)
      anchors.add_field('feature_map_index',
                        tf.fill(tf.shape(boxes)[:1], float(index)))
      anchors_list.append(anchors)
    return anchors_list
