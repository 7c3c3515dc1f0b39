"""Tests for od_meta.eval.coco_evaluation (pycocotools-backed COCO metrics).

Golden numbers follow COCO's definition (Lin et al. 2014; cocodataset.org
detection / keypoint evaluation): AP is the mean, over IoU thresholds
.50:.05:.95, of the precision interpolated at 101 recall points
r in {0, .01, ..., 1} (precision at recall r = max precision at recall >= r,
0 where recall r is never reached).
"""

import numpy as np
import pytest

from od_meta.core import standard_fields as fields
from od_meta.eval import coco_evaluation

INP = fields.InputDataFields
DET = fields.DetectionResultFields
CATEGORIES = [{'id': 1, 'name': 'cat'}, {'id': 2, 'name': 'dog'}]

BOX_METRICS = [
    'DetectionBoxes_Precision/mAP', 'DetectionBoxes_Precision/mAP@.50IOU',
    'DetectionBoxes_Precision/mAP@.75IOU',
    'DetectionBoxes_Precision/mAP (small)',
    'DetectionBoxes_Precision/mAP (medium)',
    'DetectionBoxes_Precision/mAP (large)', 'DetectionBoxes_Recall/AR@1',
    'DetectionBoxes_Recall/AR@10', 'DetectionBoxes_Recall/AR@100',
    'DetectionBoxes_Recall/AR@100 (small)',
    'DetectionBoxes_Recall/AR@100 (medium)',
    'DetectionBoxes_Recall/AR@100 (large)']


def _gt(boxes, classes, **kwargs):
  d = {INP.groundtruth_boxes: np.array(boxes, np.float32).reshape([-1, 4]),
       INP.groundtruth_classes: np.array(classes, np.int32)}
  d.update(kwargs)
  return d


def _det(boxes, scores, classes, **kwargs):
  d = {DET.detection_boxes: np.array(boxes, np.float32).reshape([-1, 4]),
       DET.detection_scores: np.array(scores, np.float32),
       DET.detection_classes: np.array(classes, np.int32)}
  d.update(kwargs)
  return d


# Large (area 100*100 = 10000 >= 96^2) and medium (40*40 = 1600) boxes.
BOX_A = [10., 10., 110., 110.]
BOX_B = [200., 200., 240., 240.]


def test_perfect_detections_give_one():
  ev = coco_evaluation.CocoDetectionEvaluator(
      CATEGORIES, include_metrics_per_category=True)
  ev.add_single_ground_truth_image_info('img1', _gt([BOX_A, BOX_B], [1, 2]))
  ev.add_single_detected_image_info(
      'img1', _det([BOX_A, BOX_B], [0.9, 0.8], [1, 2]))
  ev.add_single_ground_truth_image_info(b'img2', _gt([BOX_A], [1]))
  ev.add_single_detected_image_info(b'img2', _det([BOX_A], [0.7], [1]))
  metrics = ev.evaluate()
  assert set(BOX_METRICS) <= set(metrics)
  for name in BOX_METRICS:
    if '(small)' in name:
      assert metrics[name] == -1.0  # no small groundtruth: undefined.
    else:
      # AR@1 too: pycocotools caps detections per image AND category, so
      # img1's cat and dog are both within the cap of 1.
      assert metrics[name] == pytest.approx(1.0), name
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/cat'] == pytest.approx(1.0)
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/dog'] == pytest.approx(1.0)


