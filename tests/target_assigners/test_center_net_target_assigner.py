import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import target_assigner
from od_meta.target_assigners import center_net_target_assigner

CenterNetTargetAssigner = center_net_target_assigner.CenterNetTargetAssigner


def _norm(pixel_boxes, size=64.):
  return tf.constant(np.array(pixel_boxes, np.float32) / size)


def _np(targets):
  return {k: v.numpy() for k, v in targets.items()}


def test_is_dense_target_assigner():
  assigner = CenterNetTargetAssigner(stride=4, num_classes=2)
  assert isinstance(assigner, target_assigner.DenseTargetAssigner)
  assert assigner.stride == 4


def test_single_box_golden():
  # 64 x 64 input, stride 4 -> 16 x 16 map. Box (input pixels)
  # [8, 12, 28, 44]: center (18, 28) -> /4 = (4.5, 7.0) -> location (4, 7),
  # offset (0.5, 0.0) (Objects as Points Eq. 2, p/R - floor(p/R));
  # size (20/4, 32/4) = (5, 8) output pixels.
  # Radius (CornerNet Sec. 3.2), h=5, w=8, m=0.7: r3 = (-18.2 +
  # sqrt(331.24 + 134.4)) / 2 = 1.6894 (r1 = 12.43, r2 = 24) -> r = 1,
  # sigma = 3/6 = 0.5.
  assigner = CenterNetTargetAssigner(stride=4, num_classes=3)
  t = _np(assigner.assign(64, 64, [_norm([[8., 12., 28., 44.]])],
                          [tf.constant([2], tf.int32)]))
  assert t['heatmap'].shape == (1, 16, 16, 3)
  assert t['size'].shape == (1, 16, 16, 2)
  assert t['center_weights'].shape == (1, 16, 16)
  heat = t['heatmap'][0, :, :, 2]
  assert heat[4, 7] == 1.0
  # (0, 1): exp(-1 / (2 * 0.25)) = exp(-2); (1, 1): exp(-4).
  assert heat[4, 8] == pytest.approx(math.exp(-2.), rel=1e-5)
  assert heat[5, 8] == pytest.approx(math.exp(-4.), rel=1e-5)
  # (0, 2) is outside the (2r + 1) = 3 square.
  assert heat[4, 9] == 0.0 and heat[6, 7] == 0.0
  assert np.count_nonzero(heat) == 9
  assert not t['heatmap'][0, :, :, :2].any()
  expected_w = np.zeros([16, 16], np.float32)
  expected_w[4, 7] = 1.
  np.testing.assert_array_equal(t['center_weights'][0], expected_w)
  np.testing.assert_allclose(t['size'][0, 4, 7], [5., 8.], rtol=1e-6)
  np.testing.assert_allclose(t['offset'][0, 4, 7], [0.5, 0.], atol=1e-6)
  assert np.count_nonzero(t['size']) == 2
  np.testing.assert_array_equal(t['num_objects'], [1.])


def test_one_hot_classes_equal_int_ids():
  assigner = CenterNetTargetAssigner(stride=4, num_classes=3)
  boxes = [_norm([[8., 12., 28., 44.], [30., 30., 60., 50.]])]
  a = _np(assigner.assign(64, 64, boxes, [tf.constant([2, 0])]))
  b = _np(assigner.assign(64, 64, boxes,
                          [tf.constant([[0., 0., 1.], [1., 0., 0.]])]))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


def test_shared_center_smaller_box_wins_and_heatmap_max():
  # Both boxes centered at input (32, 32) -> location (8, 8), offset (0, 0).
  # Big: [16, 16, 48, 48] size (8, 8); small: [28, 24, 36, 40] size (2, 4).
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1)
  for order in ([0, 1], [1, 0]):
    boxes = np.array([[16., 16., 48., 48.], [28., 24., 36., 40.]])[order]
    t = _np(assigner.assign(64, 64, [_norm(boxes)],
                            [tf.zeros([2], tf.int32)]))
    assert t['center_weights'].sum() == 1.
    np.testing.assert_allclose(t['size'][0, 8, 8], [2., 4.])
    np.testing.assert_array_equal(t['num_objects'], [2.])
    # Element-wise max: the peak stays exactly 1 (a sum would give 2).
    assert t['heatmap'][0, 8, 8, 0] == 1.0
    assert t['heatmap'].max() == 1.0


