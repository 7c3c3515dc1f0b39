"""Reads, writes and edits pipeline configs (`TrainEvalPipelineConfig`).

A pipeline config is a protobuf text-format file (`protos/pipeline.proto`),
as in the TF Object Detection API:

    configs = config_util.get_configs_from_pipeline_file(
        'configs/ssd_mobilenet_v2_digits.config')
    configs = config_util.merge_external_params_with_configs(
        configs, {'train_config.batch_size': 8, 'model.ssd.num_classes': 3})
    config_util.save_pipeline_config(
        config_util.create_pipeline_proto_from_configs(configs), model_dir)

The configs dict has the TF OD API's keys: 'model' (DetectionModel),
'train_config' (TrainConfig), 'train_input_config' (InputReader),
'eval_config' (EvalConfig), 'eval_input_configs' (list of InputReader),
'eval_input_config' (the first of them, only when there is one or more, as
in the TF OD API) and 'export_config' (ExportConfig, an od_meta addition).

Parse errors are raised as `ConfigError` (a ValueError) whose message starts
with `<file>:<line>:<column>: <protobuf's message>`, e.g.

    configs/x.config:12:5: Message type "od_meta.protos.Ssd" has no field
    named "num_clases". Did you mean "num_classes"?

followed by the offending source line and a caret; value errors name the
field and its message type. No semantic checks beyond proto validity are done
here: the builders check values.

Source: TF Object Detection API `object_detection/utils/config_util.py`.
"""

import copy
import difflib
import os
import re

from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pool
from google.protobuf import message as _message
from google.protobuf import text_format

from od_meta.protos import eval_pb2
from od_meta.protos import export_pb2
from od_meta.protos import image_resizer_pb2
from od_meta.protos import input_reader_pb2
from od_meta.protos import model_pb2
from od_meta.protos import pipeline_pb2
from od_meta.protos import train_pb2

PIPELINE_CONFIG_NAME = 'pipeline.config'

_FD = _descriptor.FieldDescriptor

# configs-dict key -> (pipeline field, message class, is repeated).
_CONFIG_KEYS = {
    'model': ('model', model_pb2.DetectionModel, False),
    'train_config': ('train_config', train_pb2.TrainConfig, False),
    'train_input_config': ('train_input_reader', input_reader_pb2.InputReader,
                           False),
    'eval_config': ('eval_config', eval_pb2.EvalConfig, False),
    'eval_input_configs': ('eval_input_reader', input_reader_pb2.InputReader,
                           True),
    'export_config': ('export_config', export_pb2.ExportConfig, False),
}

_META_ARCHITECTURES_WITH_NUM_CLASSES = ('ssd', 'faster_rcnn', 'center_net',
                                        'ttfnet', 'corner_net', 'fcos')


class ConfigError(ValueError):
  """A pipeline config (file or override string) that does not parse.

  Attributes:
    path: the file name (or '<config_override>' / '<string>').
    line: 1-based line of the error, or None.
    column: 1-based column of the error, or None.
    field: the full name of the field concerned
      ('od_meta.protos.TrainConfig.batch_size'), or None when unknown.
  """

  def __init__(self, message, path=None, line=None, column=None, field=None):
    super().__init__(message)
    self.path = path
    self.line = line
    self.column = column
    self.field = field


# ------------------------------------------------------------------ parsing
_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
_LINE_ECHO = re.compile(r"^'.*?': ", flags=re.S)
_NO_FIELD = re.compile(
    r'Message type "([\w.]+)" has no field named "([\w.]+)"')