def test_one_of_two_boxes_found_golden_ap():
  # One class, one image, 2 groundtruth boxes, one detection equal to BOX_A.
  # Ranked detections: [TP] -> recall 1/2, precision 1/1.
  # 101-point interpolation: recall thresholds 0, .01, ..., .50 (51 points)
  # are reached with precision 1; .51 ... 1.00 (50 points) are never reached
  # and count 0 -> AP = 51/101 = 0.50495..., not 0.5. IoU = 1, so the same
  # holds at every IoU threshold and mAP = mAP@.50 = mAP@.75 = 51/101.
  # AR@100 = recall = 1/2 at every IoU threshold.
  ev = coco_evaluation.CocoDetectionEvaluator([{'id': 1, 'name': 'cat'}])
  ev.add_single_ground_truth_image_info(7, _gt([BOX_A, BOX_B], [1, 1]))
  ev.add_single_detected_image_info(7, _det([BOX_A], [0.5], [1]))
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP@.50IOU'] == pytest.approx(
      51 / 101, abs=1e-12)
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(
      51 / 101, abs=1e-12)
  assert metrics['DetectionBoxes_Recall/AR@100'] == pytest.approx(0.5)
  # BOX_A is large (found), BOX_B medium (missed).
  assert metrics['DetectionBoxes_Precision/mAP (large)'] == pytest.approx(1.)
  assert metrics['DetectionBoxes_Precision/mAP (medium)'] == 0.0
  assert metrics['DetectionBoxes_Recall/AR@100 (medium)'] == 0.0


def test_ar_at_1_counts_one_detection_per_image_and_class():
  # Two cats on one image, both found: AR@1 keeps the top-scored detection
  # only -> recall 1/2; AR@10 = 1.
  ev = coco_evaluation.CocoDetectionEvaluator(CATEGORIES)
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A, BOX_B], [1, 1]))
  ev.add_single_detected_image_info(
      'a', _det([BOX_A, BOX_B], [0.9, 0.8], [1, 1]))
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Recall/AR@1'] == pytest.approx(0.5)
  assert metrics['DetectionBoxes_Recall/AR@10'] == pytest.approx(1.0)


def test_shifted_box_partial_iou_thresholds():
  # gt [0,0,100,100]; detection [0,0,100,80]: IoU = 8000/10000 = 0.8, a TP at
  # IoU thresholds .50..0.80 (7 of 10) -> mAP = 0.7, mAP@.75 = 1.
  ev = coco_evaluation.CocoDetectionEvaluator([{'id': 1, 'name': 'cat'}])
  ev.add_single_ground_truth_image_info('a', _gt([[0, 0, 100, 100]], [1]))
  ev.add_single_detected_image_info('a', _det([[0, 0, 100, 80]], [0.9], [1]))
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(0.7)
  assert metrics['DetectionBoxes_Precision/mAP@.75IOU'] == pytest.approx(1.)
  assert metrics['DetectionBoxes_Recall/AR@100'] == pytest.approx(0.7)


def test_wrong_class_gives_zero():
  ev = coco_evaluation.CocoDetectionEvaluator(
      CATEGORIES, include_metrics_per_category=True,
      all_metrics_per_category=True)
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))
  ev.add_single_detected_image_info('a', _det([BOX_A], [0.9], [2]))
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP'] == 0.0
  assert metrics['DetectionBoxes_Recall/AR@100'] == 0.0
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/cat'] == 0.0
  # No dog groundtruth: undefined (-1), as pycocotools.
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/dog'] == -1.0
  assert metrics['DetectionBoxes_Precision mAP ByCategory/cat'] == 0.0
  assert metrics['DetectionBoxes_Recall AR@100 (large) ByCategory/dog'] == -1.


def test_per_category_metrics_golden():
  # cat found (AP 1), dog missed (AP 0) -> overall mAP = mean = 0.5.
  ev = coco_evaluation.CocoDetectionEvaluator(
      CATEGORIES, include_metrics_per_category=True,
      all_metrics_per_category=True)
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A, BOX_B], [1, 2]))
  ev.add_single_detected_image_info('a', _det([BOX_A], [0.9], [1]))
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(0.5)
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/cat'] == pytest.approx(1.0)
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/dog'] == 0.0
  assert metrics['DetectionBoxes_Precision mAP (large) ByCategory/cat'] == pytest.approx(1.0)
  assert metrics['DetectionBoxes_Precision mAP (medium) ByCategory/cat'] == -1.
  assert metrics['DetectionBoxes_Recall AR@1 ByCategory/dog'] == 0.0


