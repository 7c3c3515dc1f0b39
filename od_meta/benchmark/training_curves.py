"""Training-time curves: when does a run reach a given accuracy?

The TTFNet paper's claim (Liu et al. 2019, Sec. 1 and 4: TTFNet reaches
CenterNet's accuracy with far less training) and the training-time axis of
`benchmark_tradeoffs` are read off the same curve: (global step, training
wall time, metric) at each evaluated checkpoint.
"""

import dataclasses
import os
from typing import List, Optional, Sequence

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class CurvePoint:
  """One evaluated checkpoint.

  Attributes:
    step: global step of the checkpoint.
    wall_time_s: seconds of training from the start of the run to the moment
      the checkpoint was written (model building and tracing included).
    value: the metric at that checkpoint (e.g. mAP@.50IOU in [0, 1]).
  """
  step: int
  wall_time_s: float
  value: float


def first_reaching(curve: Sequence[CurvePoint],
                   target: float) -> Optional[CurvePoint]:
  """The earliest point (by step) whose value is >= target, or None.

  Args:
    curve: points in any order; NaN values never reach a target.
    target: float threshold.

  Raises:
    ValueError: if two points share a step.
  """
  points = sorted(curve, key=lambda p: p.step)
  steps = [p.step for p in points]
  if len(set(steps)) != len(steps):
    raise ValueError(f'curve has duplicate steps: {steps}')
  for point in points:
    if point.value >= target:  # False for NaN.
      return point
  return None


def common_target(curves: Sequence[Sequence[CurvePoint]],
                  fraction: float = 0.95) -> float:
  """A target every curve reaches: `fraction` x the lowest best value.

  Args:
    curves: one curve per run, each non-empty.
    fraction: in (0, 1].

  Raises:
    ValueError: on an empty curve or a fraction outside (0, 1].
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}')
  bests = []
  for i, curve in enumerate(curves):
    if not curve:
      raise ValueError(f'curve {i} is empty')
    bests.append(max(p.value for p in curve))
  return fraction * min(bests)


def checkpoint_times(model_dir: str, start_time: float) -> List[tuple]:
  """(step, checkpoint prefix, seconds since start_time) of a model_dir.

  Times come from the modification time of each checkpoint's `.index` file,
  so they are the training wall time at which the checkpoint existed.

  Raises:
    ValueError: if model_dir has no checkpoint.
  """
  # Absolute, so the paths tf.train gives (already joined with the
  # directory when the checkpoint file stores relative ones) are too.
  model_dir = os.path.abspath(model_dir)
  state = tf.train.get_checkpoint_state(model_dir)
  if state is None or not state.all_model_checkpoint_paths:
    raise ValueError(f'{model_dir}: no checkpoints')
  out = []
  for path in state.all_model_checkpoint_paths:
    if not os.path.isabs(path):
      path = os.path.join(model_dir, path)
    step = int(path.rsplit('-', 1)[-1])
    out.append((step, path, os.path.getmtime(path + '.index') - start_time))
  return sorted(out)
