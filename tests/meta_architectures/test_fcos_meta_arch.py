"""Tests of od_meta.meta_architectures.fcos_meta_arch (FCOS, ATSS, SAPD).

A tiny FCOS is built from a text-format `DetectionModel { fcos { ... } }`
through `model_builder`: MobileNetV2 x0.35 + FPN P3-P5 (16 channels), head
depth 16 (group norm, 4 groups, one conv per tower), 64x64 inputs, 4
classes. At 64x64 the levels are 8x8 (stride 8, anchors 0..63), 4x4
(stride 16, anchors 64..79) and 2x2 (stride 32, anchors 80..83): 84 points.

Planted decoding: stride-8 location (y, x) = (2, 3), anchor index
2 * 8 + 3 = 19, has its center at (2 * 8 + 4, 3 * 8 + 4) = (20, 28) px.
Codes [t, l, b, r] = [1, 1, 2, 2] strides = [8, 8, 16, 16] px give the box
[20 - 8, 28 - 8, 20 + 16, 28 + 16] = [12, 20, 36, 44] px, i.e.
[0.1875, 0.3125, 0.5625, 0.6875] of the 64x64 image. Its score is
sigmoid(class logit) x sigmoid(centerness logit).
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.core import standard_fields as fields
from od_meta.meta_architectures import fcos_meta_arch
from od_meta.protos import model_pb2
from od_meta.utils import config_util

_DET = fields.DetectionResultFields
_SIZE = 64
_NUM_CLASSES = 4
_NUM_ANCHORS = 64 + 16 + 4

_FCOS_ASSIGNER = ('target_assigner { fcos { size_ranges: [0, 16, 32, -1] '
                  'center_sampling_radius: 1.5 } }')
_HEAD = 'head { depth: 16 group_norm_groups: 4 num_layers_before_predictor: 1 }'


def _config_text(assigner=_FCOS_ASSIGNER, head=_HEAD, extra='',
                 score_threshold=0.0, max_total=10):
  return f"""
