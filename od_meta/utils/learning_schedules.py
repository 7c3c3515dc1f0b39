"""Learning-rate schedules of the TF Object Detection API, as Keras schedules.

Each class is a `tf.keras.optimizers.schedules.LearningRateSchedule`: called
with the (int64 or float) global step it returns a float32 scalar learning
rate, so it can be handed to any Keras 3 optimizer and is serialized with it.
Steps are optimizer steps (one per global batch).
"""

import math

import tensorflow as tf


class ConstantLearningRate(tf.keras.optimizers.schedules.LearningRateSchedule):
  """A constant learning rate.

  Args:
    learning_rate: float > 0.

  Raises:
    ValueError: if `learning_rate` is not positive.
  """

  def __init__(self, learning_rate):
    if learning_rate <= 0:
      raise ValueError(f'learning_rate must be > 0, got {learning_rate}')
    self.learning_rate = float(learning_rate)

  def __call__(self, step):
    del step
    return tf.constant(self.learning_rate, tf.float32)

  def get_config(self):
    return {'learning_rate': self.learning_rate}


class ExponentialDecayWithBurnin(
    tf.keras.optimizers.schedules.LearningRateSchedule):
  """Exponential decay with an optional constant burn-in phase.

  lr(step) = burnin_learning_rate                    for step < burnin_steps
           = max(min_learning_rate, initial_learning_rate *
                 decay_factor ** ((step - burnin_steps) / decay_steps))
  with the exponent floored when `staircase` (TF OD API
  `exponential_decay_with_burnin`).

  Args:
    initial_learning_rate: float > 0.
    decay_steps: int > 0, steps per decay.
    decay_factor: float in (0, 1].
    staircase: bool, decay in discrete intervals.
    burnin_learning_rate: float; 0 means use `initial_learning_rate`.
    burnin_steps: int >= 0.
    min_learning_rate: float >= 0, floor of the schedule.

  Raises:
    ValueError: on non-positive rates or steps.
  """

  def __init__(self, initial_learning_rate, decay_steps, decay_factor,
               staircase=True, burnin_learning_rate=0.0, burnin_steps=0,
               min_learning_rate=0.0):
    if initial_learning_rate <= 0:
      raise ValueError('initial_learning_rate must be > 0')
    if decay_steps <= 0:
      raise ValueError('decay_steps must be > 0')
    if burnin_steps < 0:
      raise ValueError('burnin_steps must be >= 0')
    self.initial_learning_rate = float(initial_learning_rate)
    self.decay_steps = int(decay_steps)
    self.decay_factor = float(decay_factor)
    self.staircase = bool(staircase)
    self.burnin_learning_rate = float(burnin_learning_rate or
                                      initial_learning_rate)
    self.burnin_steps = int(burnin_steps)
    self.min_learning_rate = float(min_learning_rate)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    exponent = (step - self.burnin_steps) / self.decay_steps
    if self.staircase:
      exponent = tf.floor(exponent)
    decayed = self.initial_learning_rate * tf.pow(self.decay_factor,
                                                  tf.maximum(exponent, 0.0))
    decayed = tf.maximum(decayed, self.min_learning_rate)
    return tf.where(step < self.burnin_steps,
                    tf.constant(self.burnin_learning_rate, tf.float32),
                    decayed)

  def get_config(self):
    return dict(initial_learning_rate=self.initial_learning_rate,
                decay_steps=self.decay_steps, decay_factor=self.decay_factor,
                staircase=self.staircase,
                burnin_learning_rate=self.burnin_learning_rate,
                burnin_steps=self.burnin_steps,
                min_learning_rate=self.min_learning_rate)


