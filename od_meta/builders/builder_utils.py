"""Checks shared by every builder: message type and the chosen `oneof`."""


def check_message_type(config, message_class, builder_name):
  """Raises TypeError unless `config` is a `message_class` protobuf message.

  Args:
    config: the object handed to a builder.
    message_class: the generated protobuf class the builder expects.
    builder_name: name used in the error, e.g. 'box_coder_builder'.

  Raises:
    TypeError: naming the expected and the received type.
  """
  if not isinstance(config, message_class):
    raise TypeError(
        f'{builder_name}.build expects a {message_class.DESCRIPTOR.full_name} '
        f'message, got {type(config).__name__}')


def which_oneof(config, oneof_name):
  """Returns the field set in `oneof_name`, or raises naming the field.

  Raises:
    ValueError: if no field of the oneof is set.
  """
  choice = config.WhichOneof(oneof_name)
  if choice is None:
    options = ', '.join(
        f.name for f in config.DESCRIPTOR.oneofs_by_name[oneof_name].fields)
    raise ValueError(
        f'{config.DESCRIPTOR.full_name}.{oneof_name} is empty: set one of '
        f'{options}')
  return choice


def dispatch(config, oneof_name, table):
  """Calls `table[chosen field](sub_message)` for the oneof `oneof_name`.

  Raises:
    ValueError: if the oneof is empty or its chosen field has no builder.
  """
  choice = which_oneof(config, oneof_name)
  if choice not in table:
    raise ValueError(
        f'{config.DESCRIPTOR.full_name}.{choice} is not supported yet '
        f'(supported: {", ".join(sorted(table))})')
  return table[choice](getattr(config, choice))
