"""Multiple grid anchor generator (SSD).

As in the TF OD API's `anchor_generators/multiple_grid_anchor_generator.py`:
one grid of anchors per feature map, each map with its own list of
(scale, aspect_ratio) box specs. Anchors are in **normalized coordinates**
of the image: by default the centers of a `H x W` map are at
`((i + 0.5) / H, (j + 0.5) / W)`, and an anchor with scale s and aspect
ratio a has height `s / sqrt(a) * base_h` and width `s * sqrt(a) * base_w`
(`base_anchor_size` defaults to (1, 1), i.e. the image side), adjusted for
non-square images so that anchors are square in pixels: the base size is
multiplied by `min(im_height, im_width) / im_height` (resp. `/ im_width`).

`create_ssd_anchors` builds the box specs of SSD (Liu et al. 2016, Sec. 2.2,
"Choosing scales and aspect ratios for default boxes").
"""

import math

import tensorflow as tf

from od_meta.anchor_generators import grid_anchor_generator
from od_meta.core import anchor_generator
from od_meta.core import box_list_ops


def _is_pair(item):
  return isinstance(item, (list, tuple)) and len(item) == 2


class MultipleGridAnchorGenerator(anchor_generator.AnchorGenerator):
  """One grid of anchors per feature map, in normalized coordinates."""

  def __init__(self, box_specs_list, base_anchor_size=None,
               anchor_strides=None, anchor_offsets=None, clip_window=None):
    """Creates the generator.

    Args:
      box_specs_list: list (one per feature map) of non-empty lists of
        (scale, aspect_ratio) pairs; scale is relative to `base_anchor_size`
        (a fraction of the image side), aspect ratio is width / height.
      base_anchor_size: (height, width) in normalized units; default
        (1.0, 1.0).
      anchor_strides: optional list (one per map) of (y, x) strides in
        pixels; default: `1 / feature_map_size` in normalized units.
      anchor_offsets: optional list (one per map) of (y, x) pixel centers of
        the anchors at location (0, 0); default: half the stride.
      clip_window: optional float32 `[4]` normalized window to clip anchors
        to (anchors are clipped, not removed).

    Raises:
      ValueError: if `box_specs_list` is not a non-empty list of non-empty
        lists of pairs, if `anchor_strides` / `anchor_offsets` are not lists
        of pairs of the same length, or `clip_window` is not `[4]`.
    """
    if (not isinstance(box_specs_list, (list, tuple)) or not box_specs_list or
        not all(isinstance(s, (list, tuple)) and s for s in box_specs_list)):
      raise ValueError('box_specs_list must be a non-empty list of non-empty '
                       'lists of (scale, aspect_ratio) pairs')
    self._box_specs = [list(s) for s in box_specs_list]
    self._scales = []
    self._aspect_ratios = []
    for box_spec in self._box_specs:
      if not all(_is_pair(entry) for entry in box_spec):
        raise ValueError('box_specs_list must be a list of lists of '
                         f'(scale, aspect_ratio) pairs, got {box_spec}')
      scales, aspect_ratios = zip(*box_spec)
      if any(s <= 0 for s in scales) or any(a <= 0 for a in aspect_ratios):
        raise ValueError(
            f'box_specs_list scales and aspect ratios must be positive, got '
            f'{box_spec}')
      self._scales.append([float(s) for s in scales])
      self._aspect_ratios.append([float(a) for a in aspect_ratios])
    if base_anchor_size is None:
      base_anchor_size = [1.0, 1.0]
    if not _is_pair(base_anchor_size):
      raise ValueError(
          f'base_anchor_size must be a (height, width) pair, got '
          f'{base_anchor_size}')
    self._base_anchor_size = [float(v) for v in base_anchor_size]
    for arg, name in ((anchor_strides, 'anchor_strides'),
                      (anchor_offsets, 'anchor_offsets')):
      if arg:
        if not isinstance(arg, (list, tuple)) or len(arg) != len(
            self._box_specs):
          raise ValueError(f'{name} must be a list with one entry per feature '
                           f'map ({len(self._box_specs)})')
        if not all(_is_pair(item) for item in arg):
          raise ValueError(f'{name} must be a list of (y, x) pairs')
    self._anchor_strides = list(anchor_strides) if anchor_strides else None
    self._anchor_offsets = list(anchor_offsets) if anchor_offsets else None
    if clip_window is not None:
      clip_window = tf.convert_to_tensor(clip_window, tf.float32)
      if clip_window.shape.as_list() != [4]:
        raise ValueError(
            f'clip_window must be None or of shape [4], got '
            f'{clip_window.shape}')
    self._clip_window = clip_window

  def name_scope(self):
    return 'MultipleGridAnchorGenerator'

  def num_anchors_per_location(self):
    return [len(box_specs) for box_specs in self._box_specs]

  def _generate(self, feature_map_shape_list, im_height=1, im_width=1):
    """Generates normalized anchors for each feature map.

    Args:
      feature_map_shape_list: list of (height, width) pairs, one per box
        spec list.
      im_height: image height in pixels (int or scalar tensor); only its
        ratio to `im_width` matters unless strides/offsets are given.
      im_width: image width in pixels.

    Returns:
      list of BoxLists of normalized anchors, with a float32
      'feature_map_index' field (the map's index).
    """
    im_height = tf.cast(im_height, tf.float32)
    im_width = tf.cast(im_width, tf.float32)
    if not self._anchor_strides:
      anchor_strides = [(1.0 / tf.cast(h, tf.float32),
                         1.0 / tf.cast(w, tf.float32))
                        for h, w in feature_map_shape_list]
    else:
      anchor_strides = [(tf.cast(s[0], tf.float32) / im_height,
                         tf.cast(s[1], tf.float32) / im_width)
                        for s in self._anchor_strides]
    if not self._anchor_offsets:
      anchor_offsets = [(0.5 * s[0], 0.5 * s[1]) for s in anchor_strides]
    else:
      anchor_offsets = [(tf.cast(o[0], tf.float32) / im_height,
                         tf.cast(o[1], tf.float32) / im_width)
                        for o in self._anchor_offsets]
    min_im_shape = tf.minimum(im_height, im_width)
    base_anchor_size = [min_im_shape / im_height * self._base_anchor_size[0],
                        min_im_shape / im_width * self._base_anchor_size[1]]
    anchors_list = []
    for index, (grid_size, scales, aspect_ratios, stride, offset) in enumerate(
        zip(feature_map_shape_list, self._scales, self._aspect_ratios,
            anchor_strides, anchor_offsets)):
      anchors = grid_anchor_generator.tile_anchors(
          grid_height=grid_size[0], grid_width=grid_size[1], scales=scales,
          aspect_ratios=aspect_ratios, base_anchor_size=base_anchor_size,
          anchor_stride=stride, anchor_offset=offset)
      if self._clip_window is not None:
        anchors = box_list_ops.clip_to_window(
            anchors, self._clip_window, filter_nonoverlapping=False)
      n = anchors.num_boxes_static()
      anchors.add_field(
          'feature_map_index',
          float(index) * tf.ones([n] if n is not None else
                                 tf.reshape(anchors.num_boxes(), [1])))
      anchors_list.append(anchors)
    return anchors_list


