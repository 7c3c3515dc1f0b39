"""End to end: scripts/benchmark_tradeoffs.py on one tiny configuration.

A 64x64 SSD (configs/ssd_mobilenet_v2_digits.config with 3 feature maps) on
8 + 4 generated digits scenes, trained 3 steps at batch 4 (checkpoints at
steps 2 and 3), evaluated at both, timed on 3 images in a child process;
plus a Faster R-CNN configuration whose extractor type does not exist, which
must give a failed row while the study goes on. Both come from a sweep file
(explicit configurations).
"""

import csv
import json
import os
import subprocess
import sys

import pytest

from od_meta.benchmark import study
from od_meta.data import digits_dataset
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_SCRIPT = os.path.join(_REPO, 'scripts', 'benchmark_tradeoffs.py')


@pytest.fixture(scope='module')
def study_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(data_dir, num_train=8, num_val=4,
                                         image_size=64)
  data = {
      'train_input_path': os.path.join(data_dir, 'train.tfrecord'),
      'eval_input_path': os.path.join(data_dir, 'val.tfrecord'),
      'label_map_path': os.path.join(data_dir, 'label_map.pbtxt'),
  }
  configs = config_util.get_configs_from_pipeline_file(
      os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config'))
  configs = config_util.merge_external_params_with_configs(configs, dict(
      data, **{
          'model.ssd.image_resizer':
              'fixed_shape_resizer { height: 64 width: 64 }',
          'model.ssd.feature_extractor.num_layers': 3,
          'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3,
          'eval_config.batch_size': 4,
      }))
  config_dir = str(tmp_path_factory.mktemp('config'))
  tiny = config_util.save_pipeline_config(configs, config_dir)
  sweep_path = os.path.join(config_dir, 'tiny.sweep.json')
  with open(sweep_path, 'w', encoding='utf-8') as f:
    json.dump({
        'common_overrides': {'eval_config.num_visualizations': 0},
        'configurations': [
            {'name': 'ssd64', 'base_config': tiny,
             'axes': {'meta_architecture': 'ssd'}},
            {'name': 'frcnn', 'base_config': os.path.join(
                _REPO, 'configs', 'faster_rcnn_mobilenet_v2_digits.config'),
             'overrides': dict(data, **{
                 'model.faster_rcnn.feature_extractor.type':
                     'faster_rcnn_no_such_net_keras'})},
        ]}, f)
  output_dir = str(tmp_path_factory.mktemp('study'))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, _SCRIPT, f'--configs={sweep_path}',
       f'--output_dir={output_dir}', '--train_steps=3',
       '--train_batch_size=4', '--num_checkpoints=2', '--num_images=3',
       '--num_warmup=1', '--map_fractions=0.5,1.0'],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
      cwd=_REPO, timeout=600, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return output_dir, proc.stdout


def _rows(output_dir):
  with open(os.path.join(output_dir, 'results.csv'), newline='',
            encoding='utf-8') as f:
    return list(csv.DictReader(f))


def test_progress_line_per_configuration(study_dir):
  _, stdout = study_dir
  assert '[1/2] ssd64: mAP' in stdout
  assert '[2/2] frcnn: FAILED' in stdout
  assert 'faster_rcnn_no_such_net_keras' in stdout


