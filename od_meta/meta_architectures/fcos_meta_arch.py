"""Anchor-point detectors on FPN levels: FCOS, FCOS with ATSS, SAPD.

FCOS (Tian et al. 2019) predicts, at every location of FPN levels P3-P7,
class scores, the distances (l, t, r, b) from the location to the four sides
of its box in units of the level's stride, and a centerness score. ATSS
(Zhang et al. 2020) shows that such an anchor-point detector and RetinaNet
differ mainly in the rule for positive samples, so this meta-architecture is
the single-shot one (`SSDMetaArch`: feature maps -> a head shared by the
levels -> one prediction per anchor -> a target assigner -> losses -> NMS)
with one "anchor" per location, the stride x stride square around it. The
target assigner alone makes it FCOS (size ranges, center sampling), FCOS
with ATSS, or SAPD (soft-weighted anchor points); the same `ATSSTargetAssigner`
serves RetinaNet (`SSDMetaArch` with multiscale anchors).

Training (per image; everything batched and in the graph):
  * targets: `TargetAssignment` of the assigner over the concatenated levels
    (`AnchorLevel`s with the FPN strides) in the padded input frame; the box
    coder is `LtrbDistanceBoxCoder(normalize_by_anchor_size=True)`, so the
    regression targets are (t, l, b, r) / stride (FCOS Sec. 3.1);
  * classification: sigmoid focal loss on every location, summed and divided
    by N_pos = max(sum of positive weights, 1) (Sec. 3.1, Eq. 2);
  * centerness: sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b))
    (Sec. 3.3, Eq. 3) of the regression target, binary cross entropy on the
    positives, divided by N_pos;
  * box: IoU or GIoU loss of the decoded predicted and target boxes on the
    positives, weighted by the centerness target and divided by its sum (the
    FCOS implementation), or by the positive weights without centerness
    (SAPD, whose soft weights arrive as the assignment's weights);
  * SAPD's soft level selection (Zhu et al. 2020, Sec. 3.3, optional): a
    network over the RoIAligned box features of every level predicts a
    softmax over the levels, trained towards the level where the box's
    positives have the least detection loss (FSAF's rule); its probabilities,
    without gradient, weigh the box's positives on each level (only the
    `num_selected_levels` most probable levels are kept).

Inference (Sec. 3.3 / 4.1): scores = sigmoid(class logits) x sigmoid(
centerness); per level the `pre_nms_top_k_per_level` locations with the best
class score; decoded boxes; batched multi-class NMS. All TF ops in the graph.

Frames: as `SSDMetaArch` (anchors and groundtruth normalized to the padded
input; detections normalized to each image's true window).
"""

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from od_meta.core import box_coder as box_coder_lib
from od_meta.core import box_list
from od_meta.core import target_assigner as target_assigner_lib
from od_meta.core import image_frames
from od_meta.heads import fcos_head
from od_meta.meta_architectures import ssd_meta_arch

CENTERNESS = fcos_head.CENTERNESS


@dataclasses.dataclass(frozen=True)
class SoftLevelSelectionParams:
  """SAPD's meta-selection network and how its output is used.

  Attributes:
    network: a `heads.sapd_level_selection.SoftLevelSelectionNetwork`
      mapping (feature maps, boxes `[B, N, 4]`) to logits `[B, N, L]`.
    num_selected_levels: levels kept per box by probability (0 = all).
    loss_weight: weight of the network's cross entropy.
  """
  network: Any
  num_selected_levels: int = 3
  loss_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class FCOSParams:
  """Loss and decoding hyperparameters of FCOS (protos/fcos.proto).

  Attributes:
    classification_loss: sigmoid focal `losses.Loss` on logits `[B, A, C]`.
    localization_loss: IoU or GIoU `losses.Loss` on decoded `[B, A, 4]`
      boxes.
    classification_loss_weight, localization_loss_weight,
      centerness_loss_weight: multipliers of the three terms.
    use_centerness: the head predicts centerness (FCOS; SAPD has none).
    pre_nms_top_k_per_level: locations per level kept before NMS (1000).
    soft_level_selection: optional `SoftLevelSelectionParams` (SAPD).
  """
  classification_loss: Any
  localization_loss: Any
  classification_loss_weight: float = 1.0
  localization_loss_weight: float = 1.0
  centerness_loss_weight: float = 1.0
  use_centerness: bool = True
  pre_nms_top_k_per_level: int = 1000
  soft_level_selection: Optional[SoftLevelSelectionParams] = None


