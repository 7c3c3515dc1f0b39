import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.utils import learning_schedules as ls


def _values(schedule, steps):
  return np.array([float(schedule(tf.constant(s, tf.int64))) for s in steps])


def test_constant():
  np.testing.assert_allclose(_values(ls.ConstantLearningRate(0.01), [0, 99]),
                             [0.01, 0.01])
  with pytest.raises(ValueError):
    ls.ConstantLearningRate(0.0)


def test_exponential_decay_with_burnin_golden():
  sched = ls.ExponentialDecayWithBurnin(
      initial_learning_rate=1.0, decay_steps=10, decay_factor=0.5,
      staircase=True, burnin_learning_rate=0.1, burnin_steps=5,
      min_learning_rate=0.2)
  # step 0-4: burn-in 0.1; step 5: 1.0*0.5**0; step 15: 0.5**1 = 0.5;
  # step 25: 0.25; step 35: 0.125 -> floored at 0.2.
  np.testing.assert_allclose(_values(sched, [0, 4, 5, 14, 15, 25, 35]),
                             [0.1, 0.1, 1.0, 1.0, 0.5, 0.25, 0.2])


def test_manual_stepping_with_and_without_warmup():
  sched = ls.ManualStepping([10, 20], [0.1, 1.0, 0.01])
  np.testing.assert_allclose(_values(sched, [0, 9, 10, 19, 20, 100]),
                             [0.1, 0.1, 1.0, 1.0, 0.01, 0.01])
  warm = ls.ManualStepping([10, 20], [0.1, 1.0, 0.01], warmup=True)
  # Linear from 0.1 at step 0 to 1.0 at step 10: step 5 -> 0.55.
  np.testing.assert_allclose(_values(warm, [0, 5, 10, 20]),
                             [0.1, 0.55, 1.0, 0.01], rtol=1e-6)
  with pytest.raises(ValueError, match='increasing'):
    ls.ManualStepping([10, 5], [1, 2, 3])
  with pytest.raises(ValueError, match='one more'):
    ls.ManualStepping([10], [1])


def test_cosine_decay_with_warmup_golden():
  sched = ls.CosineDecayWithWarmup(
      learning_rate_base=1.0, total_steps=110, warmup_learning_rate=0.1,
      warmup_steps=10, hold_base_rate_steps=0)
  # Warmup: 0.1 + 0.09 * 5 = 0.55 at step 5; step 10 starts the cosine at 1.0;
  # step 60 is half way: 0.5 * (1 + cos(pi/2)) = 0.5; step 110 -> 0.
  expected = [0.1, 0.55, 1.0, 0.5, 0.5 * (1 + math.cos(math.pi * 0.9)), 0.0,
              0.0]
  np.testing.assert_allclose(_values(sched, [0, 5, 10, 60, 100, 110, 500]),
                             expected, atol=1e-6)
  hold = ls.CosineDecayWithWarmup(1.0, 100, 0.0, 0, hold_base_rate_steps=50)
  np.testing.assert_allclose(_values(hold, [0, 49, 75]), [1.0, 1.0, 0.5],
                             atol=1e-6)
  with pytest.raises(ValueError, match='total_steps'):
    ls.CosineDecayWithWarmup(1.0, 5, warmup_steps=10)


def test_schedules_drive_a_keras_optimizer_in_a_tf_function():
  sched = ls.CosineDecayWithWarmup(0.5, 100, 0.0, 10)
  opt = tf.keras.optimizers.SGD(learning_rate=sched)
  var = tf.Variable(1.0)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = var * 2.0
    opt.apply_gradients([(tape.gradient(loss, var), var)])

  step()
  step()
  # Step 0 has lr 0, step 1 has lr 0.05: var = 1 - 0.05 * 2.
  np.testing.assert_allclose(var.numpy(), 0.9, rtol=1e-6)
