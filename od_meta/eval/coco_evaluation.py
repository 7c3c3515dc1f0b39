"""COCO box and keypoint metrics computed with pycocotools.

The evaluators accumulate groundtruth and detections image by image (numpy,
outside the graph), build the COCO groundtruth dataset in memory and run
`pycocotools.cocoeval.COCOeval` when `evaluate()` is called. Metric names are
those of the TF Object Detection API (`object_detection/eval_util.py`,
`metrics/coco_evaluation.py`, `metrics/coco_tools.py`) so that dashboards and
scripts written for it keep working.

Coordinate frames:
  * `add_single_ground_truth_image_info` / `add_single_detected_image_info`
    take ABSOLUTE pixel boxes `[ymin, xmin, ymax, xmax]` of the original image
    and label-map class ids (0-based class id + 1), as the TF OD API does.
  * `add_eval_dict` takes od_meta's batched numpy dictionaries
    (`standard_fields` keys): NORMALIZED boxes / keypoints of the true image
    window and 0-based class ids; it scales them by
    `original_image_spatial_shape` and adds 1 to the classes.

References:
  * Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014, and
    the COCO detection / keypoint evaluation pages (cocodataset.org/#detection-eval,
    #keypoints-eval): AP averaged over IoU (or OKS) thresholds .50:.05:.95,
    101-point interpolated precision, area ranges small < 32^2 <= medium <
    96^2 <= large (pixels of the original image).
"""

import contextlib
import io

from absl import logging
import numpy as np
from pycocotools import coco
from pycocotools import cocoeval

from od_meta.core import standard_fields as fields

# Names of COCOeval.stats for boxes, in order (TF OD API coco_tools.py).
_BOX_SUMMARY_NAMES = (
    'Precision/mAP',
    'Precision/mAP@.50IOU',
    'Precision/mAP@.75IOU',
    'Precision/mAP (small)',
    'Precision/mAP (medium)',
    'Precision/mAP (large)',
    'Recall/AR@1',
    'Recall/AR@10',
    'Recall/AR@100',
    'Recall/AR@100 (small)',
    'Recall/AR@100 (medium)',
    'Recall/AR@100 (large)',
)

# Per-category names used when all_metrics_per_category=True (TF OD API).
_BOX_PER_CATEGORY_NAMES = (
    'Precision mAP ByCategory/{}',
    'Precision mAP@.50IOU ByCategory/{}',
    'Precision mAP@.75IOU ByCategory/{}',
    'Precision mAP (small) ByCategory/{}',
    'Precision mAP (medium) ByCategory/{}',
    'Precision mAP (large) ByCategory/{}',
    'Recall AR@1 ByCategory/{}',
    'Recall AR@10 ByCategory/{}',
    'Recall AR@100 ByCategory/{}',
    'Recall AR@100 (small) ByCategory/{}',
    'Recall AR@100 (medium) ByCategory/{}',
    'Recall AR@100 (large) ByCategory/{}',
)

# (ap, iou_threshold, area range, max detections) of each entry above, as in
# pycocotools COCOeval.summarize()._summarizeDets.
_BOX_SUMMARY_SPECS = (
    (True, None, 'all', 100),
    (True, .5, 'all', 100),
    (True, .75, 'all', 100),
    (True, None, 'small', 100),
    (True, None, 'medium', 100),
    (True, None, 'large', 100),
    (False, None, 'all', 1),
    (False, None, 'all', 10),
    (False, None, 'all', 100),
    (False, None, 'small', 100),
    (False, None, 'medium', 100),
    (False, None, 'large', 100),
)

# Names of COCOeval.stats for keypoints, in order, exactly as the TF OD API
# writes them. NOTE: the TF OD API labels pycocotools' keypoint stats[5:8]
# 'AR@1', 'AR@10', 'AR@100', but pycocotools computes them as AR averaged over
# OKS .50:.95, AR at OKS .50 and AR at OKS .75, all with at most 20
# detections per image (COCOeval._summarizeKps). The names are kept for
# compatibility; the numbers are pycocotools'.
_KEYPOINT_SUMMARY_NAMES = (
    'Precision/mAP ByCategory/{}',
    'Precision/mAP@.50IOU ByCategory/{}',
    'Precision/mAP@.75IOU ByCategory/{}',
    'Precision/mAP (medium) ByCategory/{}',
    'Precision/mAP (large) ByCategory/{}',
    'Recall/AR@1 ByCategory/{}',
    'Recall/AR@10 ByCategory/{}',
    'Recall/AR@100 ByCategory/{}',
    'Recall/AR@100 (medium) ByCategory/{}',
    'Recall/AR@100 (large) ByCategory/{}',
)

# Per-keypoint OKS sigmas of the 17 COCO person keypoints (pycocotools
# default; Ruggero Ronchi & Perona, ICCV 2017).
COCO_PERSON_KEYPOINT_SIGMAS = (
    .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87,
    .87, .89, .89)
COCO_PERSON_KEYPOINT_SIGMAS = tuple(s / 10.0 for s in
                                    COCO_PERSON_KEYPOINT_SIGMAS)

# Keys tried, in order, for the image id of each row of an eval dict.
_IMAGE_ID_KEYS = (fields.InputDataFields.source_id, 'image_id',
                  fields.InputDataFields.key, fields.InputDataFields.filename)


