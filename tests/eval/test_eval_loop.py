"""Tests of od_meta.eval.eval_loop.

A tiny SSD (configs/ssd_mobilenet_v2_digits.config at 64x64, 3 feature maps)
is built for training and saved as `ckpt-3` once per module (the eval
machinery does not need trained weights, and a checkpoint of the
training-mode model checks that the eval model restores it). The eval input
has 6 images in batches of 4, so the last batch is partial.

`evaluate_model` is also run on an oracle `DetectionModel` whose detections
are the groundtruth it was given: COCO mAP must then be exactly 1 (this
checks the whole eval path: frames, 0-based classes -> label-map ids, eval
losses).
"""

import json
import os

from google.protobuf import text_format
import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.core import model as model_lib
from od_meta.core import standard_fields as fields
from od_meta.data import digits_dataset
from od_meta.eval import eval_loop
from od_meta.training import train_loop
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_CONFIG = os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config')
_COCO_METRICS = (
    'DetectionBoxes_Precision/mAP', 'DetectionBoxes_Precision/mAP@.50IOU',
    'DetectionBoxes_Precision/mAP@.75IOU',
    'DetectionBoxes_Precision/mAP (small)',
    'DetectionBoxes_Precision/mAP (medium)',
    'DetectionBoxes_Precision/mAP (large)', 'DetectionBoxes_Recall/AR@1',
    'DetectionBoxes_Recall/AR@10', 'DetectionBoxes_Recall/AR@100',
    'DetectionBoxes_Recall/AR@100 (small)',
    'DetectionBoxes_Recall/AR@100 (medium)',
    'DetectionBoxes_Recall/AR@100 (large)')
_LOSSES = ('Loss/localization_loss', 'Loss/classification_loss',
           'Loss/regularization_loss', 'Loss/total_loss')
_NUM_VAL = 6


def _tiny_configs(data_dir, overrides=None):
  configs = config_util.get_configs_from_pipeline_file(_CONFIG)
  params = {
      'model.ssd.image_resizer':
          'fixed_shape_resizer { height: 64 width: 64 }',
      'model.ssd.feature_extractor.num_layers': 3,
      'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3,
      'train_config.batch_size': 4,
      'train_config.num_steps': 3,
      'train_input_path': os.path.join(data_dir, 'train.tfrecord'),
      'eval_input_path': os.path.join(data_dir, 'val.tfrecord'),
      'label_map_path': os.path.join(data_dir, 'label_map.pbtxt'),
      'eval_config.batch_size': 4,
      'eval_config.num_visualizations': 2,
  }
  params.update(overrides or {})
  return config_util.merge_external_params_with_configs(configs, params)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """(configs, checkpoint_dir) with ckpt-3 of an untrained tiny SSD."""
  data_dir = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(data_dir, num_train=1,
                                         num_val=_NUM_VAL, image_size=64)
  configs = _tiny_configs(data_dir)
  model = model_builder.build(configs['model'], is_training=True)
  train_loop.build_model_variables(model, 64, 64)
  checkpoint_dir = str(tmp_path_factory.mktemp('ckpt'))
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                       checkpoint_dir, max_to_keep=2)
  manager.save(checkpoint_number=3)
  return configs, checkpoint_dir


@pytest.fixture(scope='module')
def evaluated(setup, tmp_path_factory):
  configs, checkpoint_dir = setup
  model_dir = str(tmp_path_factory.mktemp('eval_model_dir'))
  lines = []
  step, metrics = eval_loop.evaluate_checkpoint(
      configs, os.path.join(checkpoint_dir, 'ckpt-3'), model_dir,
      print_fn=lines.append)
  return model_dir, step, metrics, lines


def _read_events(directory):
  """({tag: {step: value}}, {tag: [steps]}) of scalars and images."""
  scalars, images = {}, {}
  for name in sorted(os.listdir(directory)):
    if 'tfevents' not in name:
      continue
    for event in tf.compat.v1.train.summary_iterator(
        os.path.join(directory, name)):
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor)
        if array.dtype == object:  # Image summaries: encoded PNG strings.
          images.setdefault(value.tag, []).append((event.step, array))
        else:
          scalars.setdefault(value.tag, {})[event.step] = float(array)
  return scalars, images


