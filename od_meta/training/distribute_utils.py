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


def is_chief(strategy) -> bool:
  """True for the process that owns the run folder under `strategy`.

  Single-process strategies: always. MultiWorkerMirroredStrategy: the
  'chief' task, or worker 0 of a cluster without a chief (TF_CONFIG
  conventions).
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  task_type = getattr(resolver, 'task_type', None) if resolver else None
  if not task_type:
    return True
  if task_type == 'chief':
    return True
  if task_type == 'worker' and int(resolver.task_id or 0) == 0:
    return 'chief' not in resolver.cluster_spec().as_dict()
  return False
