"""End-to-end tests of scripts/analyze_dataset.py (subprocesses).

A small-digits dataset (8 train scenes of 128 px with 10-16 px digits) and
the digits SSD config shrunk to 64x64 inputs (3 feature maps: strides 8, 16,
32; anchor scales 0.1-0.5, i.e. 6-32 px, smaller than most objects need)
are written to temporary files. The script reports the statistics, the
matched share and a proposal; bad inputs give one line and exit code 2 and
leave existing files alone.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from od_meta.data import digits_dataset
from od_meta.data import tf_example_util
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_SCRIPT = os.path.join(_REPO, 'scripts', 'analyze_dataset.py')
_CONFIG = os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config')


def _png():
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  Image.new('RGB', (8, 8)).save(out, format='PNG')
  return out.getvalue()


def _errors(proc):
  """The script's own stderr lines (TensorFlow's C++ start-up logging, such
  as a failed cuInit on machines without a GPU, left out); never a
  traceback."""
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  return [line for line in proc.stderr.strip().splitlines()
          if line.startswith('analyze_dataset:')]


def _run(args, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  return subprocess.run([sys.executable, _SCRIPT] + list(args),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, env=env, cwd=_REPO, timeout=timeout,
                        check=False)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('digits_small'))
  digits_dataset.generate_digits_dataset(
      path, num_train=8, num_val=2, image_size=128,
      digit_size_range=(14, 22))
  return path


@pytest.fixture(scope='module')
def config_path(data_dir, tmp_path_factory):
  configs = config_util.get_configs_from_pipeline_file(_CONFIG)
  configs = config_util.merge_external_params_with_configs(configs, {
      'model.ssd.image_resizer':
          'fixed_shape_resizer { height: 64 width: 64 }',
      'model.ssd.feature_extractor.num_layers': 3,
      'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3,
      'train_input_path': os.path.join(data_dir, 'train.tfrecord'),
      'eval_input_path': os.path.join(data_dir, 'val.tfrecord'),
      'label_map_path': os.path.join(data_dir, 'label_map.pbtxt'),
  })
  return config_util.save_pipeline_config(
      configs, str(tmp_path_factory.mktemp('config')))


def test_statistics_without_a_config(data_dir, tmp_path):
  out_dir = str(tmp_path / 'stats')
  proc = _run([f'--input_path={os.path.join(data_dir, "train.tfrecord")}',
               f'--label_map_path={os.path.join(data_dir, "label_map.pbtxt")}',
               f'--output_dir={out_dir}'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '8 images' in proc.stdout
  assert 'COCO sizes (source pixels): small 1.000' in proc.stdout
  with open(os.path.join(out_dir, 'dataset_analysis.json')) as f:
    report = json.load(f)
  stats = report['statistics']
  assert stats['num_images'] == 8
  assert stats['num_boxes'] == sum(
      c['num_boxes'] for c in stats['per_class'].values())
  assert set(stats['per_class']) <= set('0123456789')
  assert 'input' not in stats['overall']
  assert 'coverage' not in report
  for name in ('box_sqrt_area.png', 'box_aspect_ratio.png',
               'box_width_height.png', 'objects_per_image.png'):
    assert os.path.getsize(os.path.join(out_dir, name)) > 1000


def test_config_coverage_and_proposal(config_path, tmp_path):
  out_dir = str(tmp_path / 'fit')
  fitted = str(tmp_path / 'fitted.config')
  proc = _run([f'--pipeline_config_path={config_path}',
               f'--output_dir={out_dir}', f'--output_config={fitted}',
               '--coverage_images=8'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "the config as given:" in proc.stdout
  assert 'level 0 (stride 8 px)' in proc.stdout
  with open(os.path.join(out_dir, 'dataset_analysis.json')) as f:
    report = json.load(f)
  before = report['coverage']
  after = report['proposal']['coverage']
  assert before['num_boxes'] == report['statistics']['num_boxes']
  assert 'input' in report['statistics']['overall']
  assert [level['stride'] for level in before['levels']] == [8, 16, 32]
  assert before['fields_to_change'][0].startswith(
      'model.ssd.anchor_generator.ssd_anchor_generator.min_scale')
  # The search starts from the config's own anchors, so it never loses.
  assert after['matched_share'] >= before['matched_share']
  changes = report['proposal']['changes']
  assert changes, proc.stdout
  with open(fitted) as f:
    text = f.read()
  assert text.startswith('# Proposed by scripts/analyze_dataset.py from ')
  for change in changes:
    assert change.split(':')[0] in text
  fitted_configs = config_util.get_configs_from_pipeline_file(fitted)
  resizer = fitted_configs['model'].ssd.image_resizer.fixed_shape_resizer
  # Digits of about 10-15 px in 128 px scenes are 5-8 px at 64 px: below
  # 2 x the finest stride (8 px), so the input grows, up to the source's
  # 128 px.
  assert (resizer.height, resizer.width) == (128, 128)
  assert 'fixed_shape_resizer 64x64 -> 128x128' in changes[0]


def test_bad_inputs_give_one_line_and_change_nothing(data_dir, config_path,
                                                     tmp_path):
  missing = str(tmp_path / 'missing.tfrecord')
  proc = _run([f'--input_path={missing}', f'--output_dir={tmp_path}'])
  assert proc.returncode == 2
  assert _errors(proc) == [
      f'analyze_dataset: error: {missing}: no such file']

  corrupt = str(tmp_path / 'corrupt.tfrecord')
  with open(os.path.join(data_dir, 'train.tfrecord'), 'rb') as f:
    data = f.read()
  with open(corrupt, 'wb') as f:
    f.write(data[:len(data) // 2])
  proc = _run([f'--input_path={corrupt}', f'--output_dir={tmp_path}'])
  assert proc.returncode == 2
  lines = _errors(proc)
  assert len(lines) == 1 and corrupt in lines[0] and 'record' in lines[0]

  no_boxes = str(tmp_path / 'no_boxes.tfrecord')
  with tf.io.TFRecordWriter(no_boxes) as writer:
    for _ in range(2):
      writer.write(tf_example_util.build_tf_example(
          encoded_image=_png(), image_format='png', height=8, width=8,
          boxes=np.zeros([0, 4]), class_labels=[]).SerializeToString())
  proc = _run([f'--input_path={no_boxes}', f'--output_dir={tmp_path}'])
  assert proc.returncode == 2
  assert _errors(proc) == [f'analyze_dataset: error: {no_boxes}: no valid '
                           'groundtruth box in 2 records (0 invalid)']

  existing = str(tmp_path / 'existing.config')
  with open(existing, 'w') as f:
    f.write('# mine\n')
  proc = _run([f'--pipeline_config_path={config_path}',
               f'--output_dir={tmp_path / "x"}',
               f'--output_config={existing}'])
  assert proc.returncode == 2
  assert _errors(proc) == [f'analyze_dataset: error: {existing} exists; '
                           'pass --overwrite to replace it']
  with open(existing) as f:
    assert f.read() == '# mine\n'

  proc = _run([f'--input_path={os.path.join(data_dir, "val.tfrecord")}',
               f'--output_dir={tmp_path}', f'--output_config={existing}'])
  assert proc.returncode == 2
  assert _errors(proc) == ['analyze_dataset: error: --output_config needs '
                           '--pipeline_config_path']
