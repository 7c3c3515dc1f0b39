"""Tests for od_meta.benchmark.sweep (axes -> configurations -> configs)."""

import json
import math
import os

import pytest

from od_meta.benchmark import sweep
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SSD = os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config')
CENTERNET = os.path.join(_REPO, 'configs', 'centernet_resnet18_digits.config')
FRCNN = os.path.join(_REPO, 'configs', 'faster_rcnn_resnet50_digits.config')


def _spec():
  return {
      'common_overrides': {'eval_config.num_visualizations': 0},
      'axes': [
          {'axis': 'meta_architecture', 'values': [
              {'name': 'ssd', 'base_config': SSD},
              {'name': 'center_net', 'base_config': CENTERNET},
              {'name': 'faster_rcnn', 'base_config': FRCNN}]},
          {'axis': 'resolution', 'values': [
              {'name': '96', 'when': {'meta_architecture': ['ssd',
                                                            'center_net']},
               'overrides': {'model.{arch}.image_resizer':
                             'fixed_shape_resizer { height: 96 width: 96 }'}},
              {'name': '128', 'when': {'meta_architecture': ['ssd',
                                                             'center_net']},
               'overrides': {
                   'model.{arch}.image_resizer':
                       'fixed_shape_resizer { height: 128 width: 128 }'}}]},
          {'axis': 'proposals', 'values': [
              {'name': 'p10', 'when': {'meta_architecture': 'faster_rcnn'},
               'overrides': {'model.faster_rcnn.inference_max_proposals':
                             10}},
              {'name': 'p300', 'when': {'meta_architecture': 'faster_rcnn'},
               'overrides': {'model.faster_rcnn.inference_max_proposals':
                             300}}]},
      ],
      'exclude': [{'meta_architecture': 'center_net', 'resolution': '96'}],
  }


def test_expansion_names_axes_and_overrides():
  configurations = sweep.expand_sweep(_spec())
  # 2 SSD resolutions + 1 CenterNet (96 excluded) + 2 Faster R-CNN proposal
  # counts; the resolution axis does not apply to Faster R-CNN and the
  # proposals axis applies only to it.
  assert [c.name for c in configurations] == [
      'ssd-96', 'ssd-128', 'center_net-128', 'faster_rcnn-p10',
      'faster_rcnn-p300']
  ssd96 = configurations[0]
  assert ssd96.base_config == SSD
  assert ssd96.axes == {'meta_architecture': 'ssd', 'resolution': '96'}
  assert ssd96.overrides == {
      'eval_config.num_visualizations': 0,
      'model.{arch}.image_resizer':
          'fixed_shape_resizer { height: 96 width: 96 }'}
  frcnn = configurations[3]
  assert frcnn.axes == {'meta_architecture': 'faster_rcnn',
                        'proposals': 'p10'}
  assert frcnn.overrides['model.faster_rcnn.inference_max_proposals'] == 10
  assert frcnn.override_sources[
      'model.faster_rcnn.inference_max_proposals'] == (
          'axis "proposals" value "p10"')


def test_resolve_replaces_arch_and_describes_the_axes():
  configurations = sweep.expand_sweep(_spec())
  by_name = {c.name: c for c in configurations}
  configs = sweep.resolve_configs(by_name['center_net-128'])
  description = sweep.describe_configs(configs)
  assert description == {
      'meta_architecture': 'center_net', 'feature_extractor': 'resnet_v1_18',
      'depth_multiplier': 0.5, 'input_height': 128, 'input_width': 128,
      'num_proposals': None, 'output_stride': None}
  configs = sweep.resolve_configs(by_name['ssd-96'])
  assert config_util.get_spatial_image_size(
      configs['model'].ssd.image_resizer) == [96, 96]
  # float32 0.35 reported as 0.35, extractor type without ssd_ / _keras.
  configs = config_util.merge_external_params_with_configs(
      configs, {'model.ssd.feature_extractor.depth_multiplier': 0.35})
  description = sweep.describe_configs(configs)
  assert description['depth_multiplier'] == 0.35
  assert description['feature_extractor'] == 'mobilenet_v2'
  configs = sweep.resolve_configs(by_name['faster_rcnn-p10'])
  description = sweep.describe_configs(configs)
  assert (description['num_proposals'], description['output_stride'],
          description['input_height']) == (10, 16, 128)


def test_same_value_name_under_different_conditions():
  spec = {'axes': [
      {'axis': 'meta', 'values': [{'name': 'ssd'}, {'name': 'cn'}]},
      {'axis': 'extractor', 'values': [
          {'name': 'mnv2', 'when': {'meta': 'ssd'}, 'base_config': SSD},
          {'name': 'mnv2', 'when': {'meta': 'cn'}, 'base_config': CENTERNET}
      ]}]}
  configurations = sweep.expand_sweep(spec)
  assert [(c.name, c.base_config) for c in configurations] == [
      ('ssd-mnv2', SSD), ('cn-mnv2', CENTERNET)]
  spec['axes'][1]['values'][1]['when'] = {'meta': 'ssd'}
  with pytest.raises(ValueError, match=r'axis "extractor" value "mnv2".*'
                     'duplicate'):
    sweep.expand_sweep(spec)


