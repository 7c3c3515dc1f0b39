"""Builds a Keras 3 optimizer and its learning-rate schedule
(protos/optimizer.proto)."""

import collections

import tensorflow as tf

from od_meta.builders import builder_utils
from od_meta.protos import optimizer_pb2
from od_meta.utils import learning_schedules

OptimizerAndSchedule = collections.namedtuple('OptimizerAndSchedule',
                                              ['optimizer', 'learning_rate'])


def _manual_step(config):
  steps = [s.step for s in config.schedule]
  rates = [config.initial_learning_rate] + [
      s.learning_rate for s in config.schedule]
  if not steps:
    return learning_schedules.ConstantLearningRate(
        config.initial_learning_rate)
  return learning_schedules.ManualStepping(steps, rates, warmup=config.warmup)


_SCHEDULES = {
    'constant_learning_rate': lambda c: (
        learning_schedules.ConstantLearningRate(c.learning_rate)),
    'exponential_decay_learning_rate': lambda c: (
        learning_schedules.ExponentialDecayWithBurnin(
            initial_learning_rate=c.initial_learning_rate,
            decay_steps=c.decay_steps, decay_factor=c.decay_factor,
            staircase=c.staircase,
            burnin_learning_rate=c.burnin_learning_rate,
            burnin_steps=c.burnin_steps,
            min_learning_rate=c.min_learning_rate)),
    'manual_step_learning_rate': _manual_step,
    'cosine_decay_learning_rate': lambda c: (
        learning_schedules.CosineDecayWithWarmup(
            learning_rate_base=c.learning_rate_base,
            total_steps=c.total_steps,
            warmup_learning_rate=c.warmup_learning_rate,
            warmup_steps=c.warmup_steps,
            hold_base_rate_steps=c.hold_base_rate_steps)),
}


def build_learning_rate(learning_rate_config):
  """Returns the Keras `LearningRateSchedule` of a `LearningRate` message.

  Raises:
    ValueError: if no schedule is set or its values are inconsistent.
  """
  builder_utils.check_message_type(learning_rate_config,
                                   optimizer_pb2.LearningRate,
                                   'optimizer_builder')
  return builder_utils.dispatch(learning_rate_config, 'learning_rate',
                                _SCHEDULES)


def build(optimizer_config, *, global_clipnorm=None):
  """Returns `OptimizerAndSchedule` for an `Optimizer` message.

  Args:
    optimizer_config: an `Optimizer` message.
    global_clipnorm: optional float > 0, clip gradients by their global norm
      (train_config.gradient_clipping_by_norm).

  Returns:
    optimizer: a `tf.keras.optimizers.Optimizer`; `use_moving_average` maps
      to Keras' `use_ema` with `ema_momentum = moving_average_decay`.
    learning_rate: its schedule, for summaries.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if no optimizer or no learning rate is set.
  """
  builder_utils.check_message_type(optimizer_config, optimizer_pb2.Optimizer,
                                   'optimizer_builder')
  kind = builder_utils.which_oneof(optimizer_config, 'optimizer')
  config = getattr(optimizer_config, kind)
  if not config.HasField('learning_rate'):
    raise ValueError(f'Optimizer.{kind}.learning_rate is not set')
  schedule = build_learning_rate(config.learning_rate)
  common = dict(learning_rate=schedule,
                use_ema=optimizer_config.use_moving_average,
                ema_momentum=optimizer_config.moving_average_decay)
  if global_clipnorm:
    common['global_clipnorm'] = float(global_clipnorm)
  if kind == 'momentum_optimizer':
    optimizer = tf.keras.optimizers.SGD(
        momentum=config.momentum_optimizer_value, **common)
  elif kind == 'rms_prop_optimizer':
    optimizer = tf.keras.optimizers.RMSprop(
        rho=config.decay, momentum=config.momentum_optimizer_value,
        epsilon=config.epsilon, **common)
  elif kind == 'adam_optimizer':
    optimizer = tf.keras.optimizers.Adam(epsilon=config.epsilon, **common)
  else:  # pragma: no cover - the oneof has exactly these fields.
    raise ValueError(f'Optimizer.{kind} is not supported')
  return OptimizerAndSchedule(optimizer, schedule)