# --------------------------------------------------------- evaluate_checkpoint
def test_evaluate_checkpoint_metrics(evaluated):
  _, step, metrics, lines = evaluated
  assert step == 3
  assert set(_COCO_METRICS) <= set(metrics)
  assert set(_LOSSES) <= set(metrics)
  for name in _COCO_METRICS:
    assert -1.0 <= metrics[name] <= 1.0, name
  for name in _LOSSES:
    assert np.isfinite(metrics[name]) and metrics[name] >= 0, name
  parts = sum(metrics[n] for n in _LOSSES if n != 'Loss/total_loss')
  assert metrics['Loss/total_loss'] == pytest.approx(parts, rel=1e-5)
  assert lines[0].startswith('Evaluation of ')
  assert '(step 3, ' in lines[0]
  assert any(line.strip().startswith('DetectionBoxes_Precision/mAP: ')
             for line in lines)


def test_eval_losses_are_the_mean_over_batches(evaluated, setup):
  # Recompute the eval losses with the restored inference model:
  # batches of 4 and 2 images, mean over the 2 batches.
  configs, checkpoint_dir = setup
  _, _, metrics, _ = evaluated
  model, input_fn = eval_loop.build_eval_model(configs)
  tf.train.Checkpoint(model=model).restore(
      os.path.join(checkpoint_dir, 'ckpt-3')).expect_partial()
  totals, sizes = [], []
  for features, labels in input_fn(None):
    losses = train_loop.compute_losses(model, features, labels,
                                       training=False)
    totals.append(float(losses['Loss/total_loss']))
    sizes.append(int(features['image'].shape[0]))
  assert sizes == [4, 2]
  assert metrics['Loss/total_loss'] == pytest.approx(np.mean(totals),
                                                     rel=1e-4)


def test_metrics_json_and_read_metrics(evaluated):
  model_dir, _, metrics, _ = evaluated
  path = os.path.join(model_dir, 'eval', 'metrics.json')
  with open(path) as f:
    records = [json.loads(line) for line in f]
  assert len(records) == 1
  assert records[0]['step'] == 3
  assert records[0]['metrics'] == pytest.approx(metrics)
  assert eval_loop.read_metrics(model_dir) == records


def test_eval_summaries(evaluated):
  model_dir, _, metrics, _ = evaluated
  scalars, images = _read_events(os.path.join(model_dir, 'eval'))
  for name in _COCO_METRICS + _LOSSES:
    assert scalars[name] == {3: pytest.approx(metrics[name], rel=1e-5,
                                              abs=1e-6)}, name
  # eval_config.num_visualizations = 2 side-by-side images at step 3.
  assert sorted(images) == ['eval_side_by_side_0', 'eval_side_by_side_1']
  step, array = images['eval_side_by_side_0'][0]
  assert step == 3
  # [width, height, png]; side by side: width = 2 * 64.
  width, height = int(array[0]), int(array[1])
  assert (height, width) == (64, 128)


def test_evaluate_checkpoint_rejects_moving_averages(setup, tmp_path):
  configs, checkpoint_dir = setup
  ema = config_util.merge_external_params_with_configs(
      configs, {'eval_config.use_moving_averages': True})
  with pytest.raises(ValueError, match='use_moving_averages'):
    eval_loop.evaluate_checkpoint(
        ema, os.path.join(checkpoint_dir, 'ckpt-3'), str(tmp_path),
        detection_model=object(), input_fn=lambda ctx: None)


# ------------------------------------------------------------ oracle model
class OracleModel(model_lib.DetectionModel):
  """Detects exactly the groundtruth given to provide_groundtruth."""

  MAX_DETECTIONS = 10

  def preprocess(self, inputs, true_image_shapes=None):
    return inputs, true_image_shapes

  def predict(self, preprocessed_inputs, true_image_shapes, training=False):
    return {'batch': tf.shape(preprocessed_inputs)[0]}

  def loss(self, prediction_dict, true_image_shapes):
    return {'Loss/oracle_loss': tf.constant(0.5)}

  def postprocess(self, prediction_dict, true_image_shapes):
    boxes, classes, scores, nums = [], [], [], []
    for b, c in zip(self.groundtruth_lists('boxes'),
                    self.groundtruth_lists('classes')):
      if c.shape.rank == 2:
        c = tf.argmax(c, axis=1)
      n = tf.shape(b)[0]
      pad = self.MAX_DETECTIONS - n
      boxes.append(tf.pad(b, [[0, pad], [0, 0]]))
      classes.append(tf.pad(tf.cast(c, tf.float32), [[0, pad]]))
      scores.append(tf.pad(tf.ones([n]), [[0, pad]]))
      nums.append(tf.cast(n, tf.float32))
    return {'detection_boxes': tf.stack(boxes),
            'detection_classes': tf.stack(classes),
            'detection_scores': tf.stack(scores),
            'num_detections': tf.stack(nums)}