def test_explicit_configurations_and_top_level_base(tmp_path):
  spec = {'base_config': SSD,
          'common_overrides': {'train_config.batch_size': 4},
          'configurations': [
              {'name': 'a', 'overrides': {'train_config.batch_size': 2}},
              {'name': 'b', 'base_config': CENTERNET, 'checkpoint': 'x/ckpt',
               'axes': {'meta_architecture': 'center_net'}}]}
  a, b = sweep.expand_sweep(spec)
  # A configuration's own override wins over the common one.
  assert a.overrides == {'train_config.batch_size': 2}
  assert (b.base_config, b.checkpoint, b.axes) == (
      CENTERNET, 'x/ckpt', {'meta_architecture': 'center_net'})
  assert b.overrides == {'train_config.batch_size': 4}


def test_files_yaml_json_and_plain_configs(tmp_path):
  yaml_path = tmp_path / 'study.sweep.yaml'
  yaml_path.write_text(
      'axes:\n'
      '  - axis: res\n'
      '    values:\n'
      f'      - {{name: "64", base_config: "{SSD}"}}\n')
  json_path = tmp_path / 'other.json'
  json_path.write_text(json.dumps(
      {'configurations': [{'name': 'x', 'base_config': SSD}]}))
  configurations = sweep.configurations_from_paths(
      [str(yaml_path), str(json_path), CENTERNET])
  assert [c.name for c in configurations] == [
      '64', 'x', 'centernet_resnet18_digits']
  assert configurations[2].overrides == {}
  with pytest.raises(ValueError, match='two configurations are named'):
    sweep.configurations_from_paths([CENTERNET, CENTERNET])
  with pytest.raises(ValueError, match='at least one'):
    sweep.configurations_from_paths([])
  bad = tmp_path / 'bad.json'
  bad.write_text('{"axes": [')
  with pytest.raises(ValueError, match='bad.json: cannot parse'):
    sweep.configurations_from_paths([str(bad)])


def test_base_config_relative_to_the_sweep_file(tmp_path):
  (tmp_path / 'sub').mkdir()
  local = tmp_path / 'sub' / 'local.config'
  local.write_text('')
  path = tmp_path / 'sub' / 's.json'
  path.write_text(json.dumps(
      {'configurations': [{'name': 'x', 'base_config': 'local.config'}]}))
  (configuration,) = sweep.configurations_from_paths([str(path)])
  assert configuration.base_config == str(local)


@pytest.mark.parametrize('mutate, message', [
    (lambda s: s['axes'][1]['values'][0].update(
        when={'proposals': 'p10'}),
     r'axis "resolution" value "96": "when" refers to axis "proposals", '
     'which is not an earlier axis'),
    (lambda s: s['axes'][1]['values'][0].update(
        when={'meta_architecture': 'rfcn'}),
     r'axis "resolution" value "96": "when" names value\(s\) \[\'rfcn\'\]'),
    (lambda s: s['axes'][2]['values'][0].update(overide={}),
     r'axis "proposals" values\[0\]: unknown key\(s\) \[\'overide\'\]'),
    (lambda s: s['axes'][0]['values'][0].update(name='s s'),
     r'axis "meta_architecture" values\[0\]: name \'s s\' must match'),
    (lambda s: s['axes'][1].update(values=[]),
     r'axis "resolution": "values" must be a non-empty list'),
    (lambda s: s['axes'][1]['values'][0].update(base_config=SSD),
     r'configuration "ssd-96": base_config given by both axis '
     r'"meta_architecture" value "ssd" and axis "resolution" value "96"'),
    (lambda s: s['exclude'].append({'stride': '8'}),
     r'exclude\[1\]: unknown axis "stride"'),
    (lambda s: s['axes'][0].update(axis='resolution'),
     r'axis "resolution": duplicate axis name'),
    (lambda s: s.update(axis=[]), r"unknown key\(s\) \['axis'\]"),
])
def test_expansion_errors_name_the_axis_and_value(mutate, message):
  spec = _spec()
  mutate(spec)
  with pytest.raises(ValueError, match=message):
    sweep.expand_sweep(spec, path='s.json')


def test_axis_override_replaces_common_one():
  spec = {'base_config': SSD,
          'common_overrides': {'train_config.batch_size': 16},
          'axes': [{'axis': 'a', 'values': [
              {'name': 'x', 'overrides': {'train_config.batch_size': 2}},
              {'name': 'y'}]}]}
  x, y = sweep.expand_sweep(spec)
  assert x.overrides == {'train_config.batch_size': 2}
  assert y.overrides == {'train_config.batch_size': 16}


