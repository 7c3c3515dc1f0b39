"""SSD meta-architecture (Liu et al. 2016), as Huang et al. 2017 frame it.

A single feed-forward network predicts, for every anchor of every feature
map, box encodings relative to the anchor and class scores; training matches
anchors to groundtruth (Argmax or Bipartite matcher), encodes the matched
boxes with a box coder, and sums a localization loss (positives only) and a
classification loss (positives and negatives, optionally mined with OHEM or
balanced with focal loss). RetinaNet (Lin et al. 2017) is this meta-
architecture with an FPN extractor, a weight-shared predictor, multiscale
anchors and sigmoid focal loss, as in the TF OD API.

Coordinate frames:
  * groundtruth and detections at the public boundary: normalized
    `[ymin, xmin, ymax, xmax]` of the true image window (the valid region of
    each padded input image, `true_image_shapes`);
  * anchors and decoded boxes inside: normalized to the *padded* input image
    (the preprocessed tensor); groundtruth is rescaled into that frame before
    matching, and detections are clipped to the true window and mapped back
    to it by the non-max suppression.
"""

import dataclasses
from typing import Any, Callable, Optional

import tensorflow as tf

from od_meta.core import box_coder as box_coder_lib
from od_meta.core import box_list
from od_meta.core import model
from od_meta.core import standard_fields as fields
from od_meta.core import target_assigner as target_assigner_lib
from od_meta.core import image_frames
from od_meta.utils import shape_utils


@dataclasses.dataclass(frozen=True)
class SSDLossConfig:
  """Loss hyperparameters of SSD.

  Attributes:
    classification_loss: `losses.Loss` on class logits `[B, A, slots]`.
    localization_loss: `losses.Loss` on box encodings `[B, A, code_size]`.
    classification_weight: float multiplier of the classification term.
    localization_weight: float multiplier of the localization term.
    hard_example_miner: optional `HardExampleMiner` (SSD OHEM, Liu et al.
      2016 section 2.2, negatives:positives <= 3).
    normalize_loss_by_num_matches: divide both terms by the number of
      matched anchors in the batch (at least 1), as the SSD paper's 1/N.
    normalize_loc_loss_by_codesize: also divide the localization term by the
      box code size.
  """
  classification_loss: Any
  localization_loss: Any
  classification_weight: float = 1.0
  localization_weight: float = 1.0
  hard_example_miner: Any = None
  normalize_loss_by_num_matches: bool = True
  normalize_loc_loss_by_codesize: bool = False


