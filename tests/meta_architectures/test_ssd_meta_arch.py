"""Tests of od_meta.meta_architectures.ssd_meta_arch (SSDMetaArch).

The model is built from small real components around a fake feature
extractor: a 32x32 input gives a 4x4 map (stride 8) and a 2x2 map
(stride 16). With `create_ssd_anchors(num_layers=2, scales=[0.25, 0.5],
aspect_ratios=(1.0,), interpolated_scale_aspect_ratio=0)` each map gets one
square anchor per cell that exactly tiles the image:

  * 4x4 map: anchor (i, j) = [i/4, j/4, (i+1)/4, (j+1)/4], indices 0..15
    (row-major);
  * 2x2 map: anchor (i, j) = [i/2, j/2, (i+1)/2, (j+1)/2], indices 16..19.

So A = 4*4*1 + 2*2*1 = 20 anchors; two same-level anchors never overlap and
a 4x4 anchor has IoU 0.0625 / 0.25 = 0.25 < 0.5 with the 2x2 anchor that
contains it, so a groundtruth box equal to a 4x4 anchor matches exactly one
anchor (ArgMaxMatcher, threshold 0.5).

Losses follow Liu et al. 2016, Eq. 1: L = (L_conf + alpha L_loc) / N with N
the number of matched anchors; hard negative mining keeps at most 3
negatives per positive (Sec. 2.2; seed 002 "SSD OHEM neg:pos 3").
"""

import functools
import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.anchor_generators import multiple_grid_anchor_generator as mgag
from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.core import box_list
from od_meta.core import hard_example_miner
from od_meta.core import losses
from od_meta.core import post_processing
from od_meta.core import region_similarity_calculator
from od_meta.core import standard_fields as fields
from od_meta.core import target_assigner
from od_meta.heads import box_predictor
from od_meta.matchers import argmax_matcher
from od_meta.meta_architectures import ssd_meta_arch

NUM_CLASSES = 2
IMAGE_SIZE = 32
NUM_ANCHORS = 20  # 4*4*1 + 2*2*1
LOG2 = math.log(2.0)
SCALE_FACTORS = [10.0, 10.0, 5.0, 5.0]

_DET = fields.DetectionResultFields


class FakeFeatureExtractor(tf.keras.Model):
  """32x32x3 -> [4x4x8 (stride 8), 2x2x8 (stride 16)] feature maps."""

  def __init__(self):
    super().__init__(name='fake_extractor')
    self.conv1 = tf.keras.layers.Conv2D(8, 8, strides=8, name='conv1')
    self.conv2 = tf.keras.layers.Conv2D(8, 2, strides=2, name='conv2')

  def preprocess(self, images):
    return images / 127.5 - 1.0

  def call(self, inputs, training=False):
    f1 = tf.nn.relu(self.conv1(inputs))
    f2 = tf.nn.relu(self.conv2(f1))
    return [f1, f2]


def _resizer(image):
  image = tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE])
  return image, tf.constant([IMAGE_SIZE, IMAGE_SIZE, 3], tf.int32)


