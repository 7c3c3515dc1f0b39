"""Tests of groundtruth coverage: `GroundtruthCoverage` of the target
assigners, `DetectionModel.groundtruth_coverage` and
od_meta.analysis.coverage.

Hand-placed anchors, normalized to a 32x32 frame:
  a0 = [0, 0, .5, .5]       (level 0, stride 8)
  a1 = [.5, .5, 1, 1]       (level 0)
  a2 = [0, 0, .25, .25]     (level 1, stride 16)
Groundtruth:
  g0 = [0, 0, .5, .5]: IoU 1 with a0, 0 with a1, .0625 / .25 = .25 with a2;
  g1 = [.5, .5, .75, .75]: IoU .25 with a1, 0 with a0 and a2.
"""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.analysis import coverage
from od_meta.anchor_generators import multiple_grid_anchor_generator as mgag
from od_meta.anchor_generators import point_anchor_generator
from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_list
from od_meta.core import standard_fields as fields
from od_meta.core import target_assigner as ta
from od_meta.core.region_similarity_calculator import IouSimilarity
from od_meta.heads import box_predictor
from od_meta.matchers import argmax_matcher
from od_meta.matchers import bipartite_matcher
from od_meta.meta_architectures import ssd_meta_arch
from od_meta.target_assigners import center_net_target_assigner
from od_meta.target_assigners import fcos_target_assigner

ANCHORS = box_list.BoxList(tf.constant(
    [[0, 0, .5, .5], [.5, .5, 1, 1], [0, 0, .25, .25]], tf.float32))
LEVELS = [ta.AnchorLevel(8, 2), ta.AnchorLevel(16, 1)]
GT = box_list.BoxList(tf.constant([[0, 0, .5, .5], [.5, .5, .75, .75]],
                                  tf.float32))


def _iou_assigner(threshold, force_match=True):
  return ta.TargetAssigner(
      IouSimilarity(),
      argmax_matcher.ArgMaxMatcher(threshold, threshold,
                                   force_match_for_each_row=force_match),
      faster_rcnn_box_coder.FasterRcnnBoxCoder())


def test_iou_coverage_counts_anchors_at_the_threshold_not_forced_matches():
  cov = _iou_assigner(0.5).groundtruth_coverage(ANCHORS, GT, levels=LEVELS)
  np.testing.assert_array_equal(cov.num_positives, [1, 0])
  np.testing.assert_array_equal(cov.level, [0, -1])
  np.testing.assert_allclose(cov.best_iou, [1.0, 0.25], atol=1e-6)
  np.testing.assert_array_equal(cov.matched, [True, False])
  np.testing.assert_array_equal(cov.level_strides, [8, 16])
  # The same assigner's training match does force g1 onto a1.
  match = _iou_assigner(0.5).assign(ANCHORS, GT).matches.numpy()
  assert match[1] == 1


def test_iou_coverage_levels_tie_to_the_finer_level():
  # At 0.2, g0 has a0 (level 0) and a2 (level 1): a tie -> level 0; g1 has
  # a1 (level 0).
  cov = _iou_assigner(0.2).groundtruth_coverage(ANCHORS, GT, levels=LEVELS)
  np.testing.assert_array_equal(cov.num_positives, [2, 1])
  np.testing.assert_array_equal(cov.level, [0, 0])


def test_iou_coverage_without_levels_reports_level_zero():
  cov = _iou_assigner(0.2).groundtruth_coverage(ANCHORS, GT)
  np.testing.assert_array_equal(cov.level, [0, 0])
  assert np.isnan(cov.level_strides.numpy()).all()


def test_bipartite_matcher_coverage_is_its_own_matches():
  assigner = ta.TargetAssigner(IouSimilarity(),
                               bipartite_matcher.GreedyBipartiteMatcher(),
                               faster_rcnn_box_coder.FasterRcnnBoxCoder())
  cov = assigner.groundtruth_coverage(ANCHORS, GT, levels=LEVELS)
  # Greedy: g0 takes a0 (IoU 1), then g1 takes a1 (IoU .25).
  np.testing.assert_array_equal(cov.num_positives, [1, 1])


def test_empty_groundtruth_gives_empty_coverage():
  empty = box_list.BoxList(tf.zeros([0, 4]))
  cov = _iou_assigner(0.5).groundtruth_coverage(ANCHORS, empty,
                                                levels=LEVELS)
  assert cov.num_positives.shape == (0,)
  assert cov.best_iou.shape == (0,)


