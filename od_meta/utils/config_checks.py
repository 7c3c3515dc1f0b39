"""Checks of a parsed pipeline config before anything is built or written.

`check_pipeline` finds the user errors that would otherwise surface as a
traceback from deep inside the builders or the input pipeline (TF graph
dumps that never name the field): no model block, non-positive counts and
sizes, input paths that match no file, a missing or malformed label map, and
`num_classes` disagreeing with the label map. Each error is one line naming
the field (and the file) and what to do.
"""

from typing import List

import tensorflow as tf

from od_meta.data import label_map_util
from od_meta.utils import config_util


def _input_errors(reader, field) -> List[str]:
  """Errors of one InputReader (`field` is its name in the pipeline)."""
  errors = []
  which = reader.WhichOneof('input_reader')
  if which != 'tf_record_input_reader':
    return [f'{field}: no tf_record_input_reader {{ input_path: ... }} '
            'given']
  paths = list(reader.tf_record_input_reader.input_path)
  if not paths:
    errors.append(f'{field}.tf_record_input_reader.input_path is empty')
  for path in paths:
    if not tf.io.gfile.glob(path):
      errors.append(f'{field}.tf_record_input_reader.input_path {path!r} '
                    'matches no file')
  return errors


def _label_map_errors(reader, field, num_classes) -> List[str]:
  if not reader.label_map_path:
    return []
  path = reader.label_map_path
  try:
    items = label_map_util.load_labelmap(path)
  except FileNotFoundError:
    return [f'{field}.label_map_path {path!r} does not exist']
  except ValueError as e:  # LabelMapError: names the file and line.
    return [f'{field}.label_map_path: {e}']
  max_id = max((int(i['id']) for i in items), default=0)
  if not items:
    return [f'{field}.label_map_path {path!r} has no items']
  if max_id > num_classes:
    return [f'num_classes is {num_classes} but the label map {path} has ids '
            f'up to {max_id} ({len(items)} items), which the model cannot '
            f'predict: set num_classes to {max_id} or use a label map for '
            f'{num_classes} classes']
  return []


def check_pipeline(configs, *, training: bool = True,
                   evaluation: bool = True) -> None:
  """Raises ValueError with every user error of a parsed pipeline.

  Args:
    configs: dict from `config_util.get_configs_from_pipeline_file`.
    training: check what training reads (train_config, train_input_reader).
    evaluation: check what evaluation reads (eval_config, the eval inputs).

  Raises:
    ValueError: one line per error (joined with '; '), each naming the
      field and, for files, the path.
  """
  errors = []
  model = configs.get('model')
  meta = model.WhichOneof('model') if model is not None else None
  if meta is None:
    raise ValueError('the pipeline config has no model { ... } block (expected '
                     'one of ssd, faster_rcnn, center_net, ttfnet, fcos)')
  num_classes = config_util.get_number_of_classes(model)
  if num_classes < 1:
    errors.append(f'model.{meta}.num_classes must be >= 1, got {num_classes}')
  resizer = config_util.get_image_resizer_config(model)
  kind = resizer.WhichOneof('image_resizer_oneof')
  if kind is not None:
    for name, value in getattr(resizer, kind).ListFields():
      if name.name in ('height', 'width', 'min_dimension',
                       'max_dimension') and value < 1:
        errors.append(f'model.{meta}.image_resizer.{kind}.{name.name} must '
                      f'be >= 1, got {value}')
  if training:
    train_config = configs['train_config']
    if train_config.batch_size < 1:
      errors.append('train_config.batch_size must be >= 1, got '
                    f'{train_config.batch_size}')
    reader = configs.get('train_input_config')
    if reader is None or not reader.ByteSize():
      errors.append('the pipeline config has no train_input_reader')
    else:
      errors += _input_errors(reader, 'train_input_reader')
      if num_classes >= 1:
        errors += _label_map_errors(reader, 'train_input_reader',
                                    num_classes)
  if evaluation:
    if configs['eval_config'].batch_size < 1:
      errors.append('eval_config.batch_size must be >= 1, got '
                    f'{configs["eval_config"].batch_size}')
    for i, reader in enumerate(configs.get('eval_input_configs') or []):
      field = 'eval_input_reader' + (f'[{i}]' if i else '')
      errors += _input_errors(reader, field)
      if num_classes >= 1:
        errors += _label_map_errors(reader, field, num_classes)
  if errors:
    raise ValueError('; '.join(errors))