class SSDMetaArch(model.DetectionModel):
  """Single-shot detector over a list of feature maps.

  Args (keyword-only):
    is_training: bool, build for training (batch norm in training mode).
    num_classes: int, object classes without background.
    image_resizer_fn: `image [H, W, 3] -> (float32 [H', W', 3], int32 [3]
      true shape)`, used by `preprocess` on raw images.
    feature_extractor: an `SSDFeatureExtractor` (Keras model; `preprocess`
      normalizes [0, 255] images, `call` returns feature maps).
    box_predictor: a Keras layer mapping the feature maps to
      {'box_encodings': [B, A, code_size],
       'class_predictions_with_background': [B, A, slots]}.
    anchor_generator: an `AnchorGenerator` whose `generate(shapes,
      im_height=, im_width=)` returns normalized anchors, one BoxList per map,
      in the predictor's order.
    box_coder: a `BoxCoder`.
    target_assigner: a `TargetAssigner` (similarity, matcher, `box_coder`).
    non_max_suppression_fn: `post_processing.batch_multiclass_non_max_
      suppression` with thresholds bound.
    score_conversion_fn: logits -> scores (sigmoid / softmax / identity).
    loss_config: an `SSDLossConfig`.
    add_background_class: the predictor has a background column 0
      (softmax-style); when False (`encode_background_as_zeros`) there are
      `num_classes` sigmoid columns and unmatched anchors get all-zero
      targets.
    name: Keras layer name.

  Raises:
    ValueError: if the predictor's class slots do not fit
      `add_background_class`.
  """

  def __init__(self, *, is_training: bool, num_classes: int,
               image_resizer_fn: Callable, feature_extractor: tf.keras.Model,
               box_predictor: tf.keras.layers.Layer, anchor_generator,
               box_coder: box_coder_lib.BoxCoder,
               target_assigner: target_assigner_lib.TargetAssigner,
               non_max_suppression_fn: Callable,
               score_conversion_fn: Callable, loss_config: SSDLossConfig,
               add_background_class: bool = True,
               name: Optional[str] = None):
    super().__init__(num_classes=num_classes,
                     image_resizer_fn=image_resizer_fn,
                     feature_extractor=feature_extractor, name=name or 'ssd')
    self._is_training = is_training
    self.box_predictor = box_predictor
    self._anchor_generator = anchor_generator
    self._box_coder = box_coder
    self._target_assigner = target_assigner
    self._non_max_suppression_fn = non_max_suppression_fn
    self._score_conversion_fn = score_conversion_fn
    self._loss_config = loss_config
    self._add_background_class = add_background_class
    slots = getattr(box_predictor, 'num_class_slots', None)
    expected = num_classes + 1 if add_background_class else num_classes
    if slots is not None and slots != expected:
      raise ValueError(
          f'box_predictor predicts {slots} class slots but num_classes='
          f'{num_classes} with add_background_class={add_background_class} '
          f'needs {expected}')
    self._anchors = None
    self._anchor_levels = None

  # ------------------------------------------------------------------ public
  @property
  def anchors(self):
    """BoxList of the anchors of the last `predict` (normalized, padded
    frame)."""
    if self._anchors is None:
      raise RuntimeError('anchors exist after predict() has run')
    return self._anchors

  def predict(self, preprocessed_inputs, true_image_shapes, training=False):
    """Runs the feature extractor and the box predictor.

    Returns:
      dict with 'preprocessed_inputs', 'feature_maps' (list),
      'box_encodings' float32 `[B, A, code_size]`,
      'class_predictions_with_background' float32 `[B, A, slots]` (logits)
      'anchors' float32 `[A, 4]` (normalized, padded frame), and any
      further outputs of the box predictor under their own keys.

    Raises:
      ValueError: if the predictor and the anchor generator disagree on the
        number of anchors.
    """
    feature_maps = self.feature_extractor(preprocessed_inputs,
                                          training=training)
    anchors, self._anchor_levels = self._generate_anchors(
        self._anchor_generator, feature_maps, preprocessed_inputs)
    self._anchors = anchors
    predictions = self.box_predictor(feature_maps, training=training)
    box_encodings = predictions['box_encodings']
    class_predictions = predictions['class_predictions_with_background']
    num_predicted = box_encodings.shape[1]
    num_anchors = anchors.num_boxes_static()
    if (num_predicted is not None and num_anchors is not None and
        num_predicted != num_anchors):
      raise ValueError(
          f'the box predictor made {num_predicted} predictions but the anchor '
          f'generator made {num_anchors} anchors; check num_layers / '
          'aspect_ratios against the feature extractor')
    prediction_dict = {
        'preprocessed_inputs': preprocessed_inputs,
        'feature_maps': feature_maps,
        'box_encodings': box_encodings,
        'class_predictions_with_background': class_predictions,
        'anchors': anchors.get(),
    }
    # Further per-anchor outputs of the predictor (e.g. FCOS's centerness).
    for key, value in predictions.items():
      prediction_dict.setdefault(key, value)
    return prediction_dict

  def loss(self, prediction_dict, true_image_shapes):
    """Computes the SSD loss of the groundtruth given to provide_groundtruth.

    Returns:
      {'Loss/localization_loss': scalar, 'Loss/classification_loss':
      scalar}, float32, normalized as `SSDLossConfig` says.
    """
    config = self._loss_config
    box_encodings = prediction_dict['box_encodings']
    class_predictions = prediction_dict['class_predictions_with_background']
    anchors = box_list.BoxList(prediction_dict['anchors'])
    gt_boxlists, gt_class_targets, gt_weights = self._groundtruth_in_frame(
        prediction_dict['preprocessed_inputs'], true_image_shapes)
    targets = target_assigner_lib.batch_assign_targets(
        self._target_assigner, anchors, gt_boxlists, gt_class_targets,
        unmatched_class_label=self._unmatched_class_label(),
        gt_weights_batch=gt_weights, levels=self._anchor_levels,
        image_shape=self._input_size(prediction_dict['preprocessed_inputs']))
    cls_targets, cls_weights = targets.cls_targets, targets.cls_weights
    reg_targets, reg_weights = targets.reg_targets, targets.reg_weights
    location_losses = config.localization_loss(
        box_encodings, reg_targets, weights=reg_weights)
    cls_losses = config.classification_loss(
        class_predictions, cls_targets, weights=cls_weights)
    if cls_losses.shape.rank == 3:
      cls_losses = tf.reduce_sum(cls_losses, axis=2)
    if config.hard_example_miner is not None:
      decoded = box_coder_lib.batch_decode(box_encodings, self._box_coder,
                                           anchors)
      decoded_list = [box_list.BoxList(b) for b in tf.unstack(
          decoded, num=len(gt_boxlists))]
      localization_loss, classification_loss = config.hard_example_miner(
          location_losses, cls_losses, decoded_list, targets.match_list())
    else:
      localization_loss = tf.reduce_sum(location_losses)
      classification_loss = tf.reduce_sum(cls_losses)
    normalizer = tf.constant(1.0)
    if config.normalize_loss_by_num_matches:
      normalizer = tf.maximum(tf.reduce_sum(reg_weights), 1.0)
    loc_normalizer = normalizer
    if config.normalize_loc_loss_by_codesize:
      loc_normalizer = normalizer * self._box_coder.code_size
    return {
        'Loss/localization_loss': (config.localization_weight *
                                   localization_loss / loc_normalizer),
        'Loss/classification_loss': (config.classification_weight *
                                     classification_loss / normalizer),
    }

  def postprocess(self, prediction_dict, true_image_shapes):
    """Decodes boxes, converts scores and runs batched NMS in the graph.

    Returns:
      dict with detection_boxes float32 `[B, max_det, 4]` (normalized to the
      true image window), detection_scores `[B, max_det]`,
      detection_classes float32 `[B, max_det]` (0-based class ids),
      num_detections float32 `[B]`, detection_multiclass_scores
      `[B, max_det, num_classes]`, detection_anchor_indices int32,
      raw_detection_boxes `[B, A, 4]` and raw_detection_scores
      `[B, A, num_classes]` (before NMS, true-window frame).
    """
    box_encodings = prediction_dict['box_encodings']
    anchors = box_list.BoxList(prediction_dict['anchors'])
    decoded = box_coder_lib.batch_decode(box_encodings, self._box_coder,
                                         anchors)
    scores = self._score_conversion_fn(
        prediction_dict['class_predictions_with_background'])
    if self._add_background_class:
      scores = scores[:, :, 1:]
    window = image_frames.true_window(prediction_dict['preprocessed_inputs'],
                          true_image_shapes)
    result = self._non_max_suppression_fn(
        decoded[:, :, tf.newaxis, :], scores, clip_window=window,
        change_coordinate_frame=True,
        additional_fields={'multiclass_scores': scores})
    raw_boxes = image_frames.to_window_frame(decoded, window)
    return detection_dict(result, result.nmsed_anchor_indices, raw_boxes,
                          scores)

  def groundtruth_coverage(self, prediction_dict, true_image_shapes,
                           anchor_generator=None):
    """Per image, the `GroundtruthCoverage` of the model's target assigner
    (see `DetectionModel.groundtruth_coverage`).

    Args:
      prediction_dict: from `predict` (its 'feature_maps' give the grid).
      true_image_shapes: int32 `[B, 3]`.
      anchor_generator: optional `AnchorGenerator` to place instead of the
        model's own on the same feature maps (what-if analysis, e.g.
        `scripts/analyze_dataset.py`'s anchor search).
    """
    preprocessed = prediction_dict['preprocessed_inputs']
    anchors, levels = self._generate_anchors(
        anchor_generator or self._anchor_generator,
        prediction_dict['feature_maps'], preprocessed)
    gt_boxlists, _, _ = self._groundtruth_in_frame(preprocessed,
                                                   true_image_shapes)
    return [self._target_assigner.groundtruth_coverage(
        anchors, gt, levels=levels,
        image_shape=self._input_size(preprocessed)) for gt in gt_boxlists]

  def _generate_anchors(self, anchor_generator, feature_maps,
                        preprocessed_inputs):
    """(BoxList of all levels' anchors, normalized to the padded input;
    their `AnchorLevel`s)."""
    image_shape = shape_utils.combined_static_and_dynamic_shape(
        preprocessed_inputs)
    feature_map_shapes = [
        tuple(shape_utils.combined_static_and_dynamic_shape(f)[1:3])
        for f in feature_maps]
    anchors_list = anchor_generator.generate(
        feature_map_shapes, im_height=image_shape[1], im_width=image_shape[2])
    anchors = box_list.BoxList(
        tf.concat([a.get() for a in anchors_list], axis=0))
    return anchors, self._levels(anchors_list, feature_map_shapes,
                                 image_shape[1])

  @property
  def target_assigner(self):
    """The `AnchorTargetAssigner` that defines the positives."""
    return self._target_assigner

  @property
  def anchor_levels(self):
    """`AnchorLevel`s (stride, anchor count) of the last `predict`, in the
    order the anchors are concatenated."""
    if self._anchor_levels is None:
      raise RuntimeError('anchor levels exist after predict() has run')
    return self._anchor_levels

  # ----------------------------------------------------------------- private
  def _levels(self, anchors_list, feature_map_shapes, image_height):
    """One `AnchorLevel` per feature map: the extractor's declared stride
    (`feature_map_strides`, FPN levels) or the input height over the map
    height."""
    strides = getattr(self.feature_extractor, 'feature_map_strides', None)
    if strides is None or len(strides) != len(anchors_list):
      strides = []
      for shape in feature_map_shapes:
        if isinstance(shape[0], int) and isinstance(image_height, int):
          strides.append(image_height / max(shape[0], 1))
        else:
          strides.append(tf.cast(image_height, tf.float32) /
                         tf.cast(tf.maximum(shape[0], 1), tf.float32))
    levels = []
    for stride, anchors in zip(strides, anchors_list):
      count = anchors.num_boxes_static()
      levels.append(target_assigner_lib.AnchorLevel(
          stride, count if count is not None else anchors.num_boxes()))
    return levels

  def _input_size(self, preprocessed_inputs):
    """(H, W) of the padded input, ints where static."""
    shape = shape_utils.combined_static_and_dynamic_shape(preprocessed_inputs)
    return shape[1], shape[2]

  def _unmatched_class_label(self):
    if self._add_background_class:
      return tf.one_hot(0, self.num_classes + 1, dtype=tf.float32)
    return tf.zeros([self.num_classes], tf.float32)

  def _groundtruth_in_frame(self, preprocessed_inputs, true_image_shapes):
    """Groundtruth BoxLists in the padded frame and their class targets."""
    boxes_list = self.groundtruth_lists(fields.BoxListFields.boxes)
    classes_list = self.groundtruth_lists(fields.BoxListFields.classes)
    weights_list = self.groundtruth_lists(fields.BoxListFields.weights)
    scale = image_frames.window_scale(preprocessed_inputs, true_image_shapes)
    boxlists, class_targets = [], []
    for i, (boxes, classes) in enumerate(zip(boxes_list, classes_list)):
      boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
      boxlists.append(box_list.BoxList(boxes * tf.tile(scale[i], [2])))
      classes = tf.convert_to_tensor(classes)
      if classes.shape.rank == 1:
        one_hot = tf.one_hot(tf.cast(classes, tf.int32), self.num_classes,
                             dtype=tf.float32)
      else:
        one_hot = tf.cast(classes, tf.float32)
      if self._add_background_class:
        one_hot = tf.pad(one_hot, [[0, 0], [1, 0]])
      class_targets.append(one_hot)
    weights = [tf.cast(tf.reshape(w, [-1]), tf.float32) for w in weights_list]
    return boxlists, class_targets, weights


