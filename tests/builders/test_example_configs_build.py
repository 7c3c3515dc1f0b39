"""Every shipped config in configs/ builds its model through model_builder.

Parsing is checked in tests/utils/test_config_util.py; this catches a config
and a builder drifting apart (an extractor type, a field the builder
rejects). The models are only constructed (no forward pass). Keypoint
configs read `data/digits/label_map.pbtxt`, so the test runs in a temporary
working directory holding the digits label map as the dataset tool writes it.
"""

import glob
import os

import pytest

from od_meta.builders import model_builder
from od_meta.data import digits_dataset
from od_meta.data import label_map_util
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONFIG_FILES = sorted(glob.glob(os.path.join(_REPO, 'configs', '*.config')))


@pytest.fixture
def digits_workdir(tmp_path, monkeypatch):
  (tmp_path / 'data' / 'digits').mkdir(parents=True)
  label_map_util.write_label_map(
      str(tmp_path / 'data' / 'digits' / digits_dataset.LABEL_MAP_FILENAME),
      digits_dataset.CLASS_NAMES,
      keypoints={name: digits_dataset.KEYPOINT_NAMES
                 for name in digits_dataset.CLASS_NAMES})
  monkeypatch.chdir(tmp_path)
  return tmp_path


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_example_config_builds(path, digits_workdir):
  del digits_workdir
  configs = config_util.get_configs_from_pipeline_file(path)
  model = model_builder.build(configs['model'], is_training=True)
  assert model.num_classes == 10
