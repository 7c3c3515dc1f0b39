"""Shape helpers shared by the data pipeline and the meta-architectures.

Static shapes are used where TensorFlow knows them (so that XLA and the
exporter see fixed dimensions) and dynamic shapes otherwise.
"""

import tensorflow as tf


def combined_static_and_dynamic_shape(tensor):
  """Returns a list with the static dimension where known, else a scalar tensor.

  Args:
    tensor: any tensor of known rank.

  Returns:
    list of length `rank(tensor)` whose entries are Python ints (static
    dimensions) or int32 scalar tensors (dynamic dimensions).

  Raises:
    ValueError: if the rank of `tensor` is unknown.
  """
  static = tensor.shape
  if static.rank is None:
    raise ValueError('combined_static_and_dynamic_shape needs a known rank')
  dynamic = tf.shape(tensor)
  return [dim if dim is not None else dynamic[i]
          for i, dim in enumerate(static.as_list())]


def pad_or_clip_nd(tensor, output_shape, constant_value=0):
  """Pads with `constant_value` or clips `tensor` to `output_shape`.

  Args:
    tensor: tensor of rank R.
    output_shape: list of length R of ints, int32 scalar tensors or None
      (None keeps that dimension as it is).
    constant_value: scalar of `tensor`'s dtype used for padding.

  Returns:
    the tensor, clipped at the end of each dimension that is too long and
    padded at the end of each that is too short; its static shape is set
    where `output_shape` is static.

  Raises:
    ValueError: if `len(output_shape)` differs from the rank of `tensor`.
  """
  rank = tensor.shape.rank
  if rank is not None and len(output_shape) != rank:
    raise ValueError(
        f'output_shape has {len(output_shape)} entries for a tensor of rank '
        f'{rank}')
  input_shape = tf.shape(tensor)
  clip_size = tf.stack([
      input_shape[i] if dim is None else tf.minimum(input_shape[i], dim)
      for i, dim in enumerate(output_shape)])
  clipped = tf.slice(tensor, tf.zeros_like(clip_size), clip_size)
  clipped_shape = tf.shape(clipped)
  paddings = tf.stack([
      tf.stack([0, 0 if dim is None else dim - clipped_shape[i]])
      for i, dim in enumerate(output_shape)])
  padded = tf.pad(clipped, paddings, constant_values=constant_value)
  static = []
  for i, dim in enumerate(output_shape):
    if isinstance(dim, int):
      static.append(dim)
    elif dim is None and rank is not None:
      static.append(tensor.shape[i])
    else:
      static.append(None)
  padded.set_shape(static)
  return padded


def assert_shape_equal(shape_a, shape_b):
  """Asserts two shapes (lists of ints / scalar tensors) are equal.

  Static entries are compared in Python (raising ValueError at trace time);
  when any entry is dynamic a `tf.debugging.assert_equal` op is returned.

  Raises:
    ValueError: if static entries differ.
  """
  if (all(isinstance(d, int) for d in shape_a) and
      all(isinstance(d, int) for d in shape_b)):
    if list(shape_a) != list(shape_b):
      raise ValueError(f'Unequal shapes {shape_a}, {shape_b}')
    return tf.no_op()
  return tf.debugging.assert_equal(tf.stack(shape_a), tf.stack(shape_b))