def _context_at(text, descriptor, line, column):
  """Finds the message type and field name in effect at (line, column).

  Walks the text-format tokens up to the 1-based position, keeping a stack of
  message descriptors ('{' / '<' enter the last named message field,
  '}' / '>' leave it). Returns (message descriptor or None, field name or
  None), both None unless the position is a field's value (after ':' or
  inside a `[...]` list); best effort, never raises.
  """
  try:
    tokenizer = text_format.Tokenizer(text.splitlines(keepends=True))
    stack = [descriptor]
    field_name = None
    previous = None
    list_depth = 0
    target = (line - 1, column - 1)
    while not tokenizer.AtEnd():
      # pylint: disable=protected-access
      position = (tokenizer._line, tokenizer._column)
      # pylint: enable=protected-access
      if position >= target:
        break
      token = tokenizer.token
      if list_depth:
        if token == '[':
          list_depth += 1
        elif token == ']':
          list_depth -= 1
      elif token == '[' and previous == ':':
        list_depth = 1
      elif token in ('{', '<'):
        current = stack[-1]
        field = (current.fields_by_name.get(field_name)
                 if current is not None and field_name else None)
        stack.append(field.message_type if field is not None else None)
        field_name = None
      elif token in ('}', '>'):
        if len(stack) > 1:
          stack.pop()
        field_name = None
      elif _IDENTIFIER.match(token) and previous != ':':
        field_name = token
      previous = token
      tokenizer.NextToken()
    if previous == ':' or list_depth:
      return stack[-1], field_name
    return None, None
  except Exception:  # pylint: disable=broad-except
    return None, None


def _format_parse_error(error, text, path, descriptor):
  """Turns a text_format.ParseError into a ConfigError (see module doc)."""
  line = error.GetLine()
  column = error.GetColumn()
  message = str(error)
  # protobuf prefixes 'line:col : ' and sometimes echoes the source line.
  message = re.sub(r'^\d+:\d+ : ', '', message)
  message = _LINE_ECHO.sub('', message)
  field = None
  unknown = _NO_FIELD.search(message)
  if unknown:
    type_name, name = unknown.groups()
    field = f'{type_name}.{name}'
    try:
      msg_desc = descriptor_pool.Default().FindMessageTypeByName(type_name)
      close = difflib.get_close_matches(name, list(msg_desc.fields_by_name),
                                        n=1)
      if close:
        message += f' Did you mean "{close[0]}"?'
    except KeyError:
      pass
  elif line is not None and column is not None:
    msg_desc, name = _context_at(text, descriptor, line, column)
    if msg_desc is not None and name:
      field = f'{msg_desc.full_name}.{name}'
      if f'"{name}"' not in message:
        message += f' (field "{name}" of message "{msg_desc.full_name}")'
  where = path
  if line is not None:
    where += f':{line}'
    if column is not None:
      where += f':{column}'
  full = f'{where}: {message}'
  lines = text.splitlines()
  if line is not None and 1 <= line <= len(lines):
    source = lines[line - 1]
    full += f'\n  {source}'
    if column is not None and column >= 1:
      full += '\n  ' + ' ' * (column - 1) + '^'
  return ConfigError(full, path=path, line=line, column=column, field=field)


def parse_text_proto(text, message, path='<string>', merge=False):
  """Parses protobuf text format into `message` (in place).

  Args:
    text: str, the text-format message.
    message: the protobuf message to fill (e.g. a TrainEvalPipelineConfig).
    path: name used in error messages (a file name).
    merge: if True use text_format.Merge (a repeated singular field: the last
      value wins; used for overrides), else text_format.Parse (strict; the
      message is cleared first).

  Returns:
    `message`.

  Raises:
    ConfigError: on any parse error, with path, line, column and field.
  """
  try:
    if merge:
      text_format.Merge(text, message)
    else:
      text_format.Parse(text, message)
  except text_format.ParseError as e:
    raise _format_parse_error(e, text, path, message.DESCRIPTOR) from None
  return message


def _read_text(path):
  """Reads a UTF-8 text file (local path, or any tf.io.gfile URL)."""
  path = os.fspath(path)
  if '://' in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(path, 'r') as f:
      return f.read()
  with open(path, 'r', encoding='utf-8') as f:
    return f.read()


def read_pipeline_config(pipeline_config_path, config_override=None):
  """Reads a pipeline config file into a TrainEvalPipelineConfig.

  Args:
    pipeline_config_path: path to a text-format pipeline config.
    config_override: optional text-format string merged on top of the file
      (text_format.Merge semantics: scalar fields replace, message fields
      merge, repeated fields append).

  Returns:
    pipeline_pb2.TrainEvalPipelineConfig.

  Raises:
    FileNotFoundError: if the file does not exist.
    ConfigError: if the file or the override does not parse.
  """
  pipeline_config_path = os.fspath(pipeline_config_path)
  text = _read_text(pipeline_config_path)
  pipeline_config = pipeline_pb2.TrainEvalPipelineConfig()
  parse_text_proto(text, pipeline_config, path=pipeline_config_path)
  if config_override:
    parse_text_proto(config_override, pipeline_config,
                     path='<config_override>', merge=True)
  return pipeline_config


