"""Tests for the Faster R-CNN and R-FCN meta-architectures with a tiny
stand-in feature extractor (the real extractors have their own tests)."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from od_meta.anchor_generators import grid_anchor_generator
from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.core import balanced_positive_negative_sampler as sampler_lib
from od_meta.core import hard_example_miner
from od_meta.core import losses
from od_meta.core import post_processing
from od_meta.core import region_similarity_calculator
from od_meta.core import standard_fields as fields
from od_meta.core import target_assigner
from od_meta.data import image_resizer
from od_meta.heads import two_stage_box_predictors
from od_meta.matchers import argmax_matcher
from od_meta.meta_architectures import faster_rcnn_meta_arch
from od_meta.meta_architectures import rfcn_meta_arch

NUM_CLASSES = 3


class TinyExtractor(tf.keras.layers.Layer):
  """Stride-16 first stage (avg pool + 1x1 conv), conv second stage."""

  first_stage_features_stride = 16

  def __init__(self):
    super().__init__(name='tiny_extractor')
    self.pool = tf.keras.layers.AveragePooling2D(16, padding='same')
    self.conv1 = tf.keras.layers.Conv2D(8, 1, activation='relu')
    self.conv2 = tf.keras.layers.Conv2D(16, 3, strides=2, padding='same',
                                        activation='relu')

  def preprocess(self, images):
    return images / 127.5 - 1.0

  def extract_proposal_features(self, inputs, training=False):
    return self.conv1(self.pool(inputs))

  def extract_box_classifier_features(self, inputs, training=False):
    return self.conv2(inputs)


def _build(*, is_training=True, rfcn=False, number_of_stages=2,
           inference_max_proposals=0, miner=False, resizer=None):
  similarity = region_similarity_calculator.IouSimilarity()
  first = target_assigner.TargetAssigner(
      similarity, argmax_matcher.ArgMaxMatcher(
          0.7, 0.3, force_match_for_each_row=True),
      faster_rcnn_box_coder.FasterRcnnBoxCoder())
  second = target_assigner.TargetAssigner(
      similarity, argmax_matcher.ArgMaxMatcher(0.5, 0.5),
      faster_rcnn_box_coder.FasterRcnnBoxCoder((10.0, 10.0, 5.0, 5.0)))
  anchors = grid_anchor_generator.GridAnchorGenerator(
      scales=(0.5, 1.0), aspect_ratios=(1.0,), base_anchor_size=(32, 32),
      anchor_stride=(16, 16), anchor_offset=(8, 8))
  if rfcn:
    predictor = two_stage_box_predictors.RfcnBoxPredictor(
        NUM_CLASSES, num_spatial_bins=(2, 2), depth=8, crop_size=(4, 4))
  else:
    predictor = two_stage_box_predictors.MaskRCNNBoxPredictor(NUM_CLASSES)
  nms = functools.partial(
      post_processing.batch_multiclass_non_max_suppression,
      score_thresh=0.0, iou_thresh=0.6, max_size_per_class=10,
      max_total_size=20)
  cls = rfcn_meta_arch.RFCNMetaArch if rfcn else (
      faster_rcnn_meta_arch.FasterRCNNMetaArch)
  return cls(
      is_training=is_training, num_classes=NUM_CLASSES,
      image_resizer_fn=resizer or functools.partial(
          image_resizer.fixed_shape_resizer, height=64, width=64),
      feature_extractor=TinyExtractor(), number_of_stages=number_of_stages,
      first_stage_anchor_generator=anchors,
      first_stage_box_predictor=two_stage_box_predictors.RPNBoxPredictor(
          2, depth=8),
      first_stage_target_assigner=first,
      first_stage_sampler=sampler_lib.BalancedPositiveNegativeSampler(0.5),
      first_stage_minibatch_size=16, first_stage_max_proposals=12,
      inference_max_proposals=inference_max_proposals,
      first_stage_localization_loss=losses.WeightedSmoothL1LocalizationLoss(),
      first_stage_objectness_loss=losses.WeightedSoftmaxClassificationLoss(),
      initial_crop_size=6, maxpool_kernel_size=2, maxpool_stride=2,
      second_stage_box_predictor=predictor,
      second_stage_target_assigner=second,
      second_stage_sampler=sampler_lib.BalancedPositiveNegativeSampler(0.25),
      second_stage_batch_size=8,
      second_stage_non_max_suppression_fn=nms,
      second_stage_score_conversion_fn=tf.nn.softmax,
      second_stage_localization_loss=(
          losses.WeightedSmoothL1LocalizationLoss()),
      second_stage_classification_loss=(
          losses.WeightedSoftmaxClassificationLoss()),
      hard_example_miner=(hard_example_miner.HardExampleMiner(
          num_hard_examples=4, iou_threshold=0.7, loss_type='cls')
                          if miner else None))


def _batch():
  images = tf.random.uniform([2, 64, 64, 3], 0.0, 255.0, seed=1)
  boxes = [tf.constant([[0.1, 0.1, 0.6, 0.5]]),
           tf.constant([[0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5]])]
  classes = [tf.constant([0]), tf.constant([1, 2])]
  return images, boxes, classes


def _run(model, training):
  images, boxes, classes = _batch()
  model.provide_groundtruth(groundtruth_boxes_list=boxes,
                            groundtruth_classes_list=classes)
  pre, shapes = model.preprocess(images)
  predictions = model.predict(pre, shapes, training=training)
  return predictions, shapes


@pytest.mark.parametrize('rfcn', [False, True])
def test_training_predict_loss_and_gradients(rfcn):
  model = _build(rfcn=rfcn)
  with tf.GradientTape() as tape:
    predictions, shapes = _run(model, training=True)
    loss_dict = model.loss(predictions, shapes)
    total = tf.add_n(list(loss_dict.values()))
  assert sorted(loss_dict) == [
      'Loss/BoxClassifierLoss/classification_loss',
      'Loss/BoxClassifierLoss/localization_loss',
      'Loss/RPNLoss/localization_loss', 'Loss/RPNLoss/objectness_loss']
  assert all(np.isfinite(float(v)) for v in loss_dict.values())
  # 4x4 map, 2 anchors per location = 32 anchors.
  assert predictions['rpn_box_encodings'].shape == (2, 32, 4)
  assert predictions['rpn_objectness_predictions_with_background'].shape == (
      2, 32, 2)
  # Training samples second_stage_batch_size proposals per image.
  assert predictions['proposal_boxes'].shape == (2, 8, 4)
  num = predictions['num_proposals'].numpy()
  assert np.all(num >= 1) and np.all(num <= 8)
  q = 1 if rfcn else NUM_CLASSES
  assert predictions['refined_box_encodings'].shape == (2, 8, q, 4)
  assert predictions['class_predictions_with_background'].shape == (
      2, 8, NUM_CLASSES + 1)
  grads = tape.gradient(total, model.trainable_variables)
  named = {v.path: g for v, g in zip(model.trainable_variables, grads)}
  assert all(g is not None for g in named.values()), [
      k for k, g in named.items() if g is None]
  assert any('rpn' in k for k in named)


def _iou(boxes, box):
  """IoU of `[N, 4]` yxyx boxes with one box (numpy)."""
  ymin = np.maximum(boxes[:, 0], box[0])
  xmin = np.maximum(boxes[:, 1], box[1])
  ymax = np.minimum(boxes[:, 2], box[2])
  xmax = np.minimum(boxes[:, 3], box[3])
  inter = np.clip(ymax - ymin, 0, None) * np.clip(xmax - xmin, 0, None)
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return inter / np.maximum(area(boxes) + area(np.asarray(box)) - inter, 1e-9)


def test_groundtruth_boxes_join_the_sampled_proposals():
  # At initialization the RPN proposals rarely overlap the groundtruth;
  # the groundtruth boxes added to the proposals give the second stage
  # positives. Image 1 has 2 boxes and the sampler keeps at most 25% of 8 =
  # 2 positives, so its sample always holds exactly 2 positives (IoU >= 0.5
  # with a groundtruth box); which 2 is random when an RPN proposal also
  # overlaps a box, so the test does not ask for the boxes themselves.
  model = _build()
  predictions, _ = _run(model, training=True)
  count = int(predictions['num_proposals'][1])
  boxes = predictions['proposal_boxes'][1].numpy()[:count]
  gt = ([0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5])
  best = np.max(np.stack([_iou(boxes, g) for g in gt]), axis=0)
  assert int((best >= 0.5).sum()) == 2, boxes


def test_inference_uses_inference_max_proposals_and_postprocesses():
  model = _build(is_training=False, inference_max_proposals=5)
  assert model.max_num_proposals == 5
  predictions, shapes = _run(model, training=False)
  assert predictions['proposal_boxes'].shape == (2, 5, 4)
  detections = model.postprocess(predictions, shapes)
  boxes = detections[fields.DetectionResultFields.detection_boxes]
  assert boxes.shape == (2, 20, 4)
  assert detections[fields.DetectionResultFields.detection_classes].dtype == (
      tf.float32)
  num = detections[fields.DetectionResultFields.num_detections].numpy()
  assert np.all(num <= 20)
  valid = boxes.numpy()[0, :int(num[0])]
  assert np.all(valid >= 0.0) and np.all(valid <= 1.0)
  raw = detections[fields.DetectionResultFields.raw_detection_scores]
  assert raw.shape == (2, 5, NUM_CLASSES)
  # The proposal count is a knob of the model, changed after building.
  model.set_inference_max_proposals(3)
  predictions, _ = _run(model, training=False)
  assert predictions['proposal_boxes'].shape == (2, 3, 4)
  with pytest.raises(ValueError, match='num_proposals'):
    model.set_inference_max_proposals(0)


def test_training_model_uses_first_stage_max_proposals():
  model = _build(is_training=True, inference_max_proposals=5)
  assert model.max_num_proposals == 12


def test_one_stage_detections_are_the_proposals():
  model = _build(number_of_stages=1, is_training=False)
  predictions, shapes = _run(model, training=False)
  assert 'refined_box_encodings' not in predictions
  losses_dict = model.loss(predictions, shapes)
  assert sorted(losses_dict) == ['Loss/RPNLoss/localization_loss',
                                 'Loss/RPNLoss/objectness_loss']
  detections = model.postprocess(predictions, shapes)
  np.testing.assert_allclose(
      detections[fields.DetectionResultFields.detection_scores],
      predictions['proposal_scores'])
  assert not np.any(
      detections[fields.DetectionResultFields.detection_classes].numpy())


def test_border_anchors_are_ignored_in_the_rpn_loss():
  model = _build()
  anchors = tf.constant([[0.0, 0.0, 0.5, 0.5],    # inside
                         [-0.1, 0.0, 0.4, 0.5],   # crosses the top
                         [0.5, 0.5, 1.0, 1.0],    # inside the padded frame
                         [0.6, 0.6, 0.9, 0.9]])
  pre = tf.zeros([2, 64, 64, 3])
  # Image 1's true window is the top-left 32x32 (normalized 0.5).
  shapes = tf.constant([[64, 64, 3], [32, 32, 3]])
  valid = model._anchor_validity(anchors, shapes, pre).numpy()
  np.testing.assert_array_equal(valid, [[1, 0, 1, 1], [1, 0, 0, 0]])


def test_hard_example_miner_keeps_all_proposals_in_training():
  model = _build(miner=True)
  predictions, shapes = _run(model, training=True)
  # All (up to first_stage_max_proposals) proposals go to the second stage.
  assert predictions['proposal_boxes'].shape == (2, 12, 4)
  loss_dict = model.loss(predictions, shapes)
  assert all(np.isfinite(float(v)) for v in loss_dict.values())


def test_images_of_different_sizes_in_one_batch():
  resizer = functools.partial(image_resizer.keep_aspect_ratio_resizer,
                              min_dimension=48, max_dimension=64,
                              pad_to_max_dimension=True)
  model = _build(resizer=resizer, is_training=False)
  # Two true windows in one padded batch, as the input pipeline gives them.
  images = tf.random.uniform([2, 64, 64, 3], 0.0, 255.0, seed=2)
  shapes = tf.constant([[64, 48, 3], [48, 64, 3]])
  pre, shapes = model.preprocess(images, shapes)
  predictions = model.predict(pre, shapes, training=False)
  detections = model.postprocess(predictions, shapes)
  boxes = detections[fields.DetectionResultFields.detection_boxes].numpy()
  num = detections[fields.DetectionResultFields.num_detections].numpy()
  for i in range(2):
    valid = boxes[i, :int(num[i])]
    assert np.all(valid >= -1e-6) and np.all(valid <= 1.0 + 1e-6)


def test_train_steps_lower_the_loss_under_tf_function():
  model = _build()
  images, boxes, classes = _batch()
  optimizer = tf.keras.optimizers.SGD(0.05, momentum=0.9)
  pre, shapes = model.preprocess(images)
  model.provide_groundtruth(groundtruth_boxes_list=boxes,
                            groundtruth_classes_list=classes)
  model.predict(pre, shapes, training=True)

  @tf.function
  def step():
    model.provide_groundtruth(groundtruth_boxes_list=boxes,
                              groundtruth_classes_list=classes)
    with tf.GradientTape() as tape:
      predictions = model.predict(pre, shapes, training=True)
      total = tf.add_n(list(model.loss(predictions, shapes).values()))
    grads = tape.gradient(total, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return total

  first = float(step())
  for _ in range(25):
    last = float(step())
  assert last < first


def test_constructor_errors():
  with pytest.raises(ValueError, match='number_of_stages'):
    _build(number_of_stages=3)


def test_rpn_targets_and_sampling_golden():
  # Six hand-placed anchors (normalized, 64x64 image = true window) and one
  # groundtruth box g = [0.175, 0.175, 0.675, 0.675]:
  #   a0 [0.125, 0.125, 0.625, 0.625]: IoU 0.45^2 / (0.5 - 0.2025) = 0.68
  #      < 0.7, but the best anchor of g -> positive (force match);
  #   a1 [0.5, 0.5, 0.75, 0.75]: IoU 0.11 < 0.3 -> negative;
  #   a2 [0, 0, 0.25, 0.25]: IoU 0.02 -> negative;
  #   a3 [-0.1, 0.5, 0.3, 0.9]: crosses the border -> not sampled;
  #   a4 [0.125, 0.375, 0.625, 0.875]: IoU 0.135 / 0.365 = 0.37, in the
  #      ignore band [0.3, 0.7) -> not sampled;
  #   a5 [0.75, 0.75, 1, 1]: IoU 0 -> negative.
  # Minibatch 16 at fraction 0.5: 1 positive + the 3 negatives = 4 sampled.
  # Zero predictions: objectness CE = ln 2 per sampled anchor, / 4 -> ln 2.
  # a0's target (Faster R-CNN coder, no scaling): ty = tx = (0.425 -
  # 0.375) / 0.5 = 0.1, th = tw = 0; smooth L1 0.5 * 0.1^2 * 2 = 0.01, / 4.
  model = _build(number_of_stages=1)
  anchors = tf.constant([[0.125, 0.125, 0.625, 0.625],
                         [0.5, 0.5, 0.75, 0.75],
                         [0.0, 0.0, 0.25, 0.25],
                         [-0.1, 0.5, 0.3, 0.9],
                         [0.125, 0.375, 0.625, 0.875],
                         [0.75, 0.75, 1.0, 1.0]])
  model.provide_groundtruth(
      groundtruth_boxes_list=[tf.constant([[0.175, 0.175, 0.675, 0.675]])],
      groundtruth_classes_list=[tf.constant([0])])
  predictions = {
      'preprocessed_inputs': tf.zeros([1, 64, 64, 3]),
      'anchors': anchors,
      'rpn_box_encodings': tf.zeros([1, 6, 4]),
      'rpn_objectness_predictions_with_background': tf.zeros([1, 6, 2]),
  }
  losses_dict = model.loss(predictions, tf.constant([[64, 64, 3]]))
  np.testing.assert_allclose(losses_dict['Loss/RPNLoss/objectness_loss'],
                             np.log(2.0), rtol=1e-5)
  np.testing.assert_allclose(losses_dict['Loss/RPNLoss/localization_loss'],
                             0.01 / 4, rtol=1e-4)
