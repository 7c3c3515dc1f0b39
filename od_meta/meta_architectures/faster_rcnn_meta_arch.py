"""Faster R-CNN meta-architecture (Ren et al. 2015), as Huang et al. 2017
built it for their speed/accuracy study.

First stage (region proposal network, Ren et al. 2015 Sec. 3.1): the
extractor's first part gives a feature map at stride 16 (or 8); an RPN box
predictor scores every grid anchor as object / background and regresses a box
from it; proposals are the decoded boxes after non-max suppression (IoU 0.7),
`first_stage_max_proposals` per image (`inference_max_proposals` at inference,
the knob of Huang et al. 2017 Fig. 9). Training samples 256 anchors per image
(half positives at most) matched with IoU >= 0.7 / < 0.3.

Second stage (Huang et al. 2017 Sec. 3.1, 3.6): each proposal's features are
cropped from the first-stage map with `crop_and_resize` (14x14, then 2x2 max
pool), with no gradient into the proposal coordinates, go through the rest of
the extractor (e.g. ResNet conv5) and a box classifier (num_classes + 1
softmax, class-specific box regression relative to the proposal). Training
samples `second_stage_batch_size` proposals per image (positive fraction
0.25, IoU >= 0.5), or mines them by loss (OHEM) when a hard example miner is
given. Detections are the per-class NMS (IoU 0.6) of the refined boxes,
clipped to the true image window.

R-FCN (`rfcn_meta_arch.RFCNMetaArch`) replaces the per-proposal second stage
by position-sensitive score maps computed once on the whole image.

Coordinate frames: as in `ssd_meta_arch`: public boxes are normalized
`[ymin, xmin, ymax, xmax]` of the true image window; anchors, proposals and
refined boxes inside are normalized to the padded (preprocessed) image.
"""

from typing import Any, Callable, Optional

import tensorflow as tf

from od_meta.core import box_coder as box_coder_lib
from od_meta.core import box_list
from od_meta.core import model
from od_meta.core import roi_ops
from od_meta.core import standard_fields as fields
from od_meta.core import target_assigner as target_assigner_lib
from od_meta.core import image_frames
from od_meta.utils import shape_utils

_RPN_OBJECT = tf.constant([0.0, 1.0])
_RPN_BACKGROUND = tf.constant([1.0, 0.0])


