"""End to end for the heatmap detectors: train -> evaluate -> export -> serve.

For CenterNet (with a 5-keypoint task on the digits' top / bottom / left /
right / center keypoints, evaluated with coco_keypoint_metrics and OKS
sigmas) and TTFNet, each a tiny model (ResNet-18 x0.125, up-convolution
(16, 16, 16), head_channels 8, 64x64 inputs, batch 2):

  1. `train_loop.train_loop` runs 3 steps on 8 generated 64x64 digits
     scenes (no augmentation) and writes ckpt-3;
  2. `eval_loop.evaluate_checkpoint` evaluates ckpt-3 on 4 scenes: COCO box
     metrics, the Keypoints_ metrics (CenterNet) and the eval losses;
  3. `exporter.export_inference_graph('image_tensor', ...)` writes the
     SavedModel, which `tf.saved_model.load` reloads; its detections on two
     uint8 images equal od_meta's own preprocess -> predict -> postprocess
     of the restored checkpoint (mirroring tests/export/test_exporter.py).

Each model is trained, evaluated and exported once per module (fixtures).
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import standard_fields as fields
from od_meta.data import digits_dataset
from od_meta.data import tf_example_decoder
from od_meta.eval import eval_loop
from od_meta.export import exporter
from od_meta.meta_architectures import center_net_meta_arch
from od_meta.meta_architectures import ttfnet_meta_arch
from od_meta.training import train_loop
from od_meta.utils import config_util

_NUM_VAL = 4
_MAX_DETECTIONS = 10
_NUM_KEYPOINTS = len(digits_dataset.KEYPOINT_NAMES)  # 5
# OKS sigmas of the 5 digit keypoints (COCO's face-keypoint scale).
_SIGMAS = {'top': 0.05, 'bottom': 0.05, 'left': 0.05, 'right': 0.05,
           'center': 0.08}

_EXTRACTOR = """
    feature_extractor {
      type: "resnet_v1_18"
      depth_multiplier: 0.125
      up_convolution { num_filters: [16, 16, 16] }
    }
    head_channels: 8
    image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
"""

_CENTER_NET = f"""
  center_net {{
    num_classes: 10
{_EXTRACTOR}
    object_center_params {{ max_box_predictions: {_MAX_DETECTIONS} }}
    object_detection_task {{ }}
    keypoint_label_map_path: "{{data}}/label_map.pbtxt"
    keypoint_estimation_task {{
      task_name: "digit_keypoints"
      keypoint_label_to_std {{ key: "center" value: 1.5 }}
    }}
  }}
"""

_TTFNET = f"""
  ttfnet {{
    num_classes: 10
{_EXTRACTOR}
    max_box_predictions: {_MAX_DETECTIONS}
    score_threshold: 0.0
  }}
"""

_SIGMA_TEXT = ' '.join(
    f'keypoint_label_to_sigmas {{ key: "{k}" value: {v} }}'
    for k, v in _SIGMAS.items())

_PIPELINE = """
model {{
{model}
}}
train_config {{
  batch_size: 2
  num_steps: 3
  optimizer {{
    momentum_optimizer {{
      learning_rate {{ constant_learning_rate {{ learning_rate: 0.01 }} }}
      momentum_optimizer_value: 0.9
    }}
    use_moving_average: false
  }}
  max_number_of_boxes: 6
  checkpoint_every_n: 100
}}
train_input_reader {{
  label_map_path: "{data}/label_map.pbtxt"
  num_keypoints: {num_keypoints}
  tf_record_input_reader {{ input_path: "{data}/train.tfrecord" }}
}}
eval_config {{
  batch_size: 2
  metrics_set: "coco_detection_metrics"
{keypoint_metrics}
  num_visualizations: 1
}}
eval_input_reader {{
  label_map_path: "{data}/label_map.pbtxt"
  shuffle: false
  num_epochs: 1
  num_keypoints: {num_keypoints}
  tf_record_input_reader {{ input_path: "{data}/val.tfrecord" }}
}}
"""

_KEYPOINT_METRICS = f"""
  metrics_set: "coco_keypoint_metrics"
  parameterized_metric {{
    coco_keypoint_metrics {{ class_label: "{{class_label}}" {_SIGMA_TEXT} }}
  }}