def test_weight_zero_zero_area_and_padding_rows_ignored():
  assigner = CenterNetTargetAssigner(stride=4, num_classes=2)
  boxes = _norm([[8., 8., 24., 24.],     # weight 0
                 [30., 30., 30., 50.],   # zero height
                 [40., 40., 56., 56.],   # the only valid box
                 [0., 0., 0., 0.]])      # padding row, all-zero class
  classes = tf.constant([[1., 0.], [1., 0.], [0., 1.], [0., 0.]])
  weights = tf.constant([0., 1., 1., 1.])
  t = _np(assigner.assign(64, 64, [boxes], [classes], [weights]))
  np.testing.assert_array_equal(t['num_objects'], [1.])
  assert not t['heatmap'][..., 0].any()
  assert t['center_weights'].sum() == 1. and t['center_weights'][0, 12, 12]
  # Center (48, 48) -> (12, 12); size (4, 4).
  np.testing.assert_allclose(t['size'][0, 12, 12], [4., 4.])


def test_box_weight_scales_heatmap_peak():
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1)
  t = _np(assigner.assign(64, 64, [_norm([[8., 8., 24., 24.]])],
                          [tf.constant([0])], [tf.constant([0.5])]))
  assert t['heatmap'][0, 4, 4, 0] == 0.5
  assert t['center_weights'][0, 4, 4] == 1.


def test_boxes_clipped_to_image():
  # [-16, -8, 16, 24] px clips to [0, 0, 16, 24]: center (8, 12) ->
  # location (2, 3), offset (0, 0), size (4, 6).
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1)
  t = _np(assigner.assign(64, 64, [_norm([[-16., -8., 16., 24.]])],
                          [tf.constant([0])]))
  assert t['center_weights'][0, 2, 3] == 1.
  np.testing.assert_allclose(t['size'][0, 2, 3], [4., 6.])
  np.testing.assert_allclose(t['offset'][0, 2, 3], [0., 0.], atol=1e-6)


def test_zero_boxes_all_zero_maps():
  assigner = CenterNetTargetAssigner(stride=4, num_classes=2,
                                     compute_keypoints=True)
  t = _np(assigner.assign(32, 48, [tf.zeros([0, 4])],
                          [tf.zeros([0], tf.int32)],
                          groundtruth_keypoints_list=[tf.zeros([0, 3, 2])]))
  assert t['heatmap'].shape == (1, 8, 12, 2)
  assert t['keypoint_regression'].shape == (1, 8, 12, 6)
  for value in t.values():
    assert not value.any()


def test_keypoint_targets_golden():
  # 64 x 64 input, stride 4. Box [16, 16, 48, 48] px: center (32, 32) ->
  # location (8, 8), size (8, 8); radius(8, 8) at 0.7: r3 = (-22.4 +
  # sqrt(501.76 + 215.04)) / 2 = 2.1866 -> r = 2, sigma = 5/6.
  # Keypoints (px): k0 (20, 26) -> /4 = (5, 6.5); k1 (44, 40) -> (11, 10);
  # k2 absent (NaN).
  # Regression (Objects as Points Sec. 4): keypoint/4 - (8, 8):
  #   k0 -> (-3, -1.5), k1 -> (3, 2), k2 -> 0 with weight 0.
  # Offsets at own pixels: k0 at (5, 6) -> (0, 0.5); k1 at (11, 10) -> 0.
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1,
                                     compute_keypoints=True,
                                     keypoint_std_devs=[1., 2., 1.])
  kps = tf.constant([[[20., 26.], [44., 40.], [np.nan, np.nan]]]) / 64.
  t = _np(assigner.assign(64, 64, [_norm([[16., 16., 48., 48.]])],
                          [tf.constant([0])],
                          groundtruth_keypoints_list=[kps]))
  np.testing.assert_allclose(t['keypoint_regression'][0, 8, 8],
                             [-3., -1.5, 3., 2., 0., 0.], atol=1e-5)
  np.testing.assert_array_equal(t['keypoint_regression_weights'][0, 8, 8],
                                [1., 1., 1., 1., 0., 0.])
  assert t['keypoint_regression_weights'].sum() == 4.
  np.testing.assert_allclose(t['keypoint_offset'][0, 5, 6], [0., 0.5],
                             atol=1e-5)
  assert t['keypoint_offset_weights'][0, 5, 6] == 1.
  assert t['keypoint_offset_weights'][0, 11, 10] == 1.
  assert t['keypoint_offset_weights'].sum() == 2.
  hm = t['keypoint_heatmap'][0]
  assert hm[5, 6, 0] == 1.0 and hm[11, 10, 1] == 1.0
  assert not hm[..., 2].any()
  # k0: sigma 5/6, (0, 1): exp(-1 / (2 * 25/36)) = exp(-0.72).
  assert hm[5, 7, 0] == pytest.approx(math.exp(-0.72), rel=1e-5)
  # k1: std dev 2 -> sigma 5/3, radius 4: (0, 4): exp(-16/(2*25/9)).
  assert hm[11, 14, 1] == pytest.approx(math.exp(-2.88), rel=1e-5)
  assert hm[11, 15, 1] == 0.0
  assert hm[5, 9, 0] == 0.0  # radius 2 for k0