def _normalize_image_id(image_id):
  """Returns a hashable Python id: bytes decoded to str, numpy scalars unboxed."""
  if isinstance(image_id, np.ndarray):
    if image_id.ndim != 0:
      raise ValueError(f'image_id must be a scalar, got shape {image_id.shape}')
    image_id = image_id.item()
  elif isinstance(image_id, np.generic):
    image_id = image_id.item()
  if isinstance(image_id, bytes):
    image_id = image_id.decode('utf-8')
  try:
    hash(image_id)
  except TypeError as e:
    raise ValueError(f'image_id must be hashable, got {image_id!r}') from e
  return image_id


def _as_array(value, name, dtype, rank=None, trailing_shape=None):
  """Converts `value` (numpy array, list or eager tensor) to a numpy array.

  Raises:
    ValueError: naming `name` if the rank or trailing dimensions are wrong.
  """
  try:
    array = np.asarray(value, dtype=dtype)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name} could not be converted to {dtype}: {e}') from e
  if rank is not None and array.ndim != rank:
    raise ValueError(f'{name} must have rank {rank}, got shape {array.shape}')
  if trailing_shape is not None:
    if tuple(array.shape[array.ndim - len(trailing_shape):]) != tuple(
        trailing_shape):
      raise ValueError(f'{name} must have shape [..., '
                       f'{", ".join(map(str, trailing_shape))}], got '
                       f'{array.shape}')
  return array


def _check_num_rows(num, arrays_by_name, image_id):
  for name, array in arrays_by_name.items():
    if array is not None and array.shape[0] != num:
      raise ValueError(f'{name} has {array.shape[0]} rows but the boxes have '
                       f'{num} (image id {image_id!r})')


def _yxyx_to_xywh(boxes):
  """[N, 4] absolute [ymin, xmin, ymax, xmax] -> [N, 4] COCO [x, y, w, h]."""
  return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                   boxes[:, 2] - boxes[:, 0]], axis=1)


def _make_coco(dataset):
  """Returns a pycocotools COCO object over an in-memory dataset dict."""
  with contextlib.redirect_stdout(io.StringIO()):
    coco_api = coco.COCO()
    coco_api.dataset = dataset
    coco_api.createIndex()
  return coco_api


def _load_results(groundtruth, detections):
  """COCO result object for `detections` (list of dicts); handles no detections.

  `COCO.loadRes` indexes `anns[0]` and so fails on an empty list; with no
  detections an empty result set over the same images and categories is built
  instead (every metric with groundtruth is then 0).
  """
  if not detections:
    return _make_coco({
        'images': list(groundtruth.dataset['images']),
        'categories': list(groundtruth.dataset['categories']),
        'annotations': []})
  with contextlib.redirect_stdout(io.StringIO()):
    # loadRes adds keys to each dict; give it copies.
    return groundtruth.loadRes([dict(d) for d in detections])


def _summarize(coco_eval, ap, iou_threshold=None, area_range='all',
               max_detections=100, category_index=None):
  """One COCO summary number, optionally for one category.

  Mirrors pycocotools `COCOeval.summarize._summarize`: the mean of the
  precision (`ap=True`, array [T, R, K, A, M]) or recall (`ap=False`, array
  [T, K, A, M]) entries > -1, or -1 when there are none (no groundtruth in that
  slice).
  """
  params = coco_eval.params
  area_ind = [i for i, lbl in enumerate(params.areaRngLbl) if lbl == area_range]
  det_ind = [i for i, m in enumerate(params.maxDets) if m == max_detections]
  values = coco_eval.eval['precision' if ap else 'recall']
  if iou_threshold is not None:
    values = values[np.isclose(params.iouThrs, iou_threshold)]
  if ap:
    values = values[:, :, :, area_ind, :][..., det_ind]
    if category_index is not None:
      values = values[:, :, category_index]
  else:
    values = values[:, :, area_ind, :][..., det_ind]
    if category_index is not None:
      values = values[:, category_index]
  values = values[values > -1]
  return float(np.mean(values)) if values.size else -1.0


def _run_coco_eval(groundtruth_dataset, detections, iou_type,
                   keypoint_sigmas=None):
  """Runs COCOeval evaluate/accumulate/summarize; logs its printed summary.

  Returns:
    the `COCOeval` object, with `stats` and `eval` filled.
  """
  groundtruth = _make_coco(groundtruth_dataset)
  results = _load_results(groundtruth, detections)
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    coco_eval = cocoeval.COCOeval(groundtruth, results, iouType=iou_type)
    coco_eval.params.imgIds = sorted(groundtruth.getImgIds())
    if keypoint_sigmas is not None:
      coco_eval.params.kpt_oks_sigmas = np.asarray(keypoint_sigmas,
                                                   dtype=np.float64)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
  logging.info('COCO %s evaluation:\n%s', iou_type, buffer.getvalue())
  return coco_eval


