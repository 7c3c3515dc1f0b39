"""CenterNet "Objects as Points" (Zhou et al. 2019), with keypoint estimation.

An object is the peak of a per-class center heatmap at output stride R (4);
its box is regressed at that pixel as a size (h, w) and a sub-pixel offset:

  L = L_k + lambda_size L_size + lambda_off L_off        (paper eq. 5)

with L_k the penalty-reduced focal loss (eq. 1, alpha 2, beta 4) on circular
Gaussians whose radius follows CornerNet's IoU >= 0.7 rule, and L1 size and
offset losses supervised at centers only (eq. 2-3), all normalized by the
number of objects N. Decoding (Sec. 4): 3x3 max-pool peaks, top 100 over all
classes, box = (peak + offset) R -/+ size R / 2; no NMS.

Human-pose-style keypoints (Sec. 4.3 / the TF OD API's keypoint task): a
K-channel keypoint heatmap (focal loss), 2K-channel keypoint offsets from the
object center (L1, at centers), a 2-channel keypoint local offset (L1, at
keypoint pixels). At inference each regressed keypoint snaps to the nearest
keypoint-heatmap peak inside its object's box (else keeps the regression with
a low score): `detection_keypoints` `[B, max_det, K, 2]` normalized (y, x)
and `detection_keypoint_scores` `[B, max_det, K]`.

Flip test (MMDetection's reproduction, seed 004): heatmaps and sizes of the
image and its mirror are averaged, offsets are not.
"""

import dataclasses
from typing import Callable, Optional, Sequence

import tensorflow as tf

from od_meta.core import dense_post_processing as dpp
from od_meta.core import standard_fields as fields
from od_meta.meta_architectures import dense_meta_arch
from od_meta.core import image_frames

DTF = fields.DenseTargetFields
OBJECT_CENTER = 'object_center'
BOX_SCALE = 'box_scale'
BOX_OFFSET = 'box_offset'
KEYPOINT_HEATMAP = 'keypoint_heatmap'
KEYPOINT_REGRESSION = 'keypoint_regression'
KEYPOINT_OFFSET = 'keypoint_offset'


@dataclasses.dataclass(frozen=True)
class ObjectCenterParams:
  """Center heatmap head (protos/center_net.proto ObjectCenterParams).

  Attributes:
    classification_loss: a per-pixel heatmap loss (e.g.
      `losses.PenaltyReducedLogisticFocalLoss(alpha=2, beta=4)`).
    object_center_loss_weight: weight of L_k.
    heatmap_bias_init: initial bias of the heatmap logits (-2.19: prior 0.1).
    min_box_overlap_iou: IoU of the CornerNet radius rule (0.7).
    max_box_predictions: detections kept per image (top-k, 100).
    peak_max_pool_kernel_size: side of the peak max-pool (3).
    center_score_threshold: peaks scoring at or below are dropped.
  """
  classification_loss: Callable
  object_center_loss_weight: float = 1.0
  heatmap_bias_init: float = -2.19
  min_box_overlap_iou: float = 0.7
  max_box_predictions: int = 100
  peak_max_pool_kernel_size: int = 3
  center_score_threshold: float = 0.0


@dataclasses.dataclass(frozen=True)
class ObjectDetectionParams:
  """Size and offset heads (protos/center_net.proto ObjectDetection).

  Attributes:
    localization_loss: per-location loss on `[B, A, 2]` (L1 in the paper).
    task_loss_weight: weight of the whole box task.
    offset_loss_weight: lambda_off (1).
    scale_loss_weight: lambda_size (0.1).
  """
  localization_loss: Callable
  task_loss_weight: float = 1.0
  offset_loss_weight: float = 1.0
  scale_loss_weight: float = 0.1