def test_invisible_and_outside_keypoints_dropped():
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1,
                                     compute_keypoints=True)
  kps = tf.constant([[[20., 26.], [44., 40.]]]) / 64.
  t = _np(assigner.assign(
      64, 64, [_norm([[16., 16., 48., 48.]])], [tf.constant([0])],
      groundtruth_keypoints_list=[kps],
      groundtruth_keypoint_visibilities_list=[tf.constant([[False, True]])]))
  np.testing.assert_array_equal(t['keypoint_regression_weights'][0, 8, 8],
                                [0., 0., 1., 1.])
  assert not t['keypoint_heatmap'][..., 0].any()
  kps = tf.constant([[[1.2, 0.5], [0.5, 0.5]]])  # k0 below the image.
  t = _np(assigner.assign(64, 64, [_norm([[16., 16., 48., 48.]])],
                          [tf.constant([0])],
                          groundtruth_keypoints_list=[kps]))
  np.testing.assert_array_equal(t['keypoint_regression_weights'][0, 8, 8],
                                [0., 0., 1., 1.])


def test_graph_mode_batch_two_different_n():
  assigner = CenterNetTargetAssigner(stride=4, num_classes=2,
                                     compute_keypoints=True)
  spec = [tf.TensorSpec([None, 4], tf.float32),
          tf.TensorSpec([None], tf.int32),
          tf.TensorSpec([None, 2, 2], tf.float32)] * 2

  @tf.function(input_signature=spec)
  def assign(b0, c0, k0, b1, c1, k1):
    return assigner.assign(32, 32, [b0, b1], [c0, c1],
                           groundtruth_keypoints_list=[k0, k1])

  args = (_norm([[4., 4., 20., 12.], [16., 16., 30., 30.]], 32.),
          tf.constant([0, 1]),
          tf.constant([[[0.2, 0.2], [0.5, 0.3]], [[0.7, 0.7], [np.nan] * 2]]),
          _norm([[8., 8., 24., 24.]], 32.), tf.constant([1]),
          tf.constant([[[0.5, 0.5], [0.4, 0.6]]]))
  graph = _np(assign(*args))
  eager = _np(assigner.assign(32, 32, [args[0], args[3]], [args[1], args[4]],
                              groundtruth_keypoints_list=[args[2], args[5]]))
  assert graph['heatmap'].shape == (2, 8, 8, 2)
  np.testing.assert_array_equal(graph['num_objects'], [2., 1.])
  for key in eager:
    np.testing.assert_allclose(graph[key], eager[key], rtol=1e-6)
  # Image 1: center (16, 16) -> (4, 4), size (4, 4).
  np.testing.assert_allclose(graph['size'][1, 4, 4], [4., 4.])
  assert graph['heatmap'][1, 4, 4, 1] == 1.0
  empty = _np(assign(tf.zeros([0, 4]), tf.zeros([0], tf.int32),
                     tf.zeros([0, 2, 2]), *args[3:]))
  assert not empty['heatmap'][0].any() and empty['num_objects'][0] == 0.


def test_bad_arguments():
  with pytest.raises(ValueError, match='stride'):
    CenterNetTargetAssigner(stride=0, num_classes=1)
  with pytest.raises(ValueError, match='min_overlap'):
    CenterNetTargetAssigner(stride=4, num_classes=1, min_overlap=1.5)
  assigner = CenterNetTargetAssigner(stride=4, num_classes=2)
  with pytest.raises(ValueError, match='groundtruth_classes_list'):
    assigner.assign(32, 32, [tf.zeros([0, 4])], [])
  with pytest.raises(ValueError, match='classes'):
    assigner.assign(32, 32, [tf.zeros([1, 4])], [tf.zeros([1, 3])])
  with pytest.raises(ValueError, match='keypoints'):
    CenterNetTargetAssigner(stride=4, num_classes=2,
                            compute_keypoints=True).assign(
                                32, 32, [tf.zeros([0, 4])],
                                [tf.zeros([0], tf.int32)])


