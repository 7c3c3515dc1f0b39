"""Tests of od_meta.builders.fcos_builder, target_assigner_builder and the
`target_assigner` field of the SSD builder.

Text-format `DetectionModel` configs are parsed with config_util and built
through model_builder. Every bad value raises one ValueError naming its
field; every default of `Fcos` builds (an omitted target_assigner is the
FCOS rule with the paper's 5-level size ranges, so it needs 5 FPN levels).
The example config configs/fcos_mobilenet_v2_fpn_digits.config builds at
64x64. The SSD builder takes `target_assigner { atss {} }` instead of
`matcher` + `similarity_calculator` (RetinaNet with ATSS).

At 64x64 the MobileNetV2 FPN levels 3..5 are 8x8, 4x4, 2x2 maps: 84
locations for FCOS, and 84 x 6 = 504 anchors for the multiscale generator
(3 aspect ratios x 2 scales per octave).
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import fcos_builder
from od_meta.builders import model_builder
from od_meta.builders import target_assigner_builder
from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_list
from od_meta.core import losses
from od_meta.heads import fcos_head
from od_meta.meta_architectures import fcos_meta_arch
from od_meta.meta_architectures import ssd_meta_arch
from od_meta.protos import model_pb2
from od_meta.protos import target_assigner_pb2
from od_meta.target_assigners import atss_target_assigner
from od_meta.target_assigners import fcos_target_assigner
from od_meta.target_assigners import sapd_target_assigner
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_SIZE = 64

_POST = """
  post_processing {
    batch_non_max_suppression {
      score_threshold: 0.05 iou_threshold: 0.6
      max_detections_per_class: 10 max_total_detections: 10
    }
    score_converter: SIGMOID
  }
"""
_HEAD = 'head { depth: 16 group_norm_groups: 4 num_layers_before_predictor: 1 }'
_RANGES = 'target_assigner { fcos { size_ranges: [0, 16, 32, -1] } }'


def _fcos_text(*, num_classes=4, extractor_type='ssd_mobilenet_v2_fpn_keras',
               fpn='fpn { min_level: 3 max_level: 5 '
                   'additional_layer_depth: 16 }',
               assigner=_RANGES, head=_HEAD, post=_POST, extra='',
               resizer=True):
  resizer_text = (f'image_resizer {{ fixed_shape_resizer {{ height: {_SIZE} '
                  f'width: {_SIZE} }} }}' if resizer else '')
  return f"""