def detection_dict(result, anchor_indices, raw_boxes, raw_scores):
  """The single-shot detectors' `postprocess` outputs.

  Args:
    result: the `post_processing.BatchNMSResult` (multiclass_scores as its
      additional field).
    anchor_indices: int32 `[B, max_det]`, the anchor of each detection.
    raw_boxes: float32 `[B, A, 4]` decoded boxes, true-window frame.
    raw_scores: float32 `[B, A, num_classes]` scores before NMS.

  Returns:
    dict of the standard detection fields (see `SSDMetaArch.postprocess`).
  """
  return {
      fields.DetectionResultFields.detection_boxes: result.nmsed_boxes,
      fields.DetectionResultFields.detection_scores: result.nmsed_scores,
      fields.DetectionResultFields.detection_classes: tf.cast(
          result.nmsed_classes, tf.float32),
      fields.DetectionResultFields.num_detections: tf.cast(
          result.num_detections, tf.float32),
      fields.DetectionResultFields.detection_multiclass_scores:
          result.nmsed_additional_fields['multiclass_scores'],
      fields.DetectionResultFields.detection_anchor_indices: anchor_indices,
      fields.DetectionResultFields.raw_detection_boxes: raw_boxes,
      fields.DetectionResultFields.raw_detection_scores: raw_scores,
  }