class _CocoEvaluatorBase:
  """Bookkeeping shared by the box and keypoint evaluators.

  Image ids given by the caller (str, bytes, int) are mapped to internal
  1-based ints for pycocotools (which sorts ids and treats annotation id 0 as
  'unmatched'); annotation ids also start at 1.
  """

  _METRIC_PREFIX = ''

  def __init__(self):
    self.clear()

  def clear(self):
    """Forgets all groundtruth and detections added so far."""
    self._image_ids = {}  # caller id -> internal int id
    self._images_with_detections = set()
    self._groundtruth_list = []
    self._detection_list = []
    self._next_annotation_id = 1

  @property
  def num_images(self):
    """Number of images whose groundtruth was added."""
    return len(self._image_ids)

  def _register_groundtruth_image(self, image_id):
    """Returns the internal id, or None (with a warning) for a duplicate."""
    image_id = _normalize_image_id(image_id)
    if image_id in self._image_ids:
      logging.warning('Ignoring ground truth with image id %r since it was '
                      'previously added.', image_id)
      return None
    internal_id = len(self._image_ids) + 1
    self._image_ids[image_id] = internal_id
    return internal_id

  def _register_detected_image(self, image_id):
    """Returns the internal id, or None (with a warning) for a duplicate.

    Raises:
      ValueError: if no groundtruth was added for `image_id`.
    """
    image_id = _normalize_image_id(image_id)
    if image_id not in self._image_ids:
      raise ValueError(f'Missing groundtruth for image id: {image_id!r} '
                       '(add the groundtruth before the detections)')
    if image_id in self._images_with_detections:
      logging.warning('Ignoring detection with image id %r since it was '
                      'previously added.', image_id)
      return None
    self._images_with_detections.add(image_id)
    return self._image_ids[image_id]

  def _parse_groundtruth(self, image_id, groundtruth_dict, num_keypoints=None):
    """Validates one image's groundtruth; returns a dict of numpy arrays."""
    if not isinstance(groundtruth_dict, dict):
      raise ValueError('groundtruth_dict must be a dict')
    f = fields.InputDataFields
    for key in (f.groundtruth_boxes, f.groundtruth_classes):
      if key not in groundtruth_dict:
        raise ValueError(f'groundtruth_dict is missing {key!r} '
                         f'(image id {image_id!r})')
    boxes = _as_array(groundtruth_dict[f.groundtruth_boxes],
                      f.groundtruth_boxes, np.float64, rank=2,
                      trailing_shape=(4,))
    if not np.all(np.isfinite(boxes)):
      raise ValueError(f'{f.groundtruth_boxes} has non-finite values '
                       f'(image id {image_id!r})')
    num = boxes.shape[0]
    out = {'boxes': boxes,
           'classes': _as_array(groundtruth_dict[f.groundtruth_classes],
                                f.groundtruth_classes, np.int64, rank=1)}
    optional = {'is_crowd': (f.groundtruth_is_crowd, np.int64, 1, None),
                'area': (f.groundtruth_area, np.float64, 1, None)}
    if num_keypoints is not None:
      optional['keypoints'] = (f.groundtruth_keypoints, np.float64, 3,
                               (num_keypoints, 2))
      optional['keypoint_visibilities'] = (
          f.groundtruth_keypoint_visibilities, np.float64, 2,
          (num_keypoints,))
    for name, (key, dtype, rank, trailing) in optional.items():
      value = groundtruth_dict.get(key)
      out[name] = (None if value is None else
                   _as_array(value, key, dtype, rank, trailing))
    _check_num_rows(num, {f.groundtruth_classes: out['classes'],
                          f.groundtruth_is_crowd: out['is_crowd'],
                          f.groundtruth_area: out['area'],
                          f.groundtruth_keypoints: out.get('keypoints'),
                          f.groundtruth_keypoint_visibilities:
                              out.get('keypoint_visibilities')}, image_id)
    return out

  def _parse_detections(self, image_id, detections_dict, num_keypoints=None):
    """Validates one image's detections; drops non-finite rows (warning)."""
    if not isinstance(detections_dict, dict):
      raise ValueError('detections_dict must be a dict')
    f = fields.DetectionResultFields
    required = [f.detection_boxes, f.detection_scores, f.detection_classes]
    if num_keypoints is not None:
      required.append(f.detection_keypoints)
    for key in required:
      if key not in detections_dict:
        raise ValueError(f'detections_dict is missing {key!r} '
                         f'(image id {image_id!r})')
    out = {
        'boxes': _as_array(detections_dict[f.detection_boxes],
                           f.detection_boxes, np.float64, 2, (4,)),
        'scores': _as_array(detections_dict[f.detection_scores],
                            f.detection_scores, np.float64, 1),
        'classes': _as_array(detections_dict[f.detection_classes],
                             f.detection_classes, np.float64, 1),
    }
    if num_keypoints is not None:
      out['keypoints'] = _as_array(detections_dict[f.detection_keypoints],
                                   f.detection_keypoints, np.float64, 3,
                                   (num_keypoints, 2))
      scores = detections_dict.get(f.detection_keypoint_scores)
      out['keypoint_scores'] = (
          None if scores is None else
          _as_array(scores, f.detection_keypoint_scores, np.float64, 2,
                    (num_keypoints,)))
    num = out['boxes'].shape[0]
    _check_num_rows(num, {f.detection_scores: out['scores'],
                          f.detection_classes: out['classes'],
                          f.detection_keypoints: out.get('keypoints'),
                          f.detection_keypoint_scores:
                              out.get('keypoint_scores')}, image_id)
    out['classes'] = np.round(out['classes']).astype(np.int64)
    valid = (np.all(np.isfinite(out['boxes']), axis=1) &
             np.isfinite(out['scores']))
    if not np.all(valid):
      logging.warning('Dropping %d detections with non-finite boxes or scores '
                      '(image id %r).', int(np.sum(~valid)), image_id)
      out = {k: (None if v is None else v[valid]) for k, v in out.items()}
    return out

  def add_eval_dict(self, eval_dict):
    """Adds a batch of groundtruth and detections from od_meta's dictionaries.

    Args:
      eval_dict: dict of numpy arrays (or eager tensors) keyed by
        `standard_fields` names, for a batch of B images:
        * image id: the first present of 'source_id', 'image_id', 'key',
          'filename': [B] strings/bytes/ints;
        * 'original_image_spatial_shape': int [B, 2] (height, width) in pixels
          of the original image, used to scale normalized coordinates;
        * 'groundtruth_boxes': float [B, M, 4] normalized yxyx;
        * 'groundtruth_classes': int [B, M] 0-based class ids (or one-hot /
          k-hot [B, M, num_classes], reduced by argmax);
        * 'num_groundtruth_boxes': int [B] valid rows (default M);
        * optional 'groundtruth_is_crowd' [B, M], 'groundtruth_area' [B, M]
          (pixels of the original image; 0 -> box area);
        * keypoint evaluator only: 'groundtruth_keypoints' [B, M, K, 2]
          normalized (y, x) with NaN for absent keypoints, optional
          'groundtruth_keypoint_visibilities' [B, M, K];
        * 'detection_boxes' float [B, D, 4] normalized yxyx,
          'detection_scores' [B, D], 'detection_classes' [B, D] 0-based
          (1 is added to get label-map ids), 'num_detections' [B] (default D);
        * keypoint evaluator only: 'detection_keypoints' [B, D, K, 2]
          normalized (y, x), optional 'detection_keypoint_scores' [B, D, K].
        Images whose id was already added are skipped with a warning.

    Raises:
      ValueError: naming the missing or malformed field.
    """
    if not isinstance(eval_dict, dict):
      raise ValueError('eval_dict must be a dict')
    inp, det = fields.InputDataFields, fields.DetectionResultFields
    id_key = next((k for k in _IMAGE_ID_KEYS if k in eval_dict), None)
    if id_key is None:
      raise ValueError('eval_dict needs an image id under one of '
                       f'{list(_IMAGE_ID_KEYS)}')
    for key in (inp.original_image_spatial_shape, inp.groundtruth_boxes,
                inp.groundtruth_classes, det.detection_boxes,
                det.detection_scores, det.detection_classes):
      if key not in eval_dict:
        raise ValueError(f'eval_dict is missing {key!r}')
    image_ids = np.asarray(eval_dict[id_key]).reshape([-1])
    batch = image_ids.shape[0]
    shapes = _as_array(eval_dict[inp.original_image_spatial_shape],
                       inp.original_image_spatial_shape, np.float64)
    shapes = shapes.reshape([-1, shapes.shape[-1]])[:, :2]
    gt_boxes = _as_array(eval_dict[inp.groundtruth_boxes],
                         inp.groundtruth_boxes, np.float64, 3, (4,))
    gt_classes = np.asarray(eval_dict[inp.groundtruth_classes])
    if gt_classes.ndim == 3:
      gt_classes = np.argmax(gt_classes, axis=-1)
    gt_classes = _as_array(gt_classes, inp.groundtruth_classes, np.int64, 2)
    det_boxes = _as_array(eval_dict[det.detection_boxes], det.detection_boxes,
                          np.float64, 3, (4,))
    det_scores = _as_array(eval_dict[det.detection_scores],
                           det.detection_scores, np.float64, 2)
    det_classes = _as_array(eval_dict[det.detection_classes],
                            det.detection_classes, np.float64, 2)
    num_gt = (_as_array(eval_dict[inp.num_groundtruth_boxes],
                        inp.num_groundtruth_boxes, np.float64).reshape([-1])
              if inp.num_groundtruth_boxes in eval_dict else
              np.full([batch], gt_boxes.shape[1]))
    num_det = (_as_array(eval_dict[det.num_detections], det.num_detections,
                         np.float64).reshape([-1])
               if det.num_detections in eval_dict else
               np.full([batch], det_boxes.shape[1]))
    per_image = {
        inp.original_image_spatial_shape: shapes,
        inp.groundtruth_boxes: gt_boxes, inp.groundtruth_classes: gt_classes,
        inp.num_groundtruth_boxes: num_gt, det.detection_boxes: det_boxes,
        det.detection_scores: det_scores, det.detection_classes: det_classes,
        det.num_detections: num_det}
    optional_gt = [inp.groundtruth_is_crowd, inp.groundtruth_area,
                   inp.groundtruth_keypoints,
                   inp.groundtruth_keypoint_visibilities]
    optional_det = [det.detection_keypoints, det.detection_keypoint_scores]
    for key in optional_gt + optional_det:
      if key in eval_dict and eval_dict[key] is not None:
        per_image[key] = np.asarray(eval_dict[key])
    for key, value in per_image.items():
      if value.shape[0] != batch:
        raise ValueError(f'{key} has batch size {value.shape[0]}, but there '
                         f'are {batch} image ids under {id_key!r}')

    for i in range(batch):
      height, width = shapes[i]
      scale = np.array([height, width, height, width])
      n_gt = int(num_gt[i])
      gt = {inp.groundtruth_boxes: gt_boxes[i, :n_gt] * scale,
            inp.groundtruth_classes: gt_classes[i, :n_gt] + 1}
      for key in optional_gt:
        if key in per_image:
          gt[key] = per_image[key][i, :n_gt]
      if inp.groundtruth_keypoints in gt:
        gt[inp.groundtruth_keypoints] = (
            gt[inp.groundtruth_keypoints].astype(np.float64) *
            np.array([height, width]))
      n_det = int(num_det[i])
      dt = {det.detection_boxes: det_boxes[i, :n_det] * scale,
            det.detection_scores: det_scores[i, :n_det],
            det.detection_classes: det_classes[i, :n_det] + 1}
      for key in optional_det:
        if key in per_image:
          dt[key] = per_image[key][i, :n_det]
      if det.detection_keypoints in dt:
        dt[det.detection_keypoints] = (
            dt[det.detection_keypoints].astype(np.float64) *
            np.array([height, width]))
      image_id = image_ids[i]
      if _normalize_image_id(image_id) in self._image_ids:
        logging.warning('Ignoring eval_dict image with id %r since it was '
                        'previously added.', _normalize_image_id(image_id))
        continue
      self.add_single_ground_truth_image_info(image_id, gt)
      self.add_single_detected_image_info(image_id, dt)

  def _check_has_groundtruth(self):
    if not self._image_ids:
      raise ValueError(
          f'{type(self).__name__}.evaluate() called with no groundtruth: add '
          'images with add_single_ground_truth_image_info or add_eval_dict '
          'first.')
    if not self._groundtruth_list:
      raise ValueError(
          f'{type(self).__name__}.evaluate(): the {len(self._image_ids)} '
          'images added have no groundtruth boxes of an evaluated category, '
          'so no COCO metric is defined.')


