"""Tests of od_meta.training.train_loop and distribute_utils.

A tiny SSD (configs/ssd_mobilenet_v2_digits.config shrunk to 64x64 inputs,
3 feature maps, batch 4) trains for 3 steps on 16 generated digits scenes
once per module (`trained`); the other tests copy its model_dir, restore its
checkpoint, or replace `compute_losses` by a cheap fake loss so that the
train step traces in a fraction of a second.

The MirroredStrategy test needs two logical CPU devices, which must be
configured before TensorFlow initializes its devices, so it runs a script
in a subprocess (run sequentially: overlapping it with the in-process tests
on 2 cores made the file 60% slower).
"""

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.data import digits_dataset
from od_meta.training import distribute_utils
from od_meta.training import train_loop
from od_meta.utils import config_util

# The fake losses below touch one variable; Keras warns about the others.
pytestmark = pytest.mark.filterwarnings(
    'ignore:Gradients do not exist:UserWarning')

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_CONFIG = os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config')
_LOSS_TAGS = ('Loss/total_loss', 'Loss/localization_loss',
              'Loss/classification_loss', 'Loss/regularization_loss')


def tiny_configs(data_dir, overrides=None):
  """The digits SSD at 64x64 (8x8, 4x4, 2x2 maps), batch 4, tmp data."""
  configs = config_util.get_configs_from_pipeline_file(_CONFIG)
  params = {
      'model.ssd.image_resizer':
          'fixed_shape_resizer { height: 64 width: 64 }',
      'model.ssd.feature_extractor.num_layers': 3,
      'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3,
      'train_config.batch_size': 4,
      'train_config.num_steps': 3,
      'train_config.summary_every_n': 2,
      'train_input_path': os.path.join(data_dir, 'train.tfrecord'),
      'eval_input_path': os.path.join(data_dir, 'val.tfrecord'),
      'label_map_path': os.path.join(data_dir, 'label_map.pbtxt'),
      'eval_config.batch_size': 4,
      'eval_config.num_visualizations': 2,
  }
  params.update(overrides or {})
  return config_util.merge_external_params_with_configs(configs, params)


_MIRRORED_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from od_meta.data import digits_dataset
    from od_meta.training import train_loop
    from od_meta.utils import config_util
    sys.path.insert(0, os.path.join(sys.argv[1], 'tests', 'training'))
    from test_train_loop import tiny_configs

    tmp = sys.argv[2]
    data = os.path.join(tmp, 'data')
    digits_dataset.generate_digits_dataset(data, num_train=8, num_val=0,
                                           image_size=64)
    configs = tiny_configs(data, {
        'train_config.optimizer.momentum_optimizer.learning_rate':
            'constant_learning_rate { learning_rate: 0.5 }',
        'train_config.sync_batch_norm': True})
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    out = {'replicas': strategy.num_replicas_in_sync}

    # 1. The real model: global batch 4 -> 2 images per replica.
    real_compute_losses = train_loop.compute_losses
    batches = []
    def spy(model, features, labels, **kwargs):
      batches.append(int(features['image'].shape[0]))
      return real_compute_losses(model, features, labels, **kwargs)
    train_loop.compute_losses = spy
    lines = []
    result = train_loop.train_loop(
        configs, os.path.join(tmp, 'real'), num_train_steps=1,
        strategy=strategy, log_every_n=1, print_fn=lines.append,
        record_summaries=False)
    out.update(real_batches=batches, real_losses=result.final_losses,
               real_final_step=result.final_step, lines=lines)

    # 2. Loss scaling: each replica's loss is sum(bias) of a zero-initialized
    # bias, so each replica's gradient is 1 per entry. Divided by the 2
    # replicas and summed by the all-reduce, the global gradient is 1: one
    # SGD step (momentum starts at 0) with learning rate 0.5 moves the bias
    # from 0 to -0.5 (-1.0 without the division).
    seen = {}
    def fake(model, features, labels, **kwargs):
      var = [v for v in model.box_predictor.trainable_variables
             if 'box_encoding_conv/bias' in v.path][0]
      seen['var'] = var
      return {'Loss/total_loss': tf.reduce_sum(var)}
    train_loop.compute_losses = fake
    train_loop.train_loop(configs, os.path.join(tmp, 'scaling'),
                          num_train_steps=1, strategy=strategy,
                          log_every_n=1, print_fn=lambda s: None,
                          record_summaries=False)
    out['bias_after_one_step'] = seen['var'].numpy().tolist()
    with open(os.path.join(tmp, 'out.json'), 'w') as f:
      json.dump(out, f)
