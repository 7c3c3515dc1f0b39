"""Fused vs Keras 3 batch normalization: layer and training-step times.

Times, in one process and interleaved (so a load change hits both alike):
  1. forward + backward of one batch-norm layer on a [32, 64, 64, 48] batch,
     Keras 3's `BatchNormalization` vs od_meta's `FusedBatchNormalization`;
  2. the training step (forward, loss, backward, SGD update) of a pipeline
     config on one fixed batch of its training input, with the fused kernel
     and with the Keras fallback (`FusedBatchNormalization` forced onto
     Keras' unfused path).

  python benchmarks/batch_norm_speed.py \
      [--pipeline_config_path=configs/ssd_mobilenet_v2_digits.config] \
      [--rounds=5] [--steps_per_round=5]

Prints median milliseconds and the ratios.
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

# pylint: disable=g-import-not-at-top,wrong-import-position
import keras
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.builders import optimizer_builder
from od_meta.feature_extractors import batch_norm
from od_meta.training import train_loop
from od_meta.utils import config_util
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('pipeline_config_path',
                    'configs/ssd_mobilenet_v2_digits.config',
                    'Config whose training step is timed.')
flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
flags.DEFINE_integer('steps_per_round', 5, 'Calls per round.')


def _time(fn, calls):
  start = time.perf_counter()
  for _ in range(calls):
    result = fn()
  tf.nest.map_structure(lambda t: t.numpy(), result)
  return (time.perf_counter() - start) / calls * 1000.0


def _layer_fn(layer, x):
  variables = [layer.gamma, layer.beta]

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(y * y)
    return tape.gradient(loss, [x] + variables)
  return step


def _train_step_fn(configs, features, labels):
  model = model_builder.build(configs['model'], is_training=True)
  optimizer, _ = optimizer_builder.build(configs['train_config'].optimizer)
  height, width = train_loop.image_size_for_building(configs)
  train_loop.build_model_variables(model, height, width)
  variables = model.trainable_variables

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      losses = train_loop.compute_losses(model, features, labels,
                                         training=True)
    grads = tape.gradient(losses['Loss/total_loss'], variables)
    optimizer.apply_gradients(zip(grads, variables))
    return losses['Loss/total_loss']
  return step


def _compare(name, functions, rounds, calls):
  for fn in functions.values():
    fn()  # Trace and warm up.
  times = {k: [] for k in functions}
  for _ in range(rounds):
    for key, fn in functions.items():
      times[key].append(_time(fn, calls))
  medians = {k: statistics.median(v) for k, v in times.items()}
  keras_ms, fused_ms = medians['keras'], medians['fused']
  print(f'{name}: Keras BatchNormalization {keras_ms:.1f} ms, fused '
        f'{fused_ms:.1f} ms, ratio {keras_ms / fused_ms:.2f}x', flush=True)


def main(argv):
  del argv
  x = tf.random.normal([32, 64, 64, 48], seed=0)
  layers = {'keras': keras.layers.BatchNormalization(),
            'fused': batch_norm.FusedBatchNormalization()}
  for layer in layers.values():
    layer.build(x.shape)
  _compare('batch-norm layer, forward + backward, [32, 64, 64, 48]',
           {k: _layer_fn(l, x) for k, l in layers.items()},
           FLAGS.rounds, 20)

  configs = config_util.get_configs_from_pipeline_file(
      FLAGS.pipeline_config_path)
  features, labels = next(iter(
      train_loop.build_input_fn(configs, is_training=True)(None)))
  features = {k: v for k, v in features.items() if v.dtype != tf.string}
  labels = {k: v for k, v in labels.items() if v.dtype != tf.string}
  fused_step = _train_step_fn(configs, features, labels)
  # The same network on Keras' unfused path (same layers, same variables).
  original = batch_norm.FusedBatchNormalization._can_fuse  # pylint: disable=protected-access
  batch_norm.FusedBatchNormalization._can_fuse = (  # pylint: disable=protected-access
      lambda self, inputs, mask: False)
  try:
    keras_step = _train_step_fn(configs, features, labels)
    keras_step()  # Traced while the fallback is active.
  finally:
    batch_norm.FusedBatchNormalization._can_fuse = original  # pylint: disable=protected-access
  _compare(f'training step of {FLAGS.pipeline_config_path} (batch '
           f'{configs["train_config"].batch_size})',
           {'keras': keras_step, 'fused': fused_step},
           FLAGS.rounds, FLAGS.steps_per_round)


if __name__ == '__main__':
  app.run(main)