def centerness_target(reg_targets):
  """FCOS centerness (Sec. 3.3, Eq. 3) of ltrb regression targets.

  Args:
    reg_targets: float32 `[..., 4]` distances `[t, l, b, r]` (any positive
      unit; the ratios are unit-free).

  Returns:
    float32 `[...]`, sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)),
    0 where a distance is <= 0 (a location outside its box).
  """
  t, l, b, r = tf.unstack(tf.maximum(reg_targets, 0.0), num=4, axis=-1)
  ratio = (tf.math.divide_no_nan(tf.minimum(l, r), tf.maximum(l, r)) *
           tf.math.divide_no_nan(tf.minimum(t, b), tf.maximum(t, b)))
  return tf.sqrt(ratio)


class FCOSMetaArch(ssd_meta_arch.SSDMetaArch):
  """FCOS / FCOS-ATSS / SAPD over the single-shot base.

  Args (keyword-only): as `SSDMetaArch`, with
    feature_extractor: an FPN extractor with `feature_map_strides`.
    box_predictor: an `FCOSHead` (outputs 'box_encodings' > 0 in strides,
      'class_predictions_with_background' `[B, A, C]` sigmoid logits and,
      with centerness, 'centerness' `[B, A, 1]`).
    anchor_generator: a `PointAnchorGenerator` (one stride x stride square
      per location).
    box_coder: `LtrbDistanceBoxCoder(normalize_by_anchor_size=True)`.
    target_assigner: an `AnchorTargetAssigner` (FCOS, ATSS or SAPD rule).
    params: `FCOSParams` (the SSD loss config is derived from it).

  Raises:
    ValueError: if the head's centerness and `params.use_centerness`
      disagree, or SSD's checks fail.
  """

  def __init__(self, *, is_training, num_classes, image_resizer_fn,
               feature_extractor, box_predictor, anchor_generator, box_coder,
               target_assigner, non_max_suppression_fn, score_conversion_fn,
               params: FCOSParams, name: Optional[str] = None):
    head_centerness = bool(getattr(box_predictor, 'predict_centerness',
                                   params.use_centerness))
    if head_centerness != params.use_centerness:
      raise ValueError(
          f'the head predicts centerness={head_centerness} but '
          f'use_centerness={params.use_centerness}')
    super().__init__(
        is_training=is_training, num_classes=num_classes,
        image_resizer_fn=image_resizer_fn,
        feature_extractor=feature_extractor, box_predictor=box_predictor,
        anchor_generator=anchor_generator, box_coder=box_coder,
        target_assigner=target_assigner,
        non_max_suppression_fn=non_max_suppression_fn,
        score_conversion_fn=score_conversion_fn,
        loss_config=ssd_meta_arch.SSDLossConfig(
            classification_loss=params.classification_loss,
            localization_loss=params.localization_loss,
            classification_weight=params.classification_loss_weight,
            localization_weight=params.localization_loss_weight),
        add_background_class=False, name=name or 'fcos')
    self._params = params
    selection = params.soft_level_selection
    self.level_selection_network = (selection.network
                                    if selection is not None else None)

  @property
  def params(self) -> FCOSParams:
    return self._params

  # --------------------------------------------------------------------- loss
  def loss(self, prediction_dict, true_image_shapes):
    """FCOS losses of the groundtruth given to `provide_groundtruth`.

    Returns:
      dict of float32 scalars: 'Loss/classification_loss',
      'Loss/localization_loss', 'Loss/centerness_loss' (with centerness) and
      'Loss/level_selection_loss' (with SAPD's selection network).
    """
    params = self._params
    preprocessed = prediction_dict['preprocessed_inputs']
    anchors = box_list.BoxList(prediction_dict['anchors'])
    gt_boxlists, gt_class_targets, gt_weights = self._groundtruth_in_frame(
        preprocessed, true_image_shapes)
    levels = self.anchor_levels
    targets = target_assigner_lib.batch_assign_targets(
        self._target_assigner, anchors, gt_boxlists, gt_class_targets,
        unmatched_class_label=self._unmatched_class_label(),
        gt_weights_batch=gt_weights, levels=levels,
        image_shape=self._input_size(preprocessed))
    cls_weights, reg_weights = targets.cls_weights, targets.reg_weights
    decoded = self._decode(prediction_dict['box_encodings'], anchors)
    target_boxes = self._decode(targets.reg_targets, anchors)
    losses = {}
    if self.level_selection_network is not None:
      level_weights, selection_loss = self._soft_level_selection(
          prediction_dict, targets, gt_boxlists, levels, decoded,
          target_boxes)
      positive = tf.cast(targets.matches >= 0, tf.float32)
      factor = positive * level_weights + (1.0 - positive)
      cls_weights = cls_weights * factor[..., tf.newaxis]
      reg_weights = reg_weights * factor
      losses['Loss/level_selection_loss'] = (
          params.soft_level_selection.loss_weight * selection_loss)

    positive = tf.cast(targets.matches >= 0, tf.float32)
    num_positive = tf.maximum(tf.reduce_sum(reg_weights), 1.0)
    cls_losses = params.classification_loss(
        prediction_dict['class_predictions_with_background'],
        targets.cls_targets, weights=cls_weights)
    losses['Loss/classification_loss'] = (
        params.classification_loss_weight * tf.reduce_sum(cls_losses) /
        num_positive)

    if params.use_centerness:
      center = centerness_target(targets.reg_targets) * positive
      box_weights = center * reg_weights
      logits = prediction_dict[CENTERNESS][..., 0]
      bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=center,
                                                    logits=logits)
      losses['Loss/centerness_loss'] = (
          params.centerness_loss_weight *
          tf.reduce_sum(bce * reg_weights) / num_positive)
    else:
      box_weights = reg_weights
    box_losses = params.localization_loss(decoded, target_boxes,
                                          weights=box_weights)
    box_normalizer = tf.maximum(tf.reduce_sum(box_weights), 1e-6)
    losses['Loss/localization_loss'] = (
        params.localization_loss_weight * tf.reduce_sum(box_losses) /
        box_normalizer)
    return losses

  def _decode(self, codes, anchors):
    """`[B, A, 4]` ltrb codes -> `[B, A, 4]` boxes (normalized, padded)."""
    return box_coder_lib.batch_decode(codes, self._box_coder, anchors)

  def _soft_level_selection(self, prediction_dict, targets, gt_boxlists,
                            levels, decoded, target_boxes):
    """SAPD Sec. 3.3: per-(box, level) weights and the selection loss.

    Args:
      decoded, target_boxes: float32 `[B, A, 4]` predicted and target boxes
        (normalized, padded frame), decoded once by `loss`.

    Returns:
      level_weights: float32 `[B, A]`, for every positive location the
        (stop-gradient) probability of its box on its level, 0 for levels
        outside the box's top num_selected_levels; 1 elsewhere (unused).
      selection_loss: float32 scalar, the cross entropy of the network
        towards each box's least-loss level, averaged over the boxes.
    """
    params = self._params
    selection = params.soft_level_selection
    num_levels = len(levels)
    level_index = target_assigner_lib.anchor_level_indices(levels)
    feature_maps = prediction_dict['feature_maps']
    # Per-location detection loss without level weights (FSAF's criterion):
    # focal over classes + 1 - IoU of the decoded boxes.
    cls_loss = tf.reduce_sum(params.classification_loss(
        prediction_dict['class_predictions_with_background'],
        targets.cls_targets), axis=-1)
    box_loss = params.localization_loss(decoded, target_boxes)
    location_loss = tf.stop_gradient(cls_loss + box_loss)
    weights_out, losses, counts = [], [], []
    for i, gt in enumerate(gt_boxlists):
      boxes = gt.get()
      num_boxes = tf.shape(boxes)[0]
      logits = self.level_selection_network(
          [f[i:i + 1] for f in feature_maps], boxes[tf.newaxis],
          training=self._is_training)[0]
      matches = targets.matches[i]
      positive = matches >= 0
      segment = tf.where(positive, matches * num_levels + level_index,
                         num_boxes * num_levels)
      num_segments = (num_boxes + 1) * num_levels
      loss_sum = tf.math.unsorted_segment_sum(location_loss[i], segment,
                                              num_segments)
      count = tf.math.unsorted_segment_sum(
          tf.cast(positive, tf.float32), segment, num_segments)
      loss_sum = tf.reshape(loss_sum, [-1, num_levels])[:-1]
      count = tf.reshape(count, [-1, num_levels])[:-1]
      mean_loss = tf.where(count > 0, loss_sum / tf.maximum(count, 1.0),
                           tf.fill(tf.shape(count), float('inf')))
      has_positive = tf.reduce_any(count > 0, axis=1)
      best_level = tf.argmin(mean_loss, axis=1, output_type=tf.int32)
      ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=best_level, logits=logits)
      has_f = tf.cast(has_positive, tf.float32)
      losses.append(tf.reduce_sum(ce * has_f))
      counts.append(tf.reduce_sum(has_f))
      probs = tf.stop_gradient(tf.nn.softmax(logits, axis=-1))
      keep = selection.num_selected_levels
      if 0 < keep < num_levels:
        kth = tf.math.top_k(probs, k=keep).values[:, -1:]
        probs = tf.where(probs >= kth, probs, tf.zeros_like(probs))
      flat = tf.concat([tf.reshape(probs, [-1]),
                        tf.ones([num_levels], tf.float32)], axis=0)
      weights_out.append(tf.gather(flat, segment))
    selection_loss = tf.add_n(losses) / tf.maximum(tf.add_n(counts), 1.0)
    return tf.stack(weights_out), selection_loss

  # -------------------------------------------------------------- postprocess
  def _level_top_k(self, scores, offset, count):
    """The level's `pre_nms_top_k_per_level` best locations.

    Args:
      scores: float32 `[B, A, C]` scores of all levels.
      offset: the level's first anchor index (int or int32 scalar).
      count: its number of anchors (int, or int32 scalar for dynamic input
        sizes).

    Returns:
      (indices int32 `[B, k]` into the A anchors, padding bool `[B, k]`).
      With a static count, k = min(pre_nms_top_k_per_level, count) and
      nothing is padding; with a dynamic one, k = pre_nms_top_k_per_level
      and the entries past the level's count are padding (their index is
      clamped to the level's last anchor).
    """
    k = self._params.pre_nms_top_k_per_level
    best = tf.reduce_max(scores[:, offset:offset + count], axis=-1)
    if isinstance(count, int):
      _, top = tf.math.top_k(best, k=min(k, count))
      return top + offset, tf.zeros_like(top, tf.bool)
    best = tf.pad(best, [[0, 0], [0, tf.maximum(k - count, 0)]],
                  constant_values=-1.0)
    _, top = tf.math.top_k(best, k=k)
    return (tf.minimum(top, count - 1) + offset,
            top >= count)

  def postprocess(self, prediction_dict, true_image_shapes):
    """Scores x centerness, per-level top-k, batched NMS, in the graph.

    Returns:
      dict with detection_boxes float32 `[B, max_det, 4]` (normalized to the
      true image window), detection_scores `[B, max_det]`,
      detection_classes float32 `[B, max_det]` (0-based class ids),
      num_detections float32 `[B]`, detection_multiclass_scores
      `[B, max_det, num_classes]`, detection_anchor_indices int32 (index of
      the location over all levels), raw_detection_boxes `[B, A, 4]` and
      raw_detection_scores `[B, A, num_classes]` (true-window frame, before
      the top-k and NMS).

    Static map sizes (a fixed_shape_resizer) keep min(k, level size)
    candidates per level; dynamic ones (e.g. keep_aspect_ratio_resizer
    without padding) keep k per level, padded.
    """
    preprocessed = prediction_dict['preprocessed_inputs']
    anchors = box_list.BoxList(prediction_dict['anchors'])
    scores = self._score_conversion_fn(
        prediction_dict['class_predictions_with_background'])
    if self._params.use_centerness:
      scores = scores * tf.sigmoid(prediction_dict[CENTERNESS])
    codes = prediction_dict['box_encodings']
    candidates, padding = [], []
    offset = 0
    for level in self.anchor_levels:
      top, is_padding = self._level_top_k(scores, offset, level.num_anchors)
      candidates.append(top)
      padding.append(is_padding)
      offset = offset + level.num_anchors
    indices = tf.concat(candidates, axis=1)
    top_scores = tf.gather(scores, indices, batch_dims=1)
    # Padding candidates of a level smaller than k (dynamic sizes) score 0.
    top_scores = tf.where(tf.concat(padding, axis=1)[..., tf.newaxis], 0.0,
                          top_scores)
    # One decode of all locations: the candidates' boxes and the raw boxes.
    all_boxes = self._decode(codes, anchors)
    decoded = tf.gather(all_boxes, indices, batch_dims=1)
    window = image_frames.true_window(preprocessed, true_image_shapes)
    result = self._non_max_suppression_fn(
        decoded[:, :, tf.newaxis, :], top_scores, clip_window=window,
        change_coordinate_frame=True,
        additional_fields={'multiclass_scores': top_scores})
    # Rows past num_detections are zeros, as post_processing documents.
    anchor_indices = tf.where(
        tf.range(tf.shape(result.nmsed_anchor_indices)[1])[tf.newaxis] <
        result.num_detections[:, tf.newaxis],
        tf.gather(indices, result.nmsed_anchor_indices, batch_dims=1), 0)
    raw_boxes = image_frames.to_window_frame(all_boxes, window)
    return ssd_meta_arch.detection_dict(result, anchor_indices, raw_boxes,
                                        scores)