def test_oracle_model_gets_perfect_coco_metrics(setup, tmp_path):
  configs, _ = setup
  input_fn = train_loop.build_input_fn(configs, is_training=False)
  writer = tf.summary.create_file_writer(str(tmp_path))
  metrics = eval_loop.evaluate_model(
      OracleModel(num_classes=10), input_fn(None),
      categories=eval_loop.categories_from_config(configs),
      eval_config=configs['eval_config'], step=7, summary_writer=writer)
  for name in ('DetectionBoxes_Precision/mAP',
               'DetectionBoxes_Precision/mAP@.50IOU',
               'DetectionBoxes_Recall/AR@100'):
    assert metrics[name] == pytest.approx(1.0), name
  # No regularization: total = the model's only loss.
  assert metrics['Loss/oracle_loss'] == pytest.approx(0.5)
  assert metrics['Loss/total_loss'] == pytest.approx(0.5)
  scalars, _ = _read_events(str(tmp_path))
  assert scalars['DetectionBoxes_Precision/mAP'] == {7: pytest.approx(1.0)}


def test_evaluate_model_on_empty_dataset_raises(setup):
  configs, _ = setup
  dataset = train_loop.build_input_fn(configs, is_training=False)(None)
  with pytest.raises(ValueError, match='no examples'):
    eval_loop.evaluate_model(
        OracleModel(num_classes=10), dataset.take(0),
        categories=eval_loop.categories_from_config(configs),
        eval_config=configs['eval_config'])


# ------------------------------------------------------- metrics.json helpers
def test_append_and_read_metrics(tmp_path):
  model_dir = str(tmp_path)
  assert eval_loop.read_metrics(model_dir) == []
  path = eval_loop.append_metrics(model_dir, 5, {'b': np.float32(0.25),
                                                 'a': 1})
  assert path == os.path.join(model_dir, 'eval', 'metrics.json')
  eval_loop.append_metrics(model_dir, 10, {'a': 2.5})
  assert eval_loop.read_metrics(model_dir) == [
      {'step': 5, 'metrics': {'a': 1.0, 'b': 0.25}},
      {'step': 10, 'metrics': {'a': 2.5}}]
  with open(path) as f:
    first = f.readline()
  assert json.loads(first) == {'step': 5, 'metrics': {'a': 1.0, 'b': 0.25}}


# ---------------------------------------------------------------- categories
def test_categories_from_label_map(setup):
  configs, _ = setup
  categories = eval_loop.categories_from_config(configs)
  # digits label map: ids 1..10 named '0'..'9' (with their keypoints).
  assert [(c['id'], c['name']) for c in categories] == [
      (i + 1, str(i)) for i in range(10)]
  fewer = config_util.merge_external_params_with_configs(
      configs, {'model.ssd.num_classes': 3})
  assert [c['id'] for c in eval_loop.categories_from_config(fewer)] == [
      1, 2, 3]


def test_categories_without_label_map(setup):
  configs, _ = setup
  no_map = config_util.merge_external_params_with_configs(
      configs, {'eval_input_config.label_map_path': '',
                'model.ssd.num_classes': 3})
  assert eval_loop.categories_from_config(no_map) == [
      {'id': 1, 'name': '0'}, {'id': 2, 'name': '1'}, {'id': 3, 'name': '2'}]
  no_eval = dict(no_map, eval_input_configs=[])
  no_eval.pop('eval_input_config')
  assert len(eval_loop.categories_from_config(no_eval)) == 3


