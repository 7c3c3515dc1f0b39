"""FLOPs of an inference graph and parameter counts.

Huang et al. 2017 (Sec. 4.1.7, Fig. 7-8) compare FLOPs with GPU time. We
count the floating-point operations of the traced graph of a concrete
`tf.function` at batch 1 with TensorFlow's profiler (tfprof, the tool the
paper used): `ProfileOptionBuilder.float_operation()` sums each op's
registered FLOP statistics (e.g. Conv2D: 2 x multiply-adds), which needs the
op's shapes statically known -- trace with a fully defined input signature.
Ops whose shapes are dynamic (NMS outputs, top-k) contribute nothing, as in
tfprof. A graph that calls other functions is frozen first
(`convert_variables_to_constants_v2`, which inlines them).

No protos here.
"""

from typing import Optional

import tensorflow as tf

_CALL_OPS = ('PartitionedCall', 'StatefulPartitionedCall')


def _profile_float_ops(graph: tf.Graph) -> int:
  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import model_analyzer
  from tensorflow.python.profiler import option_builder
  # pylint: enable=g-import-not-at-top
  builder = option_builder.ProfileOptionBuilder
  options = builder(builder.float_operation()).with_empty_output().build()
  result = model_analyzer.profile(graph, options=options)
  return int(result.total_float_ops)


def count_flops(concrete_function) -> int:
  """Total float ops of a concrete function's graph (tfprof), batch as traced.

  Args:
    concrete_function: from `tf.function(...).get_concrete_function(spec)`
      with fully defined input shapes (e.g. `[1, H, W, 3]`).

  Returns:
    int, floating-point operations of one call (0 when no op has FLOP
    statistics).

  Raises:
    ValueError: if `concrete_function` is not a concrete function.
  """
  graph = getattr(concrete_function, 'graph', None)
  if not isinstance(graph, tf.Graph):
    raise ValueError('concrete_function must be a ConcreteFunction (from '
                     '`tf.function(f).get_concrete_function(...)`), got '
                     f'{type(concrete_function).__name__}')
  if any(op.type in _CALL_OPS for op in graph.get_operations()):
    # pylint: disable=g-import-not-at-top
    from tensorflow.python.framework import convert_to_constants
    # pylint: enable=g-import-not-at-top
    frozen = convert_to_constants.convert_variables_to_constants_v2(
        concrete_function)
    graph = tf.Graph()
    with graph.as_default():
      tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name='')
  return _profile_float_ops(graph)


def count_parameters(module, trainable_only: bool = False) -> int:
  """Number of scalar weights of a Keras layer / `tf.Module`.

  Args:
    module: anything with `variables` / `trainable_variables` (a
      `DetectionModel`).
    trainable_only: count only trainable variables (batch-norm moving
      statistics excluded).

  Raises:
    ValueError: if `module` has no variables attribute.
  """
  attribute = 'trainable_variables' if trainable_only else 'variables'
  variables = getattr(module, attribute, None)
  if variables is None:
    raise ValueError(f'module has no {attribute!r} attribute: '
                     f'{type(module).__name__}')
  seen = set()
  total = 0
  for variable in variables:
    key = id(variable)
    if key in seen:
      continue
    seen.add(key)
    total += int(tf.size(variable).numpy())
  return total


def gflops(flops: Optional[int]) -> Optional[float]:
  """FLOPs in units of 1e9 (None stays None)."""
  return None if flops is None else flops / 1e9