class CocoDetectionEvaluator(_CocoEvaluatorBase):
  """COCO box detection metrics (mAP over IoU .50:.95, AR@1/10/100).

  Usage: add groundtruth then detections per image (or `add_eval_dict` per
  batch), then `evaluate()`, then `clear()` before the next evaluation.

  Groundtruth and detections whose class is not in `categories` are dropped
  (as the TF OD API does).
  """

  _METRIC_PREFIX = 'DetectionBoxes_'

  def __init__(self, categories, include_metrics_per_category=False,
               all_metrics_per_category=False):
    """Creates the evaluator.

    Args:
      categories: list of dicts {'id': int label-map id (0-based class id + 1),
        'name': str}, COCO-style; ids must be unique.
      include_metrics_per_category: if True, `evaluate` also returns
        'DetectionBoxes_PerformanceByCategory/mAP/<name>' per category.
      all_metrics_per_category: if True together with
        include_metrics_per_category, also the 12 summary metrics per category
        ('DetectionBoxes_Precision mAP ByCategory/<name>', ...), as the TF OD
        API. Many more scalars; meant for small label maps.

    Raises:
      ValueError: if `categories` is empty or malformed.
    """
    self._categories = _check_categories(categories)
    self._category_ids = {c['id'] for c in self._categories}
    self._include_metrics_per_category = include_metrics_per_category
    self._all_metrics_per_category = all_metrics_per_category
    super().__init__()

  def add_single_ground_truth_image_info(self, image_id, groundtruth_dict):
    """Adds the groundtruth of one image.

    Args:
      image_id: str, bytes or int, unique per image.
      groundtruth_dict: dict with
        'groundtruth_boxes': float [N, 4] ABSOLUTE pixel [ymin, xmin, ymax,
          xmax] of the original image (N may be 0);
        'groundtruth_classes': int [N] label-map ids (0-based class + 1);
        optional 'groundtruth_is_crowd': bool/int [N];
        optional 'groundtruth_area': float [N] pixels^2 (entries <= 0 use the
          box area).
      A second call with the same image id is ignored with a warning.

    Raises:
      ValueError: naming the malformed field.
    """
    gt = self._parse_groundtruth(image_id, groundtruth_dict)
    internal_id = self._register_groundtruth_image(image_id)
    if internal_id is None:
      return
    self._groundtruth_list.extend(
        _groundtruth_annotations(internal_id, gt, self._category_ids,
                                 self._next_annotation_id))
    self._next_annotation_id += gt['boxes'].shape[0]

  def add_single_detected_image_info(self, image_id, detections_dict):
    """Adds the detections of one image (after its groundtruth).

    Args:
      image_id: the id used for the groundtruth.
      detections_dict: dict with
        'detection_boxes': float [D, 4] ABSOLUTE pixel [ymin, xmin, ymax,
          xmax] of the original image (D may be 0);
        'detection_scores': float [D];
        'detection_classes': int or float [D] label-map ids.
      Rows with non-finite boxes or scores are dropped with a warning; a
      second call for the same image is ignored with a warning.

    Raises:
      ValueError: if the image has no groundtruth, or a field is malformed.
    """
    dt = self._parse_detections(image_id, detections_dict)
    internal_id = self._register_detected_image(image_id)
    if internal_id is None:
      return
    self._detection_list.extend(
        _detection_annotations(internal_id, dt, self._category_ids))

  def evaluate(self):
    """Runs COCOeval on everything added so far.

    Returns:
      dict str -> float: 'DetectionBoxes_Precision/mAP',
      'DetectionBoxes_Precision/mAP@.50IOU', 'DetectionBoxes_Precision/mAP@.75IOU',
      'DetectionBoxes_Precision/mAP (small|medium|large)',
      'DetectionBoxes_Recall/AR@1', '.../AR@10', '.../AR@100',
      'DetectionBoxes_Recall/AR@100 (small|medium|large)', plus per-category
      entries when requested. A value of -1 means undefined (no groundtruth in
      that area range / category), as in pycocotools. With no detections at
      all every defined metric is 0.

    Raises:
      ValueError: if no groundtruth image or no groundtruth box was added.
    """
    self._check_has_groundtruth()
    logging.info('Performing COCO box evaluation on %d images.',
                 len(self._image_ids))
    dataset = {
        'images': [{'id': i} for i in self._image_ids.values()],
        'annotations': self._groundtruth_list,
        'categories': [dict(c) for c in self._categories],
    }
    coco_eval = _run_coco_eval(dataset, self._detection_list, 'bbox')
    metrics = {}
    for name, value in zip(_BOX_SUMMARY_NAMES, coco_eval.stats):
      metrics[self._METRIC_PREFIX + name] = float(value)
    if self._include_metrics_per_category:
      cat_ids = list(coco_eval.params.catIds)
      for category in self._categories:
        k = cat_ids.index(category['id'])
        metrics[self._METRIC_PREFIX + 'PerformanceByCategory/mAP/' +
                category['name']] = _summarize(coco_eval, True,
                                               category_index=k)
        if self._all_metrics_per_category:
          for template, spec in zip(_BOX_PER_CATEGORY_NAMES,
                                    _BOX_SUMMARY_SPECS):
            metrics[self._METRIC_PREFIX + template.format(
                category['name'])] = _summarize(coco_eval, *spec,
                                                category_index=k)
    return metrics