def get_configs_from_pipeline_file(pipeline_config_path,
                                   config_override=None):
  """Reads a pipeline config file into the configs dict (module docstring).

  Args:
    pipeline_config_path: path to a text-format pipeline config.
    config_override: optional text-format string merged on top of the file.

  Returns:
    dict with keys 'model', 'train_config', 'train_input_config',
    'eval_config', 'eval_input_configs' (list), 'eval_input_config' (only if
    at least one eval input reader) and 'export_config'.

  Raises:
    FileNotFoundError: if the file does not exist.
    ConfigError: if the file or the override does not parse.
  """
  return create_configs_from_pipeline_proto(
      read_pipeline_config(pipeline_config_path, config_override))


def get_configs_from_pipeline_text(text, config_override=None,
                                   path='<string>'):
  """`get_configs_from_pipeline_file` on a text-format string.

  Raises:
    ConfigError: if the text or the override does not parse.
  """
  pipeline_config = pipeline_pb2.TrainEvalPipelineConfig()
  parse_text_proto(text, pipeline_config, path=path)
  if config_override:
    parse_text_proto(config_override, pipeline_config,
                     path='<config_override>', merge=True)
  return create_configs_from_pipeline_proto(pipeline_config)


def create_configs_from_pipeline_proto(pipeline_config):
  """Splits a TrainEvalPipelineConfig into the configs dict (copies).

  Raises:
    ValueError: if `pipeline_config` is not a TrainEvalPipelineConfig.
  """
  if not isinstance(pipeline_config, pipeline_pb2.TrainEvalPipelineConfig):
    raise ValueError('pipeline_config must be a TrainEvalPipelineConfig, got '
                     f'{type(pipeline_config).__name__}')
  configs = {}
  for key, (field, _, repeated) in _CONFIG_KEYS.items():
    value = getattr(pipeline_config, field)
    configs[key] = ([copy.deepcopy(v) for v in value] if repeated
                    else copy.deepcopy(value))
  if configs['eval_input_configs']:
    configs['eval_input_config'] = configs['eval_input_configs'][0]
  return configs


def create_pipeline_proto_from_configs(configs):
  """Assembles a TrainEvalPipelineConfig from a configs dict.

  Missing keys and empty messages leave their fields unset. When
  'eval_input_configs' is absent but 'eval_input_config' is present, that
  single reader is used.

  Raises:
    ValueError: on an unknown key or a value of the wrong message type.
  """
  if not isinstance(configs, dict):
    raise ValueError(f'configs must be a dict, got {type(configs).__name__}')
  known = set(_CONFIG_KEYS) | {'eval_input_config'}
  unknown = sorted(set(configs) - known)
  if unknown:
    raise ValueError(f'configs has unknown keys {unknown}; expected a subset '
                     f'of {sorted(known)}')
  pipeline_config = pipeline_pb2.TrainEvalPipelineConfig()
  for key, (field, cls, repeated) in _CONFIG_KEYS.items():
    if key == 'eval_input_configs' and key not in configs:
      value = configs.get('eval_input_config')
      value = [] if value is None else [value]
    else:
      value = configs.get(key)
    if value is None:
      continue
    items = list(value) if repeated else [value]
    for item in items:
      if not isinstance(item, cls):
        raise ValueError(f'configs[{key!r}] must hold {cls.DESCRIPTOR.name} '
                         f'messages, got {type(item).__name__}')
    if repeated:
      getattr(pipeline_config, field).extend(items)
    elif value.ListFields():  # An empty message stays unset.
      getattr(pipeline_config, field).CopyFrom(value)
  return pipeline_config


def config_to_text(pipeline_config):
  """Text format of a message (what `save_pipeline_config` writes)."""
  return text_format.MessageToString(pipeline_config)


