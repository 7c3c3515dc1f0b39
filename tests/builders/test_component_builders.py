"""Builders map config fields to component constructor arguments."""

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from od_meta.anchor_generators import grid_anchor_generator
from od_meta.anchor_generators import multiscale_grid_anchor_generator
from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.box_coders import keypoint_box_coder
from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.box_coders import mean_stddev_box_coder
from od_meta.builders import anchor_generator_builder
from od_meta.builders import box_coder_builder
from od_meta.builders import hyperparams_builder
from od_meta.builders import image_resizer_builder
from od_meta.builders import losses_builder
from od_meta.builders import matcher_builder
from od_meta.builders import optimizer_builder
from od_meta.builders import post_processing_builder
from od_meta.builders import preprocessor_builder
from od_meta.builders import region_similarity_calculator_builder
from od_meta.core import box_list
from od_meta.core import losses
from od_meta.core import region_similarity_calculator as sim
from od_meta.core import standard_fields
from od_meta.matchers import argmax_matcher
from od_meta.matchers import bipartite_matcher
from od_meta.protos import anchor_generator_pb2
from od_meta.protos import box_coder_pb2
from od_meta.protos import hyperparams_pb2
from od_meta.protos import image_resizer_pb2
from od_meta.protos import losses_pb2
from od_meta.protos import matcher_pb2
from od_meta.protos import optimizer_pb2
from od_meta.protos import post_processing_pb2
from od_meta.protos import preprocessor_pb2
from od_meta.protos import region_similarity_calculator_pb2

fields = standard_fields.InputDataFields


def _parse(text, message_class):
  return text_format.Parse(text, message_class())


# ----------------------------------------------------------------- box coders
def test_faster_rcnn_box_coder_uses_scale_factors():
  coder = box_coder_builder.build(_parse(
      'faster_rcnn_box_coder { y_scale: 10 x_scale: 10 height_scale: 5 '
      'width_scale: 5 }', box_coder_pb2.BoxCoder))
  assert isinstance(coder, faster_rcnn_box_coder.FasterRcnnBoxCoder)
  # A box equal to its anchor but twice as tall: ty = tx = tw = 0,
  # th = 5 * log(2).
  anchors = box_list.BoxList(tf.constant([[0.2, 0.2, 0.4, 0.4]]))
  boxes = box_list.BoxList(tf.constant([[0.1, 0.2, 0.5, 0.4]]))
  np.testing.assert_allclose(coder.encode(boxes, anchors).numpy(),
                             [[0, 0, 5 * np.log(2), 0]], atol=1e-5)


@pytest.mark.parametrize('text,cls', [
    ('mean_stddev_box_coder { stddev: 0.1 }',
     mean_stddev_box_coder.MeanStddevBoxCoder),
    ('keypoint_box_coder { num_keypoints: 5 }',
     keypoint_box_coder.KeypointBoxCoder),
    ('ltrb_distance_box_coder { scale: 16 }',
     ltrb_distance_box_coder.LtrbDistanceBoxCoder),
])
def test_other_box_coders(text, cls):
  coder = box_coder_builder.build(_parse(text, box_coder_pb2.BoxCoder))
  assert isinstance(coder, cls)
  if cls is keypoint_box_coder.KeypointBoxCoder:
    assert coder.code_size == 4 + 2 * 5


def test_box_coder_errors():
  with pytest.raises(ValueError, match='box_coder_oneof'):
    box_coder_builder.build(box_coder_pb2.BoxCoder())
  with pytest.raises(TypeError, match='od_meta.protos.BoxCoder'):
    box_coder_builder.build(matcher_pb2.Matcher())


# ------------------------------------------------------------------ matchers
def test_argmax_matcher_thresholds_reach_the_matcher():
  matcher = matcher_builder.build(_parse(
      'argmax_matcher { matched_threshold: 0.7 unmatched_threshold: 0.3 }',
      matcher_pb2.Matcher))
  assert isinstance(matcher, argmax_matcher.ArgMaxMatcher)
  # One groundtruth row; anchors with IoU 0.8 (match), 0.5 (ignored band),
  # 0.1 (unmatched).
  match = matcher.match(tf.constant([[0.8, 0.5, 0.1]]))
  np.testing.assert_array_equal(match.match_results.numpy(), [0, -2, -1])


