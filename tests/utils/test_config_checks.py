"""Tests of od_meta.utils.config_checks: one line per user error."""

import os

import pytest

from od_meta.data import label_map_util
from od_meta.utils import config_checks
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_CONFIG = os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config')


@pytest.fixture
def data(tmp_path):
  for name in ('train.tfrecord', 'val.tfrecord'):
    (tmp_path / name).write_bytes(b'')
  label_map_util.write_label_map(str(tmp_path / 'label_map.pbtxt'),
                                 [str(i) for i in range(10)])
  return tmp_path


def _configs(data, overrides=None):
  configs = config_util.get_configs_from_pipeline_file(_CONFIG)
  params = {'train_input_path': str(data / 'train.tfrecord'),
            'eval_input_path': str(data / 'val.tfrecord'),
            'label_map_path': str(data / 'label_map.pbtxt')}
  params.update(overrides or {})
  return config_util.merge_external_params_with_configs(configs, params)


def test_valid_config_passes(data):
  config_checks.check_pipeline(_configs(data))


@pytest.mark.parametrize('overrides, message', [
    ({'model.ssd.num_classes': 0}, 'model.ssd.num_classes must be >= 1'),
    ({'train_config.batch_size': 0}, 'train_config.batch_size must be >= 1'),
    ({'eval_config.batch_size': 0}, 'eval_config.batch_size must be >= 1'),
    ({'model.ssd.image_resizer.fixed_shape_resizer.height': 0},
     'image_resizer.fixed_shape_resizer.height must be >= 1'),
    ({'model.ssd.num_classes': 5},
     'num_classes is 5 but the label map .* has ids up to 10'),
])
def test_field_errors(data, overrides, message):
  with pytest.raises(ValueError, match=message):
    config_checks.check_pipeline(_configs(data, overrides))


def test_input_paths_and_label_maps(data):
  missing = str(data / 'nope-*.tfrecord')
  with pytest.raises(ValueError, match=(
      r"train_input_reader.tf_record_input_reader.input_path '.*nope-\*"
      r".tfrecord' matches no file")):
    config_checks.check_pipeline(_configs(data,
                                          {'train_input_path': missing}))
  with pytest.raises(ValueError, match='label_map_path .* does not exist'):
    config_checks.check_pipeline(_configs(
        data, {'label_map_path': str(data / 'absent.pbtxt')}))
  bad = data / 'bad.pbtxt'
  bad.write_text('item { id: 1 nam: "x" }\n')
  with pytest.raises(ValueError, match='bad.pbtxt'):
    config_checks.check_pipeline(_configs(data,
                                          {'label_map_path': str(bad)}))


def test_what_each_mode_checks(data):
  configs = _configs(data, {'train_config.batch_size': 0,
                            'eval_input_path': str(data / 'x.tfrecord')})
  with pytest.raises(ValueError, match='batch_size') as error:
    config_checks.check_pipeline(configs, evaluation=False)
  assert 'x.tfrecord' not in str(error.value)
  with pytest.raises(ValueError, match='x.tfrecord') as error:
    config_checks.check_pipeline(configs, training=False)
  assert 'batch_size' not in str(error.value)
  # Both errors at once, in one line.
  with pytest.raises(ValueError) as error:
    config_checks.check_pipeline(configs)
  assert '\n' not in str(error.value) and '; ' in str(error.value)


def test_no_model_block():
  configs = config_util.get_configs_from_pipeline_text('')
  with pytest.raises(ValueError, match=r'no model \{ ... \} block'):
    config_checks.check_pipeline(configs)