def save_pipeline_config(pipeline_config, directory, overwrite=False):
  """Writes `directory/pipeline.config` (text format).

  Args:
    pipeline_config: a TrainEvalPipelineConfig, or a configs dict (converted
      with `create_pipeline_proto_from_configs`).
    directory: output directory, created if missing.
    overwrite: replace an existing pipeline.config. Default False.

  Returns:
    The path written.

  Raises:
    FileExistsError: if the file exists and not `overwrite`.
    ValueError: if `pipeline_config` is neither of the accepted types.
  """
  if isinstance(pipeline_config, dict):
    pipeline_config = create_pipeline_proto_from_configs(pipeline_config)
  if not isinstance(pipeline_config, pipeline_pb2.TrainEvalPipelineConfig):
    raise ValueError('pipeline_config must be a TrainEvalPipelineConfig or a '
                     f'configs dict, got {type(pipeline_config).__name__}')
  directory = os.fspath(directory)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, PIPELINE_CONFIG_NAME)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(
        f'{path} already exists; pass overwrite=True to replace it')
  tmp_path = path + '.tmp'
  with open(tmp_path, 'w', encoding='utf-8') as f:
    f.write(config_to_text(pipeline_config))
  os.replace(tmp_path, path)
  return path


# --------------------------------------------------------- model accessors
def get_meta_architecture(model_config):
  """Name of the set `model` oneof member ('ssd', 'faster_rcnn', ...).

  Raises:
    ValueError: if `model_config` is not a DetectionModel or has no
      meta-architecture set.
  """
  if not isinstance(model_config, model_pb2.DetectionModel):
    raise ValueError('model_config must be a DetectionModel, got '
                     f'{type(model_config).__name__}')
  meta_architecture = model_config.WhichOneof('model')
  if meta_architecture is None:
    raise ValueError('model_config: no meta-architecture set in oneof '
                     '"model" (expected one of '
                     f'{list(_META_ARCHITECTURES_WITH_NUM_CLASSES)})')
  return meta_architecture


def get_number_of_classes(model_config):
  """num_classes of the model (background excluded).

  Raises:
    ValueError: as `get_meta_architecture`.
  """
  meta_architecture = get_meta_architecture(model_config)
  return getattr(model_config, meta_architecture).num_classes


def get_image_resizer_config(model_config):
  """The ImageResizer of the model's meta-architecture.

  Raises:
    ValueError: as `get_meta_architecture`.
  """
  meta_architecture = get_meta_architecture(model_config)
  return getattr(model_config, meta_architecture).image_resizer


def get_spatial_image_size(image_resizer_config):
  """[height, width] of the resized images, -1 where not static.

  fixed_shape_resizer -> [height, width]; keep_aspect_ratio_resizer with
  pad_to_max_dimension -> [max_dimension, max_dimension], else [-1, -1];
  identity / conditional / pad_to_multiple resizers -> [-1, -1]. Pixels.

  Raises:
    ValueError: if `image_resizer_config` is not an ImageResizer or has no
      resizer set.
  """
  if not isinstance(image_resizer_config, image_resizer_pb2.ImageResizer):
    raise ValueError('image_resizer_config must be an ImageResizer, got '
                     f'{type(image_resizer_config).__name__}')
  kind = image_resizer_config.WhichOneof('image_resizer_oneof')
  if kind == 'fixed_shape_resizer':
    resizer = image_resizer_config.fixed_shape_resizer
    return [resizer.height, resizer.width]
  if kind == 'keep_aspect_ratio_resizer':
    resizer = image_resizer_config.keep_aspect_ratio_resizer
    if resizer.pad_to_max_dimension:
      return [resizer.max_dimension] * 2
    return [-1, -1]
  if kind in ('identity_resizer', 'conditional_shape_resizer',
              'pad_to_multiple_resizer'):
    return [-1, -1]
  raise ValueError('image_resizer_config: no resizer set in oneof '
                   '"image_resizer_oneof"')


# ------------------------------------------------------- dotted overrides
_INDEXED = re.compile(r'^([A-Za-z_]\w*)(?:\[(-?\d+)\])?$')

# Shortcut keys (a subset of the TF OD API's), applied by _apply_shortcut.
_SHORTCUTS = ('batch_size', 'train_steps', 'num_classes', 'train_input_path',
              'eval_input_path', 'label_map_path')