''')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(path, num_train=16, num_val=8,
                                         image_size=64)
  return path


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
  """3 steps under the default strategy, checkpoint every 2 steps."""
  configs = tiny_configs(data_dir)
  model_dir = str(tmp_path_factory.mktemp('model'))
  lines = []
  result = train_loop.train_loop(configs, model_dir, num_train_steps=3,
                                 checkpoint_every_n=2, log_every_n=1,
                                 print_fn=lines.append)
  return configs, model_dir, result, lines


def _fake_losses(scale=0.0):
  """A compute_losses replacement: `scale * sum(one predictor bias)`."""
  def compute_losses(detection_model, features, labels, **kwargs):
    del features, labels, kwargs
    var = detection_model.box_predictor.trainable_variables[-1]
    return {'Loss/total_loss': scale * tf.reduce_sum(var)}
  return compute_losses


def _read_scalars(directory):
  """{tag: {step: value}} from the TensorBoard event files in directory."""
  scalars = {}
  for name in sorted(os.listdir(directory)):
    if 'tfevents' not in name:
      continue
    for event in tf.compat.v1.train.summary_iterator(
        os.path.join(directory, name)):
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = float(
            tf.make_ndarray(value.tensor))
  return scalars


def _ckpt_numbers(model_dir):
  return sorted(int(n[len('ckpt-'):-len('.index')])
                for n in os.listdir(model_dir)
                if n.startswith('ckpt-') and n.endswith('.index'))


def _built_model(configs):
  model = model_builder.build(configs['model'], is_training=True)
  train_loop.build_model_variables(model, 64, 64)
  return model


def _values(variables):
  """{index: value}: two models built alike list variables in one order
  (their paths differ by Keras' layer-name counters)."""
  return {i: v.numpy().copy() for i, v in enumerate(variables)
          if 'float' in str(v.dtype)}  # Not the dropout's seed state.


# ---------------------------------------------------------------- training
def test_train_loop_result_and_checkpoints(trained):
  _, model_dir, result, _ = trained
  assert result.final_step == 3
  assert result.steps_run == 3
  assert result.checkpoint_path == os.path.join(model_dir, 'ckpt-3')
  assert result.wall_time_s > 0
  # Every 2 steps and at the end.
  assert _ckpt_numbers(model_dir) == [2, 3]
  assert tf.train.latest_checkpoint(model_dir) == result.checkpoint_path
  assert set(result.final_losses) == set(_LOSS_TAGS)
  for name, value in result.final_losses.items():
    assert math.isfinite(value), name
  parts = sum(v for k, v in result.final_losses.items()
              if k != 'Loss/total_loss')
  assert result.final_losses['Loss/total_loss'] == pytest.approx(parts,
                                                                 rel=1e-5)
  assert result.final_losses['Loss/regularization_loss'] > 0


def test_train_loop_writes_pipeline_config(trained):
  configs, model_dir, _, _ = trained
  with open(os.path.join(model_dir, 'pipeline.config')) as f:
    text = f.read()
  assert text == config_util.config_to_text(
      config_util.create_pipeline_proto_from_configs(configs))
  reread = config_util.get_configs_from_pipeline_file(
      os.path.join(model_dir, 'pipeline.config'))
  assert reread['model'] == configs['model']


def test_train_loop_writes_summaries(trained):
  _, model_dir, result, _ = trained
  scalars = _read_scalars(os.path.join(model_dir, 'train'))
  # Every train_config.summary_every_n = 2 steps and at the last step.
  for tag in _LOSS_TAGS + ('learning_rate',):
    assert sorted(scalars.get(tag, {})) == [2, 3], tag
  assert scalars['Loss/total_loss'][3] == pytest.approx(
      result.final_losses['Loss/total_loss'], rel=1e-5)
  # The default config's cosine schedule warms up 0.004 -> 0.08 over 50
  # steps: lr(2) = 0.004 + 0.076 * 2 / 50 = 0.00704.
  assert scalars['learning_rate'][2] == pytest.approx(0.00704, rel=1e-3)
  # steps/s goes with the progress lines (log_every_n = 1), except the
  # first step's, which is tracing time.
  assert sorted(scalars['steps_per_sec']) == [2, 3]


def test_train_loop_prints_progress(trained):
  _, _, result, lines = trained
  progress = [line for line in lines if line.startswith('step ')]
  assert [line.split()[1] for line in progress] == ['1/3', '2/3', '3/3']
  assert f"loss={result.final_losses['Loss/total_loss']:.4f}" in progress[-1]
  for word in ('localization=', 'classification=', 'lr=', 'steps/s', 'ETA'):
    assert word in progress[-1]
  # The first step traces the step function: its time is reported apart
  # and left out of the rate and the ETA.
  assert 'first step' in progress[0] and '(tracing)' in progress[0]
  assert 'ETA ?' in progress[0]
  assert result.first_step_s > 0


def test_resume_under_one_device_strategy(trained, tmp_path, monkeypatch):
  # The resumed steps use a cheap zero fake loss (the real one ran in
  # `trained`); resuming does not depend on the loss.
  configs, model_dir, _, _ = trained
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(model_dir, resumed_dir)
  monkeypatch.setattr(train_loop, 'compute_losses', _fake_losses(0.0))
  lines = []
  result = train_loop.train_loop(
      configs, resumed_dir, num_train_steps=5, checkpoint_every_n=2,
      log_every_n=1, print_fn=lines.append,
      strategy=tf.distribute.OneDeviceStrategy('/cpu:0'))
  assert lines[0] == (f'Resuming from {os.path.join(resumed_dir, "ckpt-3")} '
                      'at step 3')
  progress = [line for line in lines if line.startswith('step ')]
  assert [line.split()[1] for line in progress] == ['4/5', '5/5']
  assert result.final_step == 5
  assert result.steps_run == 2
  assert result.checkpoint_path.endswith('ckpt-5')
  assert _ckpt_numbers(resumed_dir) == [2, 3, 4, 5]
  assert result.final_losses == {'Loss/total_loss': 0.0}
  # The summaries of the resumed steps are added to model_dir/train.
  scalars = _read_scalars(os.path.join(resumed_dir, 'train'))
  assert sorted(scalars['Loss/total_loss']) == [2, 3, 4, 5]
  # Same config: no backup of pipeline.config.
  assert not [n for n in os.listdir(resumed_dir) if n.endswith('.bak')]


def test_rerun_done_with_other_config_keeps_backup(trained, tmp_path):
  configs, model_dir, _, _ = trained
  rerun_dir = str(tmp_path / 'rerun')
  shutil.copytree(model_dir, rerun_dir)
  with open(os.path.join(rerun_dir, 'pipeline.config')) as f:
    old_text = f.read()
  changed = config_util.merge_external_params_with_configs(
      configs, {'eval_config.num_visualizations': 1})
  lines = []
  result = train_loop.train_loop(changed, rerun_dir, num_train_steps=3,
                                 print_fn=lines.append)
  assert result.steps_run == 0
  assert result.final_step == 3
  assert result.checkpoint_path == os.path.join(rerun_dir, 'ckpt-3')
  assert _ckpt_numbers(rerun_dir) == [2, 3]
  backups = [n for n in os.listdir(rerun_dir) if n.endswith('.bak')]
  assert len(backups) == 1
  assert backups[0].startswith('pipeline.config.')
  with open(os.path.join(rerun_dir, backups[0])) as f:
    assert f.read() == old_text
  with open(os.path.join(rerun_dir, 'pipeline.config')) as f:
    assert 'num_visualizations: 1' in f.read()


# -------------------------------------------------------------- fine-tuning
def test_restore_detection_checkpoint(trained):
  configs, model_dir, result, _ = trained
  reference = _built_model(configs)
  tf.train.Checkpoint(model=reference).restore(
      result.checkpoint_path).expect_partial()
  fresh = _built_model(configs)
  before = _values(fresh.variables)
  # A directory means its newest checkpoint.
  train_loop.restore_fine_tune_checkpoint(fresh, model_dir, 'detection')
  after = _values(fresh.variables)
  expected = _values(reference.variables)
  assert after.keys() == expected.keys()
  for name in expected:
    np.testing.assert_array_equal(after[name], expected[name], err_msg=name)
  assert any(not np.array_equal(before[n], after[n]) for n in before)


def test_restore_feature_extractor_only(trained):
  configs, _, result, _ = trained
  reference = _built_model(configs)
  tf.train.Checkpoint(model=reference).restore(
      result.checkpoint_path).expect_partial()
  fresh = _built_model(configs)
  predictor_before = _values(fresh.box_predictor.variables)
  train_loop.restore_fine_tune_checkpoint(fresh, result.checkpoint_path,
                                          'feature_extractor')
  extractor = _values(fresh.feature_extractor.variables)
  expected = _values(reference.feature_extractor.variables)
  assert extractor.keys() == expected.keys() and extractor
  for name in expected:
    np.testing.assert_array_equal(extractor[name], expected[name],
                                  err_msg=name)
  # The predictor keeps its fresh initialization.
  predictor_after = _values(fresh.box_predictor.variables)
  for name in predictor_before:
    np.testing.assert_array_equal(predictor_after[name],
                                  predictor_before[name], err_msg=name)
  reference_predictor = _values(reference.box_predictor.variables)
  assert any(not np.array_equal(predictor_after[n], reference_predictor[n])
             for n in predictor_after)


def test_train_loop_fine_tunes_from_checkpoint(trained, tmp_path,
                                               monkeypatch):
  # A zero fake loss leaves the weights unchanged, so the new run's
  # checkpoint must hold the fine-tune checkpoint's extractor weights.
  configs, _, result, _ = trained
  monkeypatch.setattr(train_loop, 'compute_losses', _fake_losses(0.0))
  tuned = config_util.merge_external_params_with_configs(configs, {
      'train_config.fine_tune_checkpoint': result.checkpoint_path,
      'train_config.fine_tune_checkpoint_type': 'feature_extractor'})
  new_dir = str(tmp_path / 'tuned')
  lines = []
  new = train_loop.train_loop(tuned, new_dir, num_train_steps=1,
                              log_every_n=1, print_fn=lines.append,
                              record_summaries=False)
  assert new.final_step == 1
  assert not lines[0].startswith('Resuming')
  reference = _built_model(configs)
  tf.train.Checkpoint(model=reference).restore(
      result.checkpoint_path).expect_partial()
  tuned_model = _built_model(configs)
  tf.train.Checkpoint(model=tuned_model).restore(
      new.checkpoint_path).expect_partial()
  expected = _values(reference.feature_extractor.variables)
  got = _values(tuned_model.feature_extractor.variables)
  for name in expected:
    np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_bad_fine_tune_checkpoint_path(trained, tmp_path):
  configs, _, _, _ = trained
  bad = config_util.merge_external_params_with_configs(configs, {
      'train_config.fine_tune_checkpoint': str(tmp_path / 'nope' / 'ckpt-9'),
      'train_config.fine_tune_checkpoint_type': 'detection'})
  with pytest.raises(ValueError, match='train_config.fine_tune_checkpoint'):
    train_loop.train_loop(bad, str(tmp_path / 'bad'), num_train_steps=1,
                          print_fn=lambda s: None, record_summaries=False)


def test_restore_fine_tune_checkpoint_errors(trained, tmp_path):
  configs, _, result, _ = trained
  model = _built_model(configs)
  with pytest.raises(ValueError, match='fine_tune_checkpoint_type'):
    train_loop.restore_fine_tune_checkpoint(model, result.checkpoint_path,
                                            'imagenet')
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match='no checkpoint in directory'):
    train_loop.restore_fine_tune_checkpoint(model, str(empty), 'detection')


# ---------------------------------------------------------------- failures
def test_nan_loss_raises_with_the_step(data_dir, tmp_path, monkeypatch):
  monkeypatch.setattr(train_loop, 'compute_losses',
                      _fake_losses(float('nan')))
  model_dir = str(tmp_path / 'nan')
  with pytest.raises(ValueError, match='NaN or infinite at step 1'):
    # log_every_n=100: the check does not wait for a logging step.
    train_loop.train_loop(tiny_configs(data_dir), model_dir,
                          num_train_steps=3, checkpoint_every_n=1,
                          log_every_n=100, print_fn=lambda s: None,
                          record_summaries=False)
  # No checkpoint of the NaN weights was written.
  assert _ckpt_numbers(model_dir) == []


def test_bad_step_arguments(data_dir, tmp_path):
  configs = tiny_configs(data_dir, {'train_config.num_steps': 0})
  with pytest.raises(ValueError, match='num_steps'):
    train_loop.train_loop(configs, str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='log_every_n'):
    train_loop.train_loop(configs, str(tmp_path / 'b'), num_train_steps=2,
                          log_every_n=0)


# ------------------------------------------------------------------ inputs
def test_build_input_fn(data_dir):
  configs = tiny_configs(data_dir)
  features, labels = next(iter(
      train_loop.build_input_fn(configs, is_training=True)()))
  assert features['image'].shape == (4, 64, 64, 3)
  assert labels['groundtruth_boxes'].shape == (4, 10, 4)  # max_number_of_boxes
  features, _ = next(iter(train_loop.build_input_fn(
      configs, is_training=False, batch_size=3)()))
  assert features['image'].shape[0] == 3
  no_eval = dict(configs, eval_input_configs=[])
  with pytest.raises(ValueError, match='eval_input_reader'):
    train_loop.build_input_fn(no_eval, is_training=False)


def test_image_size_for_building(data_dir):
  configs = tiny_configs(data_dir)
  assert train_loop.image_size_for_building(configs) == (64, 64)
  keep = tiny_configs(data_dir, {
      'model.ssd.image_resizer':
          'keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 96 }'
  })
  assert train_loop.image_size_for_building(keep) == (48, 48)


# ------------------------------------------------------------ distribution
def test_num_workers_in_tf_config(monkeypatch):
  config = {'cluster': {'chief': ['host0:2222'],
                        'worker': ['host1:2222', 'host2:2222'],
                        'ps': ['host3:2222']},
            'task': {'type': 'worker', 'index': 0}}
  assert distribute_utils.num_workers_in_tf_config(json.dumps(config)) == 3
  assert distribute_utils.num_workers_in_tf_config(
      '{"cluster": {"worker": ["a:1"]}}') == 1
  assert distribute_utils.num_workers_in_tf_config('') == 0
  assert distribute_utils.num_workers_in_tf_config('{}') == 0
  monkeypatch.setenv('TF_CONFIG', json.dumps(config))
  assert distribute_utils.num_workers_in_tf_config() == 3
  monkeypatch.delenv('TF_CONFIG')
  assert distribute_utils.num_workers_in_tf_config() == 0
  with pytest.raises(ValueError, match='TF_CONFIG is not valid JSON'):
    distribute_utils.num_workers_in_tf_config('{cluster')


def test_get_strategy(monkeypatch):
  default = distribute_utils.get_strategy('default')
  assert default is tf.distribute.get_strategy()
  assert default.num_replicas_in_sync == 1
  one = distribute_utils.get_strategy('one_device', '/cpu:0')
  assert isinstance(one, tf.distribute.OneDeviceStrategy)
  # auto on a CPU-only machine with a one-worker TF_CONFIG: default.
  monkeypatch.setenv('TF_CONFIG', '{"cluster": {"worker": ["a:1"]}}')
  if not tf.config.list_physical_devices('GPU'):
    assert distribute_utils.get_strategy() is tf.distribute.get_strategy()
  with pytest.raises(ValueError, match='unknown strategy') as info:
    distribute_utils.get_strategy('tpu')
  for name in distribute_utils.STRATEGY_NAMES:
    assert name in str(info.value)


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
  script = tmp_path / 'run_mirrored.py'
  script.write_text(_MIRRORED_SCRIPT)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, str(script), _REPO, str(tmp_path)],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=_REPO,
      timeout=400, check=False)
  text = proc.stdout.decode(errors='replace')
  assert proc.returncode == 0, text[-4000:]
  with open(tmp_path / 'out.json') as f:
    out = json.load(f)
  assert out['replicas'] == 2
  # Traced once per replica, each with half the global batch of 4.
  assert out['real_batches'] == [2, 2]
  assert out['real_final_step'] == 1
  # Sync batch norm (every BN of the SSD all-reduces its moments over the
  # 2 replicas), the start-up coverage check under the strategy, the step.
  assert out['lines'][0].startswith('Sync batch norm: ')
  assert 'over 2 replica(s)' in out['lines'][0]
  assert int(out['lines'][0].split()[3]) > 10
  assert 'groundtruth boxes in the first 4 training batches' in (
      out['lines'][1])
  assert out['lines'][2].startswith('step 1/1')
  for name, value in out['real_losses'].items():
    assert math.isfinite(value), name
  np.testing.assert_allclose(out['bias_after_one_step'], -0.5, rtol=1e-5)


# ------------------------------------------------ start-up coverage check
def test_training_starts_with_one_coverage_line(trained):
  _, _, _, lines = trained
  coverage_lines = [l for l in lines if 'groundtruth boxes in the first' in l]
  assert len(coverage_lines) == 1
  assert coverage_lines[0].startswith(('Groundtruth coverage: ',
                                       'WARNING: only '))
  # It comes before the first progress line.
  assert lines.index(coverage_lines[0]) < min(
      i for i, l in enumerate(lines) if l.startswith('step '))


def test_coverage_check_warns_and_names_the_fields_to_change(data_dir):
  # Anchors of 0.9-0.95 of a 64 px image cannot reach IoU 0.5 with digits
  # of 8-28 px: (28 x 28) / (0.9 x 64)^2 < 0.25.
  configs = tiny_configs(data_dir, {
      'model.ssd.anchor_generator.ssd_anchor_generator.min_scale': 0.9,
      'model.ssd.anchor_generator.ssd_anchor_generator.max_scale': 0.95,
      'train_config.matched_share_check_batches': 2})
  model = model_builder.build(configs['model'], is_training=False)
  dataset = train_loop.build_input_fn(configs, is_training=True)(None)
  lines = []
  result = train_loop.check_groundtruth_coverage(model, configs, dataset,
                                                 lines.append)
  assert result.matched_share == 0.0
  assert result.num_boxes > 0
  assert len(lines) == 1
  line = lines[0]
  assert line.startswith('WARNING: only 0.0% of the ')
  assert 'in the first 2 training batches' in line
  for name in ('train_config.min_matched_share 0.5',
               'model.ssd.anchor_generator.ssd_anchor_generator.min_scale',
               'model.ssd.image_resizer.fixed_shape_resizer',
               'scripts/analyze_dataset.py'):
    assert name in line

  configs['train_config'].min_matched_share = 0.0
  assert train_loop.check_groundtruth_coverage(
      model, configs, dataset, lines.append) is None
  assert len(lines) == 1