class CocoKeypointEvaluator(_CocoEvaluatorBase):
  """COCO keypoint metrics (OKS-based AP/AR) for one category.

  Object Keypoint Similarity (COCO keypoint evaluation page; Ruggero Ronchi &
  Perona, ICCV 2017): OKS = sum_i exp(-d_i^2 / (2 s^2 k_i^2)) [v_i > 0] /
  sum_i [v_i > 0], with s^2 the groundtruth area and k_i = 2 sigma_i;
  pycocotools computes it with `params.kpt_oks_sigmas = keypoint_sigmas`.
  Groundtruth with no labeled keypoint is ignored; at most 20 detections per
  image are evaluated; area ranges are all / medium / large.

  The metric names are the TF OD API's ('Keypoints_Precision/mAP
  ByCategory/<class_text>', ...). Caveat inherited from it: the entries named
  'Recall/AR@1', 'Recall/AR@10', 'Recall/AR@100' hold pycocotools' keypoint
  AR over OKS .50:.95, AR at OKS .50 and AR at OKS .75 (maxDets 20).
  """

  _METRIC_PREFIX = 'Keypoints_'

  def __init__(self, category_id, category_keypoint_names,
               keypoint_sigmas=None, class_text=None):
    """Creates the evaluator.

    Args:
      category_id: int label-map id (0-based class id + 1) of the category
        whose keypoints are evaluated (e.g. person).
      category_keypoint_names: list of K str, the keypoint names in the order
        of the keypoint arrays.
      keypoint_sigmas: K floats, per-keypoint OKS sigma (COCO person:
        `COCO_PERSON_KEYPOINT_SIGMAS`). None is allowed only for K = 17 and
        then means the COCO person sigmas.
      class_text: category name used in the metric names; default
        'class_<category_id>'.

    Raises:
      ValueError: if the keypoint names are empty, or the sigmas are missing
        (K != 17), of the wrong length or not positive.
    """
    self._category_id = int(category_id)
    self._keypoint_names = [str(n) for n in category_keypoint_names]
    num_keypoints = len(self._keypoint_names)
    if num_keypoints == 0:
      raise ValueError('category_keypoint_names must not be empty')
    if keypoint_sigmas is None:
      if num_keypoints != len(COCO_PERSON_KEYPOINT_SIGMAS):
        raise ValueError(
            f'keypoint_sigmas is required for {num_keypoints} keypoints (the '
            'COCO default only covers the 17 person keypoints)')
      keypoint_sigmas = COCO_PERSON_KEYPOINT_SIGMAS
    sigmas = np.asarray(keypoint_sigmas, dtype=np.float64).reshape([-1])
    if sigmas.shape[0] != num_keypoints:
      raise ValueError(f'keypoint_sigmas has {sigmas.shape[0]} entries for '
                       f'{num_keypoints} keypoints')
    if not np.all(sigmas > 0):
      raise ValueError(f'keypoint_sigmas must be > 0, got {sigmas.tolist()}')
    self._sigmas = sigmas
    self._class_text = (class_text if class_text is not None else
                        f'class_{self._category_id}')
    super().__init__()

  @property
  def num_keypoints(self):
    return len(self._keypoint_names)

  def add_single_ground_truth_image_info(self, image_id, groundtruth_dict):
    """Adds the groundtruth of one image; only rows of `category_id` are kept.

    Args:
      image_id: str, bytes or int, unique per image.
      groundtruth_dict: dict with
        'groundtruth_boxes': float [N, 4] ABSOLUTE pixel yxyx;
        'groundtruth_classes': int [N] label-map ids;
        'groundtruth_keypoints': float [N, K, 2] ABSOLUTE pixel (y, x), NaN for
          absent keypoints;
        optional 'groundtruth_keypoint_visibilities': bool/int [N, K] (> 0
          means labeled; default: labeled where the keypoint is finite);
          NaN keypoints always count as unlabeled;
        optional 'groundtruth_is_crowd' [N], 'groundtruth_area' [N] pixels^2
          (the OKS scale s^2; entries <= 0 use the box area).

    Raises:
      ValueError: naming the malformed or missing field.
    """
    gt = self._parse_groundtruth(image_id, groundtruth_dict,
                                 num_keypoints=self.num_keypoints)
    if gt['keypoints'] is None:
      raise ValueError('groundtruth_dict is missing '
                       f'{fields.InputDataFields.groundtruth_keypoints!r} '
                       f'(image id {image_id!r})')
    internal_id = self._register_groundtruth_image(image_id)
    if internal_id is None:
      return
    self._groundtruth_list.extend(
        _groundtruth_annotations(internal_id, gt, {self._category_id},
                                 self._next_annotation_id))
    self._next_annotation_id += gt['boxes'].shape[0]

  def add_single_detected_image_info(self, image_id, detections_dict):
    """Adds the detections of one image; only rows of `category_id` are kept.

    Args:
      image_id: the id used for the groundtruth.
      detections_dict: dict with 'detection_boxes' float [D, 4] ABSOLUTE
        pixel yxyx, 'detection_scores' [D], 'detection_classes' [D] label-map
        ids, 'detection_keypoints' float [D, K, 2] ABSOLUTE pixel (y, x)
        (non-finite keypoints count as missed), optional
        'detection_keypoint_scores' [D, K] (stored, not used by OKS).

    Raises:
      ValueError: if the image has no groundtruth, or a field is malformed.
    """
    dt = self._parse_detections(image_id, detections_dict,
                                num_keypoints=self.num_keypoints)
    internal_id = self._register_detected_image(image_id)
    if internal_id is None:
      return
    self._detection_list.extend(
        _detection_annotations(internal_id, dt, {self._category_id}))

  def evaluate(self):
    """Runs COCOeval (iouType 'keypoints') on everything added so far.

    Returns:
      dict str -> float with the 10 'Keypoints_...ByCategory/<class_text>'
      metrics (see the class docstring); -1 means undefined (no groundtruth
      in that area range).

    Raises:
      ValueError: if no groundtruth image was added. Images without any
      groundtruth of this category (e.g. a class absent from a small eval
      set, when every class is evaluated) give -1 for every metric and a
      warning instead.
    """
    if self._image_ids and not self._groundtruth_list:
      logging.warning('%s: no groundtruth of category %d (%s) in the %d eval '
                      'images; its keypoint metrics are -1.',
                      type(self).__name__, self._category_id,
                      self._class_text, len(self._image_ids))
      return {self._METRIC_PREFIX + name.format(self._class_text): -1.0
              for name in _KEYPOINT_SUMMARY_NAMES}
    self._check_has_groundtruth()
    logging.info('Performing COCO keypoint evaluation on %d images.',
                 len(self._image_ids))
    dataset = {
        'images': [{'id': i} for i in self._image_ids.values()],
        'annotations': self._groundtruth_list,
        'categories': [{'id': self._category_id, 'name': self._class_text,
                        'keypoints': list(self._keypoint_names)}],
    }
    coco_eval = _run_coco_eval(dataset, self._detection_list, 'keypoints',
                               keypoint_sigmas=self._sigmas)
    return {self._METRIC_PREFIX + name.format(self._class_text): float(value)
            for name, value in zip(_KEYPOINT_SUMMARY_NAMES, coco_eval.stats)}


