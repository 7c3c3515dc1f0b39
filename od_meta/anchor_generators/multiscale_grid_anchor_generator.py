"""Multiscale grid anchor generator (FPN / RetinaNet).

As in the TF OD API's `anchor_generators/multiscale_grid_anchor_generator.py`:
one grid per pyramid level l in [min_level, max_level], with stride `2^l`
pixels and base anchor size `anchor_scale * 2^l` pixels; at each location,
for each aspect ratio a and octave scale `2^(k / scales_per_octave)`,
k = 0..scales_per_octave-1 (RetinaNet, Lin et al. 2017, Sec. 4: sizes
{2^0, 2^(1/3), 2^(2/3)} x 3 aspect ratios, anchor_scale 4).

Centers are at `((i + 0.5) * 2^l, (j + 0.5) * 2^l)` pixels. (The TF OD API
uses offset 0 instead of half a stride when the image size is not a
multiple of the stride; we always use half a stride.)

Output frame: normalized by (im_height, im_width) when
`normalize_coordinates` (the default), else absolute pixels.
"""

import tensorflow as tf

from od_meta.anchor_generators import grid_anchor_generator
from od_meta.core import anchor_generator
from od_meta.core import box_list_ops


class MultiscaleGridAnchorGenerator(anchor_generator.AnchorGenerator):
  """Anchors for pyramid levels min_level..max_level."""

  def __init__(self, min_level, max_level, anchor_scale, aspect_ratios,
               scales_per_octave, normalize_coordinates=True):
    """Creates the generator.

    Args:
      min_level: int, the finest pyramid level (stride 2^min_level).
      max_level: int >= min_level.
      anchor_scale: positive float, base anchor size in units of the stride.
      aspect_ratios: non-empty list of positive width / height ratios.
      scales_per_octave: int >= 1, number of intermediate scales per octave.
      normalize_coordinates: if True, anchors are normalized by the image
        size given to `generate`.

    Raises:
      ValueError: on bad levels, a non-positive anchor_scale, empty or
        non-positive aspect ratios, or scales_per_octave < 1.
    """
    if int(max_level) < int(min_level):
      raise ValueError(
          f'max_level ({max_level}) must be >= min_level ({min_level})')
    if not anchor_scale > 0:
      raise ValueError(f'anchor_scale must be positive, got {anchor_scale}')
    aspect_ratios = [float(a) for a in aspect_ratios]
    if not aspect_ratios or any(a <= 0 for a in aspect_ratios):
      raise ValueError('aspect_ratios must be non-empty and positive, got '
                       f'{aspect_ratios}')
    if int(scales_per_octave) < 1:
      raise ValueError(
          f'scales_per_octave must be >= 1, got {scales_per_octave}')
    self._min_level = int(min_level)
    self._max_level = int(max_level)
    self._anchor_scale = float(anchor_scale)
    self._aspect_ratios = aspect_ratios
    self._scales_per_octave = int(scales_per_octave)
    self._normalize_coordinates = normalize_coordinates
    self._octave_scales = [2**(float(k) / self._scales_per_octave)
                           for k in range(self._scales_per_octave)]

  def name_scope(self):
    return 'MultiscaleGridAnchorGenerator'

  def num_anchors_per_location(self):
    return ((self._max_level - self._min_level + 1) *
            [len(self._aspect_ratios) * self._scales_per_octave])

  def _generate(self, feature_map_shape_list, im_height=1, im_width=1):
    """Generates anchors for each level.

    Args:
      feature_map_shape_list: list of (height, width), one per level from
        min_level to max_level.
      im_height: image height in pixels (int or scalar tensor); required
        when normalizing.
      im_width: image width in pixels.

    Returns:
      list of BoxLists with a float32 'feature_map_index' field (level -
      min_level).

    Raises:
      ValueError: if normalized coordinates are requested and `im_height`
        or `im_width` is left at its default of 1.
    """
    if self._normalize_coordinates and (
        isinstance(im_height, int) and im_height == 1 or
        isinstance(im_width, int) and im_width == 1):
      raise ValueError('normalize_coordinates=True needs im_height and '
                       'im_width (pixels) passed to generate()')
    anchors_list = []
    for index, (feat_shape, level) in enumerate(zip(
        feature_map_shape_list,
        range(self._min_level, self._max_level + 1))):
      stride = float(2**level)
      base = self._anchor_scale * stride
      ag = grid_anchor_generator.GridAnchorGenerator(
          scales=self._octave_scales, aspect_ratios=self._aspect_ratios,
          base_anchor_size=(base, base), anchor_stride=(stride, stride),
          anchor_offset=(stride / 2.0, stride / 2.0))
      (anchors,) = ag.generate([tuple(feat_shape)])
      if self._normalize_coordinates:
        anchors = box_list_ops.to_normalized_coordinates(
            anchors, im_height, im_width, check_range=False)
      anchors.set_field('feature_map_index', float(index) * tf.ones_like(
          anchors.get_field('feature_map_index')))
      anchors_list.append(anchors)
    return anchors_list