def test_fcos_rule_coverage_from_its_match():
  # Points of a 32x32 image at stride 8 (4x4 locations, centers 4, 12, 20,
  # 28 px) and 16 (2x2, centers 8, 24). A 2x2 px box at [1, 1, 3, 3] px
  # holds no location center: no positive. A 14x14 px box [2, 2, 16, 16]
  # px holds the stride-8 centers (4, 12) x (4, 12): 4 positives on level 0
  # (max ltrb distance <= 14 <= 64); the stride-16 center (8, 8) has
  # distance 8 (in [0, 64]) but level 1's range starts at 64: none there.
  generator = point_anchor_generator.PointAnchorGenerator(3, 4)
  anchors_list = generator.generate([(4, 4), (2, 2)], im_height=32,
                                    im_width=32)
  anchors = box_list.BoxList(tf.concat([a.get() for a in anchors_list], 0))
  levels = [ta.AnchorLevel(8, 16), ta.AnchorLevel(16, 4)]
  assigner = fcos_target_assigner.FCOSTargetAssigner(
      ltrb_distance_box_coder.LtrbDistanceBoxCoder(),
      size_ranges=[0, 64, -1])
  gt = box_list.BoxList(tf.constant([[1, 1, 3, 3], [2, 2, 16, 16]],
                                    tf.float32) / 32.0)
  cov = assigner.groundtruth_coverage(anchors, gt, levels=levels,
                                      image_shape=(32, 32))
  np.testing.assert_array_equal(cov.num_positives, [0, 4])
  np.testing.assert_array_equal(cov.level, [-1, 0])


def test_fcos_rule_coverage_needs_levels():
  assigner = fcos_target_assigner.FCOSTargetAssigner(
      ltrb_distance_box_coder.LtrbDistanceBoxCoder(),
      size_ranges=[0, 64, -1])
  with pytest.raises(ValueError, match='levels'):
    assigner.groundtruth_coverage(ANCHORS, GT)


def test_heatmap_coverage_center_collisions():
  # Stride 4 on a 32x32 input. Boxes 0 and 1 (class 0) have centers at
  # (5, 5) and (6, 6) px: both in cell (1, 1), box 1 loses. Box 2 has the
  # same center but class 1: its own peak. Box 3 (class 0) is in cell
  # (5, 5).
  assigner = center_net_target_assigner.CenterNetTargetAssigner(
      stride=4, num_classes=2)
  boxes = tf.constant([[4, 4, 6, 6], [4, 4, 8, 8], [4, 4, 6, 6],
                       [20, 20, 24, 24]], tf.float32) / 32.0
  classes = tf.constant([0, 0, 1, 0])
  cov = assigner.groundtruth_coverage(
      32, 32, [ta.FeatureLevel(4, 8, 8)], boxes, classes)
  np.testing.assert_array_equal(cov.num_positives, [1, 0, 1, 1])
  np.testing.assert_array_equal(cov.level, [0, -1, 0, 0])
  assert np.isnan(cov.best_iou.numpy()).all()
  np.testing.assert_array_equal(cov.level_strides, [4])


# ------------------------------------------------------- model-level coverage
class _FakeExtractor(tf.keras.Model):
  """32x32x3 -> 4x4 (stride 8) and 2x2 (stride 16) maps."""

  def __init__(self):
    super().__init__()
    self.conv1 = tf.keras.layers.Conv2D(4, 8, strides=8)
    self.conv2 = tf.keras.layers.Conv2D(4, 2, strides=2)

  def preprocess(self, images):
    return images / 127.5 - 1.0

  def call(self, inputs, training=False):
    f1 = self.conv1(inputs)
    return [f1, self.conv2(f1)]


def _resizer(image):
  return (tf.image.resize(image, [32, 32]),
          tf.constant([32, 32, 3], tf.int32))


def _tiling_generator(scales=(0.25, 0.5)):
  return mgag.create_ssd_anchors(
      num_layers=2, scales=list(scales), aspect_ratios=(1.0,),
      interpolated_scale_aspect_ratio=0.0, reduce_boxes_in_lowest_layer=False)


