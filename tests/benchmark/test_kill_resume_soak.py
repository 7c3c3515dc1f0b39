"""benchmarks/kill_resume_soak.py: its checks of a run folder.

The soak itself (20 SIGKILLs of a training child process and their resumes)
is a script run by hand (`python benchmarks/kill_resume_soak.py --kills=20
--output_dir=runs/soak`; figures in the README): each of its runs starts
TensorFlow in a new process, too slow for the suite. The resume behaviour
it exercises is tested in tests/training/test_run_folder.py and
test_train_loop.py; here, the checks it applies after every kill.
"""

import importlib.util
import os

import numpy as np
import tensorflow as tf

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _module():
  spec = importlib.util.spec_from_file_location(
      'kill_resume_soak', os.path.join(_REPO, 'benchmarks',
                                       'kill_resume_soak.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_checkpoint_and_temp_folder_checks(tmp_path):
  soak = _module()
  model_dir = str(tmp_path)
  variable = tf.Variable([1.0, 2.0])
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable),
                                       model_dir, max_to_keep=3)
  manager.save(checkpoint_number=1)
  assert soak.check_checkpoints(model_dir) == []
  variable.assign([np.inf, 0.0])
  manager.save(checkpoint_number=2)
  problems = soak.check_checkpoints(model_dir)
  assert len(problems) == 1 and 'ckpt-2' in problems[0]
  assert 'is not finite' in problems[0]
  # A truncated data file makes the checkpoint unreadable.
  data = [n for n in os.listdir(model_dir)
          if n.startswith('ckpt-1.data')][0]
  with open(os.path.join(model_dir, data), 'r+b') as f:
    f.truncate(1)
  assert any('ckpt-1' in p for p in soak.check_checkpoints(model_dir))
  os.makedirs(os.path.join(model_dir, 'ckpt-3_temp'))
  assert soak.temp_folders(model_dir) == ['ckpt-3_temp']
  assert soak.temp_folders(str(tmp_path / 'absent')) == []
