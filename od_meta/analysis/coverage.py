"""The share of groundtruth boxes a config's detector can learn from.

A groundtruth box that no anchor (or, for anchor-free detectors, no location)
takes as a positive gives no box-regression target: with an Argmax matcher's
`force_match_for_each_row` it gets one anchor of poor overlap, otherwise
nothing. `CoverageProbe` runs a config's model on batches of its input
pipeline, exactly as training sees them (the image resizer, the padded
frame), and asks the model's own target assigner which boxes are matched
(`DetectionModel.groundtruth_coverage`), per feature-map level. It can also
place another anchor generator on the same feature maps, which is how
`scripts/analyze_dataset.py` searches anchors without rebuilding the model.
"""

import dataclasses
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from od_meta.core import standard_fields as fields
from od_meta.data import inputs


@dataclasses.dataclass
class CoverageResult:
  """Groundtruth coverage over a set of batches (valid boxes only).

  Attributes:
    num_positives: int `[B]` positives per groundtruth box.
    level: int `[B]` level index of the box's positives, -1 unmatched.
    best_iou: float `[B]` best anchor IoU (NaN for heatmap detectors).
    classes: int `[B]` 0-based class ids.
    level_strides: float `[L]` stride of each level, input pixels.
    num_anchors: anchors (or locations) per image, 0 when unknown.
  """
  num_positives: np.ndarray
  level: np.ndarray
  best_iou: np.ndarray
  classes: np.ndarray
  level_strides: np.ndarray
  num_anchors: int = 0

  @property
  def num_boxes(self) -> int:
    return int(len(self.num_positives))

  @property
  def matched_share(self) -> float:
    """Share of the boxes with at least one positive (1 when no boxes)."""
    if self.num_boxes == 0:
      return 1.0
    return float(np.mean(self.num_positives > 0))

  @property
  def mean_best_iou(self) -> float:
    finite = self.best_iou[np.isfinite(self.best_iou)]
    return float(finite.mean()) if finite.size else float('nan')

  def level_shares(self) -> List[float]:
    """Per level, the share of all boxes whose positives lie there."""
    if self.num_boxes == 0:
      return [0.0] * len(self.level_strides)
    return [float(np.mean(self.level == i))
            for i in range(len(self.level_strides))]

  def summary(self, class_names: Optional[Dict[int, str]] = None) -> dict:
    """JSON-ready: matched share, mean positives and best IoU, per level
    (stride, share of boxes) and per class (names from 0-based ids)."""
    class_names = class_names or {}
    per_class = {}
    for c in sorted(set(self.classes.tolist())):
      mask = self.classes == c
      per_class[class_names.get(c, str(c))] = float(
          np.mean(self.num_positives[mask] > 0))
    matched = self.num_positives > 0
    return {
        'num_boxes': self.num_boxes,
        'matched_share': self.matched_share,
        'mean_positives_per_matched_box': (
            float(self.num_positives[matched].mean()) if matched.any()
            else 0.0),
        'mean_best_iou': self.mean_best_iou,
        'num_anchors_per_image': int(self.num_anchors),
        'levels': [{'stride': float(s), 'share_of_boxes': share}
                   for s, share in zip(self.level_strides,
                                       self.level_shares())],
        'matched_share_per_class': per_class,
    }


def coverage_of_batch(detection_model, features, labels, *,
                      prediction_dict=None, anchor_generator=None
                      ) -> CoverageResult:
  """Coverage of one input batch (eager).

  Args:
    detection_model: a built `DetectionModel`.
    features, labels: one batch of `inputs.build_dataset` (images already
      resized by the input pipeline).
    prediction_dict: the batch's `predict` output when already computed.
    anchor_generator: optional anchor generator replacing the model's own.

  Returns:
    a `CoverageResult` over the batch's valid (weight > 0) boxes.

  Raises:
    NotImplementedError: if the meta-architecture reports no coverage.
  """
  kwargs = inputs.provide_groundtruth_kwargs(labels)
  detection_model.provide_groundtruth(**kwargs)
  true_shapes = features[fields.InputDataFields.true_image_shape]
  if prediction_dict is None:
    preprocessed, true_shapes = detection_model.preprocess(
        features[fields.InputDataFields.image], true_shapes)
    prediction_dict = detection_model.predict(preprocessed, true_shapes,
                                              training=False)
  per_image = detection_model.groundtruth_coverage(
      prediction_dict, true_shapes, anchor_generator=anchor_generator)
  weights = kwargs.get('groundtruth_weights_list')
  classes = kwargs['groundtruth_classes_list']
  parts = {'num_positives': [], 'level': [], 'best_iou': [], 'classes': []}
  strides = np.array([np.nan])
  for i, cov in enumerate(per_image):
    valid = np.ones(int(tf.size(cov.num_positives)), bool)
    if weights is not None:
      valid = np.asarray(weights[i]).reshape(-1) > 0
    cls = np.asarray(classes[i])
    if cls.ndim == 2:
      cls = cls.argmax(axis=-1)
    parts['num_positives'].append(np.asarray(cov.num_positives)[valid])
    parts['level'].append(np.asarray(cov.level)[valid])
    parts['best_iou'].append(np.asarray(cov.best_iou)[valid])
    parts['classes'].append(cls.reshape(-1)[valid])
    strides = np.asarray(cov.level_strides, np.float64)
  num_anchors = 0
  if anchor_generator is None and 'anchors' in prediction_dict:
    num_anchors = int(prediction_dict['anchors'].shape[0] or 0)
  return CoverageResult(
      **{k: np.concatenate(v) if v else np.zeros([0]) for k, v in
         parts.items()}, level_strides=strides, num_anchors=num_anchors)


