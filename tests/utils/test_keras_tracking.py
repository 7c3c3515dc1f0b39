"""Layers kept in lists / dicts must be saved and restored by tf.train.Checkpoint."""

import numpy as np
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.training import train_loop
from od_meta.utils import config_util
from od_meta.utils import keras_tracking


class _Toy(keras_tracking.CheckpointTrackedCollections, tf.keras.layers.Layer):

  def __init__(self):
    super().__init__()
    self.fixed = [tf.keras.layers.Dense(2)]

  def build(self, input_shape):
    self.heads = [[tf.keras.layers.Dense(3)] for _ in range(2)]
    self.by_level = {3: tf.keras.layers.Dense(4)}

  def call(self, x):
    return (self.heads[0][0](x) + self.heads[1][0](x) +
            tf.reduce_sum(self.fixed[0](x)) +
            tf.reduce_sum(self.by_level[3](x)))


def test_lists_and_dicts_round_trip(tmp_path):
  layer = _Toy()
  layer(tf.ones([1, 2]))
  path = tf.train.Checkpoint(m=layer).save(str(tmp_path / 'ckpt'))
  names = [n for n, _ in tf.train.list_variables(path)]
  assert 'm/heads/1/0/_kernel/.ATTRIBUTES/VARIABLE_VALUE' in names
  assert 'm/by_level/3/bias/.ATTRIBUTES/VARIABLE_VALUE' in names
  other = _Toy()
  other(tf.ones([1, 2]))
  tf.train.Checkpoint(m=other).restore(path).assert_consumed()
  for a, b in zip(layer.weights, other.weights):  # noqa: B905
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_plain_keras_layer_would_lose_them(tmp_path):
  """Documents why the mixin exists (Keras 3 TrackedList is not followed)."""

  class Plain(tf.keras.layers.Layer):

    def build(self, input_shape):
      self.heads = [tf.keras.layers.Dense(3)]

    def call(self, x):
      return self.heads[0](x)

  layer = Plain()
  layer(tf.ones([1, 2]))
  path = tf.train.Checkpoint(m=layer).save(str(tmp_path / 'ckpt'))
  assert not any('heads' in n for n, _ in tf.train.list_variables(path))


def test_every_variable_of_the_default_ssd_is_checkpointed(tmp_path):
  configs = config_util.get_configs_from_pipeline_file(
      'configs/ssd_mobilenet_v2_digits.config')
  model = model_builder.build(configs['model'], is_training=True)
  train_loop.build_model_variables(model, 64, 64)
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / 'ckpt'))
  saved = [n for n, _ in tf.train.list_variables(path)
           if n.startswith('model/')]
  # Keras' RNG seed states (dropout) are not model weights.
  weights = [v for v in model.variables if 'seed_generator' not in v.path]
  assert len(saved) == len(weights) > 100
  # Restoring into a second model makes every variable equal.
  other = model_builder.build(configs['model'], is_training=False)
  train_loop.build_model_variables(other, 64, 64)
  status = tf.train.Checkpoint(model=other).restore(path)
  status.assert_existing_objects_matched()
  others = [v for v in other.variables if 'seed_generator' not in v.path]
  for a, b in zip(weights, others):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