def test_results_csv_columns_and_rows(study_dir):
  output_dir, _ = study_dir
  rows = _rows(output_dir)
  expected = list(study.BASE_COLUMNS) + study.fraction_columns([0.5, 1.0])
  with open(os.path.join(output_dir, 'results.csv'), encoding='utf-8') as f:
    assert f.readline().strip().split(',') == expected
  assert [r['name'] for r in rows] == ['ssd64', 'frcnn']
  ssd = rows[0]
  assert ssd['status'] == 'ok', ssd['error']
  assert ssd['meta_architecture'] == 'ssd'
  assert ssd['feature_extractor'] == 'mobilenet_v2'
  assert ssd['input_height'] == '64'
  assert ssd['train_steps'] == '3' and ssd['train_batch_size'] == '4'
  for column in ('map', 'map_50', 'time_total_ms', 'time_network_ms',
                 'time_postprocess_ms', 'memory_mb', 'peak_memory_mb',
                 'gflops', 'num_parameters', 'train_wall_time_s'):
    assert ssd[column] != '', column
    assert float(ssd[column]) >= 0.0, column
  # The network alone is part of the total inference.
  assert float(ssd['gflops_network']) <= float(ssd['gflops'])
  assert int(ssd['timing_images']) == 3
  assert ssd['memory_kind'] == 'cpu_peak_rss'
  assert ssd['tf_version'] and ssd['device'].startswith('CPU')
  # 100% of the final mAP is reached at the last checkpoint at the latest.
  if float(ssd['map']) > 0:
    assert int(ssd['steps_to_100pct_final_map']) in (2, 3)
  assert json.loads(ssd['axes']) == {'meta_architecture': 'ssd'}
  assert 'eval_config.num_visualizations' in json.loads(ssd['overrides'])
  frcnn = rows[1]
  assert frcnn['status'] == 'failed'
  assert frcnn['error'].startswith('train: ValueError')
  assert 'faster_rcnn_no_such_net_keras' in frcnn['error']
  assert frcnn['meta_architecture'] == 'faster_rcnn'
  assert frcnn['num_proposals'] == '100'
  assert frcnn['map'] == '' and frcnn['time_total_ms'] == ''


def test_results_json_has_rows_curve_and_measurement(study_dir):
  output_dir, _ = study_dir
  with open(os.path.join(output_dir, 'results.json'), encoding='utf-8') as f:
    payload = json.load(f)
  assert payload['columns'][:3] == ['name', 'status', 'error']
  ssd, frcnn = payload['rows']
  assert [p['step'] for p in ssd['curve']] == [2, 3]
  assert all(p['wall_time_s'] > 0 for p in ssd['curve'])
  assert ssd['measurement']['timing']['total']['num_timed'] == 3
  assert ssd['measurement']['flops']['total_flops'] > 0
  assert payload['settings']['train_steps'] == 3
  assert 'traceback' in frcnn


def test_plots_and_report(study_dir):
  output_dir, _ = study_dir
  for name in ('map_vs_time.png', 'memory_vs_time.png', 'flops_vs_time.png',
               'map_vs_training_time.png'):
    path = os.path.join(output_dir, name)
    assert os.path.getsize(path) > 1000, name
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  # No successful two-stage row: the proposals plot is skipped.
  assert not os.path.exists(os.path.join(output_dir,
                                         'map_time_vs_proposals.png'))
  with open(os.path.join(output_dir, 'report.md'), encoding='utf-8') as f:
    text = f.read()
  for heading in ('Fewer proposals save much time at little mAP cost',
                  'SSD is less sensitive to the feature extractor',
                  'Memory tracks time',
                  'Where the frontier\'s critical points lie'):
    assert heading in text, heading
  # One successful configuration: proposals, extractor sensitivity and
  # memory-vs-time cannot be tested.
  assert text.count('not testable in this run') >= 3
  assert '](map_vs_time.png)' in text
  assert '| ssd64 |' in text
  assert 'frcnn' in text and 'failed: train: ValueError' in text


def test_report_only_rewrites_the_report(study_dir):
  output_dir, _ = study_dir
  report_path = os.path.join(output_dir, 'report.md')
  os.remove(report_path)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, _SCRIPT, f'--output_dir={output_dir}',
       '--report_only'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=env, cwd=_REPO, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'from 2 rows' in proc.stdout
  with open(report_path, encoding='utf-8') as f:
    text = f.read()
  assert '| ssd64 |' in text and 'Memory tracks time' in text
  # The study's wall time was kept in results.json.
  assert '- study wall time: ' in text
  missing = subprocess.run(
      [sys.executable, _SCRIPT, f'--output_dir={output_dir}/none',
       '--report_only'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=env, cwd=_REPO, timeout=300, check=False)
  assert missing.returncode == 2
  assert 'results.json' in missing.stderr