class FasterRCNNMetaArch(model.DetectionModel):
  """Two-stage detector: RPN proposals, then a per-proposal box classifier.

  Args (keyword-only; names follow the TF OD API's faster_rcnn.proto):
    is_training: bool; selects `first_stage_max_proposals` (training) or
      `inference_max_proposals` (evaluation / export).
    num_classes: int, object classes without background.
    image_resizer_fn: `image [H, W, 3] -> (float32 [H', W', 3], int32 [3])`.
    feature_extractor: a `FasterRCNNFeatureExtractor` (`preprocess`,
      `extract_proposal_features`, `extract_box_classifier_features`).
    number_of_stages: 1 (the proposals are the detections, class 0) or 2.
    first_stage_anchor_generator: a `GridAnchorGenerator` (pixels).
    first_stage_box_predictor: an `RPNBoxPredictor` layer.
    first_stage_target_assigner: `TargetAssigner` (IoU, Argmax 0.7 / 0.3,
      Faster R-CNN box coder).
    first_stage_sampler: `BalancedPositiveNegativeSampler` (fraction 0.5).
    first_stage_minibatch_size: anchors sampled per image for the RPN loss.
    first_stage_nms_score_threshold: objectness below it is dropped.
    first_stage_nms_iou_threshold: IoU of the proposal NMS.
    first_stage_max_proposals: proposals per image in training.
    inference_max_proposals: proposals per image at inference (0: as in
      training).
    first_stage_localization_loss_weight, first_stage_objectness_loss_weight:
      floats.
    first_stage_localization_loss: per-anchor `losses.Loss` (smooth L1).
    first_stage_objectness_loss: per-anchor `losses.Loss` on 2 logits
      (softmax).
    initial_crop_size: crop_and_resize output side (14; 17 for Inception).
    maxpool_kernel_size, maxpool_stride: max pool applied to the crops.
    second_stage_box_predictor: a `MaskRCNNBoxPredictor` layer (or, for
      R-FCN, an `RfcnBoxPredictor`).
    second_stage_target_assigner: `TargetAssigner` (IoU, Argmax 0.5, Faster
      R-CNN box coder) matching proposals to groundtruth.
    second_stage_sampler: `BalancedPositiveNegativeSampler` (fraction 0.25).
    second_stage_batch_size: proposals per image for the second-stage loss
      (the sampled minibatch; with a hard example miner, all proposals are
      kept and the miner selects).
    second_stage_non_max_suppression_fn: batched multiclass NMS with its
      thresholds bound (`post_processing_builder`).
    second_stage_score_conversion_fn: logits -> scores (softmax).
    second_stage_localization_loss_weight,
    second_stage_classification_loss_weight: floats.
    second_stage_localization_loss: per-proposal `losses.Loss`.
    second_stage_classification_loss: per-proposal `losses.Loss` on
      `num_classes + 1` logits.
    hard_example_miner: optional `HardExampleMiner` on the second-stage
      losses (OHEM, Shrivastava et al. 2016; R-FCN uses 128 RoIs).
    add_groundtruth_to_proposals: in training, add the groundtruth boxes to
      the proposals before sampling (as Detectron and MMDetection do), so the
      second stage has positives while the RPN is still poor.
    clip_anchors_to_image: clip anchors to the (padded) input image;
      otherwise anchors crossing the true image window's border are ignored
      in the RPN loss (Ren et al. 2015 Sec. 3.1.3).
    name: Keras layer name.

  Raises:
    ValueError: on bad stage numbers, sizes or a predictor / class mismatch.
  """

  def __init__(self, *, is_training: bool, num_classes: int,
               image_resizer_fn: Callable, feature_extractor,
               number_of_stages: int = 2,
               first_stage_anchor_generator, first_stage_box_predictor,
               first_stage_target_assigner, first_stage_sampler,
               first_stage_minibatch_size: int = 256,
               first_stage_nms_score_threshold: float = 0.0,
               first_stage_nms_iou_threshold: float = 0.7,
               first_stage_max_proposals: int = 300,
               inference_max_proposals: int = 0,
               first_stage_localization_loss_weight: float = 1.0,
               first_stage_objectness_loss_weight: float = 1.0,
               first_stage_localization_loss, first_stage_objectness_loss,
               initial_crop_size: int = 14, maxpool_kernel_size: int = 2,
               maxpool_stride: int = 2,
               second_stage_box_predictor=None,
               second_stage_target_assigner=None, second_stage_sampler=None,
               second_stage_batch_size: int = 64,
               second_stage_non_max_suppression_fn: Optional[Callable] = None,
               second_stage_score_conversion_fn: Optional[Callable] = None,
               second_stage_localization_loss_weight: float = 1.0,
               second_stage_classification_loss_weight: float = 1.0,
               second_stage_localization_loss: Any = None,
               second_stage_classification_loss: Any = None,
               hard_example_miner: Any = None,
               add_groundtruth_to_proposals: bool = True,
               clip_anchors_to_image: bool = False,
               name: Optional[str] = None):
    super().__init__(num_classes=num_classes,
                     image_resizer_fn=image_resizer_fn,
                     feature_extractor=feature_extractor, name=name or 'faster_rcnn')
    if number_of_stages not in (1, 2):
      raise ValueError(f'number_of_stages must be 1 or 2, got '
                       f'{number_of_stages}')
    for arg_name, value in (
        ('first_stage_minibatch_size', first_stage_minibatch_size),
        ('first_stage_max_proposals', first_stage_max_proposals),
        ('second_stage_batch_size', second_stage_batch_size),
        ('initial_crop_size', initial_crop_size)):
      if int(value) < 1:
        raise ValueError(f'{arg_name} must be >= 1, got {value}')
    if int(inference_max_proposals) < 0:
      raise ValueError('inference_max_proposals must be >= 0, got '
                       f'{inference_max_proposals}')
    if number_of_stages == 2:
      for arg_name, value in (
          ('second_stage_box_predictor', second_stage_box_predictor),
          ('second_stage_target_assigner', second_stage_target_assigner),
          ('second_stage_non_max_suppression_fn',
           second_stage_non_max_suppression_fn),
          ('second_stage_score_conversion_fn',
           second_stage_score_conversion_fn),
          ('second_stage_localization_loss', second_stage_localization_loss),
          ('second_stage_classification_loss',
           second_stage_classification_loss)):
        if value is None:
          raise ValueError(f'{arg_name} is required with number_of_stages 2')
      if hard_example_miner is None and second_stage_sampler is None:
        raise ValueError('second_stage_sampler is required without a '
                         'hard_example_miner')
    self._is_training = bool(is_training)
    self._number_of_stages = int(number_of_stages)
    self._anchor_generator = first_stage_anchor_generator
    self.first_stage_box_predictor = first_stage_box_predictor
    self._first_stage_target_assigner = first_stage_target_assigner
    self._first_stage_sampler = first_stage_sampler
    self._first_stage_minibatch_size = int(first_stage_minibatch_size)
    self._first_stage_score_threshold = float(first_stage_nms_score_threshold)
    self._first_stage_iou_threshold = float(first_stage_nms_iou_threshold)
    self._first_stage_max_proposals = int(first_stage_max_proposals)
    self._inference_max_proposals = (int(inference_max_proposals) or
                                     int(first_stage_max_proposals))
    self._first_stage_loc_weight = float(first_stage_localization_loss_weight)
    self._first_stage_obj_weight = float(first_stage_objectness_loss_weight)
    self._first_stage_loc_loss = first_stage_localization_loss
    self._first_stage_obj_loss = first_stage_objectness_loss
    self._initial_crop_size = int(initial_crop_size)
    self._maxpool_kernel_size = int(maxpool_kernel_size)
    self._maxpool_stride = int(maxpool_stride)
    self.second_stage_box_predictor = second_stage_box_predictor
    self._second_stage_target_assigner = second_stage_target_assigner
    self._second_stage_sampler = second_stage_sampler
    self._second_stage_batch_size = int(second_stage_batch_size)
    self._second_stage_nms_fn = second_stage_non_max_suppression_fn
    self._second_stage_score_fn = second_stage_score_conversion_fn
    self._second_stage_loc_weight = float(
        second_stage_localization_loss_weight)
    self._second_stage_cls_weight = float(
        second_stage_classification_loss_weight)
    self._second_stage_loc_loss = second_stage_localization_loss
    self._second_stage_cls_loss = second_stage_classification_loss
    self._hard_example_miner = hard_example_miner
    self._add_groundtruth_to_proposals = bool(add_groundtruth_to_proposals)
    self._clip_anchors_to_image = bool(clip_anchors_to_image)

  # ------------------------------------------------------------------ public
  @property
  def number_of_stages(self) -> int:
    return self._number_of_stages

  @property
  def max_num_proposals(self) -> int:
    """Proposals per image kept by the first stage in this mode."""
    return (self._first_stage_max_proposals if self._is_training else
            self._inference_max_proposals)

  def set_inference_max_proposals(self, num_proposals: int):
    """Changes the inference proposal count (Huang et al. 2017 Fig. 9).

    Takes effect in functions traced afterwards.

    Raises:
      ValueError: if `num_proposals` < 1.
    """
    if int(num_proposals) < 1:
      raise ValueError(f'num_proposals must be >= 1, got {num_proposals}')
    self._inference_max_proposals = int(num_proposals)

  def predict(self, preprocessed_inputs, true_image_shapes, training=False):
    """Runs the RPN, makes proposals and (two stages) the box classifier.

    In training (`training=True`) with two stages, the proposals are matched
    to the groundtruth given to `provide_groundtruth` and sampled (or all
    kept for a hard example miner) before cropping.

    Args:
      preprocessed_inputs: float32 `[B, H, W, 3]` from `preprocess`.
      true_image_shapes: int32 `[B, 3]`.
      training: bool, training mode (batch norm, dropout, sampling).

    Returns:
      dict with
        'preprocessed_inputs';
        'rpn_features_to_crop' float32 `[B, h, w, C]` first-stage features;
        'rpn_box_encodings' float32 `[B, A, 4]`;
        'rpn_objectness_predictions_with_background' float32 `[B, A, 2]`
          (logits: background, object);
        'anchors' float32 `[A, 4]` normalized, padded frame;
        'proposal_boxes' float32 `[B, P, 4]` normalized, padded frame (rows
          past `num_proposals` are zeros);
        'proposal_scores' float32 `[B, P]` objectness probabilities;
        'num_proposals' int32 `[B]`;
      and with two stages 'refined_box_encodings' float32
      `[B, P, num_classes or 1, 4]` (relative to the proposals) and
      'class_predictions_with_background' float32 `[B, P, num_classes + 1]`.

    Raises:
      RuntimeError: in training with two stages when no groundtruth was
        provided.
    """
    rpn_features = self.feature_extractor.extract_proposal_features(
        preprocessed_inputs, training=training)
    image_shape = shape_utils.combined_static_and_dynamic_shape(
        preprocessed_inputs)
    feature_shape = shape_utils.combined_static_and_dynamic_shape(
        rpn_features)
    anchors = self._normalized_anchors(feature_shape[1:3], image_shape[1:3])
    rpn = self.first_stage_box_predictor(rpn_features, training=training)
    rpn_box_encodings = tf.cast(rpn['box_encodings'], tf.float32)
    rpn_objectness = tf.cast(
        rpn['objectness_predictions_with_background'], tf.float32)
    window = image_frames.true_window(preprocessed_inputs, true_image_shapes)
    if self._clip_anchors_to_image:
      anchors = tf.clip_by_value(anchors, 0.0, 1.0)
    proposal_boxes, proposal_scores, num_proposals = self._proposals(
        rpn_box_encodings, rpn_objectness, anchors, window)
    prediction_dict = {
        'preprocessed_inputs': preprocessed_inputs,
        'rpn_features_to_crop': rpn_features,
        'rpn_box_encodings': rpn_box_encodings,
        'rpn_objectness_predictions_with_background': rpn_objectness,
        'anchors': anchors,
    }
    if self._number_of_stages == 2 and training:
      proposal_boxes, num_proposals = self._sample_proposals(
          proposal_boxes, num_proposals, preprocessed_inputs,
          true_image_shapes)
      proposal_scores = tf.zeros(tf.shape(proposal_boxes)[:2], tf.float32)
    prediction_dict.update({
        'proposal_boxes': proposal_boxes,
        'proposal_scores': proposal_scores,
        'num_proposals': num_proposals,
    })
    if self._number_of_stages == 2:
      prediction_dict.update(self._predict_second_stage(
          rpn_features, proposal_boxes, training))
    return prediction_dict

  def loss(self, prediction_dict, true_image_shapes):
    """RPN and (two stages) box-classifier losses.

    Returns:
      dict of float32 scalars 'Loss/RPNLoss/localization_loss',
      'Loss/RPNLoss/objectness_loss' and, with two stages,
      'Loss/BoxClassifierLoss/localization_loss' and
      'Loss/BoxClassifierLoss/classification_loss' (TF OD API names), each
      averaged over the images of the batch.
    """
    preprocessed = prediction_dict['preprocessed_inputs']
    gt_boxlists, gt_classes, gt_weights = self._groundtruth_in_frame(
        preprocessed, true_image_shapes)
    losses = self._rpn_loss(prediction_dict, gt_boxlists, gt_weights,
                            true_image_shapes)
    if self._number_of_stages == 2:
      losses.update(self._box_classifier_loss(prediction_dict, gt_boxlists,
                                              gt_classes, gt_weights))
    return losses

  def postprocess(self, prediction_dict, true_image_shapes):
    """Detections in the graph: proposals (one stage) or per-class NMS of
    the refined boxes (two stages), clipped to the true image window.

    Returns:
      dict with detection_boxes float32 `[B, max_det, 4]` (normalized to the
      true window), detection_scores, detection_classes float32 (0-based),
      num_detections float32 `[B]`, detection_multiclass_scores,
      raw_detection_boxes `[B, P, 4]` and raw_detection_scores
      `[B, P, num_classes]` (per proposal, before NMS).
    """
    window = image_frames.true_window(prediction_dict['preprocessed_inputs'],
                                      true_image_shapes)
    proposal_boxes = prediction_dict['proposal_boxes']
    num_proposals = prediction_dict['num_proposals']
    if self._number_of_stages == 1:
      boxes = image_frames.to_window_frame(proposal_boxes, window)
      scores = prediction_dict['proposal_scores']
      return {
          fields.DetectionResultFields.detection_boxes: boxes,
          fields.DetectionResultFields.detection_scores: scores,
          fields.DetectionResultFields.detection_classes: tf.zeros_like(
              scores),
          fields.DetectionResultFields.num_detections: tf.cast(
              num_proposals, tf.float32),
          fields.DetectionResultFields.raw_detection_boxes: boxes,
          fields.DetectionResultFields.raw_detection_scores:
              scores[:, :, tf.newaxis],
      }
    refined_boxes = self._decode_refined_boxes(
        prediction_dict['refined_box_encodings'], proposal_boxes)
    scores = self._second_stage_score_fn(
        prediction_dict['class_predictions_with_background'])[:, :, 1:]
    valid = tf.sequence_mask(num_proposals, tf.shape(proposal_boxes)[1],
                             dtype=tf.float32)
    scores = scores * valid[:, :, tf.newaxis]
    result = self._second_stage_nms_fn(
        refined_boxes, scores, clip_window=window,
        change_coordinate_frame=True,
        additional_fields={'multiclass_scores': scores})
    best = tf.argmax(scores, axis=2, output_type=tf.int32)
    if refined_boxes.shape[2] == 1:
      raw_boxes = refined_boxes[:, :, 0]
    else:
      raw_boxes = tf.gather(refined_boxes, best, axis=2, batch_dims=2)
    raw_boxes = image_frames.to_window_frame(raw_boxes, window)
    return {
        fields.DetectionResultFields.detection_boxes: result.nmsed_boxes,
        fields.DetectionResultFields.detection_scores: result.nmsed_scores,
        fields.DetectionResultFields.detection_classes: tf.cast(
            result.nmsed_classes, tf.float32),
        fields.DetectionResultFields.num_detections: tf.cast(
            result.num_detections, tf.float32),
        fields.DetectionResultFields.detection_multiclass_scores:
            result.nmsed_additional_fields['multiclass_scores'],
        fields.DetectionResultFields.raw_detection_boxes: raw_boxes,
        fields.DetectionResultFields.raw_detection_scores: scores,
    }

  # ------------------------------------------------------------ first stage
  def _normalized_anchors(self, feature_hw, image_hw, anchor_generator=None):
    """Grid anchors `[A, 4]` normalized to the padded image."""
    anchor_generator = anchor_generator or self._anchor_generator
    anchors = anchor_generator.generate([tuple(feature_hw)])[0]
    height = tf.cast(image_hw[0], tf.float32)
    width = tf.cast(image_hw[1], tf.float32)
    return anchors.get() / tf.stack([height, width, height, width])

  def _proposals(self, rpn_box_encodings, rpn_objectness, anchors, window):
    """Decodes, clips and NMS-es the RPN boxes (Ren et al. 2015 Sec. 3.3).

    Returns:
      boxes float32 `[B, P, 4]` (padded frame, zero rows past the count),
      objectness scores `[B, P]`, counts int32 `[B]`; no gradient.
    """
    decoded = box_coder_lib.batch_decode(
        rpn_box_encodings, self._first_stage_target_assigner.box_coder,
        box_list.BoxList(anchors))
    scores = tf.nn.softmax(rpn_objectness)[:, :, 1]
    decoded = tf.stop_gradient(decoded)
    scores = tf.stop_gradient(scores)
    # Clip to the true window before NMS (TF OD API), so boxes reaching
    # into the padding compete with their visible part.
    lower = tf.tile(window[:, tf.newaxis, :2], [1, 1, 2])
    upper = tf.tile(window[:, tf.newaxis, 2:], [1, 1, 2])
    decoded = tf.minimum(tf.maximum(decoded, lower), upper)
    max_proposals = self.max_num_proposals
    selected = tf.image.combined_non_max_suppression(
        decoded[:, :, tf.newaxis, :], scores[:, :, tf.newaxis],
        max_output_size_per_class=max_proposals,
        max_total_size=max_proposals,
        iou_threshold=self._first_stage_iou_threshold,
        score_threshold=self._first_stage_score_threshold,
        pad_per_class=False, clip_boxes=False)
    boxes = selected.nmsed_boxes
    area = (boxes[:, :, 2] - boxes[:, :, 0]) * (boxes[:, :, 3] - boxes[:, :, 1])
    count = tf.cast(selected.valid_detections, tf.int32)
    # Degenerate (zero-area) boxes cannot be cropped meaningfully; they sort
    # last only by score, so keep the count but zero their score.
    proposal_scores = selected.nmsed_scores * tf.cast(area > 0, tf.float32)
    return boxes, proposal_scores, count

  def _anchor_validity(self, anchors, true_image_shapes, preprocessed):
    """float32 `[B, A]`: 1 for anchors inside the true window (or all when
    clipping), 0 for border-crossing ones (Ren et al. 2015 Sec. 3.1.3)."""
    if self._clip_anchors_to_image:
      batch = tf.shape(true_image_shapes)[0]
      return tf.ones(tf.stack([batch, tf.shape(anchors)[0]]), tf.float32)
    window = image_frames.true_window(preprocessed, true_image_shapes)
    eps = 1e-6
    inside = tf.logical_and(
        tf.reduce_all(anchors[tf.newaxis, :, :2] >= -eps, axis=2),
        tf.reduce_all(anchors[tf.newaxis, :, 2:] <=
                      window[:, tf.newaxis, 2:] + eps, axis=2))
    return tf.cast(inside, tf.float32)

  def _rpn_loss(self, prediction_dict, gt_boxlists, gt_weights,
                true_image_shapes):
    anchors = prediction_dict['anchors']
    batch = len(gt_boxlists)
    labels = [tf.tile(_RPN_OBJECT[tf.newaxis], [b.num_boxes(), 1])
              for b in gt_boxlists]
    targets = target_assigner_lib.batch_assign_targets(
        self._first_stage_target_assigner, box_list.BoxList(anchors),
        gt_boxlists, labels, unmatched_class_label=_RPN_BACKGROUND,
        gt_weights_batch=gt_weights)
    cls_targets, cls_weights = targets.cls_targets, targets.cls_weights
    reg_targets, reg_weights = targets.reg_targets, targets.reg_weights
    valid = self._anchor_validity(anchors, true_image_shapes,
                                  prediction_dict['preprocessed_inputs'])
    sampled = []
    for i in range(batch):
      indicator = tf.logical_and(cls_weights[i, :, 0] > 0, valid[i] > 0)
      positives = targets.matches[i] >= 0
      sampled.append(self._first_stage_sampler.subsample(
          indicator, self._first_stage_minibatch_size, positives))
    sampled = tf.cast(tf.stack(sampled), tf.float32)
    normalizer = tf.maximum(tf.reduce_sum(sampled, axis=1), 1.0)
    loc_losses = self._first_stage_loc_loss(
        prediction_dict['rpn_box_encodings'], reg_targets,
        weights=sampled * reg_weights)
    obj_losses = self._first_stage_obj_loss(
        prediction_dict['rpn_objectness_predictions_with_background'],
        cls_targets, weights=sampled[:, :, tf.newaxis] * cls_weights)
    if obj_losses.shape.rank == 3:
      obj_losses = tf.reduce_sum(obj_losses, axis=2)
    loc = tf.reduce_mean(tf.reduce_sum(loc_losses, axis=1) / normalizer)
    obj = tf.reduce_mean(tf.reduce_sum(obj_losses, axis=1) / normalizer)
    return {
        'Loss/RPNLoss/localization_loss': self._first_stage_loc_weight * loc,
        'Loss/RPNLoss/objectness_loss': self._first_stage_obj_weight * obj,
    }

  # ----------------------------------------------------------- second stage
  def _sample_proposals(self, proposal_boxes, num_proposals, preprocessed,
                        true_image_shapes):
    """Training minibatch of proposals per image (Ren et al. 2015 Sec. 3.2).

    Groundtruth boxes are appended (when `add_groundtruth_to_proposals`),
    the proposals are matched with the second-stage target assigner and a
    balanced sample of `second_stage_batch_size` is kept (all proposals,
    up to the maximum, with a hard example miner).

    Returns:
      boxes float32 `[B, S, 4]` (zero rows past the count), counts int32
      `[B]`.
    """
    gt_boxlists, gt_classes, gt_weights = self._groundtruth_in_frame(
        preprocessed, true_image_shapes)
    boxes_out, counts = [], []
    for i, gt in enumerate(gt_boxlists):
      boxes = proposal_boxes[i, :num_proposals[i]]
      if self._add_groundtruth_to_proposals:
        # First, so that truncation to the proposal budget keeps them.
        keep = tf.boolean_mask(gt.get(), gt_weights[i] > 0)
        boxes = tf.concat([keep, boxes], axis=0)
      if self._hard_example_miner is not None:
        size = self.max_num_proposals
        boxes = boxes[:size]
      else:
        size = self._second_stage_batch_size
        labels = tf.pad(gt_classes[i], [[0, 0], [1, 0]])
        assignment = self._second_stage_target_assigner.assign(
            box_list.BoxList(boxes), gt, labels,
            unmatched_class_label=tf.one_hot(0, self.num_classes + 1),
            groundtruth_weights=gt_weights[i])
        indicator = assignment.cls_weights[:, 0] > 0
        sampled = self._second_stage_sampler.subsample(
            indicator, size, assignment.matches >= 0)
        boxes = tf.boolean_mask(boxes, sampled)
      count = tf.minimum(tf.shape(boxes)[0], size)
      boxes_out.append(shape_utils.pad_or_clip_nd(boxes, [size, 4]))
      counts.append(count)
    return tf.stop_gradient(tf.stack(boxes_out)), tf.stack(counts)

  def _predict_second_stage(self, rpn_features, proposal_boxes, training):
    """Crops, box-classifier features and the box predictor.

    Returns:
      dict with 'refined_box_encodings' `[B, P, q, 4]`,
      'class_predictions_with_background' `[B, P, num_classes + 1]` and
      'box_classifier_features'.
    """
    crops = roi_ops.crop_and_resize_features(
        rpn_features, proposal_boxes, self._initial_crop_size,
        maxpool_kernel_size=self._maxpool_kernel_size,
        maxpool_stride=self._maxpool_stride)
    features = self.feature_extractor.extract_box_classifier_features(
        crops, training=training)
    predictions = self.second_stage_box_predictor(features, training=training)
    return self._reshape_second_stage(predictions, proposal_boxes)

  def _reshape_second_stage(self, predictions, proposal_boxes):
    shape = shape_utils.combined_static_and_dynamic_shape(proposal_boxes)
    batch, num = shape[0], shape[1]
    box_encodings = tf.cast(predictions['box_encodings'], tf.float32)
    logits = tf.cast(predictions['class_predictions_with_background'],
                     tf.float32)
    q = box_encodings.shape[1]
    code = box_encodings.shape[2]
    return {
        'refined_box_encodings': tf.reshape(box_encodings,
                                            [batch, num, q, code]),
        'class_predictions_with_background': tf.reshape(
            logits, [batch, num, self.num_classes + 1]),
    }

  def _decode_refined_boxes(self, refined_box_encodings, proposal_boxes):
    """`[B, P, q, 4]` codes relative to the proposals -> boxes, same shape."""
    shape = shape_utils.combined_static_and_dynamic_shape(
        refined_box_encodings)
    q = shape[2]
    anchors = tf.tile(proposal_boxes[:, :, tf.newaxis, :], [1, 1, q, 1])
    coder = self._second_stage_target_assigner.box_coder
    decoded = coder.decode(tf.reshape(refined_box_encodings,
                                      [-1, coder.code_size]),
                           box_list.BoxList(tf.reshape(anchors, [-1, 4])))
    return tf.reshape(decoded.get(), [shape[0], shape[1], q, 4])

  def _box_classifier_loss(self, prediction_dict, gt_boxlists, gt_classes,
                           gt_weights):
    proposal_boxes = prediction_dict['proposal_boxes']
    num_proposals = prediction_dict['num_proposals']
    refined = prediction_dict['refined_box_encodings']
    logits = prediction_dict['class_predictions_with_background']
    num_slots = self.num_classes + 1
    labels = [tf.pad(c, [[0, 0], [1, 0]]) for c in gt_classes]
    proposals_list = [box_list.BoxList(b) for b in tf.unstack(
        proposal_boxes, num=len(gt_boxlists))]
    targets = target_assigner_lib.batch_assign_targets(
        self._second_stage_target_assigner, proposals_list, gt_boxlists,
        labels, unmatched_class_label=tf.one_hot(0, num_slots),
        gt_weights_batch=gt_weights)
    cls_targets, cls_weights = targets.cls_targets, targets.cls_weights
    reg_targets, reg_weights = targets.reg_targets, targets.reg_weights
    valid = tf.sequence_mask(num_proposals, tf.shape(proposal_boxes)[1],
                             dtype=tf.float32)
    if refined.shape[2] == 1:
      selected = refined[:, :, 0]
    else:
      class_mask = cls_targets[:, :, 1:]
      selected = tf.reduce_sum(refined * class_mask[..., tf.newaxis], axis=2)
    loc_losses = self._second_stage_loc_loss(
        selected, reg_targets, weights=reg_weights * valid)
    cls_losses = self._second_stage_cls_loss(
        logits, cls_targets, weights=cls_weights * valid[..., tf.newaxis])
    if cls_losses.shape.rank == 3:
      cls_losses = tf.reduce_sum(cls_losses, axis=2)
    counts = tf.cast(num_proposals, tf.float32)
    if self._hard_example_miner is not None:
      mined = float(getattr(self._hard_example_miner, 'num_hard_examples',
                            0) or 0)
      if mined > 0:
        counts = tf.minimum(counts, mined)
      normalizer = tf.maximum(counts, 1.0)[:, tf.newaxis]
      loc, cls = self._hard_example_miner(
          loc_losses / normalizer, cls_losses / normalizer,
          proposals_list, targets.match_list())
      batch = tf.cast(tf.shape(proposal_boxes)[0], tf.float32)
      loc, cls = loc / batch, cls / batch
    else:
      normalizer = tf.maximum(counts, 1.0)
      loc = tf.reduce_mean(tf.reduce_sum(loc_losses, axis=1) / normalizer)
      cls = tf.reduce_mean(tf.reduce_sum(cls_losses, axis=1) / normalizer)
    return {
        'Loss/BoxClassifierLoss/localization_loss':
            self._second_stage_loc_weight * loc,
        'Loss/BoxClassifierLoss/classification_loss':
            self._second_stage_cls_weight * cls,
    }

  def groundtruth_coverage(self, prediction_dict, true_image_shapes,
                           anchor_generator=None):
    """Per image, the first-stage (RPN) assigner's `GroundtruthCoverage` on
    the grid anchors: the boxes that some anchor matches at the RPN's
    positive IoU (see `DetectionModel`). Anchors crossing the image border
    count too, although training ignores them unless
    `clip_anchors_to_image`.

    Args:
      prediction_dict: from `predict`.
      true_image_shapes: int32 `[B, 3]`.
      anchor_generator: optional grid `AnchorGenerator` (pixels) to place
        instead of `first_stage_anchor_generator` (what-if analysis).
    """
    if anchor_generator is None:
      anchors = box_list.BoxList(prediction_dict['anchors'])
    else:
      image_shape = tf.shape(prediction_dict['preprocessed_inputs'])
      feature_shape = tf.shape(prediction_dict['rpn_features_to_crop'])
      anchors = box_list.BoxList(self._normalized_anchors(
          feature_shape[1:3], image_shape[1:3], anchor_generator))
    gt_boxlists, _, _ = self._groundtruth_in_frame(
        prediction_dict['preprocessed_inputs'], true_image_shapes)
    levels = [target_assigner_lib.AnchorLevel(
        self._rpn_stride(prediction_dict), anchors.num_boxes())]
    return [self._first_stage_target_assigner.groundtruth_coverage(
        anchors, gt, levels=levels) for gt in gt_boxlists]

  @property
  def first_stage_target_assigner(self):
    """The RPN's IoU `TargetAssigner`."""
    return self._first_stage_target_assigner

  def _rpn_stride(self, prediction_dict):
    """The RPN feature map's stride, input pixels (height ratio)."""
    image = prediction_dict['preprocessed_inputs']
    feature = prediction_dict['rpn_features_to_crop']
    return (tf.cast(tf.shape(image)[1], tf.float32) /
            tf.cast(tf.shape(feature)[1], tf.float32))

  # ----------------------------------------------------------------- shared
  def _groundtruth_in_frame(self, preprocessed_inputs, true_image_shapes):
    """Groundtruth BoxLists in the padded frame, one-hot classes `[N, C]`
    and weights `[N]` per image."""
    boxes_list = self.groundtruth_lists(fields.BoxListFields.boxes)
    classes_list = self.groundtruth_lists(fields.BoxListFields.classes)
    weights_list = self.groundtruth_lists(fields.BoxListFields.weights)
    boxlists = image_frames.groundtruth_in_padded_frame(
        boxes_list, preprocessed_inputs, true_image_shapes)
    classes = []
    for c in classes_list:
      c = tf.convert_to_tensor(c)
      if c.shape.rank == 1:
        c = tf.one_hot(tf.cast(c, tf.int32), self.num_classes,
                       dtype=tf.float32)
      classes.append(tf.cast(c, tf.float32))
    weights = [tf.cast(tf.reshape(w, [-1]), tf.float32) for w in weights_list]
    return boxlists, classes, weights