def _convert_scalar(field, value, key):
  """Converts `value` (Python value or string) for a scalar field."""
  cpp_type = field.cpp_type
  try:
    if cpp_type == _FD.CPPTYPE_BOOL:
      if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ('true', '1', 't', 'yes'):
          return True
        if lowered in ('false', '0', 'f', 'no'):
          return False
        raise ValueError(f'not a bool: {value!r}')
      if isinstance(value, (bool, int)) and value in (0, 1):
        return bool(value)
      raise ValueError(f'not a bool: {value!r}')
    if cpp_type in (_FD.CPPTYPE_INT32, _FD.CPPTYPE_INT64, _FD.CPPTYPE_UINT32,
                    _FD.CPPTYPE_UINT64):
      if isinstance(value, bool):
        raise ValueError(f'not an integer: {value!r}')
      if isinstance(value, str):
        return int(value.strip(), 0)
      if isinstance(value, float):
        if not value.is_integer():
          raise ValueError(f'not an integer: {value!r}')
        return int(value)
      return int(value)
    if cpp_type in (_FD.CPPTYPE_FLOAT, _FD.CPPTYPE_DOUBLE):
      if isinstance(value, bool):
        raise ValueError(f'not a number: {value!r}')
      return float(value)
    if cpp_type == _FD.CPPTYPE_STRING:
      if not isinstance(value, str):
        raise ValueError(f'not a string: {value!r}')
      return value
    if cpp_type == _FD.CPPTYPE_ENUM:
      enum = field.enum_type
      if isinstance(value, str):
        if value in enum.values_by_name:
          return enum.values_by_name[value].number
        raise ValueError(f'{value!r} is not one of '
                         f'{sorted(enum.values_by_name)}')
      if isinstance(value, int) and value in enum.values_by_number:
        return value
      raise ValueError(f'{value!r} is not a value of {enum.full_name}')
  except (TypeError, ValueError) as e:
    raise ValueError(f'{key}: bad value for field {field.full_name}: '
                     f'{e}') from None
  raise ValueError(f'{key}: unsupported field type of {field.full_name}')


def _set_field(message, field, value, key):
  """Sets the final field of a path (scalar, repeated or message)."""
  name = field.name
  if field.cpp_type == _FD.CPPTYPE_MESSAGE:
    if _is_repeated(field):
      if _is_map(field):
        if not isinstance(value, dict):
          raise ValueError(f'{key}: map field {field.full_name} needs a dict')
        container = getattr(message, name)
        container.clear()
        value_field = field.message_type.fields_by_name['value']
        for k, v in value.items():
          container[k] = _convert_scalar(value_field, v, key)
        return
      raise ValueError(
          f'{key}: {field.full_name} is a repeated message field; give an '
          f'index, e.g. {key}[0].<field>')
    sub = getattr(message, name)
    if isinstance(value, _message.Message):
      if value.DESCRIPTOR is not field.message_type:
        raise ValueError(
            f'{key}: expected a {field.message_type.full_name}, got '
            f'{value.DESCRIPTOR.full_name}')
      sub.CopyFrom(value)
    elif isinstance(value, str):
      new = type(sub)()
      parse_text_proto(value, new, path=f'<override {key}>')
      sub.CopyFrom(new)
    else:
      raise ValueError(f'{key}: message field {field.full_name} takes a '
                       'message or a text-format string, got '
                       f'{type(value).__name__}')
    return
  if _is_repeated(field):
    if isinstance(value, str):
      value = [v.strip() for v in value.split(',') if v.strip()]
    elif not isinstance(value, (list, tuple)):
      value = [value]
    converted = [_convert_scalar(field, v, key) for v in value]
    container = getattr(message, name)
    del container[:]
    container.extend(converted)
    return
  setattr(message, name, _convert_scalar(field, value, key))


def _is_repeated(field):
  """Whether a field is repeated (protobuf >= 6 `is_repeated`, or `label`)."""
  is_repeated = getattr(field, 'is_repeated', None)
  if is_repeated is not None:
    return bool(is_repeated)
  return field.label == _FD.LABEL_REPEATED