@dataclasses.dataclass(frozen=True)
class KeypointEstimationParams:
  """One keypoint task (protos/center_net.proto KeypointEstimation).

  Attributes:
    task_name: name used in the loss keys.
    num_keypoints: K.
    classification_loss: keypoint heatmap loss (penalty-reduced focal).
    localization_loss: loss of the regression and offset heads (L1).
    class_id: 0-based class whose instances carry the keypoints; None = all
      classes.
    keypoint_std_dev: K multipliers of the Gaussian radius per keypoint.
    task_loss_weight, keypoint_regression_loss_weight,
    keypoint_heatmap_loss_weight, keypoint_offset_loss_weight: loss weights.
    heatmap_bias_init: initial bias of the keypoint heatmap logits.
    keypoint_candidate_score_threshold, num_candidates_per_keypoint,
    peak_max_pool_kernel_size, unmatched_keypoint_score, box_scale,
    candidate_search_scale, candidate_ranking_mode: snapping parameters of
      `dense_post_processing.snap_keypoints_to_candidates`.
    per_keypoint_offset: one local offset per keypoint type (2K channels)
      instead of a shared one (2).
    keypoint_flip_permutation: K ints for the flip test (keypoint k of a
      mirrored image is keypoint `keypoint_flip_permutation[k]` of the
      original); None = identity. Required in practice for left / right
      keypoints.
  """
  task_name: str
  num_keypoints: int
  classification_loss: Callable
  localization_loss: Callable
  class_id: Optional[int] = None
  keypoint_std_dev: Optional[Sequence[float]] = None
  task_loss_weight: float = 1.0
  keypoint_regression_loss_weight: float = 1.0
  keypoint_heatmap_loss_weight: float = 1.0
  keypoint_offset_loss_weight: float = 1.0
  heatmap_bias_init: float = -2.19
  keypoint_candidate_score_threshold: float = 0.1
  num_candidates_per_keypoint: int = 100
  peak_max_pool_kernel_size: int = 3
  unmatched_keypoint_score: float = 0.1
  box_scale: float = 1.2
  candidate_search_scale: float = 0.3
  candidate_ranking_mode: str = 'min_distance'
  per_keypoint_offset: bool = False
  keypoint_flip_permutation: Optional[Sequence[int]] = None