class ManualStepping(tf.keras.optimizers.schedules.LearningRateSchedule):
  """Piecewise-constant schedule with optional linear warmup.

  With boundaries [b_1, ..., b_n] and rates [r_0, ..., r_n], the rate is r_0
  before b_1, r_i on [b_i, b_{i+1}). With `warmup`, the rate rises linearly
  from r_0 at step 0 to r_1 at b_1 instead of staying at r_0 (TF OD API
  `manual_stepping`).

  Args:
    boundaries: increasing list of int steps, first >= 0.
    rates: list of floats, one longer than `boundaries`.
    warmup: bool.

  Raises:
    ValueError: if the lists do not fit together or boundaries do not
      increase.
  """

  def __init__(self, boundaries, rates, warmup=False):
    boundaries = [int(b) for b in boundaries]
    rates = [float(r) for r in rates]
    if any(b < 0 for b in boundaries) or any(
        b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:])):
      raise ValueError(
          f'boundaries must be non-negative and increasing, got {boundaries}')
    if len(rates) != len(boundaries) + 1:
      raise ValueError(
          f'rates ({len(rates)}) must have one more entry than boundaries '
          f'({len(boundaries)})')
    if warmup and not boundaries:
      raise ValueError('warmup needs at least one boundary')
    self.boundaries = boundaries
    self.rates = rates
    self.warmup = bool(warmup)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    rate = tf.constant(self.rates[0], tf.float32)
    for boundary, value in zip(self.boundaries, self.rates[1:]):
      rate = tf.where(step >= boundary, tf.constant(value, tf.float32), rate)
    if self.warmup:
      first = float(self.boundaries[0])
      slope = (self.rates[1] - self.rates[0]) / max(first, 1.0)
      warm = self.rates[0] + slope * step
      rate = tf.where(step < first, warm, rate)
    return rate

  def get_config(self):
    return dict(boundaries=self.boundaries, rates=self.rates,
                warmup=self.warmup)


class CosineDecayWithWarmup(
    tf.keras.optimizers.schedules.LearningRateSchedule):
  """Cosine decay with linear warmup and an optional hold phase.

  Goyal et al. 2017 (linear warmup) and Loshchilov & Hutter 2017 (SGDR, eq. 5,
  one cycle, no restarts), as the TF OD API's `cosine_decay_with_warmup`:

    lr = warmup_learning_rate + (base - warmup_learning_rate) * step /
         warmup_steps                                       step < warmup
    lr = base                                   warmup <= step < warmup + hold
    lr = 0.5 * base * (1 + cos(pi * (step - warmup - hold) /
                               (total_steps - warmup - hold)))   afterwards
    lr = 0                                             step >= total_steps

  Args:
    learning_rate_base: float > 0, the peak rate.
    total_steps: int > 0, the step at which the rate reaches 0.
    warmup_learning_rate: float, rate at step 0.
    warmup_steps: int >= 0.
    hold_base_rate_steps: int >= 0, steps held at the base after warmup.

  Raises:
    ValueError: if total_steps < warmup_steps + hold_base_rate_steps or the
      warmup rate exceeds the base.
  """

  def __init__(self, learning_rate_base, total_steps,
               warmup_learning_rate=0.0, warmup_steps=0,
               hold_base_rate_steps=0):
    if learning_rate_base <= 0:
      raise ValueError('learning_rate_base must be > 0')
    if total_steps < warmup_steps + hold_base_rate_steps:
      raise ValueError(
          f'total_steps ({total_steps}) must be >= warmup_steps + '
          f'hold_base_rate_steps ({warmup_steps + hold_base_rate_steps})')
    if warmup_steps > 0 and learning_rate_base < warmup_learning_rate:
      raise ValueError(
          'learning_rate_base must be >= warmup_learning_rate')
    self.learning_rate_base = float(learning_rate_base)
    self.total_steps = int(total_steps)
    self.warmup_learning_rate = float(warmup_learning_rate)
    self.warmup_steps = int(warmup_steps)
    self.hold_base_rate_steps = int(hold_base_rate_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    decay_start = float(self.warmup_steps + self.hold_base_rate_steps)
    decay_len = max(float(self.total_steps) - decay_start, 1.0)
    progress = tf.clip_by_value((step - decay_start) / decay_len, 0.0, 1.0)
    rate = 0.5 * self.learning_rate_base * (1.0 + tf.cos(math.pi * progress))
    if self.hold_base_rate_steps > 0:
      rate = tf.where(step < decay_start,
                      tf.constant(self.learning_rate_base, tf.float32), rate)
    if self.warmup_steps > 0:
      slope = ((self.learning_rate_base - self.warmup_learning_rate) /
               self.warmup_steps)
      warm = self.warmup_learning_rate + slope * step
      rate = tf.where(step < self.warmup_steps, warm, rate)
    return tf.where(step >= self.total_steps, 0.0, rate)

  def get_config(self):
    return dict(learning_rate_base=self.learning_rate_base,
                total_steps=self.total_steps,
                warmup_learning_rate=self.warmup_learning_rate,
                warmup_steps=self.warmup_steps,
                hold_base_rate_steps=self.hold_base_rate_steps)