def _build(*, add_background_class=True, num_class_slots=None,
           anchors_per_location=1, miner=None, score_thresh=0.1,
           normalize_loss_by_num_matches=True,
           normalize_loc_loss_by_codesize=False, predictor_anchors=None,
           classification_loss=None):
  if anchors_per_location == 1:
    anchor_generator = mgag.create_ssd_anchors(
        num_layers=2, scales=[0.25, 0.5], aspect_ratios=(1.0,),
        interpolated_scale_aspect_ratio=0.0,
        reduce_boxes_in_lowest_layer=False)
  else:  # 3 per location: aspect ratios 1, 2 + the interpolated scale.
    anchor_generator = mgag.create_ssd_anchors(
        num_layers=2, scales=[0.25, 0.5], aspect_ratios=(1.0, 2.0),
        interpolated_scale_aspect_ratio=1.0,
        reduce_boxes_in_lowest_layer=False)
  if num_class_slots is None:
    num_class_slots = NUM_CLASSES + (1 if add_background_class else 0)
  predictor = box_predictor.ConvolutionalBoxPredictor(
      num_class_slots=num_class_slots,
      num_predictions_per_location_list=(
          predictor_anchors or anchor_generator.num_anchors_per_location()),
      kernel_size=1)
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder(SCALE_FACTORS)
  assigner = target_assigner.TargetAssigner(
      region_similarity_calculator.IouSimilarity(),
      argmax_matcher.ArgMaxMatcher(0.5, 0.5), coder)
  nms = functools.partial(
      post_processing.batch_multiclass_non_max_suppression,
      score_thresh=score_thresh, iou_thresh=0.6, max_size_per_class=5,
      max_total_size=5)
  loss_config = ssd_meta_arch.SSDLossConfig(
      classification_loss=(classification_loss or
                           losses.WeightedSigmoidClassificationLoss()),
      localization_loss=losses.WeightedSmoothL1LocalizationLoss(delta=1.0),
      hard_example_miner=miner,
      normalize_loss_by_num_matches=normalize_loss_by_num_matches,
      normalize_loc_loss_by_codesize=normalize_loc_loss_by_codesize)
  return ssd_meta_arch.SSDMetaArch(
      is_training=True, num_classes=NUM_CLASSES, image_resizer_fn=_resizer,
      feature_extractor=FakeFeatureExtractor(), box_predictor=predictor,
      anchor_generator=anchor_generator, box_coder=coder,
      target_assigner=assigner, non_max_suppression_fn=nms,
      score_conversion_fn=tf.sigmoid, loss_config=loss_config,
      add_background_class=add_background_class)


def _anchors_4x4():
  """The 20 anchors described in the module docstring, float32 [20, 4]."""
  rows = []
  for n in (4, 2):
    for i in range(n):
      for j in range(n):
        rows.append([i / n, j / n, (i + 1) / n, (j + 1) / n])
  return np.array(rows, np.float32)


def _prediction_dict(model, batch, *, box_encodings=None, logits=None,
                     height=IMAGE_SIZE, width=IMAGE_SIZE):
  """A hand-made prediction dict (what `loss`/`postprocess` read)."""
  slots = NUM_CLASSES + (1 if model._add_background_class else 0)
  if box_encodings is None:
    box_encodings = np.zeros([batch, NUM_ANCHORS, 4], np.float32)
  if logits is None:
    logits = np.zeros([batch, NUM_ANCHORS, slots], np.float32)
  return {
      'preprocessed_inputs': tf.zeros([batch, height, width, 3]),
      'box_encodings': tf.constant(box_encodings, tf.float32),
      'class_predictions_with_background': tf.constant(logits, tf.float32),
      'anchors': tf.constant(_anchors_4x4()),
  }


def _full_shapes(batch):
  return tf.constant([[IMAGE_SIZE, IMAGE_SIZE, 3]] * batch, tf.int32)


# ------------------------------------------------------------------ predict
def test_anchors_are_the_tiling_described_in_the_docstring():
  model = _build()
  images = tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE, 3])
  preprocessed, shapes = model.preprocess(images)
  pred = model.predict(preprocessed, shapes)
  np.testing.assert_allclose(pred['anchors'].numpy(), _anchors_4x4(),
                             atol=1e-6)
  np.testing.assert_allclose(model.anchors.get().numpy(), _anchors_4x4(),
                             atol=1e-6)


@pytest.mark.parametrize('use_tf_function', [False, True])
def test_predict_shapes(use_tf_function):
  model = _build(anchors_per_location=3)
  images = tf.random.uniform([2, 40, 24, 3], maxval=255.0)

  def run(images):
    preprocessed, shapes = model.preprocess(images)
    return model.predict(preprocessed, shapes), shapes

  if use_tf_function:
    run = tf.function(run)
  pred, shapes = run(images)
  # (4*4 + 2*2) locations * 3 anchors per location.
  num_anchors = (16 + 4) * 3
  assert pred['box_encodings'].shape == (2, num_anchors, 4)
  assert pred['class_predictions_with_background'].shape == (
      2, num_anchors, NUM_CLASSES + 1)
  assert pred['anchors'].shape == (num_anchors, 4)
  assert [tuple(f.shape) for f in pred['feature_maps']] == [
      (2, 4, 4, 8), (2, 2, 2, 8)]
  assert pred['preprocessed_inputs'].shape == (2, 32, 32, 3)
  np.testing.assert_array_equal(shapes.numpy(), [[32, 32, 3]] * 2)


