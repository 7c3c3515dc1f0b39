"""Tests of the run-folder guards (issue 15, first part).

`run_folder.RunFolderLock` (one trainer per model_dir, a dead holder's lock
taken over), stale `ckpt-N_temp` folders removed at start, no checkpoint of
non-finite variables ever written, pipeline.config only written once the
model is built and restored, and a zero step count rejected. The train-loop
tests use a cheap fake loss.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from od_meta.data import digits_dataset
from od_meta.training import distribute_utils
from od_meta.training import run_folder
from od_meta.training import train_loop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_train_loop import tiny_configs  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.filterwarnings(
    'ignore:Gradients do not exist:UserWarning')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(path, num_train=8, num_val=0,
                                         image_size=64)
  return path


def _fake_losses(detection_model, features, labels, **kwargs):
  del features, labels, kwargs
  var = detection_model.box_predictor.trainable_variables[-1]
  return {'Loss/total_loss': tf.reduce_sum(var)}


def _write_lock(model_dir, pid, host=None):
  with open(os.path.join(model_dir, run_folder.LOCK_FILE), 'w') as f:
    json.dump({'pid': pid, 'host': host or socket.gethostname(),
               'started': '2026-12-07T10:00:00'}, f)


@pytest.fixture
def live_process():
  proc = subprocess.Popen([sys.executable, '-c',  # pylint: disable=consider-using-with
                           'import time; time.sleep(60)'])
  yield proc
  proc.kill()
  proc.wait()


def _dead_pid():
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])  # pylint: disable=consider-using-with
  proc.wait()
  return proc.pid


# ---------------------------------------------------------------- the lock
def test_lock_is_exclusive_and_released(tmp_path):
  model_dir = str(tmp_path)
  with run_folder.RunFolderLock(model_dir) as lock:
    with open(lock.path) as f:
      holder = json.load(f)
    assert holder['pid'] == os.getpid()
    assert holder['host'] == socket.gethostname()
  assert not os.path.exists(lock.path)


def test_live_holder_refuses_with_pid_and_host(tmp_path, live_process):
  _write_lock(str(tmp_path), live_process.pid)
  with pytest.raises(run_folder.RunFolderLockedError) as error:
    run_folder.RunFolderLock(str(tmp_path)).acquire()
  message = str(error.value)
  assert f'PID {live_process.pid} on {socket.gethostname()}' in message
  assert 'another --model_dir' in message
  # The holder's lock is left alone.
  with open(os.path.join(str(tmp_path), run_folder.LOCK_FILE)) as f:
    assert json.load(f)['pid'] == live_process.pid


def test_dead_holder_lock_is_taken_over(tmp_path):
  pid = _dead_pid()
  _write_lock(str(tmp_path), pid)
  lines = []
  with run_folder.RunFolderLock(str(tmp_path), lines.append) as lock:
    with open(lock.path) as f:
      assert json.load(f)['pid'] == os.getpid()
  assert len(lines) == 1 and f'PID {pid}' in lines[0]
  assert 'no longer running' in lines[0]


def test_other_host_lock_names_the_file(tmp_path):
  _write_lock(str(tmp_path), 1, host='elsewhere.example')
  with pytest.raises(run_folder.RunFolderLockedError,
                     match='host elsewhere.example .*delete .*lock'):
    run_folder.RunFolderLock(str(tmp_path)).acquire()


def test_remote_paths_are_not_locked():
  lock = run_folder.RunFolderLock('gs://bucket/run')
  assert not lock.enabled
  with lock:
    pass


def test_is_chief_without_cluster():
  assert distribute_utils.is_chief(tf.distribute.get_strategy())


# ------------------------------------------------------ the training loop
def test_second_trainer_fails_before_touching_the_folder(data_dir, tmp_path,
                                                         monkeypatch,
                                                         live_process):
  monkeypatch.setattr(train_loop, 'compute_losses', _fake_losses)
  configs = tiny_configs(data_dir)
  model_dir = str(tmp_path / 'run')
  os.makedirs(model_dir)
  with open(os.path.join(model_dir, 'pipeline.config'), 'w') as f:
    f.write('# the first trainer\'s config\n')
  _write_lock(model_dir, live_process.pid)
  with pytest.raises(run_folder.RunFolderLockedError, match='another trainer'):
    train_loop.train_loop(configs, model_dir, num_train_steps=1,
                          print_fn=lambda s: None, record_summaries=False)
  assert sorted(os.listdir(model_dir)) == ['.od_meta_train.lock',
                                           'pipeline.config']
  with open(os.path.join(model_dir, 'pipeline.config')) as f:
    assert f.read() == '# the first trainer\'s config\n'


def test_stale_temp_checkpoint_removed_and_lock_released(data_dir, tmp_path,
                                                         monkeypatch):
  monkeypatch.setattr(train_loop, 'compute_losses', _fake_losses)
  model_dir = str(tmp_path / 'run')
  stale = os.path.join(model_dir, 'ckpt-5_temp')
  os.makedirs(os.path.join(stale, 'part-00000-of-00001'))
  os.makedirs(os.path.join(model_dir, 'ckpt_notes'))  # Not a temp folder.
  lines = []
  result = train_loop.train_loop(tiny_configs(data_dir), model_dir,
                                 num_train_steps=1, print_fn=lines.append,
                                 record_summaries=False)
  assert result.final_step == 1
  assert not os.path.exists(stale)
  assert os.path.isdir(os.path.join(model_dir, 'ckpt_notes'))
  assert f'Removed {stale}, left by an interrupted checkpoint write' in lines
  assert not os.path.exists(os.path.join(model_dir, run_folder.LOCK_FILE))


def test_no_checkpoint_of_nonfinite_variables(data_dir, tmp_path,
                                              monkeypatch):
  calls = tf.Variable(0)

  def poisoned_moving_variance(detection_model, features, labels, **kwargs):
    # From the 2nd step on, a batch norm's moving variance becomes +Inf while
    # the loss stays finite (as a divergent learning rate did).
    del features, labels, kwargs
    calls.assign_add(1)
    moving = [v for v in detection_model.variables
              if 'moving_variance' in v.path][0]
    tf.cond(calls >= 2,
            lambda: moving.assign(tf.fill(tf.shape(moving), np.inf)),
            lambda: moving)
    var = detection_model.box_predictor.trainable_variables[-1]
    return {'Loss/total_loss': tf.reduce_sum(var)}

  monkeypatch.setattr(train_loop, 'compute_losses', poisoned_moving_variance)
  model_dir = str(tmp_path / 'run')
  with pytest.raises(ValueError) as error:
    train_loop.train_loop(tiny_configs(data_dir), model_dir,
                          num_train_steps=4, checkpoint_every_n=1,
                          print_fn=lambda s: None, record_summaries=False)
  message = str(error.value)
  assert 'not saving the checkpoint of step 2' in message
  assert 'moving_variance' in message
  assert message.endswith(os.path.join(model_dir, 'ckpt-1'))
  # Only the good checkpoint exists, and it is finite.
  assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir,
                                                               'ckpt-1')
  reader = tf.train.load_checkpoint(os.path.join(model_dir, 'ckpt-1'))
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if np.issubdtype(np.asarray(value).dtype, np.floating):
      assert np.all(np.isfinite(value)), name
  assert not os.path.exists(os.path.join(model_dir, run_folder.LOCK_FILE))


def test_failed_start_keeps_the_folders_pipeline_config(data_dir, tmp_path):
  configs = tiny_configs(data_dir, {
      'train_config.fine_tune_checkpoint': str(tmp_path / 'missing' / 'ckpt-1'),
      'train_config.fine_tune_checkpoint_type': 'detection'})
  model_dir = str(tmp_path / 'run')
  os.makedirs(model_dir)
  with open(os.path.join(model_dir, 'pipeline.config'), 'w') as f:
    f.write('# earlier\n')
  with pytest.raises(ValueError, match='fine_tune_checkpoint'):
    train_loop.train_loop(configs, model_dir, num_train_steps=1,
                          print_fn=lambda s: None, record_summaries=False)
  assert sorted(os.listdir(model_dir)) == ['pipeline.config']
  with open(os.path.join(model_dir, 'pipeline.config')) as f:
    assert f.read() == '# earlier\n'


def test_zero_steps_rejected(data_dir, tmp_path):
  with pytest.raises(ValueError, match='--num_train_steps must be a positive'):
    train_loop.train_loop(tiny_configs(data_dir), str(tmp_path / 'r'),
                          num_train_steps=0)