def test_conflicting_axis_overrides_raise():
  spec = {'base_config': SSD, 'axes': [
      {'axis': 'a', 'values': [{'name': 'x', 'overrides': {
          'train_config.batch_size': 2}}]},
      {'axis': 'b', 'values': [{'name': 'y', 'overrides': {
          'train_config.batch_size': 4}}]}]}
  with pytest.raises(ValueError, match=r'override "train_config.batch_size" '
                     r'is set by both axis "a" value "x" \(2\) and axis "b" '
                     r'value "y" \(4\)'):
    sweep.expand_sweep(spec)
  del spec['base_config']
  spec['axes'][1]['values'][0]['overrides'] = {}
  with pytest.raises(ValueError, match='configuration "x-y": no base_config'):
    sweep.expand_sweep(spec)
  with pytest.raises(ValueError, match='defines no configuration'):
    sweep.expand_sweep({'axes': []})


def test_resolve_errors_name_the_configuration_source_and_field():
  spec = _spec()
  spec['axes'][2]['values'][0]['overrides'] = {
      'model.faster_rcnn.first_stage_max_proposal': 10}
  configuration = sweep.expand_sweep(spec)[3]
  with pytest.raises(ValueError) as error:
    sweep.resolve_configs(configuration)
  text = str(error.value)
  assert 'configuration "faster_rcnn-p10"' in text
  assert 'axis "proposals" value "p10"' in text
  assert 'first_stage_max_proposal' in text
  assert 'Did you mean "first_stage_max_proposals"' in text
  missing = sweep.Configuration(name='m', base_config='/no/such.config')
  with pytest.raises(FileNotFoundError, match='configuration "m"'):
    sweep.resolve_configs(missing)


def test_training_overrides_golden():
  configs = config_util.get_configs_from_pipeline_file(SSD)
  overrides = sweep.training_overrides(configs, num_steps=200, batch_size=8,
                                       num_checkpoints=3, eval_examples=50)
  prefix = ('train_config.optimizer.momentum_optimizer.learning_rate.'
            'cosine_decay_learning_rate.')
  # sqrt scaling: r = 8 / 32, sqrt(r) = 0.5: base 0.08 -> 0.04, warmup
  # 0.004 -> 0.002; warmup 50 steps > 200 // 10 -> 20; checkpoints every
  # ceil(200 / 3) = 67 steps, keep 200 // 67 + 2 = 4.
  assert overrides == {
      'train_config.num_steps': 200,
      prefix + 'total_steps': 200,
      prefix + 'warmup_steps': 20,
      'train_config.batch_size': 8,
      prefix + 'learning_rate_base': 0.04,
      prefix + 'warmup_learning_rate': 0.002,
      'train_config.checkpoint_every_n': 67,
      'train_config.max_to_keep': 4,
      'eval_config.num_examples': 50,
  }
  linear = sweep.training_overrides(configs, batch_size=8,
                                    lr_scaling='linear')
  assert math.isclose(linear[prefix + 'learning_rate_base'], 0.02)
  none = sweep.training_overrides(configs, batch_size=8, lr_scaling='none')
  assert none == {'train_config.batch_size': 8}
  # The result applies cleanly.
  config_util.merge_external_params_with_configs(configs, overrides)
  with pytest.raises(ValueError, match='num_steps must be >= 1'):
    sweep.training_overrides(configs, num_steps=0)
  with pytest.raises(ValueError, match='lr_scaling'):
    sweep.training_overrides(configs, lr_scaling='cubic')


def test_quick_sweep_file_expands():
  path = os.path.join(_REPO, 'configs', 'sweeps', 'digits_quick.sweep.json')
  configurations = sweep.configurations_from_paths([path])
  archs = {c.axes['meta_architecture'] for c in configurations}
  assert archs == {'ssd', 'center_net', 'ttfnet', 'faster_rcnn', 'rfcn'}
  assert len(configurations) >= 7
  for configuration in configurations:
    configs = sweep.resolve_configs(configuration)
    # R-FCN is a faster_rcnn model with an rfcn_box_predictor.
    assert sweep.describe_configs(configs)['meta_architecture'] == (
        configuration.axes['meta_architecture'])


def test_anchor_point_sweep_file_expands():
  path = os.path.join(_REPO, 'configs', 'sweeps',
                      'digits_anchor_point.sweep.json')
  configurations = sweep.configurations_from_paths([path])
  assert [c.name for c in configurations] == [
      'retinanet_argmax', 'retinanet_atss', 'retinanet_fcos_rule', 'fcos',
      'fcos_atss', 'sapd']
  for configuration in configurations:
    configs = sweep.resolve_configs(configuration)
    assert sweep.describe_configs(configs)['meta_architecture'] == (
        configuration.axes['meta_architecture'])
    assert configuration.axes['feature_extractor'] == 'mobilenet_v2_fpnlite'