fcos {{
  num_classes: {num_classes}
  {resizer_text}
  feature_extractor {{
    type: "{extractor_type}"
    depth_multiplier: 0.35
    min_depth: 8
    weights: ""
    {fpn}
  }}
  {assigner}
  {head}
  {post}
  {extra}
}}
"""


def _parse(text):
  config = model_pb2.DetectionModel()
  config_util.parse_text_proto(text, config)
  return config


def _build(text, is_training=True):
  return model_builder.build(_parse(text), is_training=is_training)


def _loss_call(model, batch=1):
  """preprocess / predict / loss on random images with two boxes."""
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(0, 255, [batch, _SIZE, _SIZE, 3]),
                       tf.float32)
  preprocessed, true_shapes = model.preprocess(images)
  pred = model.predict(preprocessed, true_shapes, training=True)
  model.provide_groundtruth(
      [tf.constant([[0.1, 0.1, 0.5, 0.6], [0.5, 0.4, 0.95, 0.9]])] * batch,
      [tf.constant([1, 3])] * batch)
  return pred, model.loss(pred, true_shapes)


# ---------------------------------------------------------------- mapping
def test_fields_are_mapped():
  model = _build(_fcos_text(extra="""
      classification_loss_weight: 2.0
      localization_loss_weight: 3.0
      centerness_loss_weight: 0.5
      pre_nms_top_k_per_level: 7
      classification_loss { weighted_sigmoid_focal { gamma: 1.5 alpha: 0.5 } }
      localization_loss { weighted_giou { } }"""))
  assert isinstance(model, fcos_meta_arch.FCOSMetaArch)
  assert model.num_classes == 4
  params = model.params
  assert params.classification_loss_weight == 2.0
  assert params.localization_loss_weight == 3.0
  assert params.centerness_loss_weight == 0.5
  assert params.pre_nms_top_k_per_level == 7
  assert params.use_centerness
  assert params.soft_level_selection is None
  assert isinstance(params.classification_loss,
                    losses.SigmoidFocalClassificationLoss)
  assert isinstance(params.localization_loss,
                    losses.WeightedGIOULocalizationLoss)
  assert isinstance(model.box_predictor, fcos_head.FCOSHead)
  assert model.box_predictor.num_class_slots == 4
  assert model.box_predictor.num_predictions_per_location_list == [1, 1, 1]
  assert model.feature_extractor.feature_map_strides == [8, 16, 32]
  assigner = model._target_assigner  # pylint: disable=protected-access
  assert isinstance(assigner, fcos_target_assigner.FCOSTargetAssigner)
  coder = model._box_coder  # pylint: disable=protected-access
  assert isinstance(coder, ltrb_distance_box_coder.LtrbDistanceBoxCoder)
  # Codes in strides: the anchor-size normalization is on.
  anchor = tf.constant([[0., 0., 8., 8.]])
  codes = coder.encode(box_list.BoxList(tf.constant([[0., 0., 12., 12.]])),
                       box_list.BoxList(anchor))
  np.testing.assert_allclose(codes.numpy(), [[0.5, 0.5, 1., 1.]])


def test_every_fcos_default_builds_with_five_levels():
  # Only num_classes, image_resizer, feature_extractor (P3-P7) and
  # post_processing: the FCOS rule with the paper's ranges, the paper's
  # head (256 channels, 4 convs, GN 32), focal + IoU losses.
  text = _fcos_text(fpn='fpn { min_level: 3 max_level: 7 }', assigner='',
                    head='')
  model = _build(text)
  assigner = model._target_assigner  # pylint: disable=protected-access
  assert isinstance(assigner, fcos_target_assigner.FCOSTargetAssigner)
  assert assigner._size_ranges == [  # pylint: disable=protected-access
      0.0, 64.0, 128.0, 256.0, 512.0, math.inf]
  assert assigner._center_sampling_radius == 0.0  # pylint: disable=protected-access
  params = model.params
  assert isinstance(params.classification_loss,
                    losses.SigmoidFocalClassificationLoss)
  assert isinstance(params.localization_loss,
                    losses.WeightedIOULocalizationLoss)
  assert params.pre_nms_top_k_per_level == 1000
  assert params.use_centerness
  assert (params.classification_loss_weight ==
          params.localization_loss_weight ==
          params.centerness_loss_weight == 1.0)
  head = model.box_predictor
  assert head.predict_centerness
  assert head.num_predictions_per_location_list == [1] * 5
  pred, loss = _loss_call(model)
  assert pred['box_encodings'].shape == (1, 64 + 16 + 4 + 1 + 1, 4)
  assert set(loss) == {'Loss/classification_loss', 'Loss/localization_loss',
                       'Loss/centerness_loss'}
  for name, value in loss.items():
    assert np.isfinite(value.numpy()), name


@pytest.mark.parametrize('assigner,cls', [
    ('target_assigner { fcos { } }', fcos_target_assigner.FCOSTargetAssigner),
    ('target_assigner { atss { } }', atss_target_assigner.ATSSTargetAssigner),
    ('target_assigner { sapd { } }', sapd_target_assigner.SAPDTargetAssigner),
])
def test_default_assigner_messages_build_with_five_levels(assigner, cls):
  # ATSS needs >= 9 anchors on every level at a static input size: at 64 px
  # P6 / P7 are 1x1, so the images are 384 px here (P7 3x3).
  extra = ''
  if 'atss' in assigner:
    extra = ('image_resizer { fixed_shape_resizer { height: 384 '
             'width: 384 } }')
  model = _build(_fcos_text(fpn='fpn { min_level: 3 max_level: 7 }',
                            assigner=assigner, resizer=not extra,
                            extra=extra))
  assert isinstance(model._target_assigner, cls)  # pylint: disable=protected-access


def test_missing_ranges_with_three_levels_names_size_ranges():
  with pytest.raises(ValueError, match='size_ranges') as info:
    _build(_fcos_text(assigner=''))
  assert 'fcos.target_assigner.fcos.size_ranges' in str(info.value)
  with pytest.raises(ValueError, match='fcos.target_assigner.sapd.size_ranges'):
    _build(_fcos_text(assigner='target_assigner { sapd { } }'))


def test_example_config_builds_and_takes_a_loss_call():
  path = os.path.join(_REPO, 'configs', 'fcos_mobilenet_v2_fpn_digits.config')
  configs = config_util.get_configs_from_pipeline_file(path)
  configs = config_util.merge_external_params_with_configs(configs, {
      'model.fcos.image_resizer':
          f'fixed_shape_resizer {{ height: {_SIZE} width: {_SIZE} }}',
      'model.fcos.head.num_layers_before_predictor': 1,
  })
  model = model_builder.build(configs['model'], is_training=True)
  assert isinstance(model, fcos_meta_arch.FCOSMetaArch)
  assert model.num_classes == 10
  _, loss = _loss_call(model)
  for name, value in loss.items():
    assert np.isfinite(value.numpy()), name
    assert value.numpy() > 0.0, name


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize('text,field', [
    (_fcos_text(assigner='target_assigner { fcos { size_ranges: '
                '[0, 16, -1] } }'), 'size_ranges'),
    (_fcos_text(assigner='target_assigner { fcos { size_ranges: '
                '[0, 16, 32, 64, -1] } }'), 'size_ranges'),
    (_fcos_text(assigner='target_assigner { fcos { size_ranges: '
                '[0, 32, 16, -1] } }'), 'size_ranges'),
    (_fcos_text(assigner='target_assigner { sapd { size_ranges: '
                '[0, 16, -1] } }'), 'sapd.size_ranges'),
    (_fcos_text(fpn='fpn { min_level: 5 max_level: 3 }'), 'min_level'),
    (_fcos_text(fpn='fpn { min_level: 1 max_level: 3 }'),
     'fcos.feature_extractor'),
    (_fcos_text(fpn=''), 'fcos.feature_extractor.fpn'),
    (_fcos_text(post=_POST.replace('SIGMOID', 'SOFTMAX')),
     'score_converter'),
    (_fcos_text(post=_POST.replace('score_converter: SIGMOID', '')),
     'score_converter'),
    (_fcos_text(extra='classification_loss { weighted_softmax { } }'),
     'fcos.classification_loss'),
    (_fcos_text(extra='localization_loss { weighted_smooth_l1 { } }'),
     'fcos.localization_loss'),
    (_fcos_text(extra='soft_level_selection { depth: 8 }'),
     'fcos.soft_level_selection'),
    (_fcos_text(assigner='target_assigner { sapd { size_ranges: '
                '[0, 16, 32, -1] } }',
                extra='soft_level_selection { depth: 8 }'),
     'num_levels_per_box'),
    (_fcos_text(assigner='target_assigner { sapd { size_ranges: '
                '[0, 16, 32, -1] num_levels_per_box: 4 } }'),
     'num_levels_per_box'),
    (_fcos_text(assigner='target_assigner { sapd { size_ranges: '
                '[0, 16, 32, -1] num_levels_per_box: 0 } }',
                extra='soft_level_selection { num_selected_levels: 4 }'),
     'num_selected_levels'),
    (_fcos_text(assigner='target_assigner { atss { top_k: 0 } }'), 'top_k'),
    (_fcos_text(assigner='target_assigner { atss { top_k: 4 anchor_scale: 0 } }'),
     'anchor_scale'),
    (_fcos_text(assigner='target_assigner { fcos { size_ranges: '
                '[0, 16, 32, -1] center_sampling_radius: -1 } }'),
     'center_sampling_radius'),
    (_fcos_text(assigner='target_assigner { }'), 'target_assigner'),
    (_fcos_text(num_classes=0), 'fcos.num_classes'),
    (_fcos_text(post=''), 'fcos.post_processing'),
    (_fcos_text(resizer=False), 'fcos.image_resizer'),
    (_fcos_text(extra='pre_nms_top_k_per_level: 0'),
     'pre_nms_top_k_per_level'),
    (_fcos_text(head='head { depth: 16 group_norm_groups: 5 }'), 'fcos.head'),
    (_fcos_text(head='head { depth: 16 group_norm_groups: 4 '
                'class_prior_probability: 0 }'), 'class_prior_probability'),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_bad_config_raises_naming_the_field(text, field):
  with pytest.raises(ValueError) as info:
    _build(text)
  assert field in str(info.value)


def test_missing_feature_extractor_is_named():
  config = _parse(_fcos_text())
  config.fcos.ClearField('feature_extractor')
  with pytest.raises(ValueError, match='fcos.feature_extractor'):
    model_builder.build(config, is_training=True)


def test_non_fpn_extractor_is_rejected():
  # ssd_mobilenet_v2_keras has no FPN levels: the strides do not match.
  with pytest.raises(ValueError, match='fcos.feature_extractor'):
    _build(_fcos_text(extractor_type='ssd_mobilenet_v2_keras',
                      fpn='fpn { min_level: 3 max_level: 5 }'))


def test_atss_top_k_larger_than_a_level_fails_at_build_time():
  # 64 px fixed: P5 is 2x2 = 4 locations < top_k 9.
  with pytest.raises(ValueError,
                     match=r'fcos\.target_assigner\.atss\.top_k \(9\).* 4 '
                     r'anchors of level 2 \(stride 32\)'):
    _build(_fcos_text(assigner='target_assigner { atss { top_k: 9 } }'))


def test_builder_rejects_wrong_message_type():
  with pytest.raises(TypeError):
    fcos_builder.build(model_pb2.DetectionModel(), is_training=True)
  with pytest.raises(TypeError):
    target_assigner_builder.build(model_pb2.DetectionModel(), box_coder=None)


# ---------------------------------------------------- target_assigner_builder
def test_target_assigner_builder_size_ranges():
  build = target_assigner_builder.size_ranges
  assert build([], 5, 'f') == [0.0, 64.0, 128.0, 256.0, 512.0, math.inf]
  assert build([], None, 'f') == [0.0, 64.0, 128.0, 256.0, 512.0, math.inf]
  assert build([0, 10, 20, -1], 3, 'f') == [0.0, 10.0, 20.0, math.inf]
  with pytest.raises(ValueError, match='my.field'):
    build([], 3, 'my.field')
  with pytest.raises(ValueError, match='my.field'):
    build([0, 10, -1], 3, 'my.field')
  with pytest.raises(ValueError, match='my.field'):
    build([0, 10, 10, -1], 3, 'my.field')


def test_target_assigner_builder_maps_fields():
  coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder(
      normalize_by_anchor_size=True)
  config = target_assigner_pb2.TargetAssigner()
  config_util.parse_text_proto('atss { top_k: 5 anchor_scale: 8 }', config)
  assigner = target_assigner_builder.build(config, box_coder=coder,
                                           num_levels=3,
                                           negative_class_weight=0.5)
  assert isinstance(assigner, atss_target_assigner.ATSSTargetAssigner)
  assert assigner._top_k == 5  # pylint: disable=protected-access
  assert assigner._anchor_scale == 8.0  # pylint: disable=protected-access
  assert assigner._negative_class_weight == 0.5  # pylint: disable=protected-access
  assert assigner.box_coder is coder
  config = target_assigner_pb2.TargetAssigner()
  config_util.parse_text_proto(
      'fcos { size_ranges: [0, 8, -1] center_sampling_radius: 1.5 }', config)
  assigner = target_assigner_builder.build(config, box_coder=coder,
                                           num_levels=2)
  assert isinstance(assigner, fcos_target_assigner.FCOSTargetAssigner)
  assert assigner._center_sampling_radius == 1.5  # pylint: disable=protected-access
  with pytest.raises(ValueError, match='target_assigner is empty'):
    target_assigner_builder.build(target_assigner_pb2.TargetAssigner(),
                                  box_coder=coder)


# ---------------------------------------------------------------- SSD + ATSS
def _ssd_text(*, matcher=True, similarity=True, assigner=''):
  matcher_text = """
    matcher { argmax_matcher { matched_threshold: 0.5
                               unmatched_threshold: 0.5 } }""" if matcher else ''
  similarity_text = ('similarity_calculator { iou_similarity { } }'
                     if similarity else '')
  return f"""