def ssd_scales(num_layers=6, min_scale=0.2, max_scale=0.95):
  """SSD's per-layer scales (Liu et al. 2016, Eq. 4).

  `s_k = s_min + (s_max - s_min) * (k - 1) / (m - 1)` for k = 1..m.

  Returns:
    list of `num_layers` floats (`[min_scale]` when `num_layers == 1`).
  """
  if num_layers == 1:
    return [float(min_scale)]
  return [min_scale + (max_scale - min_scale) * i / (num_layers - 1)
          for i in range(num_layers)]


def create_ssd_anchors(num_layers=6, min_scale=0.2, max_scale=0.95,
                       scales=None,
                       aspect_ratios=(1.0, 2.0, 3.0, 1.0 / 2, 1.0 / 3),
                       interpolated_scale_aspect_ratio=1.0,
                       base_anchor_size=None, anchor_strides=None,
                       anchor_offsets=None, reduce_boxes_in_lowest_layer=True):
  """Creates the SSD anchor generator (Liu et al. 2016, Sec. 2.2).

  Layer k (0-based) gets scale `s_k` (Eq. 4 via `ssd_scales`, or `scales`)
  with every aspect ratio, plus (if `interpolated_scale_aspect_ratio > 0`)
  one anchor of scale `sqrt(s_k * s_{k+1})` (with `s_m = 1.0`) and that
  aspect ratio. With `reduce_boxes_in_lowest_layer` the first layer instead
  gets the three specs `(0.1, 1.0), (s_0, 2.0), (s_0, 0.5)`, as in the TF
  OD API.

  Args:
    num_layers: int >= 1, number of feature maps.
    min_scale: float, s_min.
    max_scale: float, s_max.
    scales: optional explicit list of `num_layers` scales (overrides
      min/max).
    aspect_ratios: list of width/height ratios for every layer.
    interpolated_scale_aspect_ratio: aspect ratio of the extra
      interpolated-scale anchor; <= 0 disables it.
    base_anchor_size: see `MultipleGridAnchorGenerator`.
    anchor_strides: see `MultipleGridAnchorGenerator`.
    anchor_offsets: see `MultipleGridAnchorGenerator`.
    reduce_boxes_in_lowest_layer: see above.

  Returns:
    MultipleGridAnchorGenerator.

  Raises:
    ValueError: if `num_layers` < 1 or `scales` has the wrong length.
  """
  if num_layers < 1:
    raise ValueError(f'num_layers must be >= 1, got {num_layers}')
  if scales:
    scales = [float(s) for s in scales]
    if len(scales) != num_layers:
      raise ValueError(
          f'scales must have num_layers ({num_layers}) entries, got '
          f'{len(scales)}')
  else:
    scales = ssd_scales(num_layers, min_scale, max_scale)
  scales = scales + [1.0]
  box_specs_list = []
  for layer, (scale, scale_next) in enumerate(zip(scales[:-1], scales[1:])):
    if layer == 0 and reduce_boxes_in_lowest_layer:
      layer_box_specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
    else:
      layer_box_specs = [(scale, float(a)) for a in aspect_ratios]
      if interpolated_scale_aspect_ratio > 0.0:
        layer_box_specs.append((math.sqrt(scale * scale_next),
                                float(interpolated_scale_aspect_ratio)))
    box_specs_list.append(layer_box_specs)
  return MultipleGridAnchorGenerator(
      box_specs_list, base_anchor_size=base_anchor_size,
      anchor_strides=anchor_strides, anchor_offsets=anchor_offsets)
