"""Tests for od_meta.utils.visualization (numpy / PIL drawing)."""

import numpy as np
import pytest

from od_meta.core import standard_fields as fields
from od_meta.utils import visualization

CATEGORY_INDEX = {1: {'id': 1, 'name': 'cat'}, 2: {'id': 2, 'name': 'dog'}}
H, W = 64, 96


def _image():
  return np.zeros([H, W, 3], np.uint8)


def _changed(before, after):
  return np.any(before != after, axis=-1)


def test_box_drawn_on_its_outline_only():
  image = _image()
  # Normalized [0.5, 0.25, 0.75, 0.75] -> pixels y 32..48, x 24..72.
  out = visualization.draw_bounding_boxes_on_image_array(
      image, np.array([[0.5, 0.25, 0.75, 0.75]]), np.array([1]),
      np.array([0.9]), CATEGORY_INDEX, line_thickness=1, skip_labels=True,
      skip_scores=True)
  assert out.shape == (H, W, 3) and out.dtype == np.uint8
  assert not np.any(image)  # input untouched.
  changed = _changed(image, out)
  assert changed[32, 24] and changed[48, 72] and changed[40, 24]
  assert not changed[40, 48]  # box interior.
  assert not changed[5, 5] and not changed[60, 90]  # far outside.


def test_label_drawn_above_box():
  image = _image()
  no_label = visualization.draw_bounding_boxes_on_image_array(
      image, [[0.5, 0.25, 0.75, 0.75]], [1], [0.9], CATEGORY_INDEX,
      skip_labels=True, skip_scores=True)
  labeled = visualization.draw_bounding_boxes_on_image_array(
      image, [[0.5, 0.25, 0.75, 0.75]], [1], [0.9], CATEGORY_INDEX)
  extra = _changed(no_label, labeled)
  assert extra[:32].any()  # the 'cat: 90%' label sits above ymin = 32.


def test_boxes_below_threshold_and_beyond_max_not_drawn():
  image = _image()
  boxes = [[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]]
  out = visualization.draw_bounding_boxes_on_image_array(
      image, boxes, [1, 2], [0.1, 0.2], CATEGORY_INDEX, min_score_thresh=0.3)
  np.testing.assert_array_equal(out, image)
  # max_boxes=1 keeps the higher-scored (second) box only.
  out = visualization.draw_bounding_boxes_on_image_array(
      image, boxes, [1, 2], [0.5, 0.9], CATEGORY_INDEX, max_boxes=1,
      skip_labels=True, skip_scores=True, line_thickness=1)
  changed = _changed(image, out)
  assert changed[int(0.6 * H), int(0.6 * W)]
  assert not changed[int(0.1 * H), int(0.1 * W)]


def test_empty_and_nan_inputs():
  image = np.full([H, W, 3], 7, np.uint8)
  out = visualization.draw_bounding_boxes_on_image_array(
      image, np.zeros([0, 4]), np.zeros([0]), np.zeros([0]), CATEGORY_INDEX)
  np.testing.assert_array_equal(out, image)
  out = visualization.draw_bounding_boxes_on_image_array(
      image, [], [], [], None, keypoints=np.zeros([0, 3, 2]))
  np.testing.assert_array_equal(out, image)
  out = visualization.draw_bounding_boxes_on_image_array(
      image, [[np.nan, 0, 1, 1]], [1], [0.9], CATEGORY_INDEX)
  np.testing.assert_array_equal(out, image)


def test_unknown_class_color_override_and_keypoints():
  image = _image()
  out = visualization.draw_bounding_boxes_on_image_array(
      image, [[0.2, 0.2, 0.8, 0.8]], [99], [0.9], CATEGORY_INDEX,
      color=(255, 0, 0), line_thickness=1, skip_labels=True,
      skip_scores=True,
      keypoints=np.array([[[0.5, 0.5], [np.nan, np.nan]]]))
  ys, xs = int(0.2 * H), int(0.2 * W)
  assert tuple(out[ys, xs]) == (255, 0, 0)
  assert tuple(out[int(0.5 * H), int(0.5 * W)]) == (255, 0, 0)  # keypoint.
  # 'N/A' label for an unknown class id still draws without error.
  visualization.draw_bounding_boxes_on_image_array(
      image, [[0.2, 0.2, 0.8, 0.8]], [99], [0.9], CATEGORY_INDEX)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match='image'):
    visualization.draw_bounding_boxes_on_image_array(
        np.zeros([4, 4, 4], np.uint8), [], [], [], None)
  with pytest.raises(ValueError, match='classes'):
    visualization.draw_bounding_boxes_on_image_array(
        _image(), [[0, 0, 1, 1]], [1, 2], [0.9], None)
  with pytest.raises(ValueError, match='keypoints'):
    visualization.draw_bounding_boxes_on_image_array(
        _image(), [[0, 0, 1, 1]], [1], [0.9], None, keypoints=np.zeros([2, 2]))