def _is_map(field):
  return (field.message_type is not None and
          field.message_type.GetOptions().map_entry)


def _apply_path(message, parts, value, key):
  """Follows `parts` (list of 'name' or 'name[i]') from `message`."""
  for depth, part in enumerate(parts):
    match = _INDEXED.match(part)
    if not match:
      raise ValueError(f'{key}: malformed path element {part!r}')
    name, index = match.group(1), match.group(2)
    desc = message.DESCRIPTOR
    field = desc.fields_by_name.get(name)
    if field is None:
      close = difflib.get_close_matches(name, list(desc.fields_by_name), n=1)
      hint = f' Did you mean "{close[0]}"?' if close else ''
      raise ValueError(f'{key}: message type "{desc.full_name}" has no field '
                       f'named "{name}".{hint}')
    last = depth == len(parts) - 1
    oneof = field.containing_oneof
    if oneof is not None and not last:
      current = message.WhichOneof(oneof.name)
      if current is not None and current != name:
        raise ValueError(
            f'{key}: oneof "{oneof.name}" of {desc.full_name} is set to '
            f'"{current}", not "{name}"; set the whole field '
            f'("{".".join(parts[:depth + 1])}") to switch it')
    if index is not None:
      if not _is_repeated(field) or _is_map(field):
        raise ValueError(f'{key}: {field.full_name} is not a repeated field '
                         'and cannot be indexed')
      container = getattr(message, name)
      i = int(index)
      if not -len(container) <= i < len(container):
        raise ValueError(f'{key}: index {i} out of range for '
                         f'{field.full_name} ({len(container)} elements)')
      if field.cpp_type == _FD.CPPTYPE_MESSAGE:
        if last:
          item = container[i]
          if isinstance(value, _message.Message):
            item.CopyFrom(value)
          elif isinstance(value, str):
            new = type(item)()
            parse_text_proto(value, new, path=f'<override {key}>')
            item.CopyFrom(new)
          else:
            raise ValueError(f'{key}: takes a message or a text-format '
                             f'string, got {type(value).__name__}')
          return
        message = container[i]
        continue
      if not last:
        raise ValueError(f'{key}: {field.full_name} is a scalar field')
      container[i] = _convert_scalar(field, value, key)
      return
    if last:
      _set_field(message, field, value, key)
      return
    if field.cpp_type != _FD.CPPTYPE_MESSAGE:
      raise ValueError(f'{key}: {field.full_name} is a scalar field; it has '
                       f'no sub-field "{parts[depth + 1]}"')
    if _is_repeated(field):
      raise ValueError(
          f'{key}: {field.full_name} is a repeated message field; give an '
          f'index, e.g. {name}[0]')
    message = getattr(message, name)
  raise ValueError(f'{key}: empty path')


def _apply_shortcut(configs, key, value):
  """TF OD API-style shortcut keys (see merge_external_params_with_configs)."""
  if key == 'batch_size':
    _apply_path(configs['train_config'], ['batch_size'], value, key)
  elif key == 'train_steps':
    _apply_path(configs['train_config'], ['num_steps'], value, key)
  elif key == 'num_classes':
    arch = get_meta_architecture(configs['model'])
    _apply_path(configs['model'], [arch, 'num_classes'], value, key)
  elif key == 'train_input_path':
    paths = [value] if isinstance(value, str) else list(value)
    _apply_path(configs['train_input_config'],
                ['tf_record_input_reader', 'input_path'], paths, key)
  elif key == 'eval_input_path':
    paths = [value] if isinstance(value, str) else list(value)
    if not configs['eval_input_configs']:
      raise ValueError(f'{key}: the config has no eval_input_reader')
    _apply_path(configs['eval_input_configs'][0],
                ['tf_record_input_reader', 'input_path'], paths, key)
  elif key == 'label_map_path':
    _apply_path(configs['train_input_config'], ['label_map_path'], value,
                key)
    for reader in configs['eval_input_configs']:
      _apply_path(reader, ['label_map_path'], value, key)