def _check_categories(categories):
  """Validates a COCO-style category list; returns a copy."""
  if not categories:
    raise ValueError('categories must be a non-empty list of '
                     "{'id': int, 'name': str}")
  out = []
  for c in categories:
    if not isinstance(c, dict) or 'id' not in c or 'name' not in c:
      raise ValueError("each entry of categories needs 'id' and 'name', got "
                       f'{c!r}')
    out.append({'id': int(c['id']), 'name': str(c['name'])})
  ids = [c['id'] for c in out]
  if len(set(ids)) != len(ids):
    raise ValueError(f'categories has duplicate ids: {ids}')
  return out


def _groundtruth_annotations(image_id, gt, category_ids, first_annotation_id):
  """COCO annotation dicts for one image (rows of other classes dropped)."""
  boxes = gt['boxes']
  xywh = _yxyx_to_xywh(boxes)
  box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  annotations = []
  for i in range(boxes.shape[0]):
    category_id = int(gt['classes'][i])
    if category_id not in category_ids:
      continue
    area = box_area[i]
    if gt['area'] is not None and gt['area'][i] > 0:
      area = gt['area'][i]
    annotation = {
        'id': first_annotation_id + i,
        'image_id': image_id,
        'category_id': category_id,
        'bbox': [float(v) for v in xywh[i]],
        'area': float(area),
        'iscrowd': int(gt['is_crowd'][i]) if gt['is_crowd'] is not None else 0,
    }
    if gt.get('keypoints') is not None:
      keypoints = gt['keypoints'][i]
      finite = np.all(np.isfinite(keypoints), axis=1)
      if gt.get('keypoint_visibilities') is not None:
        visibilities = np.nan_to_num(gt['keypoint_visibilities'][i])
        labeled = (visibilities > 0) & finite
        visibilities = np.where(labeled, np.maximum(visibilities, 1), 0)
      else:
        labeled = finite
        visibilities = np.where(labeled, 2, 0)
      keypoints = np.where(finite[:, None], keypoints, 0.0)
      coco_keypoints = []
      for (y, x), v in zip(keypoints, visibilities):
        coco_keypoints.extend([float(x), float(y), int(v)])
      annotation['keypoints'] = coco_keypoints
      annotation['num_keypoints'] = int(np.sum(labeled))
    annotations.append(annotation)
  return annotations