def test_float_and_grayscale_images_accepted():
  out = visualization.draw_bounding_boxes_on_image_array(
      np.full([H, W, 1], 300.0), [], [], [], None)
  assert out.shape == (H, W, 3) and out.dtype == np.uint8
  assert np.all(out == 255)


def test_side_by_side_from_batched_eval_dict():
  inp, det = fields.InputDataFields, fields.DetectionResultFields
  images = np.zeros([2, H, W, 3], np.uint8)
  eval_dict = {
      inp.original_image: images,
      inp.original_image_spatial_shape: np.array([[H, W], [H // 2, W // 2]]),
      det.detection_boxes: np.array([[[0.1, 0.1, 0.4, 0.4], [0, 0, 1, 1]]] * 2,
                                    np.float32),
      det.detection_scores: np.array([[0.9, 0.95]] * 2, np.float32),
      det.detection_classes: np.array([[0, 1]] * 2, np.float32),
      det.num_detections: np.array([1, 1], np.float32),  # 2nd row = padding.
      inp.groundtruth_boxes: np.array([[[0.6, 0.6, 0.9, 0.9]]] * 2,
                                      np.float32),
      inp.groundtruth_classes: np.array([[1]] * 2, np.int32),
      inp.num_groundtruth_boxes: np.array([1, 1]),
  }
  out = visualization.draw_side_by_side_evaluation_image(
      eval_dict, CATEGORY_INDEX, image_index=0, line_thickness=1)
  assert out.shape == (H, 2 * W, 3) and out.dtype == np.uint8
  left, right = out[:, :W], out[:, W:]
  # Detection box corner on the left only; groundtruth corner on the right
  # only; the padded full-image detection (score .95) is not drawn.
  assert left[int(0.4 * H), int(0.4 * W)].any()
  assert not right[int(0.4 * H), int(0.4 * W)].any()
  assert right[int(0.9 * H), int(0.9 * W)].any()
  assert not left[int(0.9 * H), int(0.9 * W)].any()
  assert not left[H - 1, W - 1].any()
  # Second image is cropped to its original 32 x 48 size.
  out = visualization.draw_side_by_side_evaluation_image(
      eval_dict, CATEGORY_INDEX, image_index=1)
  assert out.shape == (H // 2, W, 3)


def test_side_by_side_missing_key_raises():
  with pytest.raises(ValueError, match='image'):
    visualization.draw_side_by_side_evaluation_image({}, CATEGORY_INDEX)


def test_keypoint_edges_drawn_as_lines():
  image = _image()
  # Keypoints at (y, x) = (0.5, 0.3) and (0.5, 0.7): the edge is the row
  # y = 32 from x = 28.8 to 67.2; the third keypoint is missing (NaN).
  keypoints = np.array([[[0.5, 0.3], [0.5, 0.7], [np.nan, np.nan]]])
  box = [[0.1, 0.1, 0.9, 0.9]]
  plain = visualization.draw_bounding_boxes_on_image_array(
      image, box, [1], [0.9], CATEGORY_INDEX, color=(0, 255, 0),
      line_thickness=1, skip_labels=True, skip_scores=True,
      keypoints=keypoints, keypoint_radius=1)
  edged = visualization.draw_bounding_boxes_on_image_array(
      image, box, [1], [0.9], CATEGORY_INDEX, color=(0, 255, 0),
      line_thickness=1, skip_labels=True, skip_scores=True,
      keypoints=keypoints, keypoint_radius=1,
      keypoint_edges=[(0, 1), (1, 2)])  # (1, 2) has a NaN end: skipped.
  assert tuple(edged[32, 48]) == (0, 255, 0)  # Middle of the edge.
  assert not plain[32, 48].any()
  # The edge only adds pixels on row 32 between the two keypoints.
  added = np.argwhere(_changed(image, edged) & ~_changed(image, plain))
  assert set(added[:, 0]) == {32}
  assert added[:, 1].min() >= 28 and added[:, 1].max() <= 68
  with pytest.raises(ValueError, match='outside 0..2'):
    visualization.draw_bounding_boxes_on_image_array(
        image, box, [1], [0.9], CATEGORY_INDEX, keypoints=keypoints,
        keypoint_edges=[(0, 3)])
