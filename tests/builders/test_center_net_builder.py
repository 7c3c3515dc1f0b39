"""Tests of od_meta.builders.center_net_builder (CenterNet from its config).

A full text-format `DetectionModel { center_net { ... } }` with a keypoint
task (keypoints read from a label map written to tmp_path) must parse,
build through model_builder, map every field to the component arguments and
run preprocess / predict / loss / postprocess on a batch of 2 64x64 images
(ResNet-18 x0.125, up-convolution (16, 16, 16), head_channels 8). Bad
configs raise ValueError naming the field.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import center_net_builder
from od_meta.builders import model_builder
from od_meta.core import losses
from od_meta.core import standard_fields as fields
from od_meta.feature_extractors import center_net_feature_extractor as cnfe
from od_meta.feature_extractors import hourglass
from od_meta.meta_architectures import center_net_meta_arch as cn
from od_meta.protos import center_net_pb2
from od_meta.protos import model_pb2
from od_meta.utils import config_util

_DET = fields.DetectionResultFields

# Keypoint ids deliberately out of order in the file: the task orders its
# K = 3 keypoints by id (nose, left_eye, right_eye).
_LABEL_MAP = """
item {
  id: 1
  name: "person"
  keypoints { id: 2 label: "right_eye" }
  keypoints { id: 0 label: "nose" }
  keypoints { id: 1 label: "left_eye" }
}
item {
  id: 2
  name: "car"
}
"""

_EXTRACTOR = """
  feature_extractor {
    type: "resnet_v1_18"
    depth_multiplier: 0.125
    channel_means: [120.0, 110.0, 100.0]
    channel_stds: [60.0, 50.0, 40.0]
    up_convolution { num_filters: [16, 16, 16] kernel_size: 4 }
  }
"""

_KEYPOINT_TASK = """
  keypoint_estimation_task {
    task_name: "human_pose"
    task_loss_weight: 0.5
    keypoint_class_name: "person"
    keypoint_label_to_std { key: "nose" value: 0.5 }
    keypoint_label_to_std { key: "right_eye" value: 2.0 }
    loss {
      localization_loss { l1_localization_loss { } }
      classification_loss {
        penalty_reduced_logistic_focal_loss { alpha: 2.0 beta: 4.0 }
      }
    }
    keypoint_regression_loss_weight: 0.3
    keypoint_heatmap_loss_weight: 1.5
    keypoint_offset_loss_weight: 0.7
    heatmap_bias_init: -3.0
    keypoint_candidate_score_threshold: 0.2
    num_candidates_per_keypoint: 7
    peak_max_pool_kernel_size: 5
    unmatched_keypoint_score: 0.05
    box_scale: 1.5
    candidate_search_scale: 0.4
    candidate_ranking_mode: "score_distance_ratio"
    offset_peak_radius: 2
    per_keypoint_offset: true
    keypoint_flip_permutation: [0, 2, 1]
  }
"""


def _config_text(label_map_path, *, extractor=_EXTRACTOR,
                 keypoint_task=_KEYPOINT_TASK, extra=''):
  return f"""