def test_keypoint_offset_peak_radius_golden():
  # Same box as the golden test above; k0 at (20, 26) px -> (5, 6.5) out,
  # pixel (5, 6). With offset_peak_radius 1 the 3 x 3 pixels around (5, 6)
  # are trained with target keypoint / 4 - pixel: at (4, 5): (1, 1.5); at
  # (6, 7): (-1, -0.5). k1 at (44, 40) -> (11, 10); its 3 x 3 window is cut
  # by nothing (map 16 x 16). 2 visible keypoints -> 18 trained pixels.
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1,
                                     compute_keypoints=True,
                                     offset_peak_radius=1)
  kps = tf.constant([[[20., 26.], [44., 40.], [np.nan, np.nan]]]) / 64.
  t = _np(assigner.assign(64, 64, [_norm([[16., 16., 48., 48.]])],
                          [tf.constant([0])],
                          groundtruth_keypoints_list=[kps]))
  off, w = t['keypoint_offset'][0], t['keypoint_offset_weights'][0]
  np.testing.assert_allclose(off[5, 6], [0., 0.5], atol=1e-5)
  np.testing.assert_allclose(off[4, 5], [1., 1.5], atol=1e-5)
  np.testing.assert_allclose(off[6, 7], [-1., -0.5], atol=1e-5)
  np.testing.assert_allclose(off[10, 11], [1., -1.], atol=1e-5)
  assert w.sum() == 18. and w[4:7, 5:8].all() and w[10:13, 9:12].all()
  assert t['num_keypoints'][0] == 2.


def test_keypoint_offset_nearest_keypoint_wins_and_map_edge():
  # Two keypoints one pixel apart, radius 1: on each keypoint's own pixel
  # its own offset wins (shift 0 before shift 1) even though the other
  # keypoint also reaches it. A keypoint at pixel (0, 0) loses the shifts
  # outside the map (4 of 9 remain).
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1,
                                     compute_keypoints=True,
                                     offset_peak_radius=1)
  # (22, 22) px -> (5.5, 5.5), pixel (5, 5); (26, 22) -> (6.5, 5.5),
  # pixel (6, 5); (1, 2) -> (0.25, 0.5), pixel (0, 0).
  kps = tf.constant([[[22., 22.], [26., 22.], [1., 2.]]]) / 64.
  t = _np(assigner.assign(64, 64, [_norm([[0., 0., 48., 48.]])],
                          [tf.constant([0])],
                          groundtruth_keypoints_list=[kps]))
  off, w = t['keypoint_offset'][0], t['keypoint_offset_weights'][0]
  np.testing.assert_allclose(off[5, 5], [0.5, 0.5], atol=1e-5)
  np.testing.assert_allclose(off[6, 5], [0.5, 0.5], atol=1e-5)
  np.testing.assert_allclose(off[1, 1], [-0.75, -0.5], atol=1e-5)
  assert w[0:2, 0:2].sum() == 4. and w[0:3, 0:3].sum() == 4.
  # Pixels: two overlapping 3 x 3 windows (12 pixels) + 4 at the corner.
  assert w.sum() == 16.


def test_per_keypoint_offset_channels():
  # per_keypoint_offset: [h, w, 2K]; each type on its own channel pair, so
  # two types on one pixel both keep their offsets.
  assigner = CenterNetTargetAssigner(stride=4, num_classes=1,
                                     compute_keypoints=True,
                                     per_keypoint_offset=True)
  # k0 (21, 22) -> (5.25, 5.5); k1 (22, 23) -> (5.5, 5.75): pixel (5, 5).
  kps = tf.constant([[[21., 22.], [22., 23.]]]) / 64.
  t = _np(assigner.assign(64, 64, [_norm([[0., 0., 48., 48.]])],
                          [tf.constant([0])],
                          groundtruth_keypoints_list=[kps]))
  assert t['keypoint_offset'].shape == (1, 16, 16, 4)
  np.testing.assert_allclose(t['keypoint_offset'][0, 5, 5],
                             [0.25, 0.5, 0.5, 0.75], atol=1e-5)
  np.testing.assert_array_equal(t['keypoint_offset_weights'][0, 5, 5],
                                [1., 1., 1., 1.])
  assert t['keypoint_offset_weights'].sum() == 4.


def test_negative_offset_peak_radius_rejected():
  with pytest.raises(ValueError, match='offset_peak_radius'):
    CenterNetTargetAssigner(stride=4, num_classes=1, offset_peak_radius=-1)
