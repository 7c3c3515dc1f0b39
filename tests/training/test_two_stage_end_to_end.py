"""End to end for the two-stage detectors: train -> evaluate -> export -> serve.

Faster R-CNN and R-FCN, each a tiny model (MobileNetV2 x0.35 split at
block_12_add, 64x64 inputs, batch 2, 8 proposals), built from a pipeline
config by the model builder:

  1. `train_loop.train_loop` runs 2 steps on 6 generated 64x64 digits scenes
     and writes ckpt-2;
  2. `eval_loop.evaluate_checkpoint` evaluates it on 4 scenes (COCO box
     metrics and the eval losses, which score the inference proposals);
  3. `exporter.export_inference_graph('image_tensor', ...)` writes the
     SavedModel (same signature as SSD); reloaded with `tf.saved_model.load`
     it gives the detections od_meta's restored model gives.
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.data import digits_dataset
from od_meta.eval import eval_loop
from od_meta.export import exporter
from od_meta.meta_architectures import faster_rcnn_meta_arch
from od_meta.meta_architectures import rfcn_meta_arch
from od_meta.training import train_loop
from od_meta.utils import config_util

_MAX_DETECTIONS = 10

_SECOND_STAGE = {
    'faster_rcnn': """
    initial_crop_size: 6
    maxpool_kernel_size: 2
    maxpool_stride: 2
    second_stage_box_predictor { mask_rcnn_box_predictor { } }
    second_stage_batch_size: 8
""",
    'rfcn': """
    second_stage_box_predictor {
      rfcn_box_predictor { depth: 16 crop_height: 4 crop_width: 4
                           num_spatial_bins_height: 2
                           num_spatial_bins_width: 2 }
    }
    second_stage_batch_size: 8
    hard_example_miner { num_hard_examples: 4 iou_threshold: 0.7
                         loss_type: BOTH }
""",
}

_PIPELINE = """
model {{
  faster_rcnn {{
    num_classes: 10
    image_resizer {{ fixed_shape_resizer {{ height: 64 width: 64 }} }}
    feature_extractor {{
      type: "faster_rcnn_mobilenet_v2_keras"
      depth_multiplier: 0.35
      batch_norm_trainable: true
    }}
    first_stage_anchor_generator {{
      grid_anchor_generator {{
        height: 16 width: 16 height_stride: 16 width_stride: 16
        height_offset: 8 width_offset: 8
        scales: [1.0, 2.0] aspect_ratios: [0.5, 1.0]
      }}
    }}
    first_stage_box_predictor_depth: 16
    first_stage_minibatch_size: 32
    first_stage_max_proposals: 8
    inference_max_proposals: 6
{second_stage}
    second_stage_post_processing {{
      batch_non_max_suppression {{
        score_threshold: 0.0 iou_threshold: 0.6
        max_detections_per_class: {max_det} max_total_detections: {max_det}
      }}
      score_converter: SOFTMAX
    }}
  }}
}}
train_config {{
  batch_size: 2
  num_steps: 2
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
  num_visualizations: 1
}}
eval_input_reader {{
  label_map_path: "{data}/label_map.pbtxt"
  shuffle: false
  num_epochs: 1
  tf_record_input_reader {{ input_path: "{data}/val.tfrecord" }}
}}
"""

_CLASSES = {'faster_rcnn': faster_rcnn_meta_arch.FasterRCNNMetaArch,
            'rfcn': rfcn_meta_arch.RFCNMetaArch}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('digits'))
  digits_dataset.generate_digits_dataset(path, num_train=6, num_val=4,
                                         image_size=64)
  return path


@pytest.fixture(scope='module', params=sorted(_CLASSES))
def run(request, data_dir, tmp_path_factory):
  name = request.param
  configs = config_util.get_configs_from_pipeline_text(_PIPELINE.format(
      second_stage=_SECOND_STAGE[name], data=data_dir,
      max_det=_MAX_DETECTIONS))
  root = tmp_path_factory.mktemp(name)
  model_dir = str(root / 'model')
  lines = []
  result = train_loop.train_loop(configs, model_dir, record_summaries=False,
                                 log_every_n=1, print_fn=lines.append)
  step, metrics = eval_loop.evaluate_checkpoint(
      configs, result.checkpoint_path, model_dir, print_fn=lines.append)
  exported = exporter.export_inference_graph(
      'image_tensor', configs, model_dir, str(root / 'exported'))
  return {'name': name, 'configs': configs, 'model_dir': model_dir,
          'train': result, 'step': step, 'metrics': metrics,
          'exported': exported}


def test_training_losses(run):
  result = run['train']
  assert result.final_step == 2
  expected = {'Loss/RPNLoss/localization_loss', 'Loss/RPNLoss/objectness_loss',
              'Loss/BoxClassifierLoss/localization_loss',
              'Loss/BoxClassifierLoss/classification_loss',
              'Loss/total_loss'}
  assert expected <= set(result.final_losses)
  assert all(math.isfinite(v) for v in result.final_losses.values())


def test_evaluation_metrics(run):
  metrics = run['metrics']
  assert run['step'] == 2
  for name in ('DetectionBoxes_Precision/mAP',
               'DetectionBoxes_Precision/mAP@.50IOU',
               'DetectionBoxes_Recall/AR@100'):
    assert -1.0 <= metrics[name] <= 1.0, name
  assert math.isfinite(metrics['Loss/BoxClassifierLoss/classification_loss'])


def test_saved_model_matches_the_framework(run):
  loaded = tf.saved_model.load(run['exported']['saved_model'])
  serve = loaded.signatures['serving_default']
  rng = np.random.default_rng(3)
  images = rng.integers(0, 255, size=(2, 64, 64, 3), dtype=np.uint8)
  served = {k: v.numpy() for k, v in
            serve(input_tensor=tf.constant(images)).items()}
  model = exporter.build_restored_model(
      run['configs'], exporter.latest_checkpoint(run['model_dir']))
  assert isinstance(model, _CLASSES[run['name']])
  assert model.max_num_proposals == 6  # inference_max_proposals
  pre, shapes = model.preprocess(tf.constant(images, tf.float32))
  expected = {k: v.numpy() for k, v in model.postprocess(
      model.predict(pre, shapes, training=False), shapes).items()}
  for key in ('detection_boxes', 'detection_scores', 'detection_classes',
              'num_detections', 'raw_detection_boxes',
              'raw_detection_scores'):
    assert key in served, key
    assert served[key].dtype == np.float32, key
  assert served['detection_boxes'].shape == (2, _MAX_DETECTIONS, 4)
  assert served['raw_detection_boxes'].shape == (2, 6, 4)
  np.testing.assert_array_equal(served['num_detections'],
                                expected['num_detections'])
  np.testing.assert_allclose(served['detection_scores'],
                             expected['detection_scores'], atol=1e-5)
  # Exported classes are label-map ids: 0-based class + 1.
  valid = expected['detection_scores'] > 0
  np.testing.assert_array_equal(served['detection_classes'][valid],
                                expected['detection_classes'][valid] + 1.0)
  assert os.path.isfile(os.path.join(
      os.path.dirname(run['exported']['saved_model']), 'pipeline.config'))