def test_preprocess_normalizes_and_keeps_given_true_shapes():
  model = _build()
  images = tf.fill([1, 32, 32, 3], 255.0)
  preprocessed, shapes = model.preprocess(images,
                                          tf.constant([[16, 32, 3]]))
  np.testing.assert_allclose(preprocessed.numpy(), 1.0)  # 255/127.5 - 1
  np.testing.assert_array_equal(shapes.numpy(), [[16, 32, 3]])
  assert shapes.dtype == tf.int32


def test_preprocess_rejects_bad_rank():
  model = _build()
  with pytest.raises(ValueError, match='batch, height, width, 3'):
    model.preprocess(tf.zeros([32, 32, 3]))


def test_mismatched_anchors_and_predictions_raise():
  # The predictor predicts 2 boxes per location, the generator makes 1.
  model = _build(predictor_anchors=[2, 2])
  preprocessed, shapes = model.preprocess(tf.zeros([1, 32, 32, 3]))
  with pytest.raises(ValueError, match='anchors'):
    model.predict(preprocessed, shapes)


def test_class_slots_must_fit_add_background_class():
  with pytest.raises(ValueError, match='class slots'):
    _build(add_background_class=True, num_class_slots=NUM_CLASSES)
  with pytest.raises(ValueError, match='class slots'):
    _build(add_background_class=False, num_class_slots=NUM_CLASSES + 1)


# --------------------------------------------------------------------- loss
def test_groundtruth_equal_to_an_anchor_gives_zero_regression_target():
  model = _build()
  anchors = _anchors_4x4()
  gt = anchors[5:6]  # 4x4 anchor (1, 1) = [0.25, 0.25, 0.5, 0.5]
  model.provide_groundtruth([tf.constant(gt)], [tf.constant([1])])
  # Zero box encodings are then exactly the targets: localization loss 0.
  losses_dict = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  assert losses_dict['Loss/localization_loss'].numpy() == pytest.approx(0.0)
  # And the assigner agrees: target 0 at anchor 5, exactly one match.
  _, _, reg_targets, reg_weights, match = model._target_assigner.assign(
      box_list.BoxList(tf.constant(anchors)), box_list.BoxList(tf.constant(gt)))
  np.testing.assert_allclose(reg_targets.numpy()[5], 0.0, atol=1e-6)
  np.testing.assert_array_equal(np.flatnonzero(reg_weights.numpy()), [5])
  assert match.numpy()[5] == 0


def test_localization_loss_golden_and_normalizations():
  # gt = anchor 0 ([0, 0, .25, .25]) shifted down by 0.0125:
  # ty = 10 * 0.0125 / 0.25 = 0.5, tx = th = tw = 0 (Huang et al. 2017's
  # [10 y/h, 10 x/w, 5 log h, 5 log w] encoding). IoU with anchor 0 is
  # 0.2375*0.25 / (2*0.0625 - 0.2375*0.25) = 0.905 -> matched; with anchor
  # 4 below it 0.0125*0.25/(0.125-0.003125) = 0.026 -> not.
  # Smooth L1 (delta 1) of the zero prediction: 0.5 * 0.5^2 = 0.125.
  gt = np.array([[0.0125, 0.0, 0.2625, 0.25]], np.float32)
  for codesize, expected in ((False, 0.125), (True, 0.125 / 4)):
    model = _build(normalize_loc_loss_by_codesize=codesize)
    model.provide_groundtruth([tf.constant(gt)], [tf.constant([0])])
    out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
    assert out['Loss/localization_loss'].numpy() == pytest.approx(
        expected, rel=1e-4)


