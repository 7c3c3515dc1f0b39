"""Builds a non-IoU `AnchorTargetAssigner` from a `TargetAssigner` message
(protos/target_assigner.proto): FCOS size ranges, ATSS, SAPD.

The IoU rule (`core.target_assigner.TargetAssigner`) is built by the
meta-architecture builders from their `matcher` and `similarity_calculator`.
"""

import math

from od_meta.builders import builder_utils
from od_meta.protos import target_assigner_pb2
from od_meta.target_assigners import atss_target_assigner
from od_meta.target_assigners import fcos_target_assigner
from od_meta.target_assigners import sapd_target_assigner

# FCOS Sec. 3.2: m_2..m_7 = 0, 64, 128, 256, 512, inf for P3-P7.
PAPER_SIZE_RANGES = (0.0, 64.0, 128.0, 256.0, 512.0, math.inf)


def size_ranges(values, num_levels, field):
  """The size-range boundaries of a config (-1 -> inf; empty -> the paper's).

  Args:
    values: the repeated float field.
    num_levels: the detector's number of levels, or None when unknown.
    field: the field's path, for errors.

  Raises:
    ValueError: naming `field`, on a length that does not fit the levels or
      boundaries that do not increase.
  """
  if not values:
    if num_levels is not None and num_levels != len(PAPER_SIZE_RANGES) - 1:
      raise ValueError(
          f'{field} is empty, and the paper\'s default '
          f'{list(PAPER_SIZE_RANGES)} is for 5 levels; the model has '
          f'{num_levels}: give {num_levels + 1} boundaries')
    return list(PAPER_SIZE_RANGES)
  try:
    bounds = fcos_target_assigner.parse_size_ranges(list(values))
  except ValueError as e:
    raise ValueError(f'{field}: {e}') from e
  if num_levels is not None and len(bounds) != num_levels + 1:
    raise ValueError(
        f'{field} has {len(bounds)} boundaries but the model has '
        f'{num_levels} levels; it needs {num_levels + 1}')
  return bounds


def level_anchor_counts(image_size, strides, anchors_per_location=1):
  """Anchors per level of an FPN detector at a static input size, or None.

  Args:
    image_size: [height, width] pixels (-1 where not static), e.g. from
      `config_util.get_spatial_image_size`.
    strides: the levels' strides in pixels (maps are ceil(size / stride)).
    anchors_per_location: anchors at each location.
  """
  height, width = image_size
  if height <= 0 or width <= 0 or not strides:
    return None
  return [math.ceil(height / s) * math.ceil(width / s) * anchors_per_location
          for s in strides]


def build(config, *, box_coder, num_levels=None, negative_class_weight=1.0,
          field='target_assigner', level_anchor_counts=None, strides=None):
  """Returns the assigner the `target_assigner_oneof` names.

  Args:
    config: a `TargetAssigner` message.
    box_coder: the meta-architecture's `BoxCoder`.
    num_levels: the number of pyramid levels, to check size ranges.
    negative_class_weight: classification weight of negatives.
    field: the message's path in the pipeline config, for errors.
    level_anchor_counts: optional anchors per level at the config's static
      input size, to check ATSS's top_k at build time.
    strides: the levels' strides (for the error message).

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: naming the field, on an empty oneof or a bad value.
  """
  builder_utils.check_message_type(config, target_assigner_pb2.TargetAssigner,
                                   'target_assigner_builder')
  choice = config.WhichOneof('target_assigner_oneof')
  if choice is None:
    raise ValueError(f'{field} is empty: set one of fcos, atss, sapd')
  sub = getattr(config, choice)
  if choice == 'fcos':
    if sub.center_sampling_radius < 0:
      raise ValueError(f'{field}.fcos.center_sampling_radius must be >= 0, '
                       f'got {sub.center_sampling_radius}')
    return fcos_target_assigner.FCOSTargetAssigner(
        box_coder=box_coder,
        size_ranges=size_ranges(sub.size_ranges, num_levels,
                                f'{field}.fcos.size_ranges'),
        center_sampling_radius=sub.center_sampling_radius,
        negative_class_weight=negative_class_weight)
  if choice == 'atss':
    if sub.top_k < 1:
      raise ValueError(f'{field}.atss.top_k must be >= 1, got {sub.top_k}')
    for i, count in enumerate(level_anchor_counts or []):
      if sub.top_k > count:
        stride = f' (stride {strides[i]})' if strides else ''
        raise ValueError(
            f'{field}.atss.top_k ({sub.top_k}) is larger than the {count} '
            f'anchors of level {i}{stride} at the config\'s input size; '
            'lower top_k or drop the level')
    if not sub.anchor_scale > 0:
      raise ValueError(f'{field}.atss.anchor_scale must be > 0, got '
                       f'{sub.anchor_scale}')
    return atss_target_assigner.ATSSTargetAssigner(
        box_coder=box_coder, top_k=sub.top_k, anchor_scale=sub.anchor_scale,
        negative_class_weight=negative_class_weight)
  if not 0 < sub.shrink_factor <= 1:
    raise ValueError(f'{field}.sapd.shrink_factor must be in (0, 1], got '
                     f'{sub.shrink_factor}')
  if sub.eta < 0:
    raise ValueError(f'{field}.sapd.eta must be >= 0, got {sub.eta}')
  if sub.num_levels_per_box < 0 or (
      num_levels is not None and sub.num_levels_per_box > num_levels):
    raise ValueError(
        f'{field}.sapd.num_levels_per_box must be in [0, {num_levels}] (0 = '
        f'all levels), got {sub.num_levels_per_box}')
  return sapd_target_assigner.SAPDTargetAssigner(
      box_coder=box_coder,
      size_ranges=size_ranges(sub.size_ranges, num_levels,
                              f'{field}.sapd.size_ranges'),
      shrink_factor=sub.shrink_factor, eta=sub.eta,
      num_levels_per_box=sub.num_levels_per_box,
      negative_class_weight=negative_class_weight)