def test_no_detections_gives_zero_without_crash():
  ev = coco_evaluation.CocoDetectionEvaluator(CATEGORIES)
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))
  ev.add_single_detected_image_info('a', _det(np.zeros([0, 4]), [], []))
  ev.add_single_ground_truth_image_info('b', _gt([BOX_B], [2]))  # never detected
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP'] == 0.0
  assert metrics['DetectionBoxes_Recall/AR@100'] == 0.0


def test_image_without_boxes_and_false_positive():
  # Image 'empty' has no groundtruth; its detection is a false positive that
  # outranks the true positive on 'a': ranked [FP, TP] -> precision
  # [0, 1/2] -> interpolated precision 1/2 at every recall <= 1 -> AP = .5.
  ev = coco_evaluation.CocoDetectionEvaluator([{'id': 1, 'name': 'cat'}])
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))
  ev.add_single_detected_image_info('a', _det([BOX_A], [0.5], [1]))
  ev.add_single_ground_truth_image_info('empty', _gt(np.zeros([0, 4]), []))
  ev.add_single_detected_image_info('empty', _det([BOX_A], [0.9], [1]))
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(0.5)
  assert metrics['DetectionBoxes_Recall/AR@100'] == pytest.approx(1.0)


def test_no_groundtruth_raises():
  ev = coco_evaluation.CocoDetectionEvaluator(CATEGORIES)
  with pytest.raises(ValueError, match='no groundtruth'):
    ev.evaluate()
  ev.add_single_ground_truth_image_info('a', _gt(np.zeros([0, 4]), []))
  with pytest.raises(ValueError, match='no groundtruth boxes'):
    ev.evaluate()


def test_detections_without_groundtruth_image_raise():
  ev = coco_evaluation.CocoDetectionEvaluator(CATEGORIES)
  with pytest.raises(ValueError, match='Missing groundtruth'):
    ev.add_single_detected_image_info('a', _det([BOX_A], [0.9], [1]))


def test_bad_fields_raise_naming_the_field():
  ev = coco_evaluation.CocoDetectionEvaluator(CATEGORIES)
  with pytest.raises(ValueError, match='groundtruth_classes'):
    ev.add_single_ground_truth_image_info(
        'a', {INP.groundtruth_boxes: np.zeros([1, 4])})
  with pytest.raises(ValueError, match='groundtruth_boxes'):
    ev.add_single_ground_truth_image_info(
        'a', {INP.groundtruth_boxes: np.zeros([1, 3]),
              INP.groundtruth_classes: np.ones([1])})
  with pytest.raises(ValueError, match='groundtruth_boxes'):
    ev.add_single_ground_truth_image_info(
        'a', _gt([[0, 0, np.nan, 1]], [1]))
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))
  with pytest.raises(ValueError, match='detection_scores'):
    ev.add_single_detected_image_info('a', _det([BOX_A], [0.9, 0.1], [1]))
  with pytest.raises(ValueError, match='categories'):
    coco_evaluation.CocoDetectionEvaluator([])


def test_nan_detections_dropped():
  ev = coco_evaluation.CocoDetectionEvaluator([{'id': 1, 'name': 'cat'}])
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))
  ev.add_single_detected_image_info(
      'a', _det([BOX_A, [np.nan, 0, 1, 1]], [0.5, np.nan], [1, 1]))
  assert ev.evaluate()['DetectionBoxes_Precision/mAP'] == pytest.approx(1.0)


def test_duplicate_image_id_ignored():
  ev = coco_evaluation.CocoDetectionEvaluator([{'id': 1, 'name': 'cat'}])
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))
  ev.add_single_detected_image_info('a', _det([BOX_A], [0.9], [1]))
  # Second groundtruth for 'a' (two boxes) and second detection list (a
  # false positive) are both ignored; otherwise mAP would drop below 1.
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A, BOX_B], [1, 1]))
  ev.add_single_detected_image_info('a', _det([BOX_B], [0.95], [1]))
  assert ev.num_images == 1
  assert ev.evaluate()['DetectionBoxes_Precision/mAP'] == pytest.approx(1.0)