def test_argmax_matcher_ignore_thresholds_and_bipartite():
  matcher = matcher_builder.build(_parse(
      'argmax_matcher { ignore_thresholds: true }', matcher_pb2.Matcher))
  np.testing.assert_array_equal(
      matcher.match(tf.constant([[0.01, 0.0]])).match_results.numpy(), [0, 0])
  assert isinstance(
      matcher_builder.build(_parse('bipartite_matcher {}',
                                   matcher_pb2.Matcher)),
      bipartite_matcher.GreedyBipartiteMatcher)
  with pytest.raises(ValueError, match='unmatched_threshold'):
    matcher_builder.build(_parse(
        'argmax_matcher { matched_threshold: 0.3 unmatched_threshold: 0.7 }',
        matcher_pb2.Matcher))


@pytest.mark.parametrize('name,cls', [
    ('iou_similarity', sim.IouSimilarity),
    ('ioa_similarity', sim.IoaSimilarity),
    ('neg_sq_dist_similarity', sim.NegSqDistSimilarity),
    ('giou_similarity', sim.GIouSimilarity),
])
def test_region_similarity_calculators(name, cls):
  calc = region_similarity_calculator_builder.build(_parse(
      name + ' {}', region_similarity_calculator_pb2.RegionSimilarityCalculator))
  assert isinstance(calc, cls)


# ------------------------------------------------------------------- anchors
def test_grid_anchor_generator_fields():
  gen = anchor_generator_builder.build(_parse(
      'grid_anchor_generator { height: 128 width: 128 height_stride: 8 '
      'width_stride: 8 scales: [1.0] aspect_ratios: [1.0] }',
      anchor_generator_pb2.AnchorGenerator))
  assert isinstance(gen, grid_anchor_generator.GridAnchorGenerator)
  anchors = gen.generate([(2, 2)])[0].get().numpy()
  # Centers at 0 and 8 px, side 128 px: first anchor [-64, -64, 64, 64].
  np.testing.assert_allclose(anchors[0], [-64, -64, 64, 64])
  np.testing.assert_allclose(anchors[-1], [-56, -56, 72, 72])


def test_ssd_anchor_generator_counts():
  gen = anchor_generator_builder.build(_parse(
      'ssd_anchor_generator { num_layers: 3 min_scale: 0.2 max_scale: 0.9 '
      'aspect_ratios: [1.0, 2.0, 0.5] }', anchor_generator_pb2.AnchorGenerator))
  # Lowest layer reduced to 3 boxes; others 3 ratios + interpolated scale.
  assert gen.num_anchors_per_location() == [3, 4, 4]
  with pytest.raises(ValueError, match='num_layers'):
    anchor_generator_builder.build(_parse(
        'ssd_anchor_generator { num_layers: 2 height_stride: [0.1] '
        'width_stride: [0.1] }', anchor_generator_pb2.AnchorGenerator))


def test_multiscale_anchor_generator():
  gen = anchor_generator_builder.build(_parse(
      'multiscale_anchor_generator { min_level: 3 max_level: 4 '
      'anchor_scale: 4.0 scales_per_octave: 2 aspect_ratios: [1.0] }',
      anchor_generator_pb2.AnchorGenerator))
  assert isinstance(gen,
                    multiscale_grid_anchor_generator.MultiscaleGridAnchorGenerator)
  assert gen.num_anchors_per_location() == [2, 2]