def merge(results: List[CoverageResult]) -> CoverageResult:
  """One `CoverageResult` from several batches' (same model and levels)."""
  if not results:
    raise ValueError('no coverage results to merge')
  return CoverageResult(
      num_positives=np.concatenate([r.num_positives for r in results]),
      level=np.concatenate([r.level for r in results]),
      best_iou=np.concatenate([r.best_iou for r in results]),
      classes=np.concatenate([r.classes for r in results]),
      level_strides=results[-1].level_strides,
      num_anchors=results[-1].num_anchors)


class CoverageProbe:
  """Runs a model once over some batches, then reports coverage for its own
  anchors or for candidate anchor generators on the same feature maps.

  Args:
    detection_model: a built `DetectionModel` (inference mode is enough).
    dataset: a `tf.data.Dataset` of (features, labels) batches from
      `inputs.build_dataset` (e.g. `train_loop.build_input_fn(...)(None)`).
    max_images: stop after the batch that reaches this many images.
  """

  def __init__(self, detection_model, dataset, max_images: int = 512):
    self._model = detection_model
    self._batches = []
    seen = 0
    for features, labels in dataset:
      true_shapes = features[fields.InputDataFields.true_image_shape]
      detection_model.provide_groundtruth(
          **inputs.provide_groundtruth_kwargs(labels))
      preprocessed, true_shapes = detection_model.preprocess(
          features[fields.InputDataFields.image], true_shapes)
      prediction_dict = detection_model.predict(preprocessed, true_shapes,
                                                training=False)
      light = {k: v for k, v in prediction_dict.items()
               if k in ('preprocessed_inputs', 'feature_maps', 'anchors',
                        'rpn_features_to_crop')}
      self._batches.append((features, labels, light))
      seen += int(true_shapes.shape[0])
      if seen >= max_images:
        break
    self.num_images = seen

  @property
  def model(self):
    return self._model

  @property
  def input_shape(self):
    """(height, width) of the padded input batches, pixels."""
    shape = self._batches[0][2]['preprocessed_inputs'].shape
    return int(shape[1]), int(shape[2])

  def anchor_sizes(self, decimals: int = 1) -> List[float]:
    """Distinct sqrt(height x width) of the model's own anchors, input
    pixels (empty for anchor-free models)."""
    light = self._batches[0][2] if self._batches else {}
    if 'anchors' not in light:
      return []
    anchors = np.asarray(light['anchors'], np.float64)
    height, width = self.input_shape
    sizes = np.sqrt((anchors[:, 2] - anchors[:, 0]) * height *
                    (anchors[:, 3] - anchors[:, 1]) * width)
    return sorted({float(v) for v in np.round(sizes, decimals)})

  def coverage(self, anchor_generator=None) -> CoverageResult:
    """Coverage of all probed batches, with the model's anchors or with
    `anchor_generator` placed on the same feature maps."""
    results = [coverage_of_batch(self._model, features, labels,
                                 prediction_dict=light,
                                 anchor_generator=anchor_generator)
               for features, labels, light in self._batches]
    result = merge(results)
    if anchor_generator is not None and self._batches:
      result.num_anchors = self._num_anchors(anchor_generator)
    return result

  def _num_anchors(self, anchor_generator):
    light = self._batches[0][2]
    maps = light.get('feature_maps') or [light.get('rpn_features_to_crop')]
    per_location = anchor_generator.num_anchors_per_location()
    return int(sum(int(m.shape[1]) * int(m.shape[2]) * n
                   for m, n in zip(maps, per_location)))