def _ssd():
  generator = _tiling_generator()
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder()
  return ssd_meta_arch.SSDMetaArch(
      is_training=False, num_classes=2, image_resizer_fn=_resizer,
      feature_extractor=_FakeExtractor(),
      box_predictor=box_predictor.ConvolutionalBoxPredictor(
          num_class_slots=3,
          num_predictions_per_location_list=(
              generator.num_anchors_per_location()), kernel_size=1),
      anchor_generator=generator, box_coder=coder,
      target_assigner=_iou_assigner(0.5), non_max_suppression_fn=None,
      score_conversion_fn=tf.sigmoid,
      loss_config=ssd_meta_arch.SSDLossConfig(
          classification_loss=None, localization_loss=None))


def _batch(boxes, classes, weights=None):
  """One image, in the (features, labels) layout of the input pipeline."""
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  n = len(boxes)
  features = {
      fields.InputDataFields.image: tf.zeros([1, 32, 32, 3]),
      fields.InputDataFields.true_image_shape: tf.constant([[32, 32, 3]]),
  }
  labels = {
      fields.InputDataFields.num_groundtruth_boxes: tf.constant([n]),
      fields.InputDataFields.groundtruth_boxes: tf.constant(boxes[None]),
      fields.InputDataFields.groundtruth_classes: tf.constant(
          np.asarray(classes, np.int32)[None]),
      fields.InputDataFields.groundtruth_weights: tf.constant(
          np.asarray(weights if weights is not None else [1.0] * n,
                     np.float32)[None]),
  }
  return features, labels


def test_ssd_coverage_of_a_batch_by_level():
  # The tiling anchors: 4x4 cells of 8 px (level 0), 2x2 of 16 px (level
  # 1). Box 0 is a level-0 cell, box 1 a level-1 cell, box 2 a 4x4 px box
  # (IoU .25 with its cell: unmatched).
  model = _ssd()
  features, labels = _batch(
      [[0, 0, .25, .25], [.5, .5, 1, 1], [0, 0, .125, .125]], [0, 1, 1])
  result = coverage.coverage_of_batch(model, features, labels)
  np.testing.assert_array_equal(result.num_positives, [1, 1, 0])
  np.testing.assert_array_equal(result.level, [0, 1, -1])
  np.testing.assert_array_equal(result.classes, [0, 1, 1])
  np.testing.assert_array_equal(result.level_strides, [8, 16])
  assert result.matched_share == pytest.approx(2 / 3)
  assert result.level_shares() == pytest.approx([1 / 3, 1 / 3])
  assert result.num_anchors == 20
  summary = result.summary({0: 'a', 1: 'b'})
  assert summary['matched_share_per_class'] == {'a': 1.0, 'b': 0.5}
  assert summary['levels'][1] == {'stride': 16.0, 'share_of_boxes':
                                  pytest.approx(1 / 3)}


def test_coverage_leaves_out_zero_weight_rows():
  model = _ssd()
  features, labels = _batch([[0, 0, .25, .25], [0, 0, .125, .125]], [0, 1],
                            weights=[1.0, 0.0])
  result = coverage.coverage_of_batch(model, features, labels)
  assert result.num_boxes == 1
  assert result.matched_share == 1.0


def test_probe_places_another_anchor_generator_on_the_same_maps():
  # Scales (.125, .25): 4 px anchors centered in the 8 px cells of level 0
  # ([2, 2, 6, 6] px for cell (0, 0)) and 8 px anchors centered in the
  # 16 px cells of level 1 ([20, 20, 28, 28] px for cell (1, 1)).
  #   box 0 = [0, 0, 8, 8] px: own cell anchor (IoU 1); small: IoU .25;
  #   box 1 = [2, 2, 6, 6] px: own: IoU .25; small: level 0, IoU 1;
  #   box 2 = [20, 20, 28, 28] px: own: IoU .14 / .25; small: level 1.
  model = _ssd()
  batch = _batch(np.array([[0, 0, 8, 8], [2, 2, 6, 6], [20, 20, 28, 28]])
                 / 32.0, [0, 1, 1])
  probe = coverage.CoverageProbe(model, tf.data.Dataset.from_tensors(batch),
                                 max_images=10)
  assert probe.num_images == 1
  assert probe.input_shape == (32, 32)
  assert probe.anchor_sizes() == [8.0, 16.0]
  own = probe.coverage()
  np.testing.assert_array_equal(own.num_positives, [1, 0, 0])
  small = probe.coverage(_tiling_generator((0.125, 0.25)))
  np.testing.assert_array_equal(small.num_positives, [0, 1, 1])
  np.testing.assert_array_equal(small.level, [-1, 0, 1])
  assert small.num_anchors == 20
  with pytest.raises(ValueError):
    coverage.merge([])