ssd {{
  num_classes: 4
  image_resizer {{ fixed_shape_resizer {{ height: {_SIZE} width: {_SIZE} }} }}
  feature_extractor {{
    type: "ssd_mobilenet_v2_fpn_keras"
    depth_multiplier: 0.35
    min_depth: 8
    weights: ""
    fpn {{ min_level: 3 max_level: 5 additional_layer_depth: 16 }}
  }}
  box_coder {{ faster_rcnn_box_coder {{ }} }}
  {matcher_text}
  {similarity_text}
  {assigner}
  anchor_generator {{
    multiscale_anchor_generator {{
      min_level: 3 max_level: 5 anchor_scale: 2.0
      aspect_ratios: [1.0, 0.75, 0.5] scales_per_octave: 2
      normalize_coordinates: true
    }}
  }}
  box_predictor {{
    weight_shared_convolutional_box_predictor {{
      depth: 16 num_layers_before_predictor: 1 kernel_size: 3
      box_code_size: 4 class_prediction_bias_init: -4.6
    }}
  }}
  encode_background_as_zeros: true
  normalize_loss_by_num_matches: true
  loss {{
    localization_loss {{ weighted_smooth_l1 {{ }} }}
    classification_loss {{ weighted_sigmoid_focal {{ gamma: 2.0 alpha: 0.25 }} }}
  }}
  {_POST}
}}
"""


def test_ssd_with_atss_and_a_matcher_raises_naming_the_matcher():
  with pytest.raises(ValueError, match=r'ssd\.matcher'):
    _build(_ssd_text(assigner='target_assigner { atss { } }'))
  with pytest.raises(ValueError, match=r'ssd\.similarity_calculator'):
    _build(_ssd_text(matcher=False,
                     assigner='target_assigner { atss { } }'))


def test_ssd_without_matcher_or_assigner_still_names_the_matcher():
  with pytest.raises(ValueError, match=r'ssd\.matcher'):
    _build(_ssd_text(matcher=False, similarity=False))


def test_ssd_retinanet_with_atss_builds_and_takes_a_loss_call():
  model = _build(_ssd_text(matcher=False, similarity=False,
                           assigner='target_assigner { atss { top_k: 3 } }'))
  assert type(model) is ssd_meta_arch.SSDMetaArch  # pylint: disable=unidiomatic-typecheck
  assigner = model._target_assigner  # pylint: disable=protected-access
  assert isinstance(assigner, atss_target_assigner.ATSSTargetAssigner)
  assert assigner._top_k == 3  # pylint: disable=protected-access
  assert assigner.box_coder is model._box_coder  # pylint: disable=protected-access
  pred, loss = _loss_call(model, batch=2)
  assert pred['box_encodings'].shape == (2, 504, 4)
  assert set(loss) == {'Loss/classification_loss', 'Loss/localization_loss'}
  for name, value in loss.items():
    assert np.isfinite(value.numpy()), name
    assert value.numpy() > 0.0, name


def test_ssd_atss_bad_value_names_the_ssd_field():
  with pytest.raises(ValueError, match=r'ssd\.target_assigner\.atss\.top_k'):
    _build(_ssd_text(matcher=False, similarity=False,
                     assigner='target_assigner { atss { top_k: 0 } }'))
