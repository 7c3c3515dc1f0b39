"""Tests for od_meta.builders.faster_rcnn_builder: config fields reach the
Faster R-CNN / R-FCN constructors, and bad configs fail with the field."""

import os

import pytest

from od_meta.builders import model_builder
from od_meta.meta_architectures import faster_rcnn_meta_arch
from od_meta.meta_architectures import rfcn_meta_arch
from od_meta.protos import model_pb2
from od_meta.utils import config_util

_REPO = os.path.join(os.path.dirname(__file__), '..', '..')

_MODEL = """
faster_rcnn {
  num_classes: 4
  image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
  feature_extractor {
    type: "faster_rcnn_mobilenet_v2_keras"
    depth_multiplier: 0.35
    batch_norm_trainable: true
  }
  first_stage_anchor_generator {
    grid_anchor_generator { height: 16 width: 16 scales: [1.0, 2.0]
                            aspect_ratios: [0.5, 1.0, 2.0] }
  }
  first_stage_box_predictor_depth: 16
  first_stage_max_proposals: 20
  inference_max_proposals: 7
  second_stage_box_predictor { %s }
  second_stage_post_processing {
    batch_non_max_suppression { iou_threshold: 0.6
      max_detections_per_class: 5 max_total_detections: 5 }
    score_converter: SOFTMAX
  }
}
"""


def _model_config(predictor='mask_rcnn_box_predictor { }', extra=''):
  config = model_pb2.DetectionModel()
  config_util.parse_text_proto(_MODEL % predictor + '', config)
  if extra:
    config_util.parse_text_proto(extra, config, merge=True)
  return config


def test_mask_rcnn_predictor_builds_faster_rcnn():
  model = model_builder.build(_model_config(), is_training=False)
  assert type(model) is faster_rcnn_meta_arch.FasterRCNNMetaArch  # pylint: disable=unidiomatic-typecheck
  assert model.max_num_proposals == 7  # inference model
  assert model.number_of_stages == 2
  assert model.first_stage_box_predictor.num_anchors_per_location == 6
  training = model_builder.build(_model_config(), is_training=True)
  assert training.max_num_proposals == 20


def test_rfcn_predictor_builds_rfcn():
  model = model_builder.build(
      _model_config('rfcn_box_predictor { depth: 8 crop_height: 4 '
                    'crop_width: 4 num_spatial_bins_height: 2 '
                    'num_spatial_bins_width: 2 }'), is_training=True)
  assert isinstance(model, rfcn_meta_arch.RFCNMetaArch)


def test_one_stage_config():
  config = _model_config()
  config.faster_rcnn.number_of_stages = 1
  model = model_builder.build(config, is_training=False)
  assert model.number_of_stages == 1


@pytest.mark.parametrize('name', ['faster_rcnn_resnet50_digits.config',
                                  'faster_rcnn_mobilenet_v2_digits.config',
                                  'rfcn_resnet50_digits.config'])
def test_shipped_configs_build(name):
  configs = config_util.get_configs_from_pipeline_file(
      os.path.join(_REPO, 'configs', name))
  model = model_builder.build(configs['model'], is_training=True)
  assert isinstance(model, faster_rcnn_meta_arch.FasterRCNNMetaArch)
  assert isinstance(model, rfcn_meta_arch.RFCNMetaArch) == name.startswith(
      'rfcn')
  if name.startswith('rfcn'):
    # R-FCN keeps conv5 at the first stage's stride (Dai et al. 2016).
    assert model.feature_extractor.conv5_stride == 1


def test_errors_name_the_field():
  config = _model_config()
  config.faster_rcnn.feature_extractor.type = 'faster_rcnn_nope'
  with pytest.raises(ValueError, match='faster_rcnn.feature_extractor.type'):
    model_builder.build(config, is_training=True)
  config = _model_config('convolutional_box_predictor { }')
  with pytest.raises(ValueError, match='mask_rcnn_box_predictor'):
    model_builder.build(config, is_training=True)
  config = _model_config()
  config.faster_rcnn.ClearField('second_stage_post_processing')
  with pytest.raises(ValueError, match='second_stage_post_processing'):
    model_builder.build(config, is_training=True)
  config = _model_config()
  config.faster_rcnn.num_classes = 0
  with pytest.raises(ValueError, match='num_classes'):
    model_builder.build(config, is_training=True)
