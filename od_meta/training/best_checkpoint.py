"""Best-checkpoint keeping and early stopping on an evaluation metric.

`BestCheckpointKeeper` copies the checkpoint with the best value of one
metric (by default `DetectionBoxes_Precision/mAP`, higher is better) into
`model_dir/best/`, beside the newest-N checkpoints that
`tf.train.CheckpointManager` rotates in `model_dir`: rotation never deletes
it. `model_dir/best/checkpoint` is a standard checkpoint state file, so
`tf.train.latest_checkpoint(model_dir + '/best')` and the exporter's
`--trained_checkpoint_dir=<model_dir>/best` find it, and
`model_dir/best/best_checkpoint.json` records the metric, its value, the
step and the early-stopping state.

`EarlyStopping` follows Keras' `EarlyStopping` callback: an evaluation
improves when the metric beats the reference by more than `min_delta`
(in the metric's better direction); training stops after `patience`
evaluations without improvement.

Both states survive a restart of the training run: they are re-read from
`best_checkpoint.json`.
"""

import dataclasses
import json
import math
import os
from typing import Optional

import tensorflow as tf

BEST_DIR = 'best'
STATE_FILE = 'best_checkpoint.json'
DEFAULT_METRIC = 'DetectionBoxes_Precision/mAP'
MODES = ('auto', 'max', 'min')


def higher_is_better(metric: str, mode: str = 'auto') -> bool:
  """The metric's better direction.

  Args:
    metric: a metric name as evaluation reports it.
    mode: 'max', 'min', or 'auto' (losses, names starting with 'Loss/', are
      better lower; every other metric, AP and AR included, higher).

  Raises:
    ValueError: on an unknown mode.
  """
  if mode not in MODES:
    raise ValueError(f'metric mode must be one of {MODES}, got {mode!r}')
  if mode == 'auto':
    return not metric.startswith('Loss/')
  return mode == 'max'


def metric_value(metrics: dict, metric: str) -> float:
  """`metrics[metric]` as a float.

  Raises:
    ValueError: naming the metric and the available names when it is
      missing (e.g. a keypoint metric with a box-only metrics_set).
  """
  if metric not in metrics:
    raise ValueError(
        f'eval_config.best_metric {metric!r} is not among the evaluation '
        f'metrics: {", ".join(sorted(metrics))}')
  return float(metrics[metric])


def _write_atomically(path: str, text: str):
  """Writes a file through a temporary sibling and a rename."""
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _improves(value: float, reference: Optional[float], higher: bool,
              min_delta: float = 0.0) -> bool:
  if not math.isfinite(value):
    return False
  if reference is None:
    return True
  if higher:
    return value - min_delta > reference
  return value + min_delta < reference


@dataclasses.dataclass
class EarlyStopping:
  """Stops training when a metric stops improving (Keras' EarlyStopping).

  Attributes:
    metric: the metric name.
    higher: True when higher values are better.
    patience: evaluations without improvement before stopping (>= 1).
    min_delta: the least change that counts as an improvement (>= 0, in
      the metric's units).
    reference: the best value seen so far (None before the first).
    reference_step: the step of `reference`.
    wait: evaluations since the last improvement.
    stopped: True once `wait` reached `patience`.
  """
  metric: str
  higher: bool
  patience: int
  min_delta: float = 0.0
  reference: Optional[float] = None
  reference_step: int = -1
  wait: int = 0
  stopped: bool = False

  def __post_init__(self):
    if self.patience < 1:
      raise ValueError(f'early stopping patience must be >= 1, got '
                       f'{self.patience}')
    if self.min_delta < 0:
      raise ValueError(f'early stopping min_delta must be >= 0, got '
                       f'{self.min_delta}')

  def update(self, step: int, value: float) -> bool:
    """Records one evaluation; returns True when training should stop."""
    if _improves(value, self.reference, self.higher, self.min_delta):
      self.reference, self.reference_step, self.wait = value, int(step), 0
    else:
      self.wait += 1
    self.stopped = self.wait >= self.patience
    return self.stopped

  def reason(self) -> str:
    """One sentence saying why training stopped."""
    direction = 'increase' if self.higher else 'decrease'
    return (f'{self.metric} did not {direction} by more than '
            f'{self.min_delta:g} for {self.wait} evaluation(s) '
            f'(patience {self.patience}); best {self.reference:.4f} at step '
            f'{self.reference_step}')


