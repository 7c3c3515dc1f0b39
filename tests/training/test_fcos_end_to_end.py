"""End to end for the anchor-point family: train -> evaluate -> export -> serve.

A tiny FCOS (MobileNetV2 x0.35 FPN P3-P5 of depth 16, one-conv GN head of
16 channels, 64x64 inputs, batch 2) with ATSS sampling, trained 3 steps by
`train_loop` on 8 generated digits scenes, evaluated with COCO metrics on 4,
exported as an `image_tensor` SavedModel whose serving signature (the SSD
keys) gives od_meta's own detections of the restored checkpoint.
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.data import digits_dataset
from od_meta.eval import eval_loop
from od_meta.export import exporter
from od_meta.meta_architectures import fcos_meta_arch
from od_meta.training import train_loop
from od_meta.utils import config_util

_PIPELINE = """
model {{
  fcos {{
    num_classes: 10
    image_resizer {{ fixed_shape_resizer {{ height: 64 width: 64 }} }}
    feature_extractor {{
      type: "ssd_mobilenet_v2_fpn_keras"
      depth_multiplier: 0.35
      min_depth: 8
      fpn {{ min_level: 3 max_level: 5 additional_layer_depth: 16 }}
    }}
    target_assigner {{ atss {{ top_k: 4 anchor_scale: 2.0 }} }}
    head {{ depth: 16 group_norm_groups: 4 num_layers_before_predictor: 1 }}
    localization_loss {{ weighted_giou {{ }} }}
    post_processing {{
      batch_non_max_suppression {{
        score_threshold: 0.0
        iou_threshold: 0.6
        max_detections_per_class: 10
        max_total_detections: 10
      }}
      score_converter: SIGMOID
    }}
  }}
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
  tf_record_input_reader {{ input_path: "{data}/train.tfrecord" }}
}}
eval_config {{
  batch_size: 2
  metrics_set: "coco_detection_metrics"
  num_visualizations: 0
}}
eval_input_reader {{
  label_map_path: "{data}/label_map.pbtxt"
  shuffle: false
  num_epochs: 1
  tf_record_input_reader {{ input_path: "{data}/val.tfrecord" }}
}}
"""


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  data = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(data, num_train=8, num_val=4,
                                         image_size=64)
  configs = config_util.get_configs_from_pipeline_text(
      _PIPELINE.format(data=data))
  root = tmp_path_factory.mktemp('fcos')
  model_dir = str(root / 'model')
  result = train_loop.train_loop(configs, model_dir, record_summaries=False,
                                 log_every_n=1, print_fn=lambda *a: None)
  step, metrics = eval_loop.evaluate_checkpoint(
      configs, result.checkpoint_path, model_dir,
      print_fn=lambda *a, **k: None)
  exported = exporter.export_inference_graph(
      'image_tensor', configs, model_dir, str(root / 'exported'))
  return {'configs': configs, 'model_dir': model_dir, 'train': result,
          'step': step, 'metrics': metrics, 'exported': exported}


def test_training_and_evaluation(run):
  result = run['train']
  assert result.final_step == 3
  assert {'Loss/classification_loss', 'Loss/localization_loss',
          'Loss/centerness_loss', 'Loss/total_loss'} <= set(
              result.final_losses)
  for name, value in result.final_losses.items():
    assert math.isfinite(value), name
  assert run['step'] == 3
  for name in ('DetectionBoxes_Precision/mAP',
               'DetectionBoxes_Precision/mAP@.50IOU'):
    assert -1.0 <= run['metrics'][name] <= 1.0


def test_saved_model_serves_the_framework_detections(run):
  loaded = tf.saved_model.load(run['exported']['saved_model'])
  serve = loaded.signatures['serving_default']
  rng = np.random.default_rng(3)
  images = rng.integers(0, 255, size=(2, 64, 64, 3), dtype=np.uint8)
  served = {k: v.numpy()
            for k, v in serve(input_tensor=tf.constant(images)).items()}
  assert {'detection_boxes', 'detection_scores', 'detection_classes',
          'num_detections', 'detection_multiclass_scores',
          'detection_anchor_indices', 'raw_detection_boxes',
          'raw_detection_scores'} <= set(served)
  model = exporter.build_restored_model(
      run['configs'], exporter.latest_checkpoint(run['model_dir']))
  assert isinstance(model, fcos_meta_arch.FCOSMetaArch)
  preprocessed, shapes = model.preprocess(tf.cast(images, tf.float32))
  expected = model.postprocess(model.predict(preprocessed, shapes), shapes)
  # 8x8 + 4x4 + 2x2 locations.
  assert served['raw_detection_boxes'].shape == (2, 84, 4)
  np.testing.assert_array_equal(served['num_detections'],
                                expected['num_detections'].numpy())
  np.testing.assert_allclose(served['detection_scores'],
                             expected['detection_scores'].numpy(), atol=2e-5)
  np.testing.assert_allclose(served['raw_detection_scores'],
                             expected['raw_detection_scores'].numpy(),
                             atol=2e-5)
  assert os.path.isdir(run['exported']['saved_model'])