def test_clear():
  ev = coco_evaluation.CocoDetectionEvaluator([{'id': 1, 'name': 'cat'}])
  ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))
  ev.clear()
  assert ev.num_images == 0
  with pytest.raises(ValueError):
    ev.evaluate()


def _batched_eval_dict():
  # Batch of 2 images with padding. Image 'p' is 200 (h) x 400 (w); image 'q'
  # is 100 x 100. Normalized boxes scaled by [h, w, h, w]:
  #   p: [0.1, 0.1, 0.6, 0.35] -> [20, 40, 120, 140] (100x100, large)
  #   q: [0.0, 0.0, 0.5, 0.5]  -> [0, 0, 50, 50]
  # Padding rows (beyond num_*) hold garbage that must be ignored.
  return {
      INP.source_id: np.array([b'p', b'q']),
      INP.original_image_spatial_shape: np.array([[200, 400], [100, 100]]),
      INP.groundtruth_boxes: np.array(
          [[[0.1, 0.1, 0.6, 0.35], [0.5, 0.5, 0.9, 0.9]],
           [[0.0, 0.0, 0.5, 0.5], [0.3, 0.3, 0.4, 0.4]]], np.float32),
      INP.groundtruth_classes: np.array([[0, 1], [1, 0]], np.int32),
      INP.num_groundtruth_boxes: np.array([1, 1], np.int32),
      DET.detection_boxes: np.array(
          [[[0.1, 0.1, 0.6, 0.35], [0.0, 0.0, 0.2, 0.2], [0, 0, 1, 1]],
           [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 1, 1]]],
          np.float32),
      DET.detection_scores: np.array([[0.9, 0.95, 0.99], [0.8, 0.1, 0.99]],
                                     np.float32),
      DET.detection_classes: np.array([[0, 1, 0], [1, 1, 0]], np.float32),
      DET.num_detections: np.array([1, 1], np.float32),
  }


def test_add_eval_dict_normalized_with_padding():
  ev = coco_evaluation.CocoDetectionEvaluator(
      CATEGORIES, include_metrics_per_category=True)
  ev.add_eval_dict(_batched_eval_dict())
  assert ev.num_images == 2
  # Padded rows dropped and boxes scaled to pixels: 2 gt, 2 exact matches.
  gt_boxes = sorted(a['bbox'] for a in ev._groundtruth_list)
  np.testing.assert_allclose(gt_boxes, [[0, 0, 50, 50], [40, 20, 100, 100]],
                             atol=1e-4)
  assert sorted(a['category_id'] for a in ev._groundtruth_list) == [1, 2]
  metrics = ev.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(1.0)
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/dog'] == pytest.approx(1.0)


def test_add_eval_dict_accepts_tensors_and_skips_duplicates():
  tf = pytest.importorskip('tensorflow')
  ev = coco_evaluation.CocoDetectionEvaluator(CATEGORIES)
  # As the training loop hands it over: outputs of a tf.function.
  eval_dict = tf.function(lambda d: d)(
      {k: tf.constant(v) for k, v in _batched_eval_dict().items()})
  ev.add_eval_dict(eval_dict)
  ev.add_eval_dict(eval_dict)  # same ids: ignored with a warning.
  assert ev.num_images == 2
  assert len(ev._groundtruth_list) == 2
  assert len(ev._detection_list) == 2


def test_add_eval_dict_missing_field_raises():
  eval_dict = _batched_eval_dict()
  del eval_dict[INP.original_image_spatial_shape]
  ev = coco_evaluation.CocoDetectionEvaluator(CATEGORIES)
  with pytest.raises(ValueError, match='original_image_spatial_shape'):
    ev.add_eval_dict(eval_dict)


# --- keypoints --------------------------------------------------------------

