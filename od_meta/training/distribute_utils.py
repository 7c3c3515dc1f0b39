"""Chooses the `tf.distribute` strategy od_meta trains under.

* `TF_CONFIG` naming more than one worker: `MultiWorkerMirroredStrategy`;
* otherwise, one or more visible GPUs: `MirroredStrategy` over all of them;
* otherwise (CPU): the default strategy.

`strategy_name` forces a choice: 'default', 'mirrored', 'multi_worker_mirrored'
or 'one_device' (with `device`).
"""

import json
import os

import tensorflow as tf

STRATEGY_NAMES = ('auto', 'default', 'mirrored', 'multi_worker_mirrored',
                  'one_device')


def num_workers_in_tf_config(tf_config=None):
  """Number of workers (chief included) described by `TF_CONFIG`.

  Args:
    tf_config: the JSON text; default: the `TF_CONFIG` environment variable.

  Returns:
    int, 0 when `TF_CONFIG` is unset or empty.

  Raises:
    ValueError: if `TF_CONFIG` is not valid JSON.
  """
  text = os.environ.get('TF_CONFIG', '') if tf_config is None else tf_config
  if not text.strip():
    return 0
  try:
    config = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f'TF_CONFIG is not valid JSON: {e}') from e
  if not isinstance(config, dict):
    raise ValueError('TF_CONFIG must be a JSON object with a "cluster" key')
  cluster = config.get('cluster', {})
  return len(cluster.get('worker', [])) + len(cluster.get('chief', []))


def get_strategy(strategy_name='auto', device=None):
  """Returns the `tf.distribute.Strategy` to train and evaluate under.

  Raises:
    ValueError: on an unknown `strategy_name`.
  """
  if strategy_name not in STRATEGY_NAMES:
    raise ValueError(f'unknown strategy {strategy_name!r}; choose one of '
                     f'{", ".join(STRATEGY_NAMES)}')
  if strategy_name == 'auto':
    if num_workers_in_tf_config() > 1:
      strategy_name = 'multi_worker_mirrored'
    elif tf.config.list_physical_devices('GPU'):
      strategy_name = 'mirrored'
    else:
      strategy_name = 'default'
  if strategy_name == 'default':
    return tf.distribute.get_strategy()
  if strategy_name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if strategy_name == 'multi_worker_mirrored':
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.OneDeviceStrategy(device or '/cpu:0')
