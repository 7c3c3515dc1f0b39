"""Builds an `AnchorGenerator` (protos/anchor_generator.proto).

Empty repeated fields leave the generator's own default in place, as the
proto comments document.
"""

from od_meta.anchor_generators import grid_anchor_generator
from od_meta.anchor_generators import multiple_grid_anchor_generator
from od_meta.anchor_generators import multiscale_grid_anchor_generator
from od_meta.builders import builder_utils
from od_meta.protos import anchor_generator_pb2


def _floats(repeated):
  return [float(v) for v in repeated] or None


def _grid(config):
  kwargs = dict(
      base_anchor_size=[config.height, config.width],
      anchor_stride=[config.height_stride, config.width_stride],
      anchor_offset=[config.height_offset, config.width_offset])
  if config.scales:
    kwargs['scales'] = _floats(config.scales)
  if config.aspect_ratios:
    kwargs['aspect_ratios'] = _floats(config.aspect_ratios)
  return grid_anchor_generator.GridAnchorGenerator(**kwargs)


def _pairs(name, ys, xs, num_layers):
  if not ys and not xs:
    return None
  if len(ys) != len(xs) or len(ys) != num_layers:
    raise ValueError(
        f'SsdAnchorGenerator.{name}: height_{name} and width_{name} must both '
        f'have num_layers ({num_layers}) values, got {len(ys)} and {len(xs)}')
  return list(zip(ys, xs))


def _ssd(config):
  kwargs = dict(
      num_layers=config.num_layers,
      min_scale=config.min_scale,
      max_scale=config.max_scale,
      scales=_floats(config.scales),
      interpolated_scale_aspect_ratio=config.interpolated_scale_aspect_ratio,
      base_anchor_size=[config.base_anchor_height, config.base_anchor_width],
      anchor_strides=_pairs('stride', config.height_stride,
                            config.width_stride, config.num_layers),
      anchor_offsets=_pairs('offset', config.height_offset,
                            config.width_offset, config.num_layers),
      reduce_boxes_in_lowest_layer=config.reduce_boxes_in_lowest_layer)
  if config.aspect_ratios:
    kwargs['aspect_ratios'] = _floats(config.aspect_ratios)
  return multiple_grid_anchor_generator.create_ssd_anchors(**kwargs)


def _multiscale(config):
  return multiscale_grid_anchor_generator.MultiscaleGridAnchorGenerator(
      min_level=config.min_level,
      max_level=config.max_level,
      anchor_scale=config.anchor_scale,
      aspect_ratios=_floats(config.aspect_ratios) or [0.5, 1.0, 2.0],
      scales_per_octave=config.scales_per_octave,
      normalize_coordinates=config.normalize_coordinates)


_BUILDERS = {
    'grid_anchor_generator': _grid,
    'ssd_anchor_generator': _ssd,
    'multiscale_anchor_generator': _multiscale,
}


def build(anchor_generator_config):
  """Returns the anchor generator named by `anchor_generator_oneof`.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if none is set, or on inconsistent per-layer lists.
  """
  builder_utils.check_message_type(anchor_generator_config,
                                   anchor_generator_pb2.AnchorGenerator,
                                   'anchor_generator_builder')
  return builder_utils.dispatch(anchor_generator_config,
                                'anchor_generator_oneof', _BUILDERS)