KP_NAMES = ['nose', 'left_eye', 'right_eye', 'tail']
SIGMAS = [0.1, 0.1, 0.1, 0.1]
PERSON_BOX = [0., 0., 100., 100.]  # area 10000 (large range).
PERSON_KP = np.array([[[20., 30.], [25., 40.], [25., 60.], [80., 50.]]])


def _kp_evaluator():
  return coco_evaluation.CocoKeypointEvaluator(
      category_id=1, category_keypoint_names=KP_NAMES, keypoint_sigmas=SIGMAS,
      class_text='person')


def _kp_metrics(det_keypoints, gt_keypoints=PERSON_KP, visibilities=None):
  ev = _kp_evaluator()
  gt = _gt([PERSON_BOX], [1], groundtruth_keypoints=gt_keypoints)
  if visibilities is not None:
    gt[INP.groundtruth_keypoint_visibilities] = visibilities
  ev.add_single_ground_truth_image_info('a', gt)
  ev.add_single_detected_image_info('a', _det(
      [PERSON_BOX], [0.9], [1], detection_keypoints=det_keypoints,
      detection_keypoint_scores=np.ones([1, 4])))
  return ev.evaluate()


def test_keypoints_perfect_gives_one():
  metrics = _kp_metrics(PERSON_KP)
  assert len(metrics) == 10
  assert metrics['Keypoints_Precision/mAP ByCategory/person'] == pytest.approx(1.0)
  assert metrics['Keypoints_Precision/mAP@.50IOU ByCategory/person'] == pytest.approx(1.0)
  assert metrics['Keypoints_Precision/mAP (large) ByCategory/person'] == pytest.approx(1.0)
  assert metrics['Keypoints_Precision/mAP (medium) ByCategory/person'] == -1.
  assert metrics['Keypoints_Recall/AR@100 ByCategory/person'] == pytest.approx(1.0)


def test_keypoints_shifted_golden_oks():
  # Every keypoint shifted 16 px in x. pycocotools' OKS (COCO keypoint eval,
  # Ronchi & Perona 2017): mean_i exp(-d_i^2 / (2 * area * (2 sigma_i)^2))
  # = exp(-256 / (2 * 10000 * 0.04)) = exp(-0.32) = 0.726.
  # 0.70 <= OKS < 0.75: a true positive at thresholds .50,...,.70 (5 of 10)
  # -> mAP = 0.5, mAP@.50 = 1, mAP@.75 = 0.
  shifted = PERSON_KP + np.array([0., 16.])
  metrics = _kp_metrics(shifted)
  assert metrics['Keypoints_Precision/mAP ByCategory/person'] == (
      pytest.approx(0.5))
  assert metrics['Keypoints_Precision/mAP@.50IOU ByCategory/person'] == pytest.approx(1.0)
  assert metrics['Keypoints_Precision/mAP@.75IOU ByCategory/person'] == 0.0
  far = _kp_metrics(PERSON_KP + np.array([0., 60.]))  # OKS = exp(-4.5) ~ .011
  assert far['Keypoints_Precision/mAP ByCategory/person'] == 0.0


def test_keypoints_no_detections_gives_zero():
  ev = _kp_evaluator()
  ev.add_single_ground_truth_image_info(
      'a', _gt([PERSON_BOX], [1], groundtruth_keypoints=PERSON_KP))
  metrics = ev.evaluate()
  assert metrics['Keypoints_Precision/mAP ByCategory/person'] == 0.0
  assert metrics['Keypoints_Recall/AR@100 ByCategory/person'] == 0.0


def test_keypoints_missing_groundtruth_keypoint_not_counted():
  # 'tail' is NaN in the groundtruth (unlabeled): a wild detected tail does
  # not lower OKS, so the result is still perfect.
  gt_kp = PERSON_KP.copy()
  gt_kp[0, 3] = np.nan
  det_kp = PERSON_KP.copy()
  det_kp[0, 3] = [1000., 1000.]
  metrics = _kp_metrics(det_kp, gt_kp, visibilities=np.ones([1, 4], bool))
  assert metrics['Keypoints_Precision/mAP ByCategory/person'] == pytest.approx(1.0)
  # Invisible (visibility 0) works the same way.
  metrics = _kp_metrics(det_kp, PERSON_KP,
                        visibilities=np.array([[1, 1, 1, 0]]))
  assert metrics['Keypoints_Precision/mAP ByCategory/person'] == pytest.approx(1.0)