class BestCheckpointKeeper:
  """Keeps the best checkpoint of a run in `model_dir/best/`.

  Args:
    model_dir: the training run's directory.
    metric: the metric to rank checkpoints by.
    mode: 'auto', 'max' or 'min' (see `higher_is_better`).
    early_stopping_patience: 0 (no early stopping) or the patience.
    early_stopping_min_delta: the early-stopping improvement threshold.

  The state of an earlier run on the same `model_dir` is read back; a state
  written for another metric or direction is not compared with (its best
  checkpoint is replaced at the next evaluation, with a note in the log).
  """

  def __init__(self, model_dir: str, metric: str = DEFAULT_METRIC,
               mode: str = 'auto', early_stopping_patience: int = 0,
               early_stopping_min_delta: float = 0.0):
    self.best_dir = os.path.join(model_dir, BEST_DIR)
    self.metric = metric
    self.higher = higher_is_better(metric, mode)
    self.best_value: Optional[float] = None
    self.best_step = -1
    self.best_checkpoint: Optional[str] = None
    self.early_stopping = (
        EarlyStopping(metric, self.higher, int(early_stopping_patience),
                      float(early_stopping_min_delta))
        if early_stopping_patience else None)
    self.previous_state_ignored = False
    self._load()

  @property
  def state_path(self) -> str:
    return os.path.join(self.best_dir, STATE_FILE)

  def _load(self):
    if not tf.io.gfile.exists(self.state_path):
      return
    with tf.io.gfile.GFile(self.state_path) as f:
      state = json.load(f)
    if (state.get('metric') != self.metric or
        bool(state.get('higher_is_better')) != self.higher):
      self.previous_state_ignored = True
      return
    self.best_value = state.get('value')
    self.best_step = int(state.get('step', -1))
    checkpoint = state.get('checkpoint')
    self.best_checkpoint = (os.path.join(self.best_dir, checkpoint)
                            if checkpoint else None)
    saved = state.get('early_stopping')
    if self.early_stopping is not None and saved:
      self.early_stopping.reference = saved.get('reference')
      self.early_stopping.reference_step = int(saved.get('reference_step',
                                                         -1))
      self.early_stopping.wait = int(saved.get('wait', 0))
      self.early_stopping.stopped = (
          self.early_stopping.wait >= self.early_stopping.patience)

  def _save_state(self):
    state = {
        'metric': self.metric,
        'higher_is_better': self.higher,
        'value': self.best_value,
        'step': self.best_step,
        'checkpoint': (os.path.basename(self.best_checkpoint)
                       if self.best_checkpoint else None),
    }
    if self.early_stopping is not None:
      state['early_stopping'] = {
          'patience': self.early_stopping.patience,
          'min_delta': self.early_stopping.min_delta,
          'reference': self.early_stopping.reference,
          'reference_step': self.early_stopping.reference_step,
          'wait': self.early_stopping.wait,
      }
    _write_atomically(self.state_path, json.dumps(state, indent=1) + '\n')

  @property
  def should_stop(self) -> bool:
    """True once early stopping has triggered (also after a restart)."""
    return self.early_stopping is not None and self.early_stopping.stopped

  def update(self, step: int, metrics: dict, checkpoint_path: str) -> bool:
    """Records an evaluation of `checkpoint_path` (at `step`).

    Copies the checkpoint into `best/` when its metric beats the best so
    far (strictly; NaN never does), then removes the previous best's
    files. Early stopping, if enabled, is updated too.

    Args:
      step: the global step of the checkpoint.
      metrics: the evaluation's metrics dict.
      checkpoint_path: the checkpoint prefix that was evaluated.

    Returns:
      True when the checkpoint became the best.

    Raises:
      ValueError: if the metric is missing from `metrics`.
    """
    value = metric_value(metrics, self.metric)
    improved = _improves(value, self.best_value, self.higher)
    if improved:
      self._copy(checkpoint_path)
      self.best_value, self.best_step = value, int(step)
    if self.early_stopping is not None:
      self.early_stopping.update(step, value)
    self._save_state()
    return improved

  def _copy(self, checkpoint_path: str):
    tf.io.gfile.makedirs(self.best_dir)
    name = os.path.basename(checkpoint_path)
    sources = tf.io.gfile.glob(checkpoint_path + '.*')
    if not any(s.endswith('.index') for s in sources):
      raise ValueError(f'{checkpoint_path} is not a checkpoint (no .index '
                       'file)')
    for source in sources:
      tf.io.gfile.copy(source, os.path.join(self.best_dir,
                                            os.path.basename(source)),
                       overwrite=True)
    _write_atomically(
        os.path.join(self.best_dir, 'checkpoint'),
        f'model_checkpoint_path: "{name}"\n'
        f'all_model_checkpoint_paths: "{name}"\n')
    # The state file points at the new copy; remove every other checkpoint
    # in best/ (the previous best, or files of an interrupted copy).
    for path in tf.io.gfile.glob(os.path.join(self.best_dir, '*')):
      base = os.path.basename(path)
      if base in ('checkpoint', STATE_FILE) or base.startswith(name + '.'):
        continue
      if '.data-' in base or base.endswith('.index'):
        tf.io.gfile.remove(path)
    self.best_checkpoint = os.path.join(self.best_dir, name)

  def summary(self) -> str:
    """One line: the best checkpoint, its step and metric value."""
    if self.best_checkpoint is None:
      return f'no best checkpoint yet ({self.metric})'
    return (f'best checkpoint {self.best_checkpoint} (step {self.best_step}, '
            f'{self.metric} {self.best_value:.4f})')
