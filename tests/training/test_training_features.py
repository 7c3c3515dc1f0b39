"""Tests of the training features of issue 16.

Periodic evaluation, best-checkpoint keeping and early stopping
(`best_checkpoint`, `train_loop(evaluator=...)`, `eval_loop.
InTrainingEvaluator`), mixed precision (`precision`: policies, loss scaling,
skipped steps, float32 outputs and exports), XLA (`train_config.jit_compile`
with padded groundtruth, and the fallback), and sync batch norm with
multi-replica evaluation (a subprocess with two logical CPU devices).

Most train-loop tests use a cheap fake loss or a fake evaluator (a planted
metric sequence); the real model runs where the feature is about the model
(precision, XLA, padded groundtruth, evaluation).
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.data import digits_dataset
from od_meta.data import inputs
from od_meta.eval import eval_loop
from od_meta.export import exporter
from od_meta.feature_extractors import batch_norm
from od_meta.protos import eval_pb2
from od_meta.training import best_checkpoint
from od_meta.training import precision
from od_meta.training import train_loop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_train_loop import tiny_configs  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.filterwarnings(
    'ignore:Gradients do not exist:UserWarning')

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(path, num_train=16, num_val=7,
                                         image_size=64)
  return path


@pytest.fixture(scope='module')
def overfit_dir(tmp_path_factory):
  """4 training scenes: every batch of 4 is the same, so the loss falls."""
  path = str(tmp_path_factory.mktemp('overfit'))
  digits_dataset.generate_digits_dataset(path, num_train=4, num_val=4,
                                         image_size=64)
  return path


def _fake_losses(scale=1.0):
  """`scale * sum(one predictor bias)`: cheap, and it moves that bias."""
  def compute_losses(detection_model, features, labels, **kwargs):
    del features, labels, kwargs
    var = detection_model.box_predictor.trainable_variables[-1]
    return {'Loss/total_loss': scale * tf.reduce_sum(var)}
  return compute_losses


class _PlantedEvaluator:
  """An evaluator returning planted metric values by step."""

  def __init__(self, values, metric=best_checkpoint.DEFAULT_METRIC):
    self.values, self.metric, self.calls = values, metric, []

  def __call__(self, checkpoint_path):
    step = int(checkpoint_path.rsplit('-', 1)[-1])
    self.calls.append(step)
    return step, {self.metric: self.values[step], 'other/metric': 1.0}


def _bias(model_dir_or_checkpoint, configs):
  """The fake loss's bias as stored in a checkpoint (or a dir's newest)."""
  path = model_dir_or_checkpoint
  if os.path.isdir(path):
    path = tf.train.latest_checkpoint(path)
  model = model_builder.build(configs['model'], is_training=True)
  train_loop.build_model_variables(model, 64, 64)
  tf.train.Checkpoint(model=model).restore(path).expect_partial()
  return model.box_predictor.trainable_variables[-1].numpy().copy()


# ------------------------------------------------------ best checkpoint unit
def test_higher_is_better():
  assert best_checkpoint.higher_is_better('DetectionBoxes_Precision/mAP')
  assert not best_checkpoint.higher_is_better('Loss/total_loss')
  assert not best_checkpoint.higher_is_better('DetectionBoxes_Precision/mAP',
                                              'min')
  assert best_checkpoint.higher_is_better('Loss/total_loss', 'max')
  with pytest.raises(ValueError, match='metric mode'):
    best_checkpoint.higher_is_better('x', 'up')


def test_early_stopping_planted_sequence():
  stop = best_checkpoint.EarlyStopping('m', higher=True, patience=2,
                                       min_delta=0.05)
  # 0.30 improves on 0.20 by more than min_delta; 0.33 and 0.34 do not.
  decisions = [stop.update(s, v) for s, v in
               [(1, 0.2), (2, 0.3), (3, 0.33), (4, 0.34)]]
  assert decisions == [False, False, False, True]
  assert (stop.reference, stop.reference_step, stop.wait) == (0.3, 2, 2)
  assert 'did not increase by more than 0.05 for 2 evaluation(s)' in (
      stop.reason())
  lower = best_checkpoint.EarlyStopping('Loss/x', higher=False, patience=1)
  assert not lower.update(1, 2.0)
  assert not lower.update(2, 1.0)
  assert lower.update(3, float('nan'))  # NaN never improves.
  with pytest.raises(ValueError, match='patience'):
    best_checkpoint.EarlyStopping('m', True, patience=0)


def _save_variable(manager, variable, value, step):
  variable.assign(value)
  return manager.save(checkpoint_number=step)


def test_keeper_survives_rotation_and_restart(tmp_path):
  model_dir = str(tmp_path)
  variable = tf.Variable(0.0)
  ckpt = tf.train.Checkpoint(v=variable)
  manager = tf.train.CheckpointManager(ckpt, model_dir, max_to_keep=1)
  keeper = best_checkpoint.BestCheckpointKeeper(model_dir)
  metric = best_checkpoint.DEFAULT_METRIC
  improved = []
  for step, value in [(1, 0.1), (2, 0.5), (3, 0.4), (4, 0.45)]:
    path = _save_variable(manager, variable, float(step), step)
    improved.append(keeper.update(step, {metric: value}, path))
  assert improved == [True, True, False, False]
  best_dir = os.path.join(model_dir, 'best')
  # Rotation kept only ckpt-4 in model_dir; best/ holds ckpt-2 alone.
  assert not os.path.exists(os.path.join(model_dir, 'ckpt-2.index'))
  assert sorted(os.listdir(best_dir)) == [
      'best_checkpoint.json', 'checkpoint', 'ckpt-2.data-00000-of-00001',
      'ckpt-2.index']
  assert tf.train.latest_checkpoint(best_dir) == os.path.join(best_dir,
                                                              'ckpt-2')
  restored = tf.Variable(-1.0)
  tf.train.Checkpoint(v=restored).restore(
      tf.train.latest_checkpoint(best_dir)).assert_consumed()
  assert float(restored.numpy()) == 2.0
  with open(os.path.join(best_dir, 'best_checkpoint.json')) as f:
    state = json.load(f)
  assert (state['metric'], state['value'], state['step'],
          state['checkpoint']) == (metric, 0.5, 2, 'ckpt-2')
  # A restarted run continues from the recorded best.
  again = best_checkpoint.BestCheckpointKeeper(model_dir)
  assert (again.best_value, again.best_step) == (0.5, 2)
  path = _save_variable(manager, variable, 5.0, 5)
  assert not again.update(5, {metric: 0.49}, path)
  assert again.update(6, {metric: 0.6},
                      _save_variable(manager, variable, 6.0, 6))
  assert sorted(n for n in os.listdir(best_dir) if n.startswith('ckpt')) == [
      'ckpt-6.data-00000-of-00001', 'ckpt-6.index']
  with pytest.raises(ValueError, match='best_metric .*not among'):
    again.update(7, {'other': 1.0}, path)
  # Another metric: the old state is not compared with.
  other = best_checkpoint.BestCheckpointKeeper(model_dir, 'Loss/total_loss')
  assert other.previous_state_ignored and other.best_value is None


# --------------------------------------------- train loop: eval, best, stop
def test_periodic_eval_best_checkpoint_and_early_stop(data_dir, tmp_path,
                                                      monkeypatch):
  monkeypatch.setattr(train_loop, 'compute_losses', _fake_losses(1.0))
  configs = tiny_configs(data_dir, {
      'train_config.optimizer.momentum_optimizer.learning_rate':
          'constant_learning_rate { learning_rate: 0.1 }',
      'train_config.optimizer.momentum_optimizer.momentum_optimizer_value':
          0.0,
      'train_config.max_to_keep': 1,
      'eval_config.eval_every_n_steps': 2,
      'eval_config.early_stopping_patience': 2,
      'eval_config.early_stopping_min_delta': 0.01})
  # 0.305 at step 6 is the best checkpoint (any improvement counts), but
  # not an improvement by min_delta 0.01 for early stopping, whose
  # reference stays step 4's 0.3: 6 and 8 count against it, stop at 8.
  evaluator = _PlantedEvaluator({2: 0.1, 4: 0.3, 6: 0.305, 8: 0.2, 10: 0.9})
  model_dir = str(tmp_path / 'run')
  lines = []
  result = train_loop.train_loop(configs, model_dir, num_train_steps=20,
                                 checkpoint_every_n=3, log_every_n=100,
                                 print_fn=lines.append, evaluator=evaluator,
                                 record_summaries=False)
  assert evaluator.calls == [2, 4, 6, 8]
  assert result.final_step == 8
  assert [s for s, _ in result.evaluations] == [2, 4, 6, 8]
  assert result.stop_reason.startswith('early stopping: ')
  assert 'best 0.3000 at step 4' in result.stop_reason
  best_dir = os.path.join(model_dir, 'best')
  assert result.best_checkpoint == os.path.join(best_dir, 'ckpt-6')
  assert (result.best_step, result.best_value) == (6, 0.305)
  assert sum('New best checkpoint' in line for line in lines) == 3
  # max_to_keep = 1 rotated ckpt-6 out of model_dir; best/ still has it,
  # with the weights of step 6: plain SGD on the fake loss moves the bias
  # by -0.1 per step, so it is 0.2 above the final (step 8) one.
  assert not os.path.exists(os.path.join(model_dir, 'ckpt-6.index'))
  np.testing.assert_allclose(
      _bias(best_dir, configs) - _bias(model_dir, configs), 0.2, atol=1e-5)
  # A rerun does not train past the early stop.
  rerun = train_loop.train_loop(configs, model_dir, num_train_steps=20,
                                print_fn=lambda s: None, evaluator=evaluator,
                                record_summaries=False, evaluate_final=False)
  assert rerun.steps_run == 0
  assert rerun.stop_reason.startswith('early stopping had already stopped')
  # The exporter takes the best directory.
  assert exporter.latest_checkpoint(best_dir) == os.path.join(best_dir,
                                                              'ckpt-6')


def test_final_evaluation_not_repeated_and_lower_is_better(data_dir, tmp_path,
                                                           monkeypatch):
  monkeypatch.setattr(train_loop, 'compute_losses', _fake_losses(1.0))
  configs = tiny_configs(data_dir, {
      'eval_config.eval_every_n_steps': 2,
      'eval_config.best_metric': 'Loss/total_loss'})
  evaluator = _PlantedEvaluator({2: 3.0, 4: 1.0, 5: 2.0}, 'Loss/total_loss')
  result = train_loop.train_loop(configs, str(tmp_path / 'r'),
                                 num_train_steps=5, print_fn=lambda s: None,
                                 evaluator=evaluator, record_summaries=False)
  # Every 2 steps and once at the end (step 5).
  assert evaluator.calls == [2, 4, 5]
  assert result.best_step == 4  # 'Loss/...' metrics: lower is better.
  assert result.stop_reason == 'reached 5 steps'


def test_eval_settings_are_checked(data_dir):
  configs = tiny_configs(data_dir, {'eval_config.early_stopping_patience': 3,
                                    'eval_config.eval_every_n_steps': 0})
  with pytest.raises(ValueError, match='eval_every_n_steps > 0'):
    train_loop.check_settings(configs, True)
  configs = tiny_configs(data_dir, {
      'eval_config.early_stopping_patience': 3,
      'eval_config.eval_every_n_steps': 10, 'eval_config.best_metric': ''})
  with pytest.raises(ValueError, match='best_metric'):
    train_loop.check_settings(configs, True)
  configs = tiny_configs(data_dir, {'train_config.mixed_precision': True,
                                    'train_config.use_bfloat16': True})
  with pytest.raises(ValueError, match='both true'):
    train_loop.check_settings(configs, False)


def test_in_training_evaluator_real_model(data_dir, tmp_path):
  configs = tiny_configs(data_dir, {'eval_config.eval_every_n_steps': 2,
                                    'eval_config.max_num_boxes_to_visualize':
                                        3})
  model_dir = str(tmp_path / 'real')
  printed = []
  evaluator = eval_loop.InTrainingEvaluator(configs, model_dir,
                                            print_fn=printed.append)
  result = train_loop.train_loop(configs, model_dir, num_train_steps=2,
                                 print_fn=lambda s: None, evaluator=evaluator,
                                 record_summaries=False)
  # Step 2 is both a periodic and the final evaluation: it runs once.
  records = eval_loop.read_metrics(model_dir)
  assert [r['step'] for r in records] == [2]
  for record in records:
    assert 'DetectionBoxes_Precision/mAP' in record['metrics']
  assert result.best_checkpoint is not None
  assert os.path.exists(result.best_checkpoint + '.index')
  assert any(line.startswith('Evaluation of ') for line in printed)


# ------------------------------------------------------------------ precision
def test_policy_names():
  assert precision.policy_name(False, False) == 'float32'
  assert precision.policy_name(True, False) == 'mixed_float16'
  assert precision.policy_name(False, True) == 'mixed_bfloat16'
  with pytest.raises(ValueError, match='both true'):
    precision.policy_name(True, True)
  with pytest.raises(ValueError, match='unknown precision policy'):
    with precision.policy_scope('float8'):
      pass


@pytest.mark.parametrize('policy,compute', [('mixed_bfloat16', 'bfloat16'),
                                            ('mixed_float16', 'float16')])
def test_model_under_policy(data_dir, policy, compute):
  configs = tiny_configs(data_dir)
  before = keras.mixed_precision.global_policy().name
  with precision.policy_scope(policy):
    model = model_builder.build(configs['model'], is_training=True)
    train_loop.build_model_variables(model, 64, 64)
  # The global policy is restored for whatever is built next.
  assert keras.mixed_precision.global_policy().name == before
  dtypes = precision.compute_dtypes(model)
  assert set(dtypes) == {compute}, dtypes
  assert {v.dtype for v in model.variables
          if 'seed' not in v.path} == {'float32'}
  features, labels = next(iter(train_loop.build_input_fn(
      configs, is_training=True)()))
  losses, predictions, shapes = train_loop.compute_losses(
      model, features, labels, training=True, return_predictions=True)
  for name, value in losses.items():
    assert value.dtype == tf.float32 and math.isfinite(float(value)), name
  assert predictions['box_encodings'].dtype == tf.float32
  assert predictions['class_predictions_with_background'].dtype == tf.float32
  detections = model.postprocess(predictions, shapes)
  for name in ('detection_boxes', 'detection_scores'):
    assert detections[name].dtype == tf.float32


def test_loss_scale_optimizer_arithmetic():
  variable = tf.Variable([1.0, 2.0])
  optimizer = precision.wrap_optimizer(keras.optimizers.SGD(0.5),
                                       'mixed_float16', initial_scale=8.0)
  optimizer.build([variable])
  assert precision.loss_scale(optimizer) == 8.0
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(variable * tf.constant([3.0, 4.0]))
    scaled = optimizer.scale_loss(loss)
  assert float(scaled) == 8.0 * float(loss)
  gradients = tape.gradient(scaled, [variable])
  np.testing.assert_allclose(gradients[0], [24.0, 32.0])
  optimizer.apply_gradients(zip(gradients, [variable]))
  # Unscaled before the update: 1 - 0.5 * 3, 2 - 0.5 * 4.
  np.testing.assert_allclose(variable.numpy(), [-0.5, 0.0])
  assert int(precision.inner_optimizer(optimizer).iterations) == 1
  # A non-finite gradient: no update, no step, the scale halves.
  optimizer.apply_gradients([(tf.constant([np.inf, 1.0]), variable)])
  np.testing.assert_allclose(variable.numpy(), [-0.5, 0.0])
  assert int(precision.inner_optimizer(optimizer).iterations) == 1
  assert precision.loss_scale(optimizer) == 4.0
  # bfloat16 and float32 need no loss scaling.
  plain = keras.optimizers.SGD(0.1)
  assert precision.wrap_optimizer(plain, 'mixed_bfloat16') is plain
  assert precision.loss_scale(plain) == 1.0


def test_float16_training_skips_injected_inf_gradient(data_dir,
                                                            tmp_path,
                                                            monkeypatch):
  calls = tf.Variable(0)

  def compute_losses(detection_model, features, labels, **kwargs):
    del features, labels, kwargs
    var = detection_model.box_predictor.trainable_variables[-1]
    calls.assign_add(1)
    # Call 2: d/dv sqrt(v - v) = 0.5 / sqrt(0) is +Inf while the loss stays
    # finite (0).
    poison = tf.cond(
        tf.equal(calls, 2),
        lambda: tf.reduce_sum(tf.sqrt(var - tf.stop_gradient(var))),
        lambda: tf.constant(0.0))
    return {'Loss/total_loss': tf.reduce_sum(var) + poison}

  monkeypatch.setattr(train_loop, 'compute_losses', compute_losses)
  configs = tiny_configs(data_dir, {'train_config.mixed_precision': True})
  lines = []
  result = train_loop.train_loop(configs, str(tmp_path / 'fp16'),
                                 num_train_steps=3, log_every_n=1,
                                 print_fn=lines.append,
                                 record_summaries=False)
  assert result.precision_policy == 'mixed_float16'
  assert int(calls.numpy()) == 4  # 3 steps + 1 skipped
  assert result.skipped_steps == 1
  assert result.final_step == 3
  progress = [line for line in lines if line.startswith('step ')]
  assert 'loss_scale=32768 skipped=0' in progress[0]
  assert 'loss_scale=16384 skipped=1' in progress[1]
  assert any('with dynamic loss scaling' in line for line in lines)


def test_bfloat16_training_loss_falls_and_exports_float32(overfit_dir,
                                                          tmp_path):
  configs = tiny_configs(overfit_dir, {
      'train_config.use_bfloat16': True,
      'train_config.optimizer.momentum_optimizer.learning_rate':
          'constant_learning_rate { learning_rate: 0.05 }'})
  model_dir = str(tmp_path / 'bf16')
  lines = []
  result = train_loop.train_loop(configs, model_dir, num_train_steps=24,
                                 log_every_n=1, print_fn=lines.append,
                                 record_summaries=False)
  assert result.precision_policy == 'mixed_bfloat16'
  losses = [float(line.split('loss=')[1].split()[0])
            for line in lines if line.startswith('step ')]
  assert len(losses) == 24
  assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
  export_dir = str(tmp_path / 'exported')
  exporter.export_inference_graph('image_tensor', configs, model_dir,
                                  export_dir)
  loaded = tf.saved_model.load(os.path.join(export_dir, 'saved_model'))
  outputs = loaded.signatures['serving_default'](
      input_tensor=tf.zeros([1, 64, 64, 3], tf.uint8))
  for name, value in outputs.items():
    assert value.dtype == tf.float32, name
    assert np.all(np.isfinite(value.numpy())), name


# ---------------------------------------------------------------------- XLA
def test_padded_groundtruth_gives_the_same_ssd_losses(data_dir):
  configs = tiny_configs(data_dir)
  model = model_builder.build(configs['model'], is_training=True)
  train_loop.build_model_variables(model, 64, 64)
  features, labels = next(iter(train_loop.build_input_fn(
      configs, is_training=True)()))
  unpadded = train_loop.compute_losses(model, features, labels,
                                       training=False)
  padded = train_loop.compute_losses(model, features, labels, training=False,
                                     unpad_groundtruth=False)
  for name in unpadded:
    np.testing.assert_allclose(padded[name], unpadded[name], rtol=1e-5,
                               err_msg=name)
  lists = inputs.unstack_padded_groundtruth(labels)
  counts = labels['num_groundtruth_boxes'].numpy()
  for i, weights in enumerate(lists['groundtruth_weights']):
    assert weights.shape[0] == labels['groundtruth_boxes'].shape[1]
    assert weights.numpy().sum() == counts[i]


@pytest.mark.parametrize('name', ['center_net', 'ttfnet'])
def test_padded_groundtruth_gives_the_same_heatmap_losses(data_dir, name):
  # CenterNet (with keypoints) and TTFNet draw no heatmap peak, size or
  # keypoint target for a zero-weight padding row.
  import test_dense_end_to_end  # pylint: disable=g-import-not-at-top
  configs = test_dense_end_to_end._configs(name, data_dir)  # pylint: disable=protected-access
  model = model_builder.build(configs['model'], is_training=True)
  train_loop.build_model_variables(model, 64, 64)
  features, labels = next(iter(train_loop.build_input_fn(
      configs, is_training=True)()))
  assert int(tf.reduce_min(labels['num_groundtruth_boxes'])) < (
      labels['groundtruth_boxes'].shape[1])  # There is padding.
  unpadded = train_loop.compute_losses(model, features, labels,
                                       training=False)
  padded = train_loop.compute_losses(model, features, labels, training=False,
                                     unpad_groundtruth=False)
  assert set(padded) == set(unpadded)
  for key in unpadded:
    np.testing.assert_allclose(padded[key], unpadded[key], rtol=1e-5,
                               err_msg=key)


def test_xla_compiles_the_ssd_train_step(data_dir, tmp_path):
  configs = tiny_configs(data_dir, {
      'train_config.jit_compile': True,
      'train_config.unpad_groundtruth_tensors': False})
  lines = []
  result = train_loop.train_loop(configs, str(tmp_path / 'xla'),
                                 num_train_steps=3, log_every_n=1,
                                 print_fn=lines.append,
                                 record_summaries=False)
  assert result.jit_compiled
  assert not any('XLA could not compile' in line for line in lines)
  for name, value in result.final_losses.items():
    assert math.isfinite(value), name


def test_xla_falls_back_with_the_reason(data_dir, tmp_path, monkeypatch):
  def compute_losses(detection_model, features, labels, **kwargs):
    del features, labels, kwargs
    var = detection_model.box_predictor.trainable_variables[-1]
    # A host callback: XLA cannot compile it.
    host = tf.numpy_function(lambda x: x, [tf.reduce_sum(var)], tf.float32)
    return {'Loss/total_loss': tf.reduce_sum(var) + tf.stop_gradient(
        tf.reshape(host, []))}

  monkeypatch.setattr(train_loop, 'compute_losses', compute_losses)
  configs = tiny_configs(data_dir, {'train_config.jit_compile': True})
  lines = []
  result = train_loop.train_loop(configs, str(tmp_path / 'fallback'),
                                 num_train_steps=2, log_every_n=1,
                                 print_fn=lines.append,
                                 record_summaries=False)
  assert not result.jit_compiled
  assert result.final_step == 2
  failures = [line for line in lines if 'XLA could not compile' in line]
  assert len(failures) == 1 and 'PyFunc' in failures[0], failures
  # With unpadded groundtruth, the recompilation warning is printed.
  assert any('unpad_groundtruth_tensors: false' in line for line in lines)


# ------------------------------------ two replicas: sync BN, distributed eval
_REPLICAS_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, os.path.join(sys.argv[1], 'tests', 'training'))
    from od_meta.data import digits_dataset
    from od_meta.eval import eval_loop
    from od_meta.feature_extractors import batch_norm
    from test_train_loop import tiny_configs

    tmp = sys.argv[2]
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    out = {}

    # 1. Sync BN: replica 0 sees zeros, replica 1 sees 2s (batch 1 each).
    # The global batch has mean 1 and variance 1; each replica alone has
    # variance 0.
    for sync in (False, True):
      with strategy.scope():
        layer = batch_norm.FusedBatchNormalization(momentum=0.0)
        layer.build((None, 2, 2, 1))
      if sync:
        out['num_synced'] = batch_norm.synchronize_batch_norms(layer)
      def step(ctx_value):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        x = tf.fill([1, 2, 2, 1], 2.0 * tf.cast(replica, tf.float32))
        return layer(x, training=True)
      strategy.run(tf.function(step), args=(0,))
      out[f'sync_{sync}'] = [float(layer.moving_mean.numpy()[0]),
                             float(layer.moving_variance.numpy()[0])]

    # 2. Evaluation split over the replicas gives the single-device
    # detections (7 val images, batches of 4: the last one is padded). A
    # recording evaluator captures what the COCO evaluator would get.
    from od_meta.eval import coco_evaluation

    class Recorder:
      def __init__(self):
        self.rows = {}
      def add_eval_dict(self, d):
        for i, sid in enumerate(d['source_id']):
          n = int(d['num_detections'][i])
          self.rows[sid.decode()] = [
              n, float(np.sum(d['detection_scores'][i][:n])),
              float(np.sum(d['detection_boxes'][i][:n])),
              float(np.sum(d['groundtruth_boxes'][i]))]
      def evaluate(self):
        return {}

    data = os.path.join(tmp, 'data')
    digits_dataset.generate_digits_dataset(data, num_train=4, num_val=7,
                                           image_size=64)
    configs = tiny_configs(data)
    rows = {}
    first = None
    for name, strat in (('one', None), ('two', strategy)):
      model, input_fn = eval_loop.build_eval_model(configs, strat)
      if first is None:
        first = model
      else:  # The same weights (both models list their variables alike).
        for mine, theirs in zip(model.variables, first.variables):
          mine.assign(theirs)
      recorder = Recorder()
      coco_evaluation.get_evaluators = lambda *a, **k: [recorder]
      eval_loop.evaluate_model(
          model, input_fn(None), categories=eval_loop.categories_from_config(
              configs), eval_config=configs['eval_config'], strategy=strat)
      rows[name] = recorder.rows
    out['rows'] = rows

    with open(os.path.join(tmp, 'out.json'), 'w') as f:
      json.dump(out, f)
''')


@pytest.fixture(scope='module')
def replicas(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp('replicas'))
  script = os.path.join(tmp, 'replicas.py')
  with open(script, 'w') as f:
    f.write(_REPLICAS_SCRIPT)
  proc = subprocess.run([sys.executable, script, _REPO, tmp],
                        capture_output=True, text=True, timeout=600,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(tmp, 'out.json')) as f:
    return json.load(f)


def test_sync_batch_norm_uses_global_batch_statistics(replicas):
  assert replicas['num_synced'] == 1
  # Without sync each replica's batch variance is 0; with sync both
  # replicas use the global batch's mean 1 and variance 1.
  assert replicas['sync_False'][1] == pytest.approx(0.0, abs=1e-5)
  np.testing.assert_allclose(replicas['sync_True'], [1.0, 1.0], atol=1e-5)


def test_multi_replica_evaluation_matches_one_device(replicas):
  one, two = replicas['rows']['one'], replicas['rows']['two']
  # Every val image once (the padding copies are dropped), same detections.
  assert sorted(one) == sorted(two) and len(one) == 7
  for source_id in one:
    np.testing.assert_allclose(two[source_id], one[source_id], rtol=1e-4,
                               atol=1e-4, err_msg=source_id)
  assert sum(row[0] for row in one.values()) > 0


def test_synchronize_batch_norms_keeps_inference_fused():
  layer = batch_norm.FusedBatchNormalization()
  layer.build((None, 4, 4, 3))
  assert batch_norm.synchronize_batch_norms(layer) == 1
  assert layer.synchronized
  x = tf.ones([1, 4, 4, 3])
  assert layer._can_fuse(x, None, False)  # pylint: disable=protected-access
  assert not layer._can_fuse(x, None, True)  # pylint: disable=protected-access


def test_eval_batch_must_divide_over_replicas():
  eval_config = eval_pb2.EvalConfig(batch_size=3)

  class _TwoReplicas:
    num_replicas_in_sync = 2

  assert eval_loop.uses_replicas(_TwoReplicas())
  assert not eval_loop.uses_replicas(None)
  with pytest.raises(ValueError, match='multiple of the 2 replicas'):
    eval_loop.evaluate_model(None, None, categories=[],
                             eval_config=eval_config, strategy=_TwoReplicas())
