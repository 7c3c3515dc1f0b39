"""Builds augmentation steps from `PreprocessingStep` messages
(protos/preprocessor.proto).

Each step becomes a `(function, kwargs)` pair for
`od_meta.data.preprocessor.preprocess`; `build_preprocess_fn` turns the
repeated `train_config.data_augmentation_options` into one function on the
decoded tensor dict.
"""

import functools

from od_meta.builders import builder_utils
from od_meta.data import preprocessor
from od_meta.protos import preprocessor_pb2

# Steps whose message fields are exactly the function's keyword arguments.
_DIRECT = {
    'random_pixel_value_scale': preprocessor.random_pixel_value_scale,
    'random_image_scale': preprocessor.random_image_scale,
    'random_rgb_to_gray': preprocessor.random_rgb_to_gray,
    'random_adjust_brightness': preprocessor.random_adjust_brightness,
    'random_adjust_contrast': preprocessor.random_adjust_contrast,
    'random_adjust_hue': preprocessor.random_adjust_hue,
    'random_adjust_saturation': preprocessor.random_adjust_saturation,
    'random_distort_color': preprocessor.random_distort_color,
    'random_scale_crop_and_pad_to_square':
        preprocessor.random_scale_crop_and_pad_to_square,
}


def _scalar_kwargs(message):
  return {field.name: getattr(message, field.name)
          for field in message.DESCRIPTOR.fields}


def _flip(function):
  def build(message):
    permutation = tuple(message.keypoint_flip_permutation) or None
    if permutation is not None and sorted(permutation) != list(
        range(len(permutation))):
      raise ValueError(
          f'{message.DESCRIPTOR.name}.keypoint_flip_permutation must be a '
          f'permutation of 0..K-1, got {list(permutation)}')
    return function, {'keypoint_flip_permutation': permutation,
                      'probability': message.probability}
  return build


def _random_crop_image(message):
  return preprocessor.random_crop_image, {
      'min_object_covered': message.min_object_covered,
      'aspect_ratio_range': (message.min_aspect_ratio,
                             message.max_aspect_ratio),
      'area_range': (message.min_area, message.max_area),
      'overlap_thresh': message.overlap_thresh,
      'clip_boxes': message.clip_boxes,
      'random_coef': message.random_coef,
  }


def _random_pad_image(message):
  kwargs = {}
  if message.HasField('min_image_height') or message.HasField(
      'min_image_width'):
    kwargs['min_image_size'] = (message.min_image_height,
                                message.min_image_width)
  if message.HasField('max_image_height') or message.HasField(
      'max_image_width'):
    kwargs['max_image_size'] = (message.max_image_height,
                                message.max_image_width)
  if message.pad_color:
    if len(message.pad_color) != 3:
      raise ValueError('RandomPadImage.pad_color needs 3 values, got '
                       f'{list(message.pad_color)}')
    kwargs['pad_color'] = tuple(message.pad_color)
  return preprocessor.random_pad_image, kwargs


def _ssd_random_crop(message):
  ops = message.operations
  if not ops:
    return preprocessor.ssd_random_crop, {}
  return preprocessor.ssd_random_crop, {
      'min_object_covered': tuple(op.min_object_covered for op in ops),
      'aspect_ratio_range': tuple(
          (op.min_aspect_ratio, op.max_aspect_ratio) for op in ops),
      'area_range': tuple((op.min_area, op.max_area) for op in ops),
      'overlap_thresh': tuple(op.overlap_thresh for op in ops),
      'clip_boxes': tuple(op.clip_boxes for op in ops),
      'random_coef': tuple(op.random_coef for op in ops),
  }


_BUILDERS = {
    'random_horizontal_flip': _flip(preprocessor.random_horizontal_flip),
    'random_vertical_flip': _flip(preprocessor.random_vertical_flip),
    'random_crop_image': _random_crop_image,
    'random_pad_image': _random_pad_image,
    'ssd_random_crop': _ssd_random_crop,
}
_BUILDERS.update({
    name: (lambda fn: lambda message: (fn, _scalar_kwargs(message)))(fn)
    for name, fn in _DIRECT.items()})


def build(preprocessing_step_config):
  """Returns `(function, kwargs)` for one `PreprocessingStep`.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if no step is set or a field is invalid.
  """
  builder_utils.check_message_type(preprocessing_step_config,
                                   preprocessor_pb2.PreprocessingStep,
                                   'preprocessor_builder')
  return builder_utils.dispatch(preprocessing_step_config,
                                'preprocessing_step', _BUILDERS)


def build_preprocess_fn(preprocessing_step_configs):
  """Returns a function applying every step, in order, to a tensor dict.

  Args:
    preprocessing_step_configs: iterable of `PreprocessingStep` messages
      (e.g. `train_config.data_augmentation_options`).

  Returns:
    `fn(tensor_dict) -> tensor_dict`, or None when there are no steps.

  Raises:
    ValueError: naming the position of the first invalid step.
  """
  options = []
  for i, step in enumerate(preprocessing_step_configs):
    try:
      options.append(build(step))
    except ValueError as e:
      raise ValueError(f'data_augmentation_options[{i}]: {e}') from e
  if not options:
    return None
  return functools.partial(preprocessor.preprocess,
                           preprocess_options=options)
