"""End-to-end tests of scripts/model_main.py (subprocesses).

A tiny SSD config (configs/ssd_mobilenet_v2_digits.config at 64x64, 3
feature maps, batch 4) on 8 + 4 generated digits scenes is written to a
temporary file; `model_main.py` trains it for 3 steps and evaluates the
final checkpoint, then evaluates that checkpoint again in --checkpoint_dir
mode. Flag and config errors are checked on their exit codes and messages.
"""

import json
import os
import subprocess
import sys

import pytest

from od_meta.data import digits_dataset
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_SCRIPT = os.path.join(_REPO, 'scripts', 'model_main.py')
_CONFIG = os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config')


def _run(args, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  return subprocess.run([sys.executable, _SCRIPT] + list(args),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, env=env, cwd=_REPO, timeout=timeout,
                        check=False)


@pytest.fixture(scope='module')
def config_path(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(data_dir, num_train=8, num_val=4,
                                         image_size=64)
  configs = config_util.get_configs_from_pipeline_file(_CONFIG)
  configs = config_util.merge_external_params_with_configs(configs, {
      'model.ssd.image_resizer':
          'fixed_shape_resizer { height: 64 width: 64 }',
      'model.ssd.feature_extractor.num_layers': 3,
      'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3,
      'train_config.batch_size': 4,
      'train_input_path': os.path.join(data_dir, 'train.tfrecord'),
      'eval_input_path': os.path.join(data_dir, 'val.tfrecord'),
      'label_map_path': os.path.join(data_dir, 'label_map.pbtxt'),
      'eval_config.batch_size': 4,
      'eval_config.num_visualizations': 1,
  })
  config_dir = str(tmp_path_factory.mktemp('config'))
  return config_util.save_pipeline_config(configs, config_dir)


@pytest.fixture(scope='module')
def trained_dir(config_path, tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp('model'))
  proc = _run([f'--pipeline_config_path={config_path}',
               f'--model_dir={model_dir}', '--num_train_steps=3',
               '--log_every_n=1'])
  return model_dir, proc


def test_trains_and_evaluates(trained_dir):
  model_dir, proc = trained_dir
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = proc.stdout
  assert 'with 1 replica(s)' in out
  for step in ('step 1/3', 'step 2/3', 'step 3/3'):
    assert step in out
  assert 'Training done: step 3, 3 steps' in out
  assert f'Evaluation of {os.path.join(model_dir, "ckpt-3")} (step 3' in out
  assert 'DetectionBoxes_Precision/mAP: ' in out
  assert os.path.exists(os.path.join(model_dir, 'ckpt-3.index'))
  assert os.path.exists(os.path.join(model_dir, 'pipeline.config'))
  with open(os.path.join(model_dir, 'eval', 'metrics.json')) as f:
    records = [json.loads(line) for line in f]
  assert [r['step'] for r in records] == [3]
  assert 'Loss/total_loss' in records[0]['metrics']


def test_checkpoint_dir_evaluation_mode(trained_dir, config_path, tmp_path):
  model_dir, _ = trained_dir
  eval_dir = str(tmp_path / 'eval_only')
  proc = _run([f'--pipeline_config_path={config_path}',
               f'--model_dir={eval_dir}', f'--checkpoint_dir={model_dir}'])
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert 'Training' not in proc.stdout
  assert f'Evaluation of {os.path.join(model_dir, "ckpt-3")} (step 3' in (
      proc.stdout)
  with open(os.path.join(eval_dir, 'eval', 'metrics.json')) as f:
    assert [json.loads(line)['step'] for line in f] == [3]


def test_checkpoint_dir_without_checkpoint(config_path, tmp_path):
  proc = _run([f'--pipeline_config_path={config_path}',
               f'--model_dir={tmp_path / "m"}',
               f'--checkpoint_dir={tmp_path}'])
  assert proc.returncode == 2
  assert f'no checkpoint in {tmp_path}' in proc.stderr


def test_config_with_typo_exits_2_naming_file_line_and_field(config_path,
                                                              tmp_path):
  with open(config_path) as f:
    lines = f.read().splitlines()
  index = next(i for i, line in enumerate(lines)
               if line.strip().startswith('num_classes:'))
  lines[index] = lines[index].replace('num_classes', 'num_clases')
  bad = tmp_path / 'typo.config'
  bad.write_text('\n'.join(lines) + '\n')
  proc = _run([f'--pipeline_config_path={bad}',
               f'--model_dir={tmp_path / "m"}'])
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert f'{bad}:{index + 1}:' in proc.stderr
  assert 'num_clases' in proc.stderr
  assert 'Did you mean "num_classes"' in proc.stderr
  assert not (tmp_path / 'm').exists()


def test_bad_config_override_exits_2(config_path, tmp_path):
  proc = _run([f'--pipeline_config_path={config_path}',
               f'--model_dir={tmp_path / "m"}',
               '--config_override=train_config.batch_sizee=2'])
  assert proc.returncode == 2
  assert 'batch_sizee' in proc.stderr
  assert 'Did you mean "batch_size"' in proc.stderr


@pytest.mark.parametrize('args, missing', [
    (['--model_dir=/tmp/x'], '--pipeline_config_path'),
    (['--pipeline_config_path=x.config'], '--model_dir'),
])
def test_missing_flags_are_usage_errors(args, missing):
  proc = _run(args, timeout=120)
  assert proc.returncode == 1
  assert f'{missing} is required' in proc.stderr
  # absl prints the usage: the module docstring and the flags' help.
  assert proc.stderr.startswith('Trains or evaluates an od_meta detector')
  assert '--num_train_steps' in proc.stderr


def _error_lines(stderr):
  return [line for line in stderr.splitlines()
          if line.startswith('model_main:')]


# (Missing inputs and a zero step count are covered without a subprocess in
# tests/utils/test_config_checks.py and tests/training/test_run_folder.py.)
@pytest.mark.parametrize('kind', ['num_classes', 'empty'])
def test_user_errors_exit_2_with_one_line(config_path, tmp_path, kind):
  if kind == 'num_classes':
    args = [f'--pipeline_config_path={config_path}',
            '--config_override=model.ssd.num_classes=5']
    expected = 'num_classes is 5 but the label map'
  else:
    empty = tmp_path / 'empty.config'
    empty.write_text('')
    args = [f'--pipeline_config_path={empty}']
    expected = 'no model { ... } block'
  model_dir = tmp_path / 'm'
  proc = _run(args + [f'--model_dir={model_dir}'], timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = _error_lines(proc.stderr)
  assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not model_dir.exists()
