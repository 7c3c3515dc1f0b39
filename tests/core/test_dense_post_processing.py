"""Tests for od_meta.core.dense_post_processing."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import dense_post_processing as dpp
from od_meta.core import target_assigner


# ----------------------------------------------------------------- peaks ---


def _planted_heatmap():
  """[2, 4, 5, 2]: image 0 has planted peaks, image 1 is empty."""
  heat = np.zeros([2, 4, 5, 2], np.float32)
  heat[0, 1, 1, 0] = 0.9   # class 0 peak
  heat[0, 1, 2, 0] = 0.8   # adjacent to 0.9 in class 0: suppressed
  heat[0, 1, 1, 1] = 0.5   # same location, class 1: its own peak
  heat[0, 3, 4, 1] = 0.7   # class 1 peak in the corner (SAME padding)
  heat[0, 3, 0, 1] = 0.3   # class 1 peak
  heat[0, 0, 4, 1] = 0.05  # class 1 peak below the 0.1 threshold
  return heat


def test_extract_peaks_planted():
  peaks = dpp.extract_peaks(_planted_heatmap(), max_detections=6,
                            score_threshold=0.1)
  # Image 0: peaks sorted by score 0.9 (1,1,c0), 0.7 (3,4,c1),
  # 0.5 (1,1,c1), 0.3 (3,0,c1); 0.8 is not a local max (0.9 beside it);
  # 0.05 is a peak but <= 0.1.
  np.testing.assert_allclose(peaks.scores[0].numpy(),
                             [0.9, 0.7, 0.5, 0.3, 0.0, 0.0])
  np.testing.assert_array_equal(peaks.y_indices[0, :4], [1, 3, 1, 3])
  np.testing.assert_array_equal(peaks.x_indices[0, :4], [1, 4, 1, 0])
  np.testing.assert_array_equal(peaks.classes[0, :4], [0, 1, 1, 1])
  np.testing.assert_array_equal(peaks.valid[0],
                                [True] * 4 + [False] * 2)
  np.testing.assert_array_equal(peaks.num_valid, [4, 0])
  # Image 1 (all zeros) has nothing valid and zero scores.
  np.testing.assert_array_equal(peaks.scores[1], np.zeros(6))
  assert peaks.scores.dtype == tf.float32
  for t in (peaks.y_indices, peaks.x_indices, peaks.classes,
            peaks.num_valid):
    assert t.dtype == tf.int32


def test_extract_peaks_threshold_zero_keeps_low_peak():
  peaks = dpp.extract_peaks(_planted_heatmap(), max_detections=10)
  # Threshold 0: the 0.05 peak at (0, 4, c1) becomes the 5th valid peak.
  assert peaks.num_valid.numpy().tolist() == [5, 0]
  assert peaks.scores[0, 4].numpy() == pytest.approx(0.05)
  assert (peaks.y_indices[0, 4].numpy(), peaks.x_indices[0, 4].numpy(),
          peaks.classes[0, 4].numpy()) == (0, 4, 1)


def test_extract_peaks_k_larger_than_map():
  heat = np.array([0.1, 0.2, 0.6, 0.3], np.float32).reshape([1, 2, 2, 1])
  peaks = dpp.extract_peaks(heat, max_detections=100)
  # k = min(100, 2 * 2 * 1) = 4; only 0.6 is a local max on a 2x2 map.
  assert peaks.scores.shape == (1, 4)
  np.testing.assert_allclose(peaks.scores.numpy(), [[0.6, 0, 0, 0]])
  np.testing.assert_array_equal(peaks.num_valid, [1])
  assert (peaks.y_indices[0, 0].numpy(), peaks.x_indices[0, 0].numpy()) == (
      1, 0)


def test_extract_peaks_plateau_and_nan():
  heat = np.zeros([1, 3, 4, 1], np.float32)
  heat[0, 0, 0, 0] = 0.4
  heat[0, 0, 1, 0] = 0.4   # equal neighbours: both are maxima (CenterNet)
  heat[0, 2, 2, 0] = np.nan
  heat[0, 2, 3, 0] = 0.2   # next to a NaN: still a peak
  peaks = dpp.extract_peaks(heat, max_detections=4)
  np.testing.assert_allclose(peaks.scores.numpy(), [[0.4, 0.4, 0.2, 0.0]])
  assert not np.isnan(peaks.scores.numpy()).any()
  assert peaks.num_valid.numpy().tolist() == [3]


def test_extract_peaks_empty_map():
  peaks = dpp.extract_peaks(tf.zeros([2, 0, 3, 4]), max_detections=100)
  assert peaks.scores.shape == (2, 0)
  np.testing.assert_array_equal(peaks.num_valid, [0, 0])


def test_extract_peaks_tf_function_dynamic_shapes():
  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2])])
  def run(heat):
    return dpp.extract_peaks(heat, max_detections=6, score_threshold=0.1)

  peaks = run(tf.constant(_planted_heatmap()))
  np.testing.assert_allclose(peaks.scores[0].numpy(),
                             [0.9, 0.7, 0.5, 0.3, 0.0, 0.0])
  # Fewer entries than max_detections with dynamic shapes: 1 * 1 * 2 = 2.
  small = run(tf.constant([[[[0.5, 0.2]]]]))
  assert small.scores.shape == (1, 2)
  np.testing.assert_array_equal(small.classes, [[0, 1]])


def test_extract_peaks_bad_arguments():
  heat = tf.zeros([1, 2, 2, 1])
  with pytest.raises(ValueError, match='heatmap'):
    dpp.extract_peaks(tf.zeros([2, 2, 1]))
  with pytest.raises(ValueError, match='max_pool_kernel_size'):
    dpp.extract_peaks(heat, max_pool_kernel_size=2)
  with pytest.raises(ValueError, match='max_detections'):
    dpp.extract_peaks(heat, max_detections=0)
  with pytest.raises(ValueError, match='score_threshold'):
    dpp.extract_peaks(heat, score_threshold=float('nan'))


# ------------------------------------------------------------- gathering ---


def test_gather_at_locations():
  fmap = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape([2, 3, 4, 2])
  out = dpp.gather_at_locations(fmap, [[0, 2], [1, 1]], [[3, 0], [2, 2]])
  # Flat index ((b * 3 + y) * 4 + x) * 2: b0 (0,3) -> 6; b0 (2,0) -> 16;
  # b1 (1,2) -> (4 * 4 + 2) * 2 = 36 (twice).
  np.testing.assert_allclose(out.numpy(), [[[6, 7], [16, 17]],
                                           [[36, 37], [36, 37]]])


def test_gather_at_locations_empty_and_bad_rank():
  out = dpp.gather_at_locations(tf.zeros([1, 2, 2, 3]),
                                tf.zeros([1, 0], tf.int32),
                                tf.zeros([1, 0], tf.int32))
  assert out.shape == (1, 0, 3)
  with pytest.raises(ValueError, match='feature_map'):
    dpp.gather_at_locations(tf.zeros([2, 2, 3]), [[0]], [[0]])


# ---------------------------------------------------------- box decoding ---


def test_decode_center_net_boxes_golden():
  boxes = dpp.decode_center_net_boxes(
      y_indices=[[2, 0]], x_indices=[[3, 0]],
      sizes=[[[4.0, 2.0], [2.0, 2.0]]], offsets=[[[0.5, 0.25], [0.0, 0.0]]],
      stride=4, image_height=32, image_width=64)
  # "Objects as Points" sec. 4, times stride R = 4:
  # box 0: center_y = (2 + 0.5) * 4 = 10, center_x = (3 + 0.25) * 4 = 13,
  #   half_h = 4 * 4 / 2 = 8, half_w = 2 * 4 / 2 = 4
  #   -> pixels [2, 9, 18, 17] -> [2/32, 9/64, 18/32, 17/64].
  # box 1: center (0, 0), half 4 -> [-4, -4, 4, 4] -> clipped
  #   [0, 0, 4/32, 4/64].
  np.testing.assert_allclose(
      boxes.numpy(), [[[0.0625, 0.140625, 0.5625, 0.265625],
                       [0.0, 0.0, 0.125, 0.0625]]], atol=1e-7)
  assert boxes.dtype == tf.float32


def test_decode_center_net_boxes_per_image_size_and_negative_size():
  boxes = dpp.decode_center_net_boxes(
      y_indices=[[1], [1]], x_indices=[[1], [1]],
      sizes=[[[2.0, -3.0]], [[2.0, 2.0]]], offsets=None, stride=2,
      image_height=tf.constant([8.0, 16.0]), image_width=[8.0, 16.0])
  # center (1 * 2, 1 * 2) = (2, 2); half_h = 2 * 2 / 2 = 2.
  # image 0: width -3 clamped to 0 -> [0, 2, 4, 2] / 8.
  # image 1: [0, 0, 4, 4] / 16.
  np.testing.assert_allclose(boxes.numpy(), [[[0.0, 0.25, 0.5, 0.25]],
                                             [[0.0, 0.0, 0.25, 0.25]]])


def test_decode_center_net_boxes_bad_arguments():
  args = dict(y_indices=[[0]], x_indices=[[0]], sizes=[[[1.0, 1.0]]],
              offsets=[[[0.0, 0.0]]], stride=4, image_height=8,
              image_width=8)
  with pytest.raises(ValueError, match='stride'):
    dpp.decode_center_net_boxes(**dict(args, stride=0))
  with pytest.raises(ValueError, match='sizes'):
    dpp.decode_center_net_boxes(**dict(args, sizes=[[[1.0, 1.0, 1.0]]]))
  with pytest.raises(ValueError, match='image_height'):
    dpp.decode_center_net_boxes(**dict(args, image_height=-1))


def test_decode_ltrb_boxes_golden():
  boxes = dpp.decode_ltrb_boxes(
      y_indices=[[2]], x_indices=[[3]], distances=[[[5.0, 6.0, 3.0, 10.0]]],
      stride=4, image_height=32, image_width=64)
  # Location center (coordinates_grid): (2 * 4 + 4 // 2, 3 * 4 + 2)
  # = (10, 14); box = [10 - 5, 14 - 6, 10 + 3, 14 + 10] = [5, 8, 13, 24]
  # -> [5/32, 8/64, 13/32, 24/64] (TTFNet Eq. 3-4).
  np.testing.assert_allclose(boxes.numpy(),
                             [[[0.15625, 0.125, 0.40625, 0.375]]])


def test_decode_ltrb_boxes_matches_coordinates_grid_round_trip():
  stride, height, width = 4, 5, 6
  grid = target_assigner.coordinates_grid(height, width, stride).numpy()
  box_px = np.array([3.0, 5.0, 17.0, 20.0])  # inside the 20 x 24 input
  ys, xs = [1, 2, 3], [1, 3, 4]
  centers = grid[ys, xs]  # [3, 2] (y, x) of the locations
  # Distances from each location center to the sides (t, l, b, r).
  dist = np.stack([centers[:, 0] - box_px[0], centers[:, 1] - box_px[1],
                   box_px[2] - centers[:, 0], box_px[3] - centers[:, 1]],
                  axis=-1)
  boxes = dpp.decode_ltrb_boxes([ys], [xs], dist[np.newaxis], stride,
                                image_height=20, image_width=24)
  expected = box_px / np.array([20.0, 24.0, 20.0, 24.0])
  np.testing.assert_allclose(boxes.numpy()[0], np.tile(expected, [3, 1]),
                             atol=1e-6)


def test_decode_ltrb_boxes_clamps_and_clips():
  boxes = dpp.decode_ltrb_boxes([[0]], [[0]], [[[-1.0, 4.0, 2.0, 100.0]]],
                                stride=2, image_height=10, image_width=10)
  # center (1, 1); t = -1 -> 0: [1, 1 - 4, 1 + 2, 1 + 100]
  # = [1, -3, 3, 101] -> [0.1, 0 (clipped), 0.3, 1 (clipped)].
  np.testing.assert_allclose(boxes.numpy(), [[[0.1, 0.0, 0.3, 1.0]]],
                             atol=1e-7)
  with pytest.raises(ValueError, match='stride'):
    dpp.decode_ltrb_boxes([[0]], [[0]], [[[1.0] * 4]], stride=2.5,
                          image_height=10, image_width=10)
  with pytest.raises(ValueError, match='distances'):
    dpp.decode_ltrb_boxes([[0]], [[0]], [[[1.0] * 2]], stride=2,
                          image_height=10, image_width=10)


def test_peaks_to_boxes_end_to_end_in_tf_function():
  heat = np.zeros([1, 8, 8, 1], np.float32)
  heat[0, 2, 3, 0] = 0.8
  sizes = np.zeros([1, 8, 8, 2], np.float32)
  sizes[0, 2, 3] = [4.0, 2.0]
  offsets = np.zeros([1, 8, 8, 2], np.float32)
  offsets[0, 2, 3] = [0.5, 0.25]

  @tf.function
  def decode(heat, sizes, offsets):
    peaks = dpp.extract_peaks(heat, max_detections=3, score_threshold=0.3)
    size = dpp.gather_at_locations(sizes, peaks.y_indices, peaks.x_indices)
    off = dpp.gather_at_locations(offsets, peaks.y_indices, peaks.x_indices)
    boxes = dpp.decode_center_net_boxes(peaks.y_indices, peaks.x_indices,
                                        size, off, 4, 32, 32)
    return boxes, peaks.num_valid

  boxes, num_valid = decode(heat, sizes, offsets)
  assert num_valid.numpy().tolist() == [1]
  # Same arithmetic as the golden test: pixels [2, 9, 18, 17] / 32.
  np.testing.assert_allclose(boxes[0, 0].numpy(),
                             [2 / 32, 9 / 32, 18 / 32, 17 / 32], atol=1e-7)


# ----------------------------------------------------- keypoint snapping ---


def _pose_scene():
  """One person box [4, 4, 12, 12] (output-stride px), 3 keypoint types.

  Scaled box (1.2): center 8, half 8 * 1.2 / 2 = 4.8 -> [3.2, 12.8].
  Search radius: 0.3 * max(8, 8) = 2.4.
  """
  heat = np.zeros([1, 16, 16, 3], np.float32)
  offsets = np.zeros([1, 16, 16, 2], np.float32)
  heat[0, 7, 6, 0] = 0.8              # type 0 candidate ...
  offsets[0, 7, 6] = [0.25, 0.5]      # ... refined to (7.25, 6.5)
  heat[0, 13, 13, 1] = 0.9            # type 1: outside the scaled box
  heat[0, 5, 7, 2] = 0.6              # type 2: in box but 3 px away
  heat[0, 5, 10, 2] = 0.05            # type 2: at the regression, < 0.1
  regressed = np.array([[[[6.0, 6.0], [12.0, 12.0], [5.0, 10.0]]]],
                       np.float32)
  boxes = np.array([[[4.0, 4.0, 12.0, 12.0]]], np.float32)
  return regressed, heat, offsets, boxes


def test_snap_keypoints_golden():
  regressed, heat, offsets, boxes = _pose_scene()
  keypoints, scores = dpp.snap_keypoints_to_candidates(
      regressed, heat, offsets, boxes)
  # Type 0: candidate (7 + 0.25, 6 + 0.5) = (7.25, 6.5), distance
  #   sqrt(1.25^2 + 0.5^2) = sqrt(1.8125) = 1.346 <= 2.4, inside -> snapped,
  #   score 0.8.
  # Type 1: candidate (13, 13), distance sqrt(2) = 1.414 <= 2.4 but
  #   13 > 12.8 (outside the scaled box) -> regressed (12, 12), score 0.1.
  # Type 2: candidate (5, 7) inside, distance 3 > 2.4 -> regressed (5, 10),
  #   score 0.1; the 0.05 peak at (5, 10) is under the 0.1 threshold.
  np.testing.assert_allclose(keypoints.numpy(),
                             [[[[7.25, 6.5], [12.0, 12.0], [5.0, 10.0]]]])
  np.testing.assert_allclose(scores.numpy(), [[[0.8, 0.1, 0.1]]])
  assert keypoints.dtype == tf.float32 and scores.dtype == tf.float32


def test_snap_keypoints_relaxed_rules_match_everything():
  regressed, heat, offsets, boxes = _pose_scene()
  keypoints, scores = dpp.snap_keypoints_to_candidates(
      regressed, heat, offsets, boxes, box_scale=2.0,
      candidate_search_scale=0.5, keypoint_candidate_score_threshold=0.01,
      unmatched_keypoint_score=0.0)
  # Scaled box [0, 16], radius 4: type 1 snaps to (13, 13) (0.9); type 2
  # picks the 0.05 peak at distance 0 over (5, 7) at distance 3.
  np.testing.assert_allclose(keypoints.numpy(),
                             [[[[7.25, 6.5], [13.0, 13.0], [5.0, 10.0]]]])
  np.testing.assert_allclose(scores.numpy(), [[[0.8, 0.9, 0.05]]])


def test_snap_keypoints_admissible_before_nearest():
  heat = np.zeros([1, 16, 16, 1], np.float32)
  heat[0, 13, 8, 0] = 0.9   # nearer candidate, outside the scaled box
  heat[0, 9, 8, 0] = 0.5    # farther candidate, admissible
  regressed = np.array([[[[11.5, 8.0]]]], np.float32)
  boxes = np.array([[[2.0, 4.0, 12.0, 12.0]]], np.float32)
  # Box h = 10, w = 8, center (7, 8); box_scale 1.1: y in 7 +- 5.5 =
  # [1.5, 12.5], x in 8 +- 4.4 = [3.6, 12.4]; radius 0.3 * 10 = 3.
  # (13, 8): distance 1.5 but 13 > 12.5 (outside). (9, 8): distance 2.5
  # <= 3 and inside -> snapped ("Objects as Points" sec. 4.3: the closest
  # detection inside the box; the TF OD API would reject the nearest one
  # and leave the keypoint unmatched).
  keypoints, scores = dpp.snap_keypoints_to_candidates(
      regressed, heat, None, boxes, box_scale=1.1)
  np.testing.assert_allclose(keypoints.numpy(), [[[[9.0, 8.0]]]])
  np.testing.assert_allclose(scores.numpy(), [[[0.5]]])


def test_snap_keypoints_score_distance_ratio():
  heat = np.zeros([1, 16, 16, 1], np.float32)
  heat[0, 9, 8, 0] = 0.2    # distance 1: ratio 0.2 / 1 = 0.2
  heat[0, 8, 10, 0] = 0.9   # distance 2: ratio 0.9 / 2 = 0.45
  regressed = np.array([[[[8.0, 8.0]]]], np.float32)
  boxes = np.array([[[4.0, 4.0, 12.0, 12.0]]], np.float32)  # radius 2.4
  kp_dist, sc_dist = dpp.snap_keypoints_to_candidates(
      regressed, heat, None, boxes)
  kp_ratio, sc_ratio = dpp.snap_keypoints_to_candidates(
      regressed, heat, None, boxes,
      candidate_ranking_mode='score_distance_ratio')
  np.testing.assert_allclose(kp_dist.numpy(), [[[[9.0, 8.0]]]])
  np.testing.assert_allclose(sc_dist.numpy(), [[[0.2]]])
  np.testing.assert_allclose(kp_ratio.numpy(), [[[[8.0, 10.0]]]])
  np.testing.assert_allclose(sc_ratio.numpy(), [[[0.9]]])


def test_snap_keypoints_per_keypoint_offsets_and_no_boxes():
  heat = np.zeros([1, 10, 10, 2], np.float32)
  heat[0, 7, 6, :] = [0.7, 0.6]
  offsets = np.zeros([1, 10, 10, 4], np.float32)
  offsets[0, 7, 6] = [0.25, 0.5, -0.5, 0.0]  # (dy, dx) of type 0, type 1
  regressed = np.array([[[[7.0, 6.0], [7.0, 6.0]],
                         [[0.0, 0.0], [9.0, 9.0]]]], np.float32)
  keypoints, scores = dpp.snap_keypoints_to_candidates(
      regressed, heat, offsets, None)
  # No box: every keypoint takes its nearest candidate of its type:
  # type 0 -> (7.25, 6.5) (0.7), type 1 -> (6.5, 6.0) (0.6).
  np.testing.assert_allclose(
      keypoints.numpy(), [[[[7.25, 6.5], [6.5, 6.0]],
                           [[7.25, 6.5], [6.5, 6.0]]]])
  np.testing.assert_allclose(scores.numpy(), [[[0.7, 0.6], [0.7, 0.6]]])


def test_snap_keypoints_tf_function_and_empty_detections():
  regressed, heat, offsets, boxes = _pose_scene()

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, 3, 2]), tf.TensorSpec([None, None, None, 3]),
      tf.TensorSpec([None, None, None, 2]), tf.TensorSpec([None, None, 4])])
  def run(regressed, heat, offsets, boxes):
    return dpp.snap_keypoints_to_candidates(
        regressed, heat, offsets, boxes, num_candidates_per_keypoint=5)

  keypoints, scores = run(regressed, heat, offsets, boxes)
  np.testing.assert_allclose(keypoints.numpy(),
                             [[[[7.25, 6.5], [12.0, 12.0], [5.0, 10.0]]]])
  np.testing.assert_allclose(scores.numpy(), [[[0.8, 0.1, 0.1]]])
  keypoints, scores = run(np.zeros([1, 0, 3, 2], np.float32), heat, offsets,
                          np.zeros([1, 0, 4], np.float32))
  assert keypoints.shape == (1, 0, 3, 2) and scores.shape == (1, 0, 3)


def test_snap_keypoints_no_candidates_keeps_regression():
  regressed, _, offsets, boxes = _pose_scene()
  keypoints, scores = dpp.snap_keypoints_to_candidates(
      regressed, np.zeros([1, 16, 16, 3], np.float32), offsets, boxes)
  np.testing.assert_allclose(keypoints.numpy(), regressed)
  np.testing.assert_allclose(scores.numpy(), np.full([1, 1, 3], 0.1))


def test_snap_keypoints_bad_arguments():
  regressed, heat, offsets, boxes = _pose_scene()
  with pytest.raises(ValueError, match='candidate_ranking_mode'):
    dpp.snap_keypoints_to_candidates(regressed, heat, offsets, boxes,
                                     candidate_ranking_mode='closest')
  with pytest.raises(ValueError, match='keypoint_offsets'):
    dpp.snap_keypoints_to_candidates(regressed, heat,
                                     np.zeros([1, 16, 16, 4], np.float32),
                                     boxes)
  with pytest.raises(ValueError, match='regressed_keypoints'):
    dpp.snap_keypoints_to_candidates(regressed[..., :2, :], heat, offsets,
                                     boxes)
  with pytest.raises(ValueError, match='boxes'):
    dpp.snap_keypoints_to_candidates(regressed, heat, offsets, boxes[0])
  with pytest.raises(ValueError, match='box_scale'):
    dpp.snap_keypoints_to_candidates(regressed, heat, offsets, boxes,
                                     box_scale=0.0)


# ------------------------------------------------------------ flip test ---


def test_flip_test_merge_golden():
  heat = np.array([0.2, 0.4, 0.6], np.float32).reshape([1, 1, 3, 1])
  heat_flipped = np.array([0.8, 0.0, 0.2], np.float32).reshape([1, 1, 3, 1])
  size = np.array([[1, 2], [3, 4], [5, 6]], np.float32).reshape([1, 1, 3, 2])
  size_flipped = np.array([[7, 8], [1, 1], [3, 2]],
                          np.float32).reshape([1, 1, 3, 2])
  merged_heat, merged_size = dpp.flip_test_merge(heat, heat_flipped, size,
                                                 size_flipped)
  # Un-mirrored flipped heatmap: [0.2, 0.0, 0.8];
  # average: [(0.2 + 0.2) / 2, (0.4 + 0) / 2, (0.6 + 0.8) / 2]
  # = [0.2, 0.2, 0.7].
  np.testing.assert_allclose(merged_heat.numpy().ravel(), [0.2, 0.2, 0.7],
                             atol=1e-7)
  # Un-mirrored sizes: [[3, 2], [1, 1], [7, 8]] (no sign change);
  # average: [[2, 2], [2, 2.5], [6, 7]].
  np.testing.assert_allclose(merged_size.numpy().reshape([3, 2]),
                             [[2, 2], [2, 2.5], [6, 7]])


def test_flip_test_merge_of_exact_mirror_is_identity():
  heat = tf.random.uniform([2, 3, 5, 4], seed=7)
  size = tf.random.uniform([2, 3, 5, 2], seed=8)
  merged_heat, merged_size = tf.function(dpp.flip_test_merge)(
      heat, tf.reverse(heat, [2]), size, tf.reverse(size, [2]))
  np.testing.assert_allclose(merged_heat.numpy(), heat.numpy(), atol=1e-6)
  np.testing.assert_allclose(merged_size.numpy(), size.numpy(), atol=1e-6)


def test_flip_test_merge_shape_mismatch():
  with pytest.raises(ValueError, match='heatmap_flipped'):
    dpp.flip_test_merge(tf.zeros([1, 2, 3, 1]), tf.zeros([1, 2, 4, 1]),
                        tf.zeros([1, 2, 3, 2]), tf.zeros([1, 2, 3, 2]))


def test_unflip_keypoint_maps_golden():
  # 1 x 1 x 3 map, K = 3 (nose, left_eye, right_eye), permutation
  # [0, 2, 1]. The mirror's left-eye channel (1) at its column 0 is the
  # image's right eye (2) at column 2; its vector (dy, dx) = (1, 2) becomes
  # (1, -2).
  heat = np.zeros([1, 1, 3, 3], np.float32)
  heat[0, 0, 0] = [0.1, 0.7, 0.2]
  reg = np.zeros([1, 1, 3, 6], np.float32)
  reg[0, 0, 0] = [5, 6, 1, 2, 3, 4]
  out_heat, out_reg = dpp.unflip_keypoint_maps(heat, reg, [0, 2, 1])
  np.testing.assert_allclose(out_heat.numpy()[0, 0, 2], [0.1, 0.2, 0.7])
  np.testing.assert_allclose(out_heat.numpy()[0, 0, :2], 0.0)
  np.testing.assert_allclose(out_reg.numpy()[0, 0, 2],
                             [5, -6, 3, -4, 1, -2])


def test_unflip_keypoint_maps_uses_the_inverse_permutation():
  # A 3-cycle (not its own inverse): mirror type k = image type perm[k],
  # so image type j reads mirror channel k with perm[k] = j.
  heat = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
  reg = np.zeros([1, 1, 1, 6], np.float32)
  out_heat, _ = dpp.unflip_keypoint_maps(heat, reg, [1, 2, 0])
  # perm: mirror 0 -> image 1, mirror 1 -> image 2, mirror 2 -> image 0.
  np.testing.assert_allclose(out_heat.numpy()[0, 0, 0], [30.0, 10.0, 20.0])


def test_unflip_keypoint_maps_errors():
  heat = tf.zeros([1, 2, 2, 3])
  reg = tf.zeros([1, 2, 2, 6])
  with pytest.raises(ValueError, match='not a permutation'):
    dpp.unflip_keypoint_maps(heat, reg, [0, 1, 1])
  with pytest.raises(ValueError, match='expected K and 2K'):
    dpp.unflip_keypoint_maps(heat, tf.zeros([1, 2, 2, 4]), [0, 2, 1])