class CenterNetMetaArch(dense_meta_arch.DenseHeatmapMetaArch):
  """CenterNet "Objects as Points" meta-architecture.

  Args:
    is_training, num_classes, image_resizer_fn, feature_extractor,
    head_channels, use_depthwise: see `DenseHeatmapMetaArch`.
    target_assigner: a `CenterNetTargetAssigner` with the extractor's stride.
    object_center_params: `ObjectCenterParams`.
    object_detection_params: `ObjectDetectionParams`, or None for heatmaps
      only (no boxes are regressed; detections are then points).
    keypoint_params: optional `KeypointEstimationParams`.
    flip_test: average heatmaps and sizes with the mirrored image's at
      inference.
    name: Keras layer name.

  Raises:
    ValueError: if the assigner's stride differs from the extractor's, or
      its per_keypoint_offset from keypoint_params'.
  """

  def __init__(self, *, is_training, num_classes, image_resizer_fn,
               feature_extractor, target_assigner,
               object_center_params: ObjectCenterParams,
               object_detection_params: Optional[ObjectDetectionParams],
               keypoint_params: Optional[KeypointEstimationParams] = None,
               flip_test: bool = False, head_channels: int = 64,
               use_depthwise: bool = False, name: Optional[str] = None):
    self._center_params = object_center_params
    self._detection_params = object_detection_params
    self._keypoint_params = keypoint_params
    super().__init__(is_training=is_training, num_classes=num_classes,
                     image_resizer_fn=image_resizer_fn,
                     feature_extractor=feature_extractor,
                     target_assigner=target_assigner,
                     head_channels=head_channels,
                     use_depthwise=use_depthwise,
                     name=name or 'center_net')
    if (keypoint_params is not None and
        getattr(target_assigner, 'per_keypoint_offset', False) !=
        keypoint_params.per_keypoint_offset):
      raise ValueError(
          'the target assigner and keypoint_params disagree on '
          'per_keypoint_offset (build both from the same config)')
    if keypoint_params is not None and (
        keypoint_params.keypoint_flip_permutation is not None):
      permutation = [int(k) for k in
                     keypoint_params.keypoint_flip_permutation]
      if sorted(permutation) != list(range(keypoint_params.num_keypoints)):
        raise ValueError(
            f'keypoint_flip_permutation {permutation} is not a permutation '
            f'of the {keypoint_params.num_keypoints} keypoints')
    self._flip_test = bool(flip_test)

  def _head_specs(self):
    specs = {OBJECT_CENTER: (self.num_classes,
                             self._center_params.heatmap_bias_init)}
    if self._detection_params is not None:
      specs[BOX_SCALE] = (2, 0.0)
      specs[BOX_OFFSET] = (2, 0.0)
    kp = self._keypoint_params
    if kp is not None:
      specs[KEYPOINT_HEATMAP] = (kp.num_keypoints, kp.heatmap_bias_init)
      specs[KEYPOINT_REGRESSION] = (2 * kp.num_keypoints, 0.0)
      specs[KEYPOINT_OFFSET] = (
          2 * kp.num_keypoints if kp.per_keypoint_offset else 2, 0.0)
    return specs

  # ------------------------------------------------------------------ predict
  def predict(self, preprocessed_inputs, true_image_shapes, training=False):
    """See `DenseHeatmapMetaArch.predict`.

    With `flip_test` and `training=False`, the mirrored batch is run too and
    its last-stack object_center / box_scale (and keypoint_heatmap /
    keypoint_regression) outputs are added under '<name>_flipped' for
    `postprocess`.
    """
    if not self._flip_test or training:
      return super().predict(preprocessed_inputs, true_image_shapes,
                             training=training)
    batch = tf.shape(preprocessed_inputs)[0]
    both = tf.concat([preprocessed_inputs,
                      tf.reverse(preprocessed_inputs, axis=[2])], axis=0)
    predictions = super().predict(both, true_image_shapes, training=False)
    out = {'preprocessed_inputs': preprocessed_inputs}
    for name in self.prediction_heads:
      out[name] = [p[:batch] for p in predictions[name]]
    for name in (OBJECT_CENTER, BOX_SCALE, KEYPOINT_HEATMAP,
                 KEYPOINT_REGRESSION):
      if name in predictions:
        out[name + '_flipped'] = predictions[name][-1][batch:]
    return out

  # --------------------------------------------------------------------- loss
  def _assigner_kwargs(self, gt):
    if self._keypoint_params is not None:
      if 'keypoints' not in gt:
        raise ValueError('the CenterNet keypoint task needs groundtruth '
                         'keypoints (provide_groundtruth '
                         'groundtruth_keypoints_list)')
      visibilities = gt['keypoint_visibilities']
      class_id = self._keypoint_params.class_id
      if class_id is not None:
        visibilities = [
            tf.logical_and(v, tf.equal(c, class_id)[:, tf.newaxis])
            for v, c in zip(visibilities, gt['classes'])]
      return dict(groundtruth_keypoints_list=gt['keypoints'],
                  groundtruth_keypoint_visibilities_list=visibilities)
    return {}

  def _stack_loss(self, predictions, targets, num_objects):
    center = self._center_params
    heatmap_loss = tf.reduce_sum(center.classification_loss(
        predictions[OBJECT_CENTER], targets[DTF.heatmap])) / num_objects
    losses = {'Loss/object_center':
                  center.object_center_loss_weight * heatmap_loss}
    det = self._detection_params
    if det is not None:
      weights = targets[DTF.center_weights]
      scale = dense_meta_arch.dense_l1_loss(
          det.localization_loss, predictions[BOX_SCALE], targets[DTF.size],
          weights, num_objects)
      offset = dense_meta_arch.dense_l1_loss(
          det.localization_loss, predictions[BOX_OFFSET], targets[DTF.offset],
          weights, num_objects)
      losses['Loss/box/scale'] = (det.task_loss_weight *
                                  det.scale_loss_weight * scale)
      losses['Loss/box/offset'] = (det.task_loss_weight *
                                   det.offset_loss_weight * offset)
    kp = self._keypoint_params
    if kp is not None:
      num_keypoints = tf.maximum(
          tf.reduce_sum(targets[DTF.num_keypoints]), 1.0)
      kp_heatmap = tf.reduce_sum(kp.classification_loss(
          predictions[KEYPOINT_HEATMAP],
          targets[DTF.keypoint_heatmap])) / num_keypoints
      kp_regression = dense_meta_arch.dense_l1_loss(
          kp.localization_loss, predictions[KEYPOINT_REGRESSION],
          targets[DTF.keypoint_regression],
          targets[DTF.keypoint_regression_weights], num_keypoints)
      # Shared [h, w, 2] or per-type [h, w, 2K] offsets (the assigner was
      # built with the same per_keypoint_offset).
      kp_offset = dense_meta_arch.dense_l1_loss(
          kp.localization_loss, predictions[KEYPOINT_OFFSET],
          targets[DTF.keypoint_offset], targets[DTF.keypoint_offset_weights],
          num_keypoints)
      prefix = f'Loss/{kp.task_name}'
      losses[f'{prefix}/keypoint_heatmap'] = (
          kp.task_loss_weight * kp.keypoint_heatmap_loss_weight * kp_heatmap)
      losses[f'{prefix}/keypoint_regression'] = (
          kp.task_loss_weight * kp.keypoint_regression_loss_weight *
          kp_regression)
      losses[f'{prefix}/keypoint_offset'] = (
          kp.task_loss_weight * kp.keypoint_offset_loss_weight * kp_offset)
    return losses

  # -------------------------------------------------------------- postprocess
  def postprocess(self, prediction_dict, true_image_shapes):
    """Decodes the last stack into detections, in the graph.

    Returns:
      dict with detection_boxes float32 `[B, max_det, 4]` (normalized to the
      true image window), detection_scores `[B, max_det]`,
      detection_classes float32 `[B, max_det]` (0-based),
      num_detections float32 `[B]`, and with keypoints
      detection_keypoints float32 `[B, max_det, K, 2]` (normalized (y, x)
      in the true window) and detection_keypoint_scores `[B, max_det, K]`.
    """
    center = self._center_params
    preprocessed = prediction_dict['preprocessed_inputs']
    heatmap = tf.sigmoid(prediction_dict[OBJECT_CENTER][-1])
    sizes_map = (prediction_dict[BOX_SCALE][-1]
                 if BOX_SCALE in prediction_dict else None)
    if OBJECT_CENTER + '_flipped' in prediction_dict:
      flipped_sizes = prediction_dict.get(BOX_SCALE + '_flipped', sizes_map)
      heatmap, merged_sizes = dpp.flip_test_merge(
          heatmap, tf.sigmoid(prediction_dict[OBJECT_CENTER + '_flipped']),
          sizes_map if sizes_map is not None else tf.zeros_like(heatmap),
          flipped_sizes if flipped_sizes is not None else tf.zeros_like(
              heatmap))
      if sizes_map is not None:
        sizes_map = merged_sizes
    peaks = dpp.extract_peaks(
        heatmap, max_pool_kernel_size=center.peak_max_pool_kernel_size,
        max_detections=center.max_box_predictions,
        score_threshold=center.center_score_threshold)
    height, width = self._input_size(preprocessed)
    if sizes_map is not None:
      sizes = dpp.gather_at_locations(sizes_map, peaks.y_indices,
                                      peaks.x_indices)
      offsets = dpp.gather_at_locations(prediction_dict[BOX_OFFSET][-1],
                                        peaks.y_indices, peaks.x_indices)
    else:
      sizes = tf.zeros(tf.concat([tf.shape(peaks.scores), [2]], 0))
      offsets = None
    boxes = dpp.decode_center_net_boxes(
        peaks.y_indices, peaks.x_indices, sizes, offsets, self.stride,
        height, width)
    detections = self._detections_in_window(
        boxes, peaks.scores, peaks.classes, peaks.valid, preprocessed,
        true_image_shapes)
    if self._keypoint_params is not None:
      keypoints, keypoint_scores = self._decode_keypoints(
          prediction_dict, peaks, boxes, height, width)
      window = image_frames.true_window(preprocessed, true_image_shapes)
      origin = window[:, tf.newaxis, tf.newaxis, :2]
      size = (window[:, tf.newaxis, tf.newaxis, 2:] -
              window[:, tf.newaxis, tf.newaxis, :2])
      keypoints = tf.clip_by_value((keypoints - origin) / size, 0.0, 1.0)
      mask = tf.cast(peaks.valid, tf.float32)
      if self._keypoint_params.class_id is not None:
        mask *= tf.cast(
            tf.equal(peaks.classes, self._keypoint_params.class_id),
            tf.float32)
      detections[fields.DetectionResultFields.detection_keypoints] = (
          keypoints * mask[:, :, None, None])
      detections[fields.DetectionResultFields.detection_keypoint_scores] = (
          keypoint_scores * mask[:, :, None])
    return detections

  def _decode_keypoints(self, prediction_dict, peaks, boxes, height, width):
    """Regressed + snapped keypoints, normalized to the padded frame."""
    kp = self._keypoint_params
    stride = float(self.stride)
    num = kp.num_keypoints
    heatmap = tf.sigmoid(prediction_dict[KEYPOINT_HEATMAP][-1])
    regression_map = prediction_dict[KEYPOINT_REGRESSION][-1]
    if KEYPOINT_HEATMAP + '_flipped' in prediction_dict:
      # CenterNet pose flip test: heatmaps and regressions averaged with the
      # mirror's (types swapped back, dx negated); local offsets are not.
      permutation = (kp.keypoint_flip_permutation if
                     kp.keypoint_flip_permutation is not None else
                     range(num))
      heatmap_f, regression_f = dpp.unflip_keypoint_maps(
          tf.sigmoid(prediction_dict[KEYPOINT_HEATMAP + '_flipped']),
          prediction_dict[KEYPOINT_REGRESSION + '_flipped'], permutation)
      heatmap = (heatmap + heatmap_f) / 2.0
      regression_map = (regression_map + regression_f) / 2.0
    regression = dpp.gather_at_locations(
        regression_map, peaks.y_indices, peaks.x_indices)
    batch_k = tf.shape(regression)[:2]
    regression = tf.reshape(regression, tf.concat([batch_k, [num, 2]], 0))
    centers = tf.cast(tf.stack([peaks.y_indices, peaks.x_indices], -1),
                      tf.float32)
    regressed = centers[:, :, tf.newaxis, :] + regression
    out_hw = tf.cast(tf.stack([height, width]), tf.float32) / stride
    boxes_out = boxes * tf.tile(out_hw, [2])
    keypoints, scores = dpp.snap_keypoints_to_candidates(
        regressed, heatmap, prediction_dict[KEYPOINT_OFFSET][-1], boxes_out,
        num_candidates_per_keypoint=kp.num_candidates_per_keypoint,
        keypoint_candidate_score_threshold=(
            kp.keypoint_candidate_score_threshold),
        peak_max_pool_kernel_size=kp.peak_max_pool_kernel_size,
        candidate_ranking_mode=kp.candidate_ranking_mode,
        box_scale=kp.box_scale,
        candidate_search_scale=kp.candidate_search_scale,
        unmatched_keypoint_score=kp.unmatched_keypoint_score,
        per_keypoint_offset=kp.per_keypoint_offset)
    # Output-stride pixels -> normalized to the padded input frame.
    return keypoints / out_hw, scores

