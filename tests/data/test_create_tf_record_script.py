"""Runs scripts/create_tf_record.py in a subprocess on a tiny COCO set."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_SCRIPT = os.path.join(_REPO, 'scripts', 'create_tf_record.py')


def _run(*args):
  env = dict(os.environ, PYTHONPATH=_REPO, TF_CPP_MIN_LOG_LEVEL='3',
             CUDA_VISIBLE_DEVICES='')
  return subprocess.run([sys.executable, _SCRIPT, *args], cwd=_REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def _make_coco(tmp_path):
  image_dir = tmp_path / 'images'
  image_dir.mkdir()
  Image.fromarray(np.zeros([10, 10, 3], np.uint8)).save(image_dir / 'a.png')
  data = {
      'images': [{'id': 1, 'file_name': 'a.png', 'height': 10, 'width': 10},
                 {'id': 2, 'file_name': 'gone.png', 'height': 10,
                  'width': 10}],
      'categories': [{'id': 3, 'name': 'thing'}],
      'annotations': [
          {'id': 1, 'image_id': 1, 'category_id': 3, 'bbox': [1, 1, 4, 4],
           'area': 16, 'iscrowd': 0},
          {'id': 2, 'image_id': 1, 'category_id': 3, 'bbox': [8, 8, 4, 4],
           'area': 16, 'iscrowd': 0},
      ],
  }
  (tmp_path / 'ann.json').write_text(json.dumps(data))
  return str(tmp_path / 'ann.json'), str(image_dir)


def test_script_converts_and_reports(tmp_path):
  ann_file, image_dir = _make_coco(tmp_path)
  out = str(tmp_path / 'out.record')
  result = _run('--format=coco', f'--annotations_file={ann_file}',
                f'--image_dir={image_dir}', f'--output_path={out}')
  assert result.returncode == 0, result.stderr
  assert 'images written: 1, skipped: 1' in result.stdout
  assert 'annotations written: 1, skipped: 1' in result.stdout
  assert 'gone.png' in result.stdout and 'outside' in result.stdout
  assert os.path.exists(out) and os.path.exists(out + '_label_map.pbtxt')

  # Running again without --overwrite refuses, with a clear message.
  again = _run('--format=coco', f'--annotations_file={ann_file}',
               f'--image_dir={image_dir}', f'--output_path={out}')
  assert again.returncode != 0
  assert 'already exists' in again.stderr


def test_script_missing_files(tmp_path):
  result = _run('--format=coco',
                f'--annotations_file={tmp_path / "missing.json"}',
                f'--image_dir={tmp_path}',
                f'--output_path={tmp_path / "o.record"}')
  assert result.returncode != 0
  assert 'missing.json does not exist' in result.stderr
  result = _run('--format=voc', f'--image_dir={tmp_path}',
                f'--output_path={tmp_path / "o.record"}')
  assert result.returncode != 0
  assert '--annotations_dir' in result.stderr
  assert '--label_map_path' in result.stderr