def test_classification_loss_normalized_by_number_of_matches():
  # Zero logits: sigmoid CE = log 2 per column. With a background column
  # each anchor has 3 weighted columns (matched: weight 1, unmatched:
  # negative_class_weight 1), so each image sums 20 * 3 * log 2.
  # Image 0 has 1 match (gt = anchor 5), image 1 has 2 (anchors 0 and 19),
  # N = 3: loss = 2 * 60 log 2 / 3 = 40 log 2.
  anchors = _anchors_4x4()
  model = _build()
  model.provide_groundtruth(
      [tf.constant(anchors[5:6]), tf.constant(anchors[[0, 19]])],
      [tf.constant([0]), tf.constant([1, 0])])
  out = model.loss(_prediction_dict(model, 2), _full_shapes(2))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      40 * LOG2, rel=1e-5)
  assert out['Loss/localization_loss'].numpy() == pytest.approx(0.0,
                                                                abs=1e-6)
  # Without normalization: the plain sum 120 log 2.
  model = _build(normalize_loss_by_num_matches=False)
  model.provide_groundtruth(
      [tf.constant(anchors[5:6]), tf.constant(anchors[[0, 19]])],
      [tf.constant([0]), tf.constant([1, 0])])
  out = model.loss(_prediction_dict(model, 2), _full_shapes(2))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      120 * LOG2, rel=1e-5)


def test_groundtruth_weights_zero_drop_a_box():
  # Weight 0 on the second box: it matches nothing, N = 1, and its anchor is
  # a negative: 20 * 3 log 2 / 1.
  anchors = _anchors_4x4()
  model = _build()
  model.provide_groundtruth([tf.constant(anchors[[5, 10]])],
                            [tf.constant([0, 1])],
                            groundtruth_weights_list=[tf.constant([1., 0.])])
  out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      60 * LOG2, rel=1e-5)


def test_classification_targets_with_and_without_background_column():
  # Logits favouring the right class at the matched anchor make its loss
  # smaller than with zero logits; the columns used depend on the encoding.
  anchors = _anchors_4x4()
  gt_class = 1
  # With background: class c is column c + 1; unmatched anchors target
  # column 0. Logits: +20 on the target column, -20 elsewhere -> ~0 loss.
  model = _build(add_background_class=True)
  logits = np.full([1, NUM_ANCHORS, 3], -20.0, np.float32)
  logits[0, :, 0] = 20.0
  logits[0, 5, 0] = -20.0
  logits[0, 5, gt_class + 1] = 20.0
  model.provide_groundtruth([tf.constant(anchors[5:6])],
                            [tf.constant([gt_class])])
  out = model.loss(_prediction_dict(model, 1, logits=logits),
                   _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() < 1e-6
  # Encode background as zeros: 2 columns, unmatched anchors all-zero.
  model = _build(add_background_class=False)
  logits = np.full([1, NUM_ANCHORS, 2], -20.0, np.float32)
  logits[0, 5, gt_class] = 20.0
  model.provide_groundtruth([tf.constant(anchors[5:6])],
                            [tf.constant([gt_class])])
  out = model.loss(_prediction_dict(model, 1, logits=logits),
                   _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() < 1e-6
  # Zero logits, no background column: 20 anchors * 2 columns * log 2.
  out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      40 * LOG2, rel=1e-5)


def test_one_hot_groundtruth_classes_are_accepted():
  anchors = _anchors_4x4()
  model = _build()
  model.provide_groundtruth([tf.constant(anchors[5:6])],
                            [tf.constant([[0.0, 1.0]])])
  logits = np.full([1, NUM_ANCHORS, 3], -20.0, np.float32)
  logits[0, :, 0] = 20.0
  logits[0, 5] = [-20.0, -20.0, 20.0]
  out = model.loss(_prediction_dict(model, 1, logits=logits),
                   _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() < 1e-6


def test_hard_example_miner_caps_negatives_at_three_per_positive():
  # All anchors have the same classification loss 3 log 2 (zero logits);
  # decoded boxes are the anchors (zero encodings), which do not overlap
  # above 0.99, so NMS keeps all. The cap keeps the 1 positive and 3
  # negatives: (1 + 3) * 3 log 2 / N(=1) = 12 log 2.
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=3000, iou_threshold=0.99, loss_type='cls',
      max_negatives_per_positive=3, min_negatives_per_image=0)
  model = _build(miner=miner)
  anchors = _anchors_4x4()
  model.provide_groundtruth([tf.constant(anchors[5:6])], [tf.constant([0])])
  out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      12 * LOG2, rel=1e-5)
  stats = miner.summarize()
  assert stats['HardExampleMiner/NumPositives'].numpy() == 1
  assert stats['HardExampleMiner/NumNegatives'].numpy() == 3
  # Two positives in one image: 2 + 6 anchors, N = 2 -> 8 * 3 log 2 / 2.
  model.provide_groundtruth([tf.constant(anchors[[0, 19]])],
                            [tf.constant([0, 1])])
  out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      12 * LOG2, rel=1e-5)
  assert miner.summarize()['HardExampleMiner/NumNegatives'].numpy() == 6