"""

_MODELS = {
    'center_net': (_CENTER_NET, center_net_meta_arch.CenterNetMetaArch),
    'ttfnet': (_TTFNET, ttfnet_meta_arch.TTFNetMetaArch),
}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(path, num_train=8,
                                         num_val=_NUM_VAL, image_size=64)
  return path


def _val_class_name(data_dir):
  """Name of the most frequent digit of the val scenes (label-map name)."""
  decoder = tf_example_decoder.TfExampleDecoder()
  classes = np.concatenate([
      decoder.decode(record)[fields.InputDataFields.groundtruth_classes]
      .numpy() for record in tf.data.TFRecordDataset(
          os.path.join(data_dir, digits_dataset.VAL_FILENAME))])
  return digits_dataset.CLASS_NAMES[int(np.bincount(classes).argmax())]


def _configs(name, data_dir):
  model_text, _ = _MODELS[name]
  keypoints = name == 'center_net'
  metrics = ''
  if keypoints:
    metrics = _KEYPOINT_METRICS.replace('{class_label}',
                                        _val_class_name(data_dir))
  text = _PIPELINE.format(
      model=model_text.replace('{data}', data_dir), data=data_dir,
      num_keypoints=_NUM_KEYPOINTS if keypoints else 0,
      keypoint_metrics=metrics)
  return config_util.get_configs_from_pipeline_text(text)


@pytest.fixture(scope='module', params=sorted(_MODELS))
def run(request, data_dir, tmp_path_factory):
  """Trains and evaluates one model; returns what each step gave."""
  name = request.param
  configs = _configs(name, data_dir)
  root = tmp_path_factory.mktemp(name)
  model_dir = str(root / 'model')
  lines = []
  result = train_loop.train_loop(configs, model_dir, record_summaries=False,
                                 log_every_n=1, print_fn=lines.append)
  step, metrics = eval_loop.evaluate_checkpoint(
      configs, result.checkpoint_path, model_dir, print_fn=lines.append)
  return {'name': name, 'configs': configs, 'model_dir': model_dir,
          'root': root, 'train': result, 'lines': lines, 'step': step,
          'metrics': metrics}


@pytest.fixture(scope='module')
def exported(run):
  """The image_tensor export of the run's newest checkpoint."""
  return exporter.export_inference_graph(
      'image_tensor', run['configs'], run['model_dir'],
      str(run['root'] / 'exported'))


def test_training_ran_and_wrote_checkpoints(run):
  result = run['train']
  assert result.final_step == 3 and result.steps_run == 3
  assert result.checkpoint_path == os.path.join(run['model_dir'], 'ckpt-3')
  expected = {
      'center_net': {'Loss/object_center', 'Loss/box/scale',
                     'Loss/box/offset',
                     'Loss/digit_keypoints/keypoint_heatmap',
                     'Loss/digit_keypoints/keypoint_regression',
                     'Loss/digit_keypoints/keypoint_offset'},
      'ttfnet': {'Loss/heatmap', 'Loss/box/giou'},
  }[run['name']]
  assert expected | {'Loss/total_loss'} <= set(result.final_losses)
  for name, value in result.final_losses.items():
    assert math.isfinite(value), name
  assert result.final_losses['Loss/total_loss'] > 0
  assert [l.split()[1] for l in run['lines'] if l.startswith('step ')] == [
      '1/3', '2/3', '3/3']