# ------------------------------------------------------------------- resizers
def test_image_resizers():
  image = tf.zeros([300, 400, 3], tf.uint8)
  keep = image_resizer_builder.build(_parse(
      'keep_aspect_ratio_resizer { min_dimension: 600 max_dimension: 1024 }',
      image_resizer_pb2.ImageResizer))
  resized, true_shape = keep(image)
  assert resized.shape[:2] == (600, 800)
  np.testing.assert_array_equal(true_shape.numpy(), [600, 800, 3])
  fixed = image_resizer_builder.build(_parse(
      'fixed_shape_resizer { height: 64 width: 32 resize_method: AREA }',
      image_resizer_pb2.ImageResizer))
  assert fixed(image)[0].shape == (64, 32, 3)
  with pytest.raises(ValueError, match='min_dimension'):
    image_resizer_builder.build(_parse(
        'keep_aspect_ratio_resizer { min_dimension: 700 max_dimension: 600 }',
        image_resizer_pb2.ImageResizer))
  with pytest.raises(ValueError, match='per_channel_pad_value'):
    image_resizer_builder.build(_parse(
        'pad_to_multiple_resizer { multiple: 32 per_channel_pad_value: [1] }',
        image_resizer_pb2.ImageResizer))


# --------------------------------------------------------------------- losses
def test_losses_bundle_and_miner():
  bundle = losses_builder.build(_parse('''
      localization_loss { weighted_smooth_l1 { delta: 0.5 } }
      classification_loss { weighted_sigmoid_focal { gamma: 2.0 alpha: 0.25 } }
      hard_example_miner { num_hard_examples: 100 max_negatives_per_positive: 3 }
      classification_weight: 2.0 localization_weight: 0.5''', losses_pb2.Loss))
  assert isinstance(bundle.localization_loss,
                    losses.WeightedSmoothL1LocalizationLoss)
  assert isinstance(bundle.classification_loss,
                    losses.SigmoidFocalClassificationLoss)
  assert bundle.classification_weight == 2.0
  assert bundle.localization_weight == 0.5
  assert bundle.hard_example_miner is not None
  # Huber with delta 0.5 (TF OD API): |d| = 0.25 <= delta -> 0.5 * 0.25^2 =
  # 0.03125; |d| = 1 -> delta * (1 - 0.5 * delta) = 0.375.
  loss = bundle.localization_loss(tf.constant([[[0.25, 1.0, 0.0, 0.0]]]),
                                  tf.zeros([1, 1, 4]),
                                  weights=tf.ones([1, 1]))
  np.testing.assert_allclose(loss.numpy(), [[0.03125 + 0.375]], rtol=1e-6)


@pytest.mark.parametrize('text,cls', [
    ('weighted_l2 {}', losses.WeightedL2LocalizationLoss),
    ('weighted_iou {}', losses.WeightedIOULocalizationLoss),
    ('weighted_giou {}', losses.WeightedGIOULocalizationLoss),
    ('l1_localization_loss {}', losses.WeightedL1LocalizationLoss),
    ('balanced_l1 { alpha: 0.5 gamma: 1.5 }', losses.BalancedL1LocalizationLoss),
])
def test_localization_losses(text, cls):
  assert isinstance(losses_builder.build_localization_loss(
      _parse(text, losses_pb2.LocalizationLoss)), cls)


@pytest.mark.parametrize('text,cls', [
    ('weighted_sigmoid {}', losses.WeightedSigmoidClassificationLoss),
    ('weighted_softmax { logit_scale: 2 }',
     losses.WeightedSoftmaxClassificationLoss),
    ('penalty_reduced_logistic_focal_loss { alpha: 2 beta: 4 }',
     losses.PenaltyReducedLogisticFocalLoss),
])
def test_classification_losses(text, cls):
  assert isinstance(losses_builder.build_classification_loss(
      _parse(text, losses_pb2.ClassificationLoss)), cls)


def test_loss_missing_field():
  with pytest.raises(ValueError, match='Loss.classification_loss'):
    losses_builder.build(_parse(
        'localization_loss { l1_localization_loss {} }', losses_pb2.Loss))