# Where non-finite detected keypoints are put: far from any image, so that
# their OKS term exp(-d^2 / ...) is 0.
_FAR_AWAY = -1e8


def _detection_annotations(image_id, dt, category_ids):
  """COCO result dicts for one image (rows of other classes dropped)."""
  xywh = _yxyx_to_xywh(dt['boxes'])
  results = []
  for i in range(xywh.shape[0]):
    category_id = int(dt['classes'][i])
    if category_id not in category_ids:
      continue
    result = {'image_id': image_id, 'category_id': category_id,
              'bbox': [float(v) for v in xywh[i]],
              'score': float(dt['scores'][i])}
    if dt.get('keypoints') is not None:
      keypoints = np.where(np.isfinite(dt['keypoints'][i]), dt['keypoints'][i],
                           _FAR_AWAY)
      if dt.get('keypoint_scores') is not None:
        kp_scores = np.nan_to_num(dt['keypoint_scores'][i])
      else:
        kp_scores = np.ones([keypoints.shape[0]])
      coco_keypoints = []
      for (y, x), s in zip(keypoints, kp_scores):
        coco_keypoints.extend([float(x), float(y), float(s)])
      result['keypoints'] = coco_keypoints
    results.append(result)
  return results


SUPPORTED_METRICS_SETS = ('coco_detection_metrics', 'coco_keypoint_metrics')


