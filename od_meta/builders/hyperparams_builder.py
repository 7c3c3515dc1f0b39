"""Builds `ConvHyperparams` from a `Hyperparams` message (protos/hyperparams.proto).

`ConvHyperparams` (od_meta/feature_extractors/conv_hyperparams.py) says how
the layers od_meta adds to a network are initialized, normalized, activated
and regularized. Settings it cannot express are rejected with the field's
name instead of being silently dropped.
"""

from od_meta.builders import builder_utils
from od_meta.feature_extractors import conv_hyperparams
from od_meta.protos import hyperparams_pb2

_ACTIVATIONS = {
    hyperparams_pb2.Hyperparams.NONE: 'none',
    hyperparams_pb2.Hyperparams.RELU: 'relu',
    hyperparams_pb2.Hyperparams.RELU_6: 'relu6',
    hyperparams_pb2.Hyperparams.SWISH: 'swish',
}

_VS = hyperparams_pb2.VarianceScalingInitializer
# (factor, mode, uniform) -> ConvHyperparams.initializer
_VARIANCE_SCALING = {
    (2.0, _VS.FAN_IN, False): 'he_normal',
    (1.0, _VS.FAN_AVG, True): 'glorot_uniform',
    (1.0, _VS.FAN_IN, False): 'variance_scaling',
}


def _initializer_kwargs(initializer):
  kind = initializer.WhichOneof('initializer_oneof')
  if kind is None:
    return {}
  if kind == 'truncated_normal_initializer':
    return {'initializer': 'truncated_normal',
            'initializer_stddev': initializer.truncated_normal_initializer.stddev}
  if kind == 'random_normal_initializer':
    return {'initializer': 'random_normal',
            'initializer_stddev': initializer.random_normal_initializer.stddev}
  vs = initializer.variance_scaling_initializer
  key = (round(vs.factor, 6), vs.mode, vs.uniform)
  if key not in _VARIANCE_SCALING:
    raise ValueError(
        'Hyperparams.initializer.variance_scaling_initializer: supported '
        '(factor, mode, uniform) are (2.0, FAN_IN, false), (1.0, FAN_AVG, '
        f'true) and (1.0, FAN_IN, false); got ({vs.factor}, '
        f'{_VS.Mode.Name(vs.mode)}, {str(vs.uniform).lower()})')
  return {'initializer': _VARIANCE_SCALING[key]}


def build(hyperparams_config):
  """Returns the `ConvHyperparams` of a `Hyperparams` message.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: for settings ConvHyperparams cannot express (L1
      regularizer, group norm, an unsupported variance-scaling variant).
  """
  builder_utils.check_message_type(hyperparams_config,
                                   hyperparams_pb2.Hyperparams,
                                   'hyperparams_builder')
  kwargs = {'activation': _ACTIVATIONS[hyperparams_config.activation]}
  regularizer = hyperparams_config.regularizer.WhichOneof('regularizer_oneof')
  if regularizer == 'l1_regularizer':
    raise ValueError('Hyperparams.regularizer.l1_regularizer is not supported; '
                     'use l2_regularizer')
  kwargs['l2_weight_decay'] = (
      hyperparams_config.regularizer.l2_regularizer.weight
      if regularizer == 'l2_regularizer' else 0.0)
  kwargs.update(_initializer_kwargs(hyperparams_config.initializer))
  normalizer = hyperparams_config.WhichOneof('normalizer_oneof')
  if normalizer == 'group_norm':
    raise ValueError('Hyperparams.group_norm is not supported yet; use '
                     'batch_norm or no normalizer')
  if normalizer == 'batch_norm':
    bn = hyperparams_config.batch_norm
    kwargs.update(use_batch_norm=True, batch_norm_momentum=bn.decay,
                  batch_norm_epsilon=bn.epsilon, batch_norm_scale=bn.scale,
                  batch_norm_center=bn.center)
  else:
    kwargs['use_batch_norm'] = False
  return conv_hyperparams.ConvHyperparams(**kwargs)
