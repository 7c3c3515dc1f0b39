"""Builds an image-resizer function (protos/image_resizer.proto).

The returned function maps a `[H, W, 3]` image (uint8 or float32) to
`(float32 resized image, int32 [3] true_image_shape)`; see
`od_meta.data.image_resizer`.
"""

import functools

from od_meta.builders import builder_utils
from od_meta.data import image_resizer
from od_meta.protos import image_resizer_pb2

_METHODS = {
    image_resizer_pb2.BILINEAR: 'bilinear',
    image_resizer_pb2.NEAREST_NEIGHBOR: 'nearest',
    image_resizer_pb2.BICUBIC: 'bicubic',
    image_resizer_pb2.AREA: 'area',
}


def _method(config):
  return _METHODS[config.resize_method]


def _pad_value(values):
  values = [float(v) for v in values]
  if values and len(values) != 3:
    raise ValueError(
        f'per_channel_pad_value needs 3 values (one per channel), got {values}')
  return tuple(values) if values else (0.0, 0.0, 0.0)


def _keep_aspect_ratio(config):
  if not 0 < config.min_dimension <= config.max_dimension:
    raise ValueError(
        'KeepAspectRatioResizer needs 0 < min_dimension <= max_dimension, got '
        f'{config.min_dimension} and {config.max_dimension}')
  return functools.partial(
      image_resizer.keep_aspect_ratio_resizer,
      min_dimension=config.min_dimension,
      max_dimension=config.max_dimension,
      pad_to_max_dimension=config.pad_to_max_dimension,
      per_channel_pad_value=_pad_value(config.per_channel_pad_value),
      method=_method(config))


def _fixed_shape(config):
  if config.height <= 0 or config.width <= 0:
    raise ValueError('FixedShapeResizer height and width must be > 0, got '
                     f'{config.height}x{config.width}')
  return functools.partial(image_resizer.fixed_shape_resizer,
                           height=config.height, width=config.width,
                           method=_method(config))


def _conditional(config):
  condition = {
      image_resizer_pb2.ConditionalShapeResizer.GREATER: 'greater',
      image_resizer_pb2.ConditionalShapeResizer.SMALLER: 'smaller',
  }.get(config.condition)
  if condition is None:
    raise ValueError('ConditionalShapeResizer.condition must be GREATER or '
                     'SMALLER')
  return functools.partial(image_resizer.conditional_shape_resizer,
                           condition=condition,
                           size_threshold=config.size_threshold,
                           method=_method(config))


def _pad_to_multiple(config):
  if config.multiple <= 0:
    raise ValueError(
        f'PadToMultipleResizer.multiple must be > 0, got {config.multiple}')
  return functools.partial(
      image_resizer.pad_to_multiple_resizer, multiple=config.multiple,
      per_channel_pad_value=_pad_value(config.per_channel_pad_value))


_BUILDERS = {
    'keep_aspect_ratio_resizer': _keep_aspect_ratio,
    'fixed_shape_resizer': _fixed_shape,
    'identity_resizer': lambda c: image_resizer.identity_resizer,
    'conditional_shape_resizer': _conditional,
    'pad_to_multiple_resizer': _pad_to_multiple,
}


def build(image_resizer_config):
  """Returns the resizer function named by `image_resizer_oneof`.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if none is set or a size is not positive.
  """
  builder_utils.check_message_type(image_resizer_config,
                                   image_resizer_pb2.ImageResizer,
                                   'image_resizer_builder')
  return builder_utils.dispatch(image_resizer_config, 'image_resizer_oneof',
                                _BUILDERS)
