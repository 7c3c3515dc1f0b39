"""Tests for od_meta.benchmark.training_curves."""

import math
import os

import pytest
import tensorflow as tf

from od_meta.benchmark import training_curves as tc

P = tc.CurvePoint


def test_first_reaching_picks_earliest_step_not_first_listed():
  curve = [P(600, 60.0, 0.91), P(200, 20.0, 0.5), P(400, 40.0, 0.90),
           P(800, 80.0, 0.88)]
  assert tc.first_reaching(curve, 0.9) == P(400, 40.0, 0.90)
  assert tc.first_reaching(curve, 0.95) is None
  # NaN never reaches a target.
  assert tc.first_reaching([P(1, 1.0, math.nan), P(2, 2.0, 0.3)], 0.2).step == 2


def test_first_reaching_rejects_duplicate_steps():
  with pytest.raises(ValueError, match='duplicate'):
    tc.first_reaching([P(1, 1.0, 0.1), P(1, 2.0, 0.2)], 0.1)


def test_common_target_is_fraction_of_lowest_best():
  a = [P(1, 1.0, 0.6), P(2, 2.0, 0.8)]
  b = [P(1, 1.0, 0.9), P(2, 2.0, 0.7)]
  # bests 0.8 and 0.9 -> 0.95 * 0.8 = 0.76
  assert tc.common_target([a, b]) == pytest.approx(0.76)
  with pytest.raises(ValueError, match='empty'):
    tc.common_target([a, []])
  with pytest.raises(ValueError, match='fraction'):
    tc.common_target([a], fraction=0.0)


def test_checkpoint_times_reads_manager_checkpoints(tmp_path):
  v = tf.Variable(1.0)
  ckpt = tf.train.Checkpoint(v=v)
  manager = tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=5)
  start = os.path.getmtime(str(tmp_path))
  for step in (10, 20):
    manager.save(checkpoint_number=step)
  times = tc.checkpoint_times(str(tmp_path), start - 5.0)
  assert [t[0] for t in times] == [10, 20]
  assert all(t[1].endswith(f'-{t[0]}') for t in times)
  assert all(t[2] >= 5.0 for t in times)
  with pytest.raises(ValueError, match='no checkpoints'):
    tc.checkpoint_times(str(tmp_path / 'empty'), 0.0)


def test_checkpoint_times_with_a_relative_model_dir(tmp_path, monkeypatch):
  # A relative --output_dir (e.g. runs/study) must not give doubled paths.
  monkeypatch.chdir(tmp_path)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(v=tf.Variable(1.0)), os.path.join('runs', 'm'),
      max_to_keep=2)
  manager.save(checkpoint_number=3)
  times = tc.checkpoint_times(os.path.join('runs', 'm'), 0.0)
  assert [t[0] for t in times] == [3]
  assert os.path.exists(times[0][1] + '.index')