def test_hard_example_miner_keeps_the_hardest_negatives():
  # Negatives with larger background-column loss rank first: give anchors
  # 7, 8 and 9 a wrong background logit (-5 -> CE ~ 5.0067) and all the
  # others confident correct ones; the positive (anchor 5) is correct.
  # Kept: positive (~0) + anchors 7, 8, 9 (3 * softplus(5) each).
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=3000, iou_threshold=0.99, loss_type='cls',
      max_negatives_per_positive=3, min_negatives_per_image=0)
  model = _build(miner=miner)
  anchors = _anchors_4x4()
  logits = np.full([1, NUM_ANCHORS, 3], -20.0, np.float32)
  logits[0, :, 0] = 20.0
  logits[0, 5] = [-20.0, 20.0, -20.0]
  logits[0, [7, 8, 9], 0] = -5.0
  model.provide_groundtruth([tf.constant(anchors[5:6])], [tf.constant([0])])
  out = model.loss(_prediction_dict(model, 1, logits=logits),
                   _full_shapes(1))
  softplus5 = math.log1p(math.exp(5.0))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      3 * softplus5, rel=1e-4)


@pytest.mark.parametrize('with_miner', [False, True])
def test_empty_groundtruth_gives_finite_loss_with_only_negatives(with_miner):
  miner = None
  if with_miner:
    miner = hard_example_miner.HardExampleMiner(
        num_hard_examples=3000, iou_threshold=0.99, loss_type='cls',
        max_negatives_per_positive=3, min_negatives_per_image=3)
  model = _build(miner=miner)
  model.provide_groundtruth([tf.zeros([0, 4])],
                            [tf.zeros([0], tf.int32)])
  out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  # No match: N = max(0, 1) = 1. Without mining all 20 anchors count
  # (20 * 3 log 2); with mining only min_negatives_per_image = 3
  # (3 * 3 log 2).
  expected = (9 if with_miner else 60) * LOG2
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      expected, rel=1e-5)
  assert out['Loss/localization_loss'].numpy() == 0.0


def test_groundtruth_is_rescaled_into_the_padded_frame():
  # True image 16x32 in a 32x32 padded input. The box [0, .25, .5, .5] of
  # the *true* window is [0, .25, .25, .5] in the padded frame: exactly
  # anchor 1, so zero encodings give localization loss 0 and N = 1
  # (classification 20 * 3 log 2). Unscaled, the box [0, .25, .5, .5] would
  # match with a non-zero target (th = 5 log 2 for anchor 1 or 5).
  model = _build()
  model.provide_groundtruth([tf.constant([[0.0, 0.25, 0.5, 0.5]])],
                            [tf.constant([0])])
  out = model.loss(_prediction_dict(model, 1), tf.constant([[16, 32, 3]]))
  assert out['Loss/localization_loss'].numpy() == pytest.approx(0.0,
                                                                abs=1e-6)
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      60 * LOG2, rel=1e-5)
  # Full window: same box, no rescaling -> non-zero localization loss.
  model.provide_groundtruth([tf.constant([[0.0, 0.25, 0.5, 0.5]])],
                            [tf.constant([0])])
  out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  assert out['Loss/localization_loss'].numpy() > 0.5