center_net {{
  num_classes: 2
  image_resizer {{ fixed_shape_resizer {{ height: 64 width: 64 }} }}
{extractor}
  head_channels: 8
  object_center_params {{
    object_center_loss_weight: 2.0
    classification_loss {{
      penalty_reduced_logistic_focal_loss {{ alpha: 3.0 beta: 5.0 }}
    }}
    heatmap_bias_init: -1.5
    min_box_overlap_iou: 0.5
    max_box_predictions: 20
    peak_max_pool_kernel_size: 5
    center_score_threshold: 0.05
  }}
  object_detection_task {{
    task_loss_weight: 0.8
    offset_loss_weight: 0.9
    scale_loss_weight: 0.2
    localization_loss {{ l1_localization_loss {{ }} }}
  }}
  keypoint_label_map_path: "{label_map_path}"
{keypoint_task}
{extra}
}}
"""


@pytest.fixture
def label_map(tmp_path):
  path = tmp_path / 'label_map.pbtxt'
  path.write_text(_LABEL_MAP)
  return str(path)


def _parse(text):
  config = model_pb2.DetectionModel()
  config_util.parse_text_proto(text, config)
  return config


def _build(text, is_training=True):
  return model_builder.build(_parse(text), is_training=is_training)


def test_full_config_maps_every_field(label_map):
  model = _build(_config_text(label_map))
  assert isinstance(model, cn.CenterNetMetaArch)
  assert model.num_classes == 2
  assert model.stride == 4
  assert model._flip_test is False
  extractor = model.feature_extractor
  assert isinstance(extractor, cnfe.CenterNetFeatureExtractor)
  assert extractor.neck.num_filters == (16, 16, 16)
  # channel_means / stds: (255 - 120) / 60 = 2.25, (0 - 110) / 50 = -2.2,
  # (100 - 100) / 40 = 0.
  image = tf.constant([[[[255.0, 0.0, 100.0]]]])
  np.testing.assert_allclose(extractor.preprocess(image).numpy().ravel(),
                             [2.25, -2.2, 0.0], rtol=1e-6)

  center = model._center_params
  assert center.object_center_loss_weight == pytest.approx(2.0)
  assert isinstance(center.classification_loss,
                    losses.PenaltyReducedLogisticFocalLoss)
  assert center.classification_loss._alpha == pytest.approx(3.0)
  assert center.classification_loss._beta == pytest.approx(5.0)
  assert center.heatmap_bias_init == pytest.approx(-1.5)
  assert center.max_box_predictions == 20
  assert center.peak_max_pool_kernel_size == 5
  assert center.center_score_threshold == pytest.approx(0.05)

  det = model._detection_params
  assert isinstance(det.localization_loss, losses.WeightedL1LocalizationLoss)
  assert (det.task_loss_weight, det.offset_loss_weight,
          det.scale_loss_weight) == pytest.approx((0.8, 0.9, 0.2))

  kp = model._keypoint_params
  assert kp.task_name == 'human_pose'
  assert kp.num_keypoints == 3
  assert kp.class_id == 0  # label-map id 1 ('person') - 1
  # nose (id 0) 0.5, left_eye (id 1) default 1.0, right_eye (id 2) 2.0.
  assert kp.keypoint_std_dev == pytest.approx([0.5, 1.0, 2.0])
  assert (kp.task_loss_weight, kp.keypoint_regression_loss_weight,
          kp.keypoint_heatmap_loss_weight,
          kp.keypoint_offset_loss_weight) == pytest.approx(
              (0.5, 0.3, 1.5, 0.7))
  assert kp.heatmap_bias_init == pytest.approx(-3.0)
  assert kp.keypoint_candidate_score_threshold == pytest.approx(0.2)
  assert kp.num_candidates_per_keypoint == 7
  assert kp.peak_max_pool_kernel_size == 5
  assert kp.unmatched_keypoint_score == pytest.approx(0.05)
  assert kp.box_scale == pytest.approx(1.5)
  assert kp.candidate_search_scale == pytest.approx(0.4)
  assert kp.candidate_ranking_mode == 'score_distance_ratio'
  assert kp.per_keypoint_offset is True
  assert kp.keypoint_flip_permutation == [0, 2, 1]

  assigner = model._target_assigner
  assert assigner.stride == 4 and assigner.num_classes == 2
  assert assigner._min_overlap == pytest.approx(0.5)
  assert assigner._keypoint_std_devs == pytest.approx([0.5, 1.0, 2.0])
  assert assigner._compute_keypoints
  assert assigner.per_keypoint_offset is True
  assert assigner._offset_peak_radius == 2

  heads = {name: h[0].num_outputs for name, h in
           model.prediction_heads.items()}
  assert heads == {cn.OBJECT_CENTER: 2, cn.BOX_SCALE: 2, cn.BOX_OFFSET: 2,
                   cn.KEYPOINT_HEATMAP: 3, cn.KEYPOINT_REGRESSION: 6,
                   cn.KEYPOINT_OFFSET: 6}  # per_keypoint_offset: 2K
  assert model.prediction_heads[cn.OBJECT_CENTER][0]._head_channels == 8
  assert not model.prediction_heads[cn.OBJECT_CENTER][0]._use_depthwise


@pytest.mark.parametrize('is_training', [True, False])
def test_built_model_runs(label_map, is_training):
  model = _build(_config_text(label_map), is_training=is_training)
  rng = np.random.default_rng(0)
  # 48x80 raw images go through the config's 64x64 resizer.
  images = tf.constant(rng.uniform(0, 255, [2, 48, 80, 3]), tf.float32)
  preprocessed, shapes = model.preprocess(images)
  assert preprocessed.shape == (2, 64, 64, 3)
  pred = model.predict(preprocessed, shapes, training=is_training)
  model.provide_groundtruth(
      [tf.constant([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.8]]),
       tf.zeros([0, 4])],
      [tf.constant([0, 1]), tf.zeros([0], tf.int32)],
      groundtruth_keypoints_list=[
          tf.constant([[[0.2, 0.2], [0.3, 0.3], [0.4, 0.35]],
                       [[0.6, 0.6], [0.7, 0.7], [0.8, 0.7]]]),
          tf.zeros([0, 3, 2])])
  out = model.loss(pred, shapes)
  assert set(out) == {
      'Loss/object_center', 'Loss/box/scale', 'Loss/box/offset',
      'Loss/human_pose/keypoint_heatmap',
      'Loss/human_pose/keypoint_regression',
      'Loss/human_pose/keypoint_offset'}
  for name, value in out.items():
    assert np.isfinite(value.numpy()) and value.numpy() > 0, name
  det = model.postprocess(pred, shapes)
  assert det[_DET.detection_boxes].shape == (2, 20, 4)
  assert det[_DET.detection_keypoints].shape == (2, 20, 3, 2)
  assert det[_DET.detection_keypoint_scores].shape == (2, 20, 3)
  # class_id 0 ('person'): detections of class 1 ('car') carry no
  # keypoints.
  classes = det[_DET.detection_classes].numpy()
  scores = det[_DET.detection_keypoint_scores].numpy()
  assert (scores[classes == 1.0] == 0.0).all()


def test_defaults_of_a_minimal_config():
  # Unset losses: penalty-reduced focal (alpha 2, beta 4) and L1; proto
  # defaults for the rest; no object_detection_task = heatmaps only.
  model = _build("""
      center_net {
        num_classes: 3
        image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
        feature_extractor {
          type: "resnet_v1_18" depth_multiplier: 0.125
          up_convolution { num_filters: [16, 16, 16] }
        }
        object_center_params { }
        flip_test: true
      }""")
  center = model._center_params
  assert isinstance(center.classification_loss,
                    losses.PenaltyReducedLogisticFocalLoss)
  assert (center.classification_loss._alpha,
          center.classification_loss._beta) == (2.0, 4.0)
  assert center.heatmap_bias_init == pytest.approx(-2.19)
  assert center.max_box_predictions == 100
  assert center.peak_max_pool_kernel_size == 3
  assert model._detection_params is None
  assert model._keypoint_params is None
  assert set(model.prediction_heads) == {cn.OBJECT_CENTER}
  assert model.prediction_heads[cn.OBJECT_CENTER][0]._head_channels == 64
  assert model._target_assigner._min_overlap == pytest.approx(0.7)
  assert model._flip_test is True
  # Empty channel_means / stds: the backbone's x / 127.5 - 1.
  np.testing.assert_allclose(
      model.feature_extractor.preprocess(tf.fill([1, 1, 1, 3], 255.0)), 1.0)
  model = _build("""
      center_net {
        num_classes: 1
        image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
        feature_extractor {
          type: "resnet_v1_18" depth_multiplier: 0.125
          up_convolution { num_filters: [16, 16, 16] }
        }
        object_center_params { }
        object_detection_task { }
      }""")
  det = model._detection_params
  assert isinstance(det.localization_loss, losses.WeightedL1LocalizationLoss)
  assert (det.task_loss_weight, det.offset_loss_weight,
          det.scale_loss_weight) == pytest.approx((1.0, 1.0, 0.1))


def test_keypoint_task_without_class_name_uses_every_class(tmp_path):
  path = tmp_path / 'map.pbtxt'
  path.write_text("""
      item { id: 1 name: "a" }
      item { id: 2 name: "b" keypoints { id: 0 label: "x" }
                             keypoints { id: 1 label: "y" } }""")
  task = """
      keypoint_estimation_task { task_name: "kp" }"""
  model = _build(_config_text(str(path), keypoint_task=task))
  kp = model._keypoint_params
  assert kp.class_id is None  # every class carries the keypoints
  assert kp.num_keypoints == 2
  assert kp.keypoint_std_dev == pytest.approx([1.0, 1.0])
  assert isinstance(kp.classification_loss,
                    losses.PenaltyReducedLogisticFocalLoss)
  assert isinstance(kp.localization_loss, losses.WeightedL1LocalizationLoss)
  assert kp.per_keypoint_offset is False
  assert model.prediction_heads[cn.KEYPOINT_OFFSET][0].num_outputs == 2


def test_hourglass_backbone_has_no_neck_and_two_stacks():
  model = _build("""
      center_net {
        num_classes: 2
        image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
        feature_extractor { type: "hourglass_small" depth_multiplier: 0.25 }
        head_channels: 8
        object_center_params { }
        object_detection_task { }
      }""")
  extractor = model.feature_extractor
  assert isinstance(extractor.backbone, hourglass.HourglassNetwork)
  assert extractor.neck is None
  assert extractor.num_feature_outputs == 2
  assert [len(h) for h in model.prediction_heads.values()] == [2, 2, 2]


def test_use_depthwise_gives_separable_head_convs():
  model = _build("""
      center_net {
        num_classes: 2
        image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
        feature_extractor {
          type: "resnet_v1_18" depth_multiplier: 0.125 use_depthwise: true
          up_convolution { num_filters: [16, 16, 16] }
        }
        head_channels: 8
        object_center_params { }
        object_detection_task { }
      }""")
  for heads in model.prediction_heads.values():
    assert isinstance(heads[0]._hidden_conv,
                      tf.keras.layers.SeparableConv2D)


@pytest.mark.parametrize('interpolation', ['nearest', 'bilinear'])
def test_hourglass_upsampling_interpolation(interpolation):
  model = _build(f"""
      center_net {{
        num_classes: 2
        image_resizer {{ fixed_shape_resizer {{ height: 64 width: 64 }} }}
        feature_extractor {{
          type: "hourglass_small" depth_multiplier: 0.25
          upsampling_interpolation: "{interpolation}"
        }}
        head_channels: 8
        object_center_params {{ }}
        object_detection_task {{ }}
      }}""")
  modules = model.feature_extractor.backbone.hourglasses
  assert all(m._interpolation == interpolation for m in modules)
  assert modules[0].inner._interpolation == interpolation


def test_flip_test_with_keypoints_needs_the_flip_permutation(label_map):
  text = _config_text(label_map, extra='flip_test: true')
  assert _build(text)._flip_test is True
  no_perm = text.replace('keypoint_flip_permutation: [0, 2, 1]', '')
  with pytest.raises(ValueError, match=r'keypoint_estimation_task\.'
                     r'keypoint_flip_permutation is required with flip_test'):
    _build(no_perm)
  with pytest.raises(ValueError, match='not a permutation of the 3'):
    _build(text.replace('keypoint_flip_permutation: [0, 2, 1]',
                        'keypoint_flip_permutation: [0, 2, 3]'))


# ------------------------------------------------------------------- errors
def _replace_extractor(label_map, extractor):
  return _config_text(label_map, extractor=extractor)


@pytest.mark.parametrize('extractor,pattern', [
    ('feature_extractor { depth_multiplier: 0.125 }',
     r'center_net\.feature_extractor\.type is empty'),
    ('feature_extractor { type: "resnet_v1_9" }',
     r"center_net\.feature_extractor\.type: unknown extractor 'resnet_v1_9'"),
    ('feature_extractor { type: "hourglass_small" '
     'up_convolution { num_filters: [16] } }',
     r'center_net\.feature_extractor\.up_convolution'),
    ('feature_extractor { type: "hourglass_small" '
     'upsampling_interpolation: "cubic" }',
     r'center_net\.feature_extractor: upsampling_interpolation must be one '
     r'of'),
    ('feature_extractor { type: "resnet_v1_18" '
     'upsampling_interpolation: "bilinear" }',
     r'center_net\.feature_extractor\.upsampling_interpolation: '
     r'resnet_v1_18 has no upsampling'),
])
def test_feature_extractor_errors_name_the_field(label_map, extractor,
                                                 pattern):
  with pytest.raises(ValueError, match=pattern):
    _build(_replace_extractor(label_map, extractor))


def test_unknown_extractor_lists_the_known_ones(label_map):
  with pytest.raises(ValueError) as info:
    _build(_replace_extractor(label_map,
                              'feature_extractor { type: "vgg7" }'))
  for known in cnfe.BACKBONES:
    assert known in str(info.value)


def test_keypoint_task_needs_a_label_map_path(label_map):
  text = _config_text(label_map).replace(
      f'keypoint_label_map_path: "{label_map}"', '')
  with pytest.raises(ValueError, match=r'center_net\.keypoint_label_map_path'):
    _build(text)


def test_missing_label_map_file_names_the_path(tmp_path):
  missing = str(tmp_path / 'nope.pbtxt')
  with pytest.raises((FileNotFoundError, ValueError), match='nope.pbtxt'):
    _build(_config_text(missing))


def test_keypoint_label_to_std_with_unknown_keypoint(label_map):
  task = _KEYPOINT_TASK.replace('key: "nose"', 'key: "tail"')
  with pytest.raises(ValueError, match='keypoint_label_to_std') as info:
    _build(_config_text(label_map, keypoint_task=task))
  assert 'tail' in str(info.value)


def test_two_keypoint_tasks_are_rejected(label_map):
  with pytest.raises(ValueError, match='keypoint_estimation_task'):
    _build(_config_text(label_map,
                        keypoint_task=_KEYPOINT_TASK + _KEYPOINT_TASK))


def test_keypoint_class_name_not_in_the_label_map(label_map):
  task = _KEYPOINT_TASK.replace('"person"', '"horse"')
  with pytest.raises(ValueError, match='keypoint_class_name') as info:
    _build(_config_text(label_map, keypoint_task=task))
  assert 'horse' in str(info.value)


def test_keypoint_class_without_keypoints(label_map):
  task = _KEYPOINT_TASK.replace('"person"', '"car"')
  with pytest.raises(ValueError, match='no keypoints'):
    _build(_config_text(label_map, keypoint_task=task))


def test_keypoint_class_id_outside_num_classes(tmp_path):
  path = tmp_path / 'map.pbtxt'
  path.write_text('item { id: 5 name: "person" '
                  'keypoints { id: 0 label: "nose" } }')
  with pytest.raises(ValueError, match='keypoint_class_name'):
    _build(_config_text(str(path)))


def test_bad_num_classes_and_missing_object_center_params(label_map):
  text = _config_text(label_map).replace('num_classes: 2', 'num_classes: 0')
  with pytest.raises(ValueError, match=r'center_net\.num_classes'):
    _build(text)
  config = _parse(_config_text(label_map))
  config.center_net.ClearField('object_center_params')
  with pytest.raises(ValueError, match=r'center_net\.object_center_params'):
    model_builder.build(config, is_training=True)


@pytest.mark.parametrize('where,loss', [
    ('object_center_params', 'weighted_sigmoid'),
    ('object_center_params', 'weighted_sigmoid_focal'),
    ('keypoint_estimation_task.loss', 'weighted_softmax'),
])
def test_heatmap_loss_must_be_a_heatmap_loss(label_map, where, loss):
  # A per-anchor classification loss cannot score [B, h, w, C] heatmaps
  # (it checks for rank 3); the builder must say so, naming the field,
  # instead of the first loss call failing.
  config = _parse(_config_text(label_map))
  message = config.center_net
  for part in where.split('.'):
    message = getattr(message, part)
    if part == 'keypoint_estimation_task':
      message = message[0]
  message.classification_loss.Clear()
  getattr(message.classification_loss, loss).SetInParent()
  with pytest.raises(ValueError,
                     match=rf'{where}\.classification_loss'):
    model_builder.build(config, is_training=True)


def test_size_offset_loss_must_be_a_code_loss(label_map):
  config = _parse(_config_text(label_map))
  config.center_net.object_detection_task.localization_loss.weighted_giou.\
      SetInParent()
  with pytest.raises(ValueError,
                     match=r'object_detection_task\.localization_loss'):
    model_builder.build(config, is_training=True)


def test_wrong_message_types():
  with pytest.raises(TypeError, match='CenterNet'):
    center_net_builder.build(model_pb2.DetectionModel(), is_training=True)
  with pytest.raises(TypeError, match='CenterNetFeatureExtractor'):
    center_net_builder.build_feature_extractor(center_net_pb2.CenterNet())


def test_relative_label_map_path_is_relative_to_the_working_directory(
    label_map, monkeypatch):
  monkeypatch.chdir(os.path.dirname(label_map))
  model = _build(_config_text('label_map.pbtxt'))
  assert model._keypoint_params.num_keypoints == 3