# --------------------------------------------------------------- continuous
def test_evaluate_continuously_stops_at_num_steps(setup, tmp_path,
                                                  monkeypatch):
  # ckpt-3 is at train_config.num_steps (3): one evaluation, then the loop
  # stops without asking the iterator for another checkpoint (which would
  # first sleep eval_interval_secs = 60 s, then wait `timeout`).
  configs, checkpoint_dir = setup
  real_iterator = tf.train.checkpoints_iterator
  requests = []

  def counting_iterator(*args, **kwargs):
    for path in real_iterator(*args, **kwargs):
      requests.append(path)
      yield path
      requests.append('asked for another checkpoint')

  monkeypatch.setattr(tf.train, 'checkpoints_iterator', counting_iterator)
  lines = []
  results = eval_loop.evaluate_continuously(
      configs, checkpoint_dir, str(tmp_path), timeout=3,
      print_fn=lines.append)
  assert requests == [os.path.join(checkpoint_dir, 'ckpt-3')]
  assert [step for step, _ in results] == [3]
  assert 'DetectionBoxes_Precision/mAP' in results[0][1]
  assert [r['step'] for r in eval_loop.read_metrics(str(tmp_path))] == [3]


def test_evaluate_continuously_stops_on_timeout(setup, tmp_path):
  # num_steps 100 is never reached: after ckpt-3 no new checkpoint comes
  # within the 1 s timeout.
  configs, checkpoint_dir = setup
  configs = config_util.merge_external_params_with_configs(configs, {
      'train_config.num_steps': 100, 'eval_config.eval_interval_secs': 0})
  results = eval_loop.evaluate_continuously(
      configs, checkpoint_dir, str(tmp_path), timeout=1,
      print_fn=lambda s: None)
  assert [step for step, _ in results] == [3]


_KP_LABEL_MAP = '''
item { id: 1 name: "person"
  keypoints { id: 1 label: "left_eye" }
  keypoints { id: 0 label: "nose" } }
item { id: 2 name: "dog" }
item { id: 3 name: "cat"
  keypoints { id: 0 label: "nose" }
  keypoints { id: 1 label: "left_eye" } }
'''


def _keypoint_configs(tmp_path, metric_text):
  label_map = tmp_path / 'kp_label_map.pbtxt'
  label_map.write_text(_KP_LABEL_MAP)
  configs = config_util.get_configs_from_pipeline_file(_CONFIG)
  configs = config_util.merge_external_params_with_configs(configs, {
      'model.ssd.num_classes': 3, 'label_map_path': str(label_map)})
  text_format.Parse(metric_text,
                    configs['eval_config'].parameterized_metric.add())
  return configs


def test_keypoint_configs_from_config(tmp_path):
  configs = _keypoint_configs(tmp_path, '''coco_keypoint_metrics {
      class_label: "person"
      keypoint_label_to_sigmas { key: "nose" value: 0.026 }
      keypoint_label_to_sigmas { key: "left_eye" value: 0.025 } }''')
  # Keypoints ordered by their label-map id, sigmas in that order.
  (config,) = eval_loop.keypoint_configs_from_config(configs)
  assert config['category_id'] == 1
  assert config['keypoint_names'] == ['nose', 'left_eye']
  np.testing.assert_allclose(config['keypoint_sigmas'], [0.026, 0.025],
                             rtol=1e-6)
  # Empty class_label: every class with keypoints (not the dog).
  configs = _keypoint_configs(tmp_path, '''coco_keypoint_metrics {
      keypoint_label_to_sigmas { key: "nose" value: 0.05 }
      keypoint_label_to_sigmas { key: "left_eye" value: 0.06 } }''')
  assert [c['category_id'] for c in
          eval_loop.keypoint_configs_from_config(configs)] == [1, 3]


def test_keypoint_configs_errors_name_the_field(tmp_path):
  configs = _keypoint_configs(tmp_path, '''coco_keypoint_metrics {
      class_label: "dog" }''')
  with pytest.raises(ValueError, match='class_label'):
    eval_loop.keypoint_configs_from_config(configs)
  configs = _keypoint_configs(tmp_path, '''coco_keypoint_metrics {
      class_label: "person"
      keypoint_label_to_sigmas { key: "nose" value: 0.026 } }''')
  with pytest.raises(ValueError, match="keypoint_label_to_sigmas.*left_eye"):
    eval_loop.keypoint_configs_from_config(configs)