def test_softmax_loss_with_background_class():
  # Softmax CE of zero logits over 3 slots is log 3 per anchor (the
  # weights are per anchor, tiled over the columns; the loss is per
  # anchor). 20 anchors, N = 1.
  anchors = _anchors_4x4()
  model = _build(classification_loss=losses.WeightedSoftmaxClassificationLoss())
  model.provide_groundtruth([tf.constant(anchors[5:6])], [tf.constant([1])])
  out = model.loss(_prediction_dict(model, 1), _full_shapes(1))
  assert out['Loss/classification_loss'].numpy() == pytest.approx(
      20 * math.log(3.0), rel=1e-5)


# -------------------------------------------------------------- postprocess
def _confident_logits(model, anchor_index, class_id, batch=1):
  slots = NUM_CLASSES + (1 if model._add_background_class else 0)
  logits = np.full([batch, NUM_ANCHORS, slots], -10.0, np.float32)
  offset = 1 if model._add_background_class else 0
  logits[:, anchor_index, class_id + offset] = 10.0
  return logits


@pytest.mark.parametrize('add_background_class', [True, False])
def test_postprocess_maps_boxes_to_the_true_window(add_background_class):
  # Padded input 32x32, true shape 16x32: window [0, 0, .5, 1] in the padded
  # frame. Anchor 1 = [0, .25, .25, .5] (zero encodings decode to the
  # anchor) -> in the true-window frame y is doubled: [0, .25, .5, .5].
  model = _build(add_background_class=add_background_class)
  pred = _prediction_dict(model, 1,
                          logits=_confident_logits(model, 1, class_id=1))
  det = model.postprocess(pred, tf.constant([[16, 32, 3]]))
  assert det[_DET.num_detections].dtype == tf.float32
  assert det[_DET.detection_classes].dtype == tf.float32
  assert det[_DET.num_detections].numpy().tolist() == [1.0]
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             [0.0, 0.25, 0.5, 0.5], atol=1e-5)
  assert det[_DET.detection_classes].numpy()[0, 0] == 1.0  # 0-based id
  assert det[_DET.detection_scores].numpy()[0, 0] == pytest.approx(
      1.0 / (1.0 + math.exp(-10.0)), rel=1e-5)
  assert int(det[_DET.detection_anchor_indices].numpy()[0, 0]) == 1
  assert det[_DET.detection_multiclass_scores].shape == (1, 5, NUM_CLASSES)
  assert det[_DET.raw_detection_scores].shape == (1, NUM_ANCHORS,
                                                  NUM_CLASSES)
  np.testing.assert_allclose(det[_DET.raw_detection_boxes].numpy()[0, 1],
                             [0.0, 0.25, 0.5, 0.5], atol=1e-5)


def test_postprocess_clips_to_the_true_window():
  # Anchor 17 (2x2 map, [0, .5, .5, 1]) stretched to height 1 centred at
  # y = .25 (th = 5 log 2 -> h = .5 * exp(log 2) = 1): decoded
  # [-.25, .5, .75, 1], clipped to the window [0, 0, .5, 1] -> [0, .5, .5, 1]
  # and mapped to the window frame -> [0, .5, 1, 1]. Anchor 10 lies in the
  # padded bottom half ([.5, .5, .75, .75]): clipped to zero area, dropped.
  model = _build()
  logits = _confident_logits(model, 17, class_id=0)
  logits[0, 10, 1] = 10.0
  enc = np.zeros([1, NUM_ANCHORS, 4], np.float32)
  enc[0, 17, 2] = 5 * LOG2
  pred = _prediction_dict(model, 1, box_encodings=enc, logits=logits)
  det = model.postprocess(pred, tf.constant([[16, 32, 3]]))
  assert det[_DET.num_detections].numpy().tolist() == [1.0]
  np.testing.assert_allclose(det[_DET.detection_boxes].numpy()[0, 0],
                             [0.0, 0.5, 1.0, 1.0], atol=1e-5)
  assert det[_DET.detection_classes].numpy()[0, 0] == 0.0
  # With the full window nothing is clipped away: 2 detections.
  det = model.postprocess(pred, _full_shapes(1))
  assert det[_DET.num_detections].numpy().tolist() == [2.0]
  boxes = det[_DET.detection_boxes].numpy()[0, :2]
  np.testing.assert_allclose(sorted(boxes.tolist()),
                             [[0.0, 0.5, 0.75, 1.0], [0.5, 0.5, 0.75, 0.75]],
                             atol=1e-5)