fcos {{
  num_classes: {_NUM_CLASSES}
  image_resizer {{ fixed_shape_resizer {{ height: {_SIZE} width: {_SIZE} }} }}
  feature_extractor {{
    type: "ssd_mobilenet_v2_fpn_keras"
    depth_multiplier: 0.35
    min_depth: 8
    weights: ""
    fpn {{ min_level: 3 max_level: 5 additional_layer_depth: 16 }}
  }}
  {assigner}
  {head}
  localization_loss {{ weighted_giou {{ }} }}
  post_processing {{
    batch_non_max_suppression {{
      score_threshold: {score_threshold}
      iou_threshold: 0.6
      max_detections_per_class: {max_total}
      max_total_detections: {max_total}
    }}
    score_converter: SIGMOID
  }}
  {extra}
}}
"""


def _build(text, is_training=True):
  config = model_pb2.DetectionModel()
  config_util.parse_text_proto(text, config)
  return model_builder.build(config, is_training=is_training)


def _images(batch=2, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(0, 255, [batch, _SIZE, _SIZE, 3]),
                     tf.float32)


_BOXES = [tf.constant([[0.1, 0.1, 0.5, 0.6], [0.45, 0.5, 0.95, 0.9],
                       [0.05, 0.6, 0.3, 0.95]]),
          tf.zeros([0, 4])]
_CLASSES = [tf.constant([1, 3, 0]), tf.zeros([0], tf.int32)]


def _train_step(model, boxes=None, classes=None, batch=2):
  """One forward / backward pass; returns (losses, grads, variables)."""
  boxes = _BOXES if boxes is None else boxes
  classes = _CLASSES if classes is None else classes
  preprocessed, true_shapes = model.preprocess(_images(batch))
  with tf.GradientTape() as tape:
    pred = model.predict(preprocessed, true_shapes, training=True)
    model.provide_groundtruth(boxes, classes)
    losses = model.loss(pred, true_shapes)
    total = tf.add_n(list(losses.values()))
  variables = model.trainable_variables
  grads = tape.gradient(total, variables)
  return pred, losses, grads, variables


def _check_gradients(grads, variables):
  missing = [v.name for v, g in zip(variables, grads) if g is None]
  assert not missing, f'no gradient for {missing}'
  for v, g in zip(variables, grads):
    assert np.isfinite(tf.convert_to_tensor(g).numpy()).all(), v.name


# ------------------------------------------------------------ centerness
def test_centerness_target_golden_values():
  targets = tf.constant([
      [2., 2., 2., 2.],     # centered: 1
      [1., 2., 3., 6.],     # sqrt(min(2,6)/max(2,6) * min(1,3)/max(1,3))
      [0., 2., 3., 6.],     # a zero distance: 0
      [-1., 2., 3., 6.],    # outside the box: 0
      [4., 1., 4., 3.],     # sqrt(1/3 * 1) = 0.57735
      [0., 0., 0., 0.],     # all zero: 0, not NaN
  ])
  out = fcos_meta_arch.centerness_target(targets).numpy()
  np.testing.assert_allclose(
      out, [1., 1. / 3., 0., 0., math.sqrt(1. / 3.), 0.], rtol=1e-6,
      atol=1e-7)
  # Unit-free and batched over leading dimensions.
  batched = fcos_meta_arch.centerness_target(
      tf.reshape(targets * 8.0, [2, 3, 4])).numpy()
  np.testing.assert_allclose(batched.reshape(-1), out, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------ training
def test_fcos_train_step_losses_and_gradients():
  model = _build(_config_text())
  assert isinstance(model, fcos_meta_arch.FCOSMetaArch)
  assert model.params.use_centerness
  pred, losses, grads, variables = _train_step(model)
  assert pred['box_encodings'].shape == (2, _NUM_ANCHORS, 4)
  assert pred['class_predictions_with_background'].shape == (
      2, _NUM_ANCHORS, _NUM_CLASSES)
  assert pred['centerness'].shape == (2, _NUM_ANCHORS, 1)
  assert pred['anchors'].shape == (_NUM_ANCHORS, 4)
  assert [l.stride for l in model.anchor_levels] == [8, 16, 32]
  assert [l.num_anchors for l in model.anchor_levels] == [64, 16, 4]
  assert set(losses) == {'Loss/classification_loss',
                         'Loss/localization_loss', 'Loss/centerness_loss'}
  for name, value in losses.items():
    assert np.isfinite(value.numpy()), name
    assert value.numpy() > 0.0, name
  _check_gradients(grads, variables)
  # The optimizer step changes the variables.
  before = [v.numpy().copy() for v in variables]
  tf.keras.optimizers.SGD(0.01).apply_gradients(zip(grads, variables))
  assert any(not np.array_equal(b, v.numpy())
             for b, v in zip(before, variables))


def test_empty_groundtruth():
  model = _build(_config_text())
  # Whole batch empty: no positives, only the classification term.
  empty_boxes = [tf.zeros([0, 4]), tf.zeros([0, 4])]
  empty_classes = [tf.zeros([0], tf.int32), tf.zeros([0], tf.int32)]
  _, losses, grads, variables = _train_step(model, empty_boxes,
                                            empty_classes)
  for name, value in losses.items():
    assert np.isfinite(value.numpy()), name
  assert losses['Loss/classification_loss'].numpy() > 0.0
  assert losses['Loss/localization_loss'].numpy() == 0.0
  assert losses['Loss/centerness_loss'].numpy() == 0.0
  for v, g in zip(variables, grads):
    if g is not None:
      assert np.isfinite(tf.convert_to_tensor(g).numpy()).all(), v.name


# ------------------------------------------------------------ decoding
def _planted_predictions(model, batch=1):
  """predict() on zeros, with the three outputs replaced by planted ones:
  every location class logit -10, box codes 0.25, centerness 0."""
  preprocessed, true_shapes = model.preprocess(tf.zeros(
      [batch, _SIZE, _SIZE, 3]))
  pred = model.predict(preprocessed, true_shapes, training=False)
  cls = np.full([batch, _NUM_ANCHORS, _NUM_CLASSES], -10.0, np.float32)
  codes = np.full([batch, _NUM_ANCHORS, 4], 0.25, np.float32)
  ctr = np.zeros([batch, _NUM_ANCHORS, 1], np.float32)
  return pred, true_shapes, cls, codes, ctr


def _postprocess(model, pred, true_shapes, cls, codes, ctr):
  pred = dict(pred)
  pred['class_predictions_with_background'] = tf.constant(cls)
  pred['box_encodings'] = tf.constant(codes)
  pred['centerness'] = tf.constant(ctr)
  return {k: v.numpy() for k, v in model.postprocess(pred,
                                                     true_shapes).items()}


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def test_planted_ltrb_location_is_decoded():
  model = _build(_config_text(score_threshold=0.05), is_training=False)
  pred, true_shapes, cls, codes, ctr = _planted_predictions(model)
  index = 2 * 8 + 3
  cls[0, index, 3] = 5.0
  codes[0, index] = [1., 1., 2., 2.]
  ctr[0, index, 0] = 2.0
  det = _postprocess(model, pred, true_shapes, cls, codes, ctr)
  assert det[_DET.num_detections][0] == 1.0
  np.testing.assert_allclose(det[_DET.detection_boxes][0, 0],
                             [0.1875, 0.3125, 0.5625, 0.6875], atol=1e-6)
  assert det[_DET.detection_classes][0, 0] == 3.0
  expected_score = _sigmoid(5.0) * _sigmoid(2.0)
  np.testing.assert_allclose(det[_DET.detection_scores][0, 0],
                             expected_score, rtol=1e-5)
  assert det[_DET.detection_anchor_indices][0, 0] == index
  multiclass = det[_DET.detection_multiclass_scores][0, 0]
  np.testing.assert_allclose(multiclass[3], expected_score, rtol=1e-5)
  np.testing.assert_allclose(multiclass[:3],
                             _sigmoid(-10.0) * _sigmoid(2.0), rtol=1e-4)
  # Raw outputs: every location, scores already multiplied by centerness.
  raw_scores = det[_DET.raw_detection_scores]
  assert raw_scores.shape == (1, _NUM_ANCHORS, _NUM_CLASSES)
  np.testing.assert_allclose(raw_scores[0, index, 3], expected_score,
                             rtol=1e-5)
  np.testing.assert_allclose(raw_scores[0, 0, 0], _sigmoid(-10.0) * 0.5,
                             rtol=1e-4)
  raw_boxes = det[_DET.raw_detection_boxes]
  assert raw_boxes.shape == (1, _NUM_ANCHORS, 4)
  np.testing.assert_allclose(raw_boxes[0, index],
                             [0.1875, 0.3125, 0.5625, 0.6875], atol=1e-6)
  # Location 0 with codes 0.25: center (4, 4) px +- 2 px.
  np.testing.assert_allclose(raw_boxes[0, 0],
                             np.array([2., 2., 6., 6.]) / 64, atol=1e-6)


def test_planted_location_on_a_coarser_level_and_true_window():
  # Stride-16 location (1, 2): index 64 + 1 * 4 + 2 = 70, center (24, 40)
  # px; codes [1, 1, 1, 1] strides -> [8, 24, 40, 56] px. With a true
  # window of 48 x 64 px the detection is normalized to the window:
  # [8 / 48, 24 / 64, 40 / 48, 56 / 64].
  model = _build(_config_text(score_threshold=0.05), is_training=False)
  pred, _, cls, codes, ctr = _planted_predictions(model)
  index = 64 + 1 * 4 + 2
  cls[0, index, 1] = 4.0
  codes[0, index] = [1., 1., 1., 1.]
  det = _postprocess(model, pred, tf.constant([[48, 64, 3]]), cls, codes,
                     ctr)
  assert det[_DET.num_detections][0] == 1.0
  assert det[_DET.detection_classes][0, 0] == 1.0
  assert det[_DET.detection_anchor_indices][0, 0] == index
  np.testing.assert_allclose(det[_DET.detection_boxes][0, 0],
                             [8. / 48, 24. / 64, 40. / 48, 56. / 64],
                             atol=1e-6)
  np.testing.assert_allclose(det[_DET.detection_scores][0, 0],
                             _sigmoid(4.0) * 0.5, rtol=1e-5)


def _five_level3_candidates(cls, codes):
  """Five well separated stride-8 locations with class-0 logits 5..1
  (small 4x4 px boxes, so NMS keeps all of them)."""
  locations = [(0, 0), (2, 2), (4, 4), (6, 6), (0, 6)]
  indices = [y * 8 + x for y, x in locations]
  for rank, index in enumerate(indices):
    cls[0, index, 0] = 5.0 - rank
  return indices


def test_pre_nms_top_k_per_level_limits_candidates():
  text = _config_text(score_threshold=0.05,
                      extra='pre_nms_top_k_per_level: 2')
  model = _build(text, is_training=False)
  assert model.params.pre_nms_top_k_per_level == 2
  pred, true_shapes, cls, codes, ctr = _planted_predictions(model)
  indices = _five_level3_candidates(cls, codes)
  # Plus one candidate on the 2x2 level (whose 4 locations fit any k >= 4).
  cls[0, 80 + 3, 2] = 3.0
  det = _postprocess(model, pred, true_shapes, cls, codes, ctr)
  num = int(det[_DET.num_detections][0])
  kept = set(det[_DET.detection_anchor_indices][0, :num].tolist())
  # Level 3 keeps its 2 best locations only; the P5 one survives.
  assert kept == {indices[0], indices[1], 83}

  # The default (1000) keeps all five.
  model = _build(_config_text(score_threshold=0.05), is_training=False)
  pred, true_shapes, cls, codes, ctr = _planted_predictions(model)
  indices = _five_level3_candidates(cls, codes)
  det = _postprocess(model, pred, true_shapes, cls, codes, ctr)
  num = int(det[_DET.num_detections][0])
  assert set(det[_DET.detection_anchor_indices][0, :num].tolist()) == set(
      indices)
  scores = det[_DET.detection_scores][0, :num]
  np.testing.assert_allclose(
      scores, [_sigmoid(5.0 - r) * 0.5 for r in range(5)], rtol=1e-5)


def test_detection_padding_rows_are_zero():
  # Rows at and beyond num_detections are padding; post_processing documents
  # them as all zeros, anchor indices included.
  model = _build(_config_text(score_threshold=0.05), is_training=False)
  pred, true_shapes, cls, codes, ctr = _planted_predictions(model)
  cls[0, 19, 3] = 5.0
  det = _postprocess(model, pred, true_shapes, cls, codes, ctr)
  num = int(det[_DET.num_detections][0])
  assert num == 1
  assert (det[_DET.detection_scores][0, num:] == 0).all()
  assert (det[_DET.detection_boxes][0, num:] == 0).all()
  assert (det[_DET.detection_anchor_indices][0, num:] == 0).all()


def test_postprocess_of_a_real_prediction_in_graph():
  model = _build(_config_text(), is_training=False)

  @tf.function
  def detect(images):
    preprocessed, true_shapes = model.preprocess(images)
    pred = model.predict(preprocessed, true_shapes)
    return model.postprocess(pred, true_shapes)

  det = detect(_images(2))
  assert det[_DET.detection_boxes].shape == (2, 10, 4)
  boxes = det[_DET.detection_boxes].numpy()
  assert (boxes >= -1e-6).all() and (boxes <= 1 + 1e-6).all()
  classes = det[_DET.detection_classes].numpy()
  assert ((classes >= 0) & (classes < _NUM_CLASSES)).all()
  indices = det[_DET.detection_anchor_indices].numpy()
  assert ((indices >= 0) & (indices < _NUM_ANCHORS)).all()


def test_postprocess_with_dynamic_map_sizes_matches_static():
  # A graph traced for any input size (levels of unknown size) keeps
  # pre_nms_top_k_per_level candidates per level, padded with score 0: the
  # detections equal the static-size ones (k = 100 > the 64, 16 and 4
  # locations of P3-P5 at 64 px, so every level is padded).
  model = _build(_config_text(extra='pre_nms_top_k_per_level: 100',
                              score_threshold=0.001), is_training=False)
  images = _images(1, seed=3)
  preprocessed, true_shapes = model.preprocess(images)
  static = model.postprocess(model.predict(preprocessed, true_shapes),
                             true_shapes)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3]),
                                tf.TensorSpec([None, 3], tf.int32)])
  def detect(pre, shapes):
    pred = model.predict(pre, shapes)
    assert not isinstance(model.anchor_levels[0].num_anchors, int)
    return model.postprocess(pred, shapes)

  dynamic = detect(preprocessed, true_shapes)
  for key in (_DET.num_detections, _DET.detection_scores,
              _DET.detection_boxes, _DET.detection_anchor_indices):
    np.testing.assert_allclose(dynamic[key].numpy(), static[key].numpy(),
                               atol=1e-5, err_msg=key)


# ------------------------------------------------------------ ATSS / SAPD
def test_atss_assigner_train_step():
  model = _build(_config_text(
      assigner='target_assigner { atss { top_k: 3 anchor_scale: 2 } }'))
  _, losses, grads, variables = _train_step(model)
  assert set(losses) == {'Loss/classification_loss',
                         'Loss/localization_loss', 'Loss/centerness_loss'}
  for name, value in losses.items():
    assert np.isfinite(value.numpy()), name
    assert value.numpy() > 0.0, name
  _check_gradients(grads, variables)


_SAPD = 'target_assigner {{ sapd {{ size_ranges: [0, 16, 32, -1] {} }} }}'
_HEAD_NO_CTR = ('head { depth: 16 group_norm_groups: 4 '
                'num_layers_before_predictor: 1 predict_centerness: false }')


def test_sapd_without_centerness_train_step():
  model = _build(_config_text(assigner=_SAPD.format(''), head=_HEAD_NO_CTR))
  assert not model.params.use_centerness
  pred, losses, grads, variables = _train_step(model)
  assert 'centerness' not in pred
  assert set(losses) == {'Loss/classification_loss',
                         'Loss/localization_loss'}
  for name, value in losses.items():
    assert np.isfinite(value.numpy()), name
    assert value.numpy() > 0.0, name
  _check_gradients(grads, variables)
  # Inference without centerness: scores are the class sigmoids.
  det = model.postprocess(pred, model.preprocess(_images(2))[1])
  np.testing.assert_allclose(
      det[_DET.raw_detection_scores].numpy(),
      tf.sigmoid(pred['class_predictions_with_background']).numpy(),
      rtol=1e-6)


def test_sapd_soft_level_selection():
  model = _build(_config_text(
      assigner=_SAPD.format('num_levels_per_box: 0'), head=_HEAD_NO_CTR,
      extra='soft_level_selection { depth: 8 num_convs: 1 crop_size: 3 }'))
  assert model.params.soft_level_selection is not None
  network = model.level_selection_network
  assert network is not None
  _, losses, grads, variables = _train_step(model)
  assert set(losses) == {'Loss/classification_loss',
                         'Loss/localization_loss',
                         'Loss/level_selection_loss'}
  for name, value in losses.items():
    assert np.isfinite(value.numpy()), name
    assert value.numpy() > 0.0, name
  # The selection network is part of the model and gets gradients.
  network_vars = {id(v) for v in network.trainable_variables}
  assert network_vars, 'the selection network has no variables'
  assert network_vars <= {id(v) for v in variables}
  _check_gradients(grads, variables)
  network_grads = [g for v, g in zip(variables, grads)
                   if id(v) in network_vars]
  assert any(np.abs(tf.convert_to_tensor(g).numpy()).sum() > 0
             for g in network_grads)


def test_sapd_soft_level_selection_with_an_empty_batch():
  model = _build(_config_text(
      assigner=_SAPD.format('num_levels_per_box: 0'), head=_HEAD_NO_CTR,
      extra='soft_level_selection { depth: 8 num_convs: 1 crop_size: 3 }'))
  _, losses, _, _ = _train_step(
      model, [tf.zeros([0, 4]), tf.zeros([0, 4])],
      [tf.zeros([0], tf.int32), tf.zeros([0], tf.int32)])
  for name, value in losses.items():
    assert np.isfinite(value.numpy()), name
  assert losses['Loss/level_selection_loss'].numpy() == 0.0
  assert losses['Loss/localization_loss'].numpy() == 0.0
  assert losses['Loss/classification_loss'].numpy() > 0.0


def test_head_centerness_must_agree_with_params():
  model = _build(_config_text())
  params = fcos_meta_arch.FCOSParams(
      classification_loss=model.params.classification_loss,
      localization_loss=model.params.localization_loss,
      use_centerness=False)
  with pytest.raises(ValueError, match='centerness'):
    fcos_meta_arch.FCOSMetaArch(
        is_training=True, num_classes=_NUM_CLASSES,
        image_resizer_fn=None, feature_extractor=model.feature_extractor,
        box_predictor=model.box_predictor,
        anchor_generator=model._anchor_generator,  # pylint: disable=protected-access
        box_coder=model._box_coder,  # pylint: disable=protected-access
        target_assigner=model._target_assigner,  # pylint: disable=protected-access
        non_max_suppression_fn=model._non_max_suppression_fn,  # pylint: disable=protected-access
        score_conversion_fn=tf.sigmoid, params=params)


def test_paper_resnet50_p3_p7_config_takes_a_train_step():
  # The paper's FCOS (ResNet-50 FPN P3-P7, 256-channel GN head) at 64 px.
  path = os.path.join(os.path.dirname(__file__), '..', '..', 'configs',
                      'fcos_resnet50_fpn_digits.config')
  configs = config_util.get_configs_from_pipeline_file(path)
  configs = config_util.merge_external_params_with_configs(configs, {
      'model.fcos.image_resizer':
          f'fixed_shape_resizer {{ height: {_SIZE} width: {_SIZE} }}'})
  model = model_builder.build(configs['model'], is_training=True)
  boxes = [tf.constant([[0.1, 0.1, 0.5, 0.6]])]
  classes = [tf.constant([7])]
  pred, losses, grads, variables = _train_step(model, boxes, classes, batch=1)
  # 8x8 + 4x4 + 2x2 + 1x1 + 1x1 locations on P3-P7 at 64 px.
  assert pred['box_encodings'].shape == (1, 64 + 16 + 4 + 1 + 1, 4)
  assert [l.stride for l in model.anchor_levels] == [8, 16, 32, 64, 128]
  for name, value in losses.items():
    assert np.isfinite(value.numpy()) and value.numpy() > 0, name
  _check_gradients(grads, variables)