# ------------------------------------------------------------ post-processing
def test_post_processing_builder_runs_nms():
  fns = post_processing_builder.build(_parse('''
      batch_non_max_suppression { score_threshold: 0.1 iou_threshold: 0.5
        max_detections_per_class: 5 max_total_detections: 3 }
      score_converter: SIGMOID''', post_processing_pb2.PostProcessing))
  scores = fns.score_converter_fn(tf.constant([[[0.0], [2.0], [-5.0]]]))
  np.testing.assert_allclose(scores.numpy()[0, :, 0],
                             [0.5, 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(5))],
                             rtol=1e-6)
  boxes = tf.constant([[[[0, 0, 1, 1]], [[0, 0, 0.9, 1]], [[0, 0, .1, .1]]]],
                      tf.float32)
  result = fns.non_max_suppression_fn(boxes, scores)
  # Box 1 (0.88) suppresses box 0 (IoU 0.9); box 2 is below the threshold.
  assert int(result.num_detections[0]) == 1
  np.testing.assert_allclose(result.nmsed_boxes.numpy()[0, 0], [0, 0, .9, 1])
  assert result.nmsed_boxes.shape == (1, 3, 4)
  with pytest.raises(ValueError, match='batch_non_max_suppression'):
    post_processing_builder.build(post_processing_pb2.PostProcessing())
  with pytest.raises(ValueError, match='iou_threshold'):
    post_processing_builder.build(_parse(
        'batch_non_max_suppression { iou_threshold: 1.5 }',
        post_processing_pb2.PostProcessing))


# --------------------------------------------------------------- preprocessor
def _tensor_dict():
  return {
      fields.image: tf.zeros([8, 8, 3], tf.float32),
      fields.groundtruth_boxes: tf.constant([[0.1, 0.2, 0.5, 0.6]]),
      fields.groundtruth_classes: tf.constant([3]),
      fields.groundtruth_weights: tf.constant([1.0]),
      fields.groundtruth_keypoints: tf.constant([[[0.2, 0.3], [0.4, 0.5]]]),
      fields.groundtruth_keypoint_visibilities: tf.constant([[True, True]]),
  }


def test_preprocess_fn_flips_with_permutation():
  steps = [_parse('random_horizontal_flip { keypoint_flip_permutation: [1, 0] '
                  'probability: 1.0 }', preprocessor_pb2.PreprocessingStep),
           _parse('random_adjust_brightness { max_delta: 0.1 }',
                  preprocessor_pb2.PreprocessingStep)]
  fn = preprocessor_builder.build_preprocess_fn(steps)
  out = fn(_tensor_dict())
  np.testing.assert_allclose(out[fields.groundtruth_boxes].numpy(),
                             [[0.1, 0.4, 0.5, 0.8]], atol=1e-6)
  # x -> 1 - x, then keypoints swapped by the permutation [1, 0].
  np.testing.assert_allclose(out[fields.groundtruth_keypoints].numpy(),
                             [[[0.4, 0.5], [0.2, 0.7]]], atol=1e-6)


@pytest.mark.parametrize('text', [
    'random_vertical_flip { }',
    'random_pixel_value_scale { minval: 0.9 maxval: 1.1 }',
    'random_image_scale { min_scale_ratio: 0.5 max_scale_ratio: 2.0 }',
    'random_rgb_to_gray { probability: 0.5 }',
    'random_adjust_contrast { }',
    'random_adjust_hue { }',
    'random_adjust_saturation { }',
    'random_distort_color { color_ordering: 1 }',
    'random_crop_image { min_object_covered: 0.5 }',
    'random_pad_image { }',
    'ssd_random_crop { }',
    'ssd_random_crop { operations { min_object_covered: 0.3 min_aspect_ratio: '
    '0.5 max_aspect_ratio: 2.0 min_area: 0.1 max_area: 1.0 overlap_thresh: 0.3 '
    'random_coef: 0.15 } }',
    'random_scale_crop_and_pad_to_square { output_size: 16 }',
])
def test_every_step_builds_and_runs(text):
  function, kwargs = preprocessor_builder.build(
      _parse(text, preprocessor_pb2.PreprocessingStep))
  if 'keypoint_flip_permutation' in kwargs:
    kwargs['keypoint_flip_permutation'] = (0, 1)
  out = function(_tensor_dict(), **kwargs)
  assert out[fields.image].shape.rank == 3
  boxes = out[fields.groundtruth_boxes].numpy()
  assert boxes.shape[-1] == 4 and np.all((boxes >= 0) & (boxes <= 1))