def test_postprocess_per_image_windows():
  # Batch of 2 with different true shapes: image 0 full, image 1 16x32.
  model = _build()
  pred = _prediction_dict(model, 2,
                          logits=_confident_logits(model, 1, 0, batch=2))
  det = model.postprocess(pred, tf.constant([[32, 32, 3], [16, 32, 3]]))
  boxes = det[_DET.detection_boxes].numpy()
  np.testing.assert_allclose(boxes[0, 0], [0.0, 0.25, 0.25, 0.5], atol=1e-5)
  np.testing.assert_allclose(boxes[1, 0], [0.0, 0.25, 0.5, 0.5], atol=1e-5)


# ------------------------------------------------------- end to end / graph
def _images_and_groundtruth():
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(0, 255, [1, 32, 32, 3]), tf.float32)
  boxes = [tf.constant(_anchors_4x4()[[5, 16]])]
  classes = [tf.constant([0, 1])]
  return images, boxes, classes


def test_gradient_steps_reduce_the_loss():
  model = _build(anchors_per_location=3)
  images, boxes, classes = _images_and_groundtruth()
  optimizer = tf.keras.optimizers.SGD(learning_rate=0.05)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      model.provide_groundtruth(boxes, classes)
      preprocessed, shapes = model.preprocess(images)
      pred = model.predict(preprocessed, shapes, training=True)
      loss = tf.add_n(list(model.loss(pred, shapes).values()))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  first = float(step())
  assert math.isfinite(first)
  for _ in range(10):
    last = float(step())
  assert last < 0.8 * first, (first, last)


def test_predict_loss_postprocess_in_tf_function_match_eager():
  model = _build(anchors_per_location=3)
  images, boxes, classes = _images_and_groundtruth()

  def run(images):
    model.provide_groundtruth(boxes, classes)
    preprocessed, shapes = model.preprocess(images)
    pred = model.predict(preprocessed, shapes)
    return model.loss(pred, shapes), model.postprocess(pred, shapes)

  eager_losses, eager_det = run(images)
  graph_losses, graph_det = tf.function(run)(images)
  for key in eager_losses:
    assert graph_losses[key].numpy() == pytest.approx(
        eager_losses[key].numpy(), rel=1e-4)
  np.testing.assert_allclose(graph_det[_DET.detection_scores].numpy(),
                             eager_det[_DET.detection_scores].numpy(),
                             rtol=1e-4)
  assert graph_det[_DET.detection_boxes].shape == (1, 5, 4)


def test_loss_with_dynamic_number_of_boxes_in_tf_function():
  model = _build()
  anchors = _anchors_4x4()

  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                tf.TensorSpec([None], tf.int32)])
  def loss_fn(boxes, classes):
    model.provide_groundtruth([boxes], [classes])
    return model.loss(_prediction_dict(model, 1), _full_shapes(1))

  one = loss_fn(tf.constant(anchors[5:6]), tf.constant([0]))
  assert one['Loss/classification_loss'].numpy() == pytest.approx(
      60 * LOG2, rel=1e-5)
  none = loss_fn(tf.zeros([0, 4]), tf.zeros([0], tf.int32))
  assert none['Loss/classification_loss'].numpy() == pytest.approx(
      60 * LOG2, rel=1e-5)


def test_call_runs_the_whole_pipeline_on_raw_images():
  model = _build()
  det = model(tf.zeros([2, 48, 20, 3]))
  assert det[_DET.detection_boxes].shape == (2, 5, 4)
  assert det[_DET.num_detections].shape == (2,)


def test_restore_map():
  model = _build()
  assert model.restore_map('detection') == {'model': model}
  assert model.restore_map('feature_extractor') == {
      'feature_extractor': model.feature_extractor}
  with pytest.raises(ValueError, match='fine_tune_checkpoint_type'):
    model.restore_map('bogus')