def test_evaluation_metrics(run):
  metrics = run['metrics']
  assert run['step'] == 3
  for name in ('DetectionBoxes_Precision/mAP',
               'DetectionBoxes_Precision/mAP@.50IOU',
               'DetectionBoxes_Recall/AR@100'):
    assert -1.0 <= metrics[name] <= 1.0, name
  losses = [k for k in metrics if k.startswith('Loss/')]
  assert 'Loss/total_loss' in losses
  for name in losses:
    assert math.isfinite(metrics[name]), name
  keypoint_metrics = [k for k in metrics if k.startswith('Keypoints_')]
  if run['name'] == 'center_net':
    # The evaluator of the class named by coco_keypoint_metrics.class_label,
    # with the TF OD API's 'Keypoints_... ByCategory/<class>' names.
    digit = _val_class_name(os.path.dirname(
        run['configs']['eval_input_configs'][0].label_map_path))
    for metric in ('Precision/mAP', 'Precision/mAP@.50IOU', 'Recall/AR@1'):
      name = f'Keypoints_{metric} ByCategory/{digit}'
      assert name in metrics, sorted(keypoint_metrics)
      assert -1.0 <= metrics[name] <= 1.0, name
    assert all(k.endswith(f'ByCategory/{digit}') for k in keypoint_metrics)
  else:
    assert not keypoint_metrics
  records = eval_loop.read_metrics(run['model_dir'])
  assert [r['step'] for r in records] == [3]


def _images():
  rng = np.random.default_rng(7)
  images = rng.integers(0, 60, size=(2, 64, 64, 3), dtype=np.uint8)
  images[0, 10:40, 20:36] = 255  # digit-like bright blocks
  images[1, 30:60, 8:50] = 200
  return images


def _framework_detections(model, images):
  preprocessed, shapes = model.preprocess(
      tf.cast(tf.convert_to_tensor(images), tf.float32))
  predictions = model.predict(preprocessed, shapes, training=False)
  return {k: v.numpy()
          for k, v in model.postprocess(predictions, shapes).items()}


def test_saved_model_matches_the_framework(run, exported):
  configs, model_dir = run['configs'], run['model_dir']
  _, model_class = _MODELS[run['name']]
  assert exported['restored_checkpoint'] == run['train'].checkpoint_path
  loaded = tf.saved_model.load(exported['saved_model'])
  serve = loaded.signatures['serving_default']
  images = _images()
  served = {k: v.numpy() for k, v in
            serve(input_tensor=tf.constant(images)).items()}
  model = exporter.build_restored_model(
      configs, exporter.latest_checkpoint(model_dir))
  assert isinstance(model, model_class)
  expected = _framework_detections(model, images)

  keys = {'detection_boxes', 'detection_scores', 'detection_classes',
          'num_detections'}
  if run['name'] == 'center_net':
    keys |= {'detection_keypoints', 'detection_keypoint_scores'}
  assert set(served) == keys
  assert served['detection_boxes'].shape == (2, _MAX_DETECTIONS, 4)
  if run['name'] == 'center_net':
    assert served['detection_keypoints'].shape == (
        2, _MAX_DETECTIONS, _NUM_KEYPOINTS, 2)
    assert served['detection_keypoint_scores'].shape == (
        2, _MAX_DETECTIONS, _NUM_KEYPOINTS)
  np.testing.assert_array_equal(served['num_detections'],
                                expected['num_detections'])
  # Scores are sorted; compare them as a whole, then the rows whose rank is
  # unambiguous (a score gap > 1e-6 to both neighbours: exact or near ties
  # of an almost untrained heatmap may swap under float noise).
  np.testing.assert_allclose(served['detection_scores'],
                             expected['detection_scores'], atol=2e-5)
  compared = 0
  for b in range(2):
    scores = expected['detection_scores'][b]
    for i in range(int(expected['num_detections'][b])):
      gaps = [abs(scores[i] - scores[j]) for j in (i - 1, i + 1)
              if 0 <= j < len(scores)]
      if min(gaps) <= 1e-6:
        continue
      compared += 1
      np.testing.assert_allclose(served['detection_boxes'][b, i],
                                 expected['detection_boxes'][b, i],
                                 atol=2e-5)
      # Exported classes are label-map ids: 0-based class + 1.
      assert served['detection_classes'][b, i] == (
          expected['detection_classes'][b, i] + 1.0)
      for key in ('detection_keypoints', 'detection_keypoint_scores'):
        if key in served:
          np.testing.assert_allclose(served[key][b, i], expected[key][b, i],
                                     atol=2e-5, err_msg=key)
  assert compared >= 5
  boxes = served['detection_boxes']
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0
  valid = served['detection_classes'][0, :int(served['num_detections'][0])]
  assert valid.min() >= 1 and valid.max() <= 10