def test_keypoints_eval_dict_and_other_classes_dropped():
  ev = _kp_evaluator()
  kp_norm = PERSON_KP / 200.0  # image 200 x 200.
  ev.add_eval_dict({
      INP.source_id: np.array(['x']),
      INP.original_image_spatial_shape: np.array([[200, 200]]),
      INP.groundtruth_boxes: np.array([[PERSON_BOX, BOX_B]]) / 200.0,
      INP.groundtruth_classes: np.array([[0, 1]]),  # 0-based: person, other.
      INP.groundtruth_keypoints: np.concatenate([kp_norm, kp_norm])[None],
      DET.detection_boxes: np.array([[PERSON_BOX]]) / 200.0,
      DET.detection_scores: np.array([[0.9]]),
      DET.detection_classes: np.array([[0.]]),
      DET.detection_keypoints: kp_norm[None],
      DET.num_detections: np.array([1.]),
  })
  assert len(ev._groundtruth_list) == 1  # class 2 dropped.
  metrics = ev.evaluate()
  assert metrics['Keypoints_Precision/mAP ByCategory/person'] == pytest.approx(1.0)


def test_keypoint_evaluator_argument_errors():
  with pytest.raises(ValueError, match='keypoint_sigmas'):
    coco_evaluation.CocoKeypointEvaluator(1, KP_NAMES)
  with pytest.raises(ValueError, match='keypoint_sigmas'):
    coco_evaluation.CocoKeypointEvaluator(1, KP_NAMES, [0.1, 0.1])
  ev = coco_evaluation.CocoKeypointEvaluator(1, ['k%d' % i for i in range(17)])
  with pytest.raises(ValueError, match='groundtruth_keypoints'):
    ev.add_single_ground_truth_image_info('a', _gt([BOX_A], [1]))


def test_get_evaluators():
  evaluators = coco_evaluation.get_evaluators(
      ['coco_detection_metrics', 'coco_keypoint_metrics'], CATEGORIES,
      keypoint_config={'class_label': 'dog', 'keypoint_names': KP_NAMES,
                       'keypoint_sigmas': SIGMAS})
  assert isinstance(evaluators[0], coco_evaluation.CocoDetectionEvaluator)
  assert isinstance(evaluators[1], coco_evaluation.CocoKeypointEvaluator)
  assert evaluators[1]._category_id == 2
  default = coco_evaluation.get_evaluators([], CATEGORIES)
  assert isinstance(default[0], coco_evaluation.CocoDetectionEvaluator)
  with pytest.raises(ValueError, match='coco_detection_metrics'):
    coco_evaluation.get_evaluators(['pascal_voc_metrics'], CATEGORIES)
  with pytest.raises(ValueError, match='keypoint_config'):
    coco_evaluation.get_evaluators(['coco_keypoint_metrics'], CATEGORIES)


def test_keypoints_category_absent_from_eval_set_gives_minus_one():
  # The only groundtruth is of category 2; the person evaluator has images
  # but none of its category: every metric is -1 (undefined), no error.
  ev = _kp_evaluator()
  ev.add_single_ground_truth_image_info(
      'a', _gt([PERSON_BOX], [2], groundtruth_keypoints=PERSON_KP))
  ev.add_single_detected_image_info('a', _det(
      [PERSON_BOX], [0.9], [1], detection_keypoints=PERSON_KP,
      detection_keypoint_scores=np.ones([1, 4])))
  metrics = ev.evaluate()
  assert len(metrics) == 10
  assert set(metrics.values()) == {-1.0}