def merge_external_params_with_configs(configs, kwargs_dict=None):
  """Applies dotted-path overrides to a configs dict; returns a new dict.

  Keys are paths into the configs dict: the first element is a configs key
  and the rest are proto field names, with `[i]` to index repeated message
  fields:

    'model.ssd.num_classes': 3
    'train_config.batch_size': 8
    'train_config.optimizer.momentum_optimizer.learning_rate.'
        'cosine_decay_learning_rate.total_steps': 2000
    'model.ssd.anchor_generator.ssd_anchor_generator.aspect_ratios':
        [1.0, 2.0, 0.5]                     (repeated: replaces the list)
    'train_config.data_augmentation_options[0].random_horizontal_flip.'
        'probability': 0.3
    'eval_input_configs[0].label_map_path': 'x.pbtxt'
    'eval_input_config.sample_1_of_n_examples': 10   (every eval reader)
    'model.ssd.image_resizer': 'fixed_shape_resizer { height: 64 width: 64 }'
                                              (message: text format)

  Values may be Python values or strings (parsed for the field's type: ints,
  floats, 'true'/'false', enum names; comma-separated lists for repeated
  fields). A path may not pass through a oneof member other than the one set
  (e.g. 'model.faster_rcnn.num_classes' on an SSD config) -- set the member
  itself to switch. Shortcut keys as in the TF OD API: 'batch_size',
  'train_steps', 'num_classes', 'train_input_path', 'eval_input_path' (first
  eval reader), 'label_map_path' (train and all eval readers). A value of
  None is skipped.

  Args:
    configs: dict as returned by `get_configs_from_pipeline_file`; it is not
      modified.
    kwargs_dict: dict path -> value (None or {} = no change).

  Returns:
    A new configs dict with the overrides applied.

  Raises:
    ValueError: naming the key and the field, on an unknown configs key,
      unknown field, wrong value type, bad index or a oneof conflict.
  """
  if not isinstance(configs, dict):
    raise ValueError(f'configs must be a dict, got {type(configs).__name__}')
  new = {k: copy.deepcopy(v) for k, v in configs.items()
         if k != 'eval_input_config'}
  for key, (_, cls, repeated) in _CONFIG_KEYS.items():
    if key not in new:
      new[key] = [] if repeated else cls()
  if not new['eval_input_configs'] and configs.get('eval_input_config'):
    new['eval_input_configs'] = [copy.deepcopy(configs['eval_input_config'])]
  for key, value in (kwargs_dict or {}).items():
    if value is None:
      continue
    if not isinstance(key, str) or not key:
      raise ValueError(f'override keys must be non-empty strings, got {key!r}')
    if key in _SHORTCUTS:
      _apply_shortcut(new, key, value)
      continue
    parts = key.split('.')
    head = _INDEXED.match(parts[0])
    root = head.group(1) if head else parts[0]
    if root == 'eval_input_config' and head.group(2) is None:
      targets = new['eval_input_configs']
      if not targets:
        raise ValueError(f'{key}: the config has no eval_input_reader')
      for reader in targets:
        _apply_path(reader, parts[1:], value, key)
      continue
    if root in ('eval_input_configs', 'eval_input_config'):
      if head.group(2) is None:
        raise ValueError(f'{key}: give an index, e.g. eval_input_configs[0].'
                         '<field>, or use eval_input_config.<field> for all')
      readers = new['eval_input_configs']
      i = int(head.group(2))
      if not -len(readers) <= i < len(readers):
        raise ValueError(f'{key}: index {i} out of range for '
                         f'eval_input_configs ({len(readers)} readers)')
      if len(parts) == 1:
        raise ValueError(f'{key}: give a field of the eval input reader')
      _apply_path(readers[i], parts[1:], value, key)
      continue
    if root not in _CONFIG_KEYS or head.group(2) is not None:
      raise ValueError(
          f'{key}: unknown config key "{parts[0]}"; expected one of '
          f'{sorted(set(_CONFIG_KEYS) | {"eval_input_config"})} or a '
          f'shortcut {list(_SHORTCUTS)}')
    if len(parts) == 1:
      raise ValueError(f'{key}: give a field path below "{root}"')
    _apply_path(new[root], parts[1:], value, key)
  if new['eval_input_configs']:
    new['eval_input_config'] = new['eval_input_configs'][0]
  return new