def test_preprocessor_errors_name_the_step():
  bad = _parse('random_horizontal_flip { keypoint_flip_permutation: [0, 0] }',
               preprocessor_pb2.PreprocessingStep)
  with pytest.raises(ValueError, match=r'data_augmentation_options\[1\]'):
    preprocessor_builder.build_preprocess_fn(
        [preprocessor_pb2.PreprocessingStep(
            random_adjust_hue=preprocessor_pb2.RandomAdjustHue()), bad])
  assert preprocessor_builder.build_preprocess_fn([]) is None


# ------------------------------------------------------------------ optimizer
def test_optimizer_builder_momentum_with_cosine():
  built = optimizer_builder.build(_parse('''
      momentum_optimizer {
        learning_rate { cosine_decay_learning_rate {
          learning_rate_base: 0.04 total_steps: 100 warmup_learning_rate: 0.01
          warmup_steps: 10 } }
        momentum_optimizer_value: 0.8 }
      use_moving_average: false''', optimizer_pb2.Optimizer),
                                  global_clipnorm=10.0)
  assert isinstance(built.optimizer, tf.keras.optimizers.SGD)
  assert built.optimizer.momentum == pytest.approx(0.8)
  assert built.optimizer.global_clipnorm == pytest.approx(10.0)
  assert float(built.learning_rate(5)) == pytest.approx(0.025)


@pytest.mark.parametrize('text,cls', [
    ('adam_optimizer { learning_rate { constant_learning_rate { '
     'learning_rate: 0.001 } } }', tf.keras.optimizers.Adam),
    ('rms_prop_optimizer { learning_rate { exponential_decay_learning_rate { '
     'initial_learning_rate: 0.004 decay_steps: 10 decay_factor: 0.5 } } }',
     tf.keras.optimizers.RMSprop),
    ('momentum_optimizer { learning_rate { manual_step_learning_rate { '
     'initial_learning_rate: 0.1 schedule { step: 5 learning_rate: 0.01 } } } }',
     tf.keras.optimizers.SGD),
])
def test_optimizer_variants(text, cls):
  built = optimizer_builder.build(_parse(text, optimizer_pb2.Optimizer))
  assert isinstance(built.optimizer, cls)
  assert built.optimizer.use_ema  # TF OD API default use_moving_average.


def test_optimizer_errors():
  with pytest.raises(ValueError, match='learning_rate is not set'):
    optimizer_builder.build(_parse('adam_optimizer {}',
                                   optimizer_pb2.Optimizer))
  with pytest.raises(ValueError, match='Optimizer.optimizer is empty'):
    optimizer_builder.build(optimizer_pb2.Optimizer())


# --------------------------------------------------------------- hyperparams
def test_hyperparams_builder():
  hp = hyperparams_builder.build(_parse('''
      activation: RELU_6
      regularizer { l2_regularizer { weight: 0.00004 } }
      initializer { truncated_normal_initializer { stddev: 0.03 } }
      batch_norm { decay: 0.97 epsilon: 0.001 scale: true }''',
                                        hyperparams_pb2.Hyperparams))
  assert hp.activation == 'relu6'
  assert hp.l2_weight_decay == pytest.approx(4e-5)
  assert hp.initializer_stddev == pytest.approx(0.03)
  assert hp.use_batch_norm and hp.batch_norm_momentum == pytest.approx(0.97)
  plain = hyperparams_builder.build(hyperparams_pb2.Hyperparams())
  assert not plain.use_batch_norm and plain.l2_weight_decay == 0.0
  with pytest.raises(ValueError, match='group_norm'):
    hyperparams_builder.build(_parse('group_norm {}',
                                     hyperparams_pb2.Hyperparams))
  with pytest.raises(ValueError, match='variance_scaling_initializer'):
    hyperparams_builder.build(_parse(
        'initializer { variance_scaling_initializer { factor: 3.0 } }',
        hyperparams_pb2.Hyperparams))