def get_evaluators(metrics_set_names, categories, keypoint_config=None,
                   include_metrics_per_category=False,
                   all_metrics_per_category=False):
  """Builds the evaluators named by an eval config's `metrics_set`.

  Args:
    metrics_set_names: str or list of str among `SUPPORTED_METRICS_SETS`;
      empty or None means ['coco_detection_metrics'] (the TF OD API default).
    categories: list of {'id': label-map id, 'name': str}.
    keypoint_config: for 'coco_keypoint_metrics': a dict, or a list of dicts
      (one evaluator each), with 'category_id' (label-map id) or 'class_label'
      (a category name), 'keypoint_names' (list of K str) and optional
      'keypoint_sigmas' (K floats; see `CocoKeypointEvaluator`).
    include_metrics_per_category: passed to `CocoDetectionEvaluator`.
    all_metrics_per_category: passed to `CocoDetectionEvaluator`.

  Returns:
    list of evaluators, in the order of `metrics_set_names`.

  Raises:
    ValueError: for an unknown metrics set name (listing the supported ones),
      'coco_keypoint_metrics' without a usable keypoint_config, or bad
      categories.
  """
  if not metrics_set_names:
    metrics_set_names = ['coco_detection_metrics']
  if isinstance(metrics_set_names, str):
    metrics_set_names = [metrics_set_names]
  categories = _check_categories(categories)
  evaluators = []
  for name in metrics_set_names:
    if name == 'coco_detection_metrics':
      evaluators.append(CocoDetectionEvaluator(
          categories,
          include_metrics_per_category=include_metrics_per_category,
          all_metrics_per_category=all_metrics_per_category))
    elif name == 'coco_keypoint_metrics':
      if not keypoint_config:
        raise ValueError('metrics_set coco_keypoint_metrics needs '
                         'keypoint_config (category and keypoint names)')
      configs = ([keypoint_config] if isinstance(keypoint_config, dict)
                 else list(keypoint_config))
      for config in configs:
        evaluators.append(_keypoint_evaluator_from_config(config, categories))
    else:
      raise ValueError(f'Unknown metrics_set {name!r}; supported: '
                       f'{list(SUPPORTED_METRICS_SETS)}')
  return evaluators


def _keypoint_evaluator_from_config(config, categories):
  """One CocoKeypointEvaluator from a keypoint_config dict."""
  if 'keypoint_names' not in config:
    raise ValueError("keypoint_config needs 'keypoint_names'")
  if 'category_id' in config:
    category_id = int(config['category_id'])
    matches = [c for c in categories if c['id'] == category_id]
  elif 'class_label' in config:
    matches = [c for c in categories if c['name'] == config['class_label']]
  else:
    raise ValueError("keypoint_config needs 'category_id' or 'class_label'")
  if not matches:
    raise ValueError(f'keypoint_config category {config!r} is not in '
                     'categories')
  return CocoKeypointEvaluator(
      category_id=matches[0]['id'],
      category_keypoint_names=config['keypoint_names'],
      keypoint_sigmas=config.get('keypoint_sigmas'),
      class_text=matches[0]['name'])
