"""Anchor generator interface.

Modelled on the TF Object Detection API's
`object_detection/core/anchor_generator.py`. An anchor generator returns one
`BoxList` of anchors per feature map; the anchors of a map are ordered
row-major over its locations (y outer, x inner) and, at each location, over
the `num_anchors_per_location()` anchor shapes, which is the order a box
predictor's `[batch, H, W, A * code_size]` output flattens to.
"""

import abc

import tensorflow as tf


class AnchorGenerator(abc.ABC):
  """Abstract anchor generator."""

  @abc.abstractmethod
  def name_scope(self):
    """Returns a str, the name scope of the generated ops."""

  @property
  def check_num_anchors(self):
    """bool: whether `generate` checks the number of feature maps and
    anchors against `num_anchors_per_location()` (True by default)."""
    return True

  @abc.abstractmethod
  def num_anchors_per_location(self):
    """Returns a list of ints, anchors per location for each feature map."""

  def generate(self, feature_map_shape_list, **params):
    """Generates anchors.

    Args:
      feature_map_shape_list: list of (height, width) pairs, one per feature
        map, as ints or int32 scalar tensors.
      **params: generator-specific arguments (e.g. `im_height`, `im_width`).

    Returns:
      list of BoxLists, one per feature map, each with
      `height * width * num_anchors_per_location()[i]` anchors and a float32
      'feature_map_index' field.

    Raises:
      ValueError: if `feature_map_shape_list` is not a list of pairs or its
        length differs from `len(num_anchors_per_location())` (when
        `check_num_anchors`).
    """
    _check_feature_map_shape_list(feature_map_shape_list)
    if self.check_num_anchors and (
        len(feature_map_shape_list) != len(self.num_anchors_per_location())):
      raise ValueError(
          f'feature_map_shape_list has {len(feature_map_shape_list)} feature '
          f'maps, expected {len(self.num_anchors_per_location())}')
    with tf.name_scope(self.name_scope()):
      anchors_list = self._generate(feature_map_shape_list, **params)
      if self.check_num_anchors:
        for num_per_location, shape, anchors in zip(
            self.num_anchors_per_location(), feature_map_shape_list,
            anchors_list):
          expected = num_per_location * shape[0] * shape[1]
          actual = anchors.num_boxes_static()
          if isinstance(expected, int) and actual is not None:
            if expected != actual:
              raise ValueError(
                  f'generated {actual} anchors for a {shape} map, expected '
                  f'{expected}')
      return anchors_list

  @abc.abstractmethod
  def _generate(self, feature_map_shape_list, **params):
    """Returns a list of BoxLists; subclasses implement this."""


def _check_feature_map_shape_list(feature_map_shape_list):
  if not isinstance(feature_map_shape_list, (list, tuple)):
    raise ValueError('feature_map_shape_list must be a list of (height, '
                     f'width) pairs, got {type(feature_map_shape_list)}')
  for item in feature_map_shape_list:
    if not isinstance(item, (list, tuple)) or len(item) != 2:
      raise ValueError('feature_map_shape_list must be a list of (height, '
                       f'width) pairs, got item {item!r}')
