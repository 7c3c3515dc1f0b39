"""Base of the heatmap (keypoint-style, anchor-free) meta-architectures.

CenterNet "Objects as Points" (Zhou et al. 2019), TTFNet (Liu et al. 2019)
and later CornerNet share one skeleton, which this module holds (the
anchor-point detectors on many FPN levels, FCOS / ATSS / SAPD, predict one
box per location like RetinaNet and live on the single-shot base,
`fcos_meta_arch`):

  preprocess   resize (unless the input pipeline did) + the extractor's
               normalization (`DetectionModel.preprocess`);
  predict      feature extractor -> one or more stride-R feature maps (one per
               Hourglass stack, for intermediate supervision) -> the same set
               of `PredictionHead`s on each map (separate weights per stack,
               as the TF OD API's CenterNet builds them);
  loss         the `DenseTargetAssigner` draws the targets of the output
               level(s) (`FeatureLevel`s; these detectors predict on one
               level, every stack at the same stride), then the subclass's
               per-stack loss, averaged over stacks;
  postprocess  the subclass's decoding of the last stack (3x3 max-pool peaks,
               top-k, no NMS), mapped to the true image window.

Frames: predictions live on the output map (`H / R x W / R`, "output-stride
pixels"); the dense target assigners take groundtruth normalized to the
padded input frame (`H x W` input pixels); detections leave normalized to
each image's true window, like SSD's.
"""

from typing import Callable, Dict, Optional

import tensorflow as tf

from od_meta.core import model
from od_meta.core import standard_fields as fields
from od_meta.core import target_assigner as target_assigner_lib
from od_meta.heads import center_net_heads
from od_meta.core import image_frames
from od_meta.utils import shape_utils


class DenseHeatmapMetaArch(model.DetectionModel):
  """Shared preprocess / predict / frame handling of heatmap detectors.

  Subclasses declare their heads in `_head_specs()` and implement
  `_stack_loss(predictions_of_one_stack, ...)` and `postprocess`.

  Args:
    is_training: whether the model is built for training.
    num_classes: number of object classes (background excluded).
    image_resizer_fn: `fn(image) -> (resized, true_shape)`, the config's
      image resizer.
    feature_extractor: a `CenterNetFeatureExtractor`-like layer with
      `preprocess(images)`, `call(preprocessed, training) -> list of
      [B, H / R, W / R, C] maps`, and `out_stride` (R).
    target_assigner: a `core.target_assigner.DenseTargetAssigner` whose
      `strides` are `[R]`.
    head_channels: channels of the 3x3 conv of every prediction head.
    use_depthwise: depthwise separable 3x3 convs in the prediction heads
      (`PredictionHead(use_depthwise=True)`, as the TF OD API's
      `make_prediction_net`).
    name: Keras layer name.

  Raises:
    ValueError: if the extractor has no positive integer `out_stride`, or the
      assigner's strides are not the extractor's.
  """

  def __init__(self, *, is_training: bool, num_classes: int,
               image_resizer_fn: Callable, feature_extractor,
               target_assigner: target_assigner_lib.DenseTargetAssigner,
               head_channels: int = 64, use_depthwise: bool = False,
               name: Optional[str] = None):
    super().__init__(num_classes=num_classes,
                     image_resizer_fn=image_resizer_fn,
                     feature_extractor=feature_extractor, name=name)
    self._is_training = is_training
    stride = getattr(feature_extractor, 'out_stride', None)
    if not isinstance(stride, int) or stride <= 0:
      raise ValueError('the feature extractor must have a positive int '
                       f'out_stride, got {stride!r}')
    self._stride = stride
    if list(target_assigner.strides) != [stride]:
      raise ValueError(
          f'the target assigner strides ({list(target_assigner.strides)}) '
          f'differ from the feature extractor output stride ({stride})')
    self._target_assigner = target_assigner
    self._num_stacks = int(getattr(feature_extractor, 'num_feature_outputs',
                                   1))
    self._head_channels = int(head_channels)
    self.prediction_heads = {}
    for head_name, (num_outputs, bias_init) in self._head_specs().items():
      self.prediction_heads[head_name] = [
          center_net_heads.PredictionHead(
              num_outputs=num_outputs, head_channels=self._head_channels,
              bias_init=bias_init, use_depthwise=bool(use_depthwise),
              name=f'{head_name}_{i}')
          for i in range(self._num_stacks)]

  # ------------------------------------------------------------ for subclasses
  def _head_specs(self) -> Dict[str, tuple]:
    """{head name: (num_outputs, final bias init)}; subclasses override."""
    raise NotImplementedError

  def _stack_loss(self, predictions, targets, num_objects):
    """Loss dict of one stack; subclasses override.

    Args:
      predictions: {head name: float32 `[B, h, w, outputs]`} of the stack.
      targets: the level's `DenseTargetFields` dict from the assigner.
      num_objects: float32 scalar >= 1, groundtruth objects in the batch.
    """
    raise NotImplementedError

  def _assigner_kwargs(self, groundtruth):
    """Extra keyword arguments of `assign_levels` (e.g. keypoints) from the
    padded-frame groundtruth dict; subclasses override."""
    del groundtruth
    return {}

  def levels(self, preprocessed_inputs):
    """The output `FeatureLevel`s of a preprocessed batch (one level)."""
    height, width = self._input_size(preprocessed_inputs)
    return [target_assigner_lib.FeatureLevel(
        self._stride, height // self._stride, width // self._stride)]

  @property
  def stride(self):
    """Output stride R of the predicted maps, in input pixels."""
    return self._stride

  # ------------------------------------------------------------------- public
  def predict(self, preprocessed_inputs, true_image_shapes, training=False):
    """Runs the extractor and every head on every stack.

    Args:
      preprocessed_inputs: float32 `[B, H, W, 3]` from `preprocess`; H and W
        should be multiples of the output stride.
      true_image_shapes: int32 `[B, 3]`.
      training: bool.

    Returns:
      dict with 'preprocessed_inputs' and, per head name, a list (one entry
      per stack) of float32 `[B, H / R, W / R, num_outputs]` raw outputs.
    """
    del true_image_shapes
    feature_maps = self._feature_maps(preprocessed_inputs, training)
    predictions = {'preprocessed_inputs': preprocessed_inputs}
    for head_name, heads in self.prediction_heads.items():
      predictions[head_name] = [head(f, training=training)
                                for head, f in zip(heads, feature_maps)]
    return predictions

  def loss(self, prediction_dict, true_image_shapes):
    """Averages the subclass's per-stack losses over the stacks.

    Returns:
      dict of float32 scalars named 'Loss/...'.
    """
    targets, num_objects = self._assign_targets(
        prediction_dict['preprocessed_inputs'], true_image_shapes)
    totals = {}
    for i in range(self._num_stacks):
      stack = {name: value[i] for name, value in prediction_dict.items()
               if name in self.prediction_heads}
      for name, value in self._stack_loss(stack, targets,
                                          num_objects).items():
        totals[name] = totals.get(name, 0.0) + value / self._num_stacks
    return totals

  def groundtruth_coverage(self, prediction_dict, true_image_shapes,
                           anchor_generator=None):
    """Per image, the dense assigner's `GroundtruthCoverage` (a box is
    matched when it has its own heatmap peak; see `DetectionModel`).

    Raises:
      ValueError: if `anchor_generator` is given (heatmap detectors have no
        anchors).
    """
    if anchor_generator is not None:
      raise ValueError(f'{type(self).__name__} places no anchors; '
                       'anchor_generator must be None')
    preprocessed = prediction_dict['preprocessed_inputs']
    gt = self._groundtruth_in_padded_frame(preprocessed, true_image_shapes)
    height, width = self._input_size(preprocessed)
    levels = self.levels(preprocessed)
    return [self._target_assigner.groundtruth_coverage(
        height, width, levels, boxes, classes)
            for boxes, classes in zip(gt['boxes'], gt['classes'])]

  # ------------------------------------------------------------------ helpers
  def _feature_maps(self, preprocessed_inputs, training):
    feature_maps = self.feature_extractor(preprocessed_inputs,
                                          training=training)
    if not isinstance(feature_maps, (list, tuple)):
      feature_maps = [feature_maps]
    if len(feature_maps) != self._num_stacks:
      raise ValueError(
          f'the feature extractor returned {len(feature_maps)} maps but '
          f'declares num_feature_outputs={self._num_stacks}')
    return list(feature_maps)

  def _assign_targets(self, preprocessed_inputs, true_image_shapes):
    """Runs the dense target assigner on the provided groundtruth.

    Returns:
      (targets: the `DenseTargetFields` dict of the output level,
      num_objects: float32 scalar >= 1, the number of groundtruth objects in
      the batch).
    """
    gt = self._groundtruth_in_padded_frame(preprocessed_inputs,
                                           true_image_shapes)
    height, width = self._input_size(preprocessed_inputs)
    (targets,) = self._target_assigner.assign_levels(
        height, width, self.levels(preprocessed_inputs), gt['boxes'],
        gt['classes'], gt['weights'], **self._assigner_kwargs(gt))
    num_objects = tf.maximum(
        tf.reduce_sum(targets[fields.DenseTargetFields.num_objects]), 1.0)
    return targets, num_objects

  def _groundtruth_in_padded_frame(self, preprocessed_inputs,
                                   true_image_shapes=None):
    """Groundtruth normalized to the padded input frame.

    The input pipeline gives boxes normalized to each image's true window;
    the padded frame is `H x W` of `preprocessed_inputs`.

    Returns:
      dict with lists (one per image): 'boxes' float32 `[N, 4]`, 'classes'
      int32 `[N]` (0-based), 'weights' float32 `[N]`, and 'keypoints'
      float32 `[N, K, 2]` / 'keypoint_visibilities' bool `[N, K]` when given.
    """
    boxes_list = self.groundtruth_lists(fields.BoxListFields.boxes)
    batch = len(boxes_list)
    if true_image_shapes is None:
      scale = tf.ones([batch, 2], tf.float32)
    else:
      scale = image_frames.window_scale(preprocessed_inputs,
                                        true_image_shapes)
    out = {'boxes': [], 'classes': [], 'weights': []}
    for i, boxes in enumerate(boxes_list):
      boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
      out['boxes'].append(boxes * tf.tile(scale[i], [2]))
    for classes in self.groundtruth_lists(fields.BoxListFields.classes):
      classes = tf.convert_to_tensor(classes)
      if classes.shape.rank == 2:
        classes = tf.argmax(classes, axis=-1, output_type=tf.int32)
      out['classes'].append(tf.cast(tf.reshape(classes, [-1]), tf.int32))
    out['weights'] = [
        tf.cast(tf.reshape(w, [-1]), tf.float32)
        for w in self.groundtruth_lists(fields.BoxListFields.weights)]
    if self.groundtruth_has_field(fields.BoxListFields.keypoints):
      out['keypoints'] = [
          tf.cast(k, tf.float32) * scale[i]
          for i, k in enumerate(
              self.groundtruth_lists(fields.BoxListFields.keypoints))]
      if self.groundtruth_has_field(
          fields.BoxListFields.keypoint_visibilities):
        out['keypoint_visibilities'] = [
            tf.cast(v, tf.bool) for v in self.groundtruth_lists(
                fields.BoxListFields.keypoint_visibilities)]
      else:
        out['keypoint_visibilities'] = [
            tf.reduce_all(tf.math.is_finite(k), axis=-1)
            for k in out['keypoints']]
    return out

  def _input_size(self, preprocessed_inputs):
    """(H, W) of the padded input, int32 scalars (static where known)."""
    shape = shape_utils.combined_static_and_dynamic_shape(preprocessed_inputs)
    return shape[1], shape[2]

  def _detections_in_window(self, boxes, scores, classes, valid,
                            preprocessed_inputs, true_image_shapes):
    """Maps padded-frame detections to each true window and pads them.

    Args:
      boxes: float32 `[B, k, 4]` normalized to the padded frame.
      scores: float32 `[B, k]`.
      classes: int32 `[B, k]`, 0-based.
      valid: bool `[B, k]`, a prefix of each row.
      preprocessed_inputs: the `[B, H, W, 3]` model input.
      true_image_shapes: int32 `[B, 3]`.

    Returns:
      dict of the standard detection fields: detection_boxes `[B, k, 4]`
      clipped to [0, 1] of the true window, detection_scores `[B, k]`,
      detection_classes float32 `[B, k]` (0-based), num_detections float32
      `[B]`; entries past num_detections are zero.
    """
    window = image_frames.true_window(preprocessed_inputs, true_image_shapes)
    boxes = tf.clip_by_value(image_frames.to_window_frame(boxes, window),
                             0.0, 1.0)
    mask = tf.cast(valid, tf.float32)
    return {
        fields.DetectionResultFields.detection_boxes: boxes * mask[..., None],
        fields.DetectionResultFields.detection_scores: scores * mask,
        fields.DetectionResultFields.detection_classes:
            tf.cast(classes, tf.float32) * mask,
        fields.DetectionResultFields.num_detections:
            tf.reduce_sum(mask, axis=1),
    }


def dense_l1_loss(loss_fn, prediction, target, weights, normalizer):
  """Sum of a localization loss over the weighted pixels, normalized.

  Args:
    loss_fn: a `core.losses` localization loss taking `[B, A, D]` and
      weights `[B, A]` or `[B, A, D]` and returning `[B, A]` (e.g. L1).
    prediction, target: float32 `[B, h, w, D]`.
    weights: float32 `[B, h, w]` or `[B, h, w, D]`.
    normalizer: float32 scalar > 0 (e.g. the number of objects).

  Returns:
    float32 scalar.
  """
  batch = tf.shape(prediction)[0]
  depth = prediction.shape[-1]
  if weights.shape.rank == 4:
    weights = tf.reshape(weights, [batch, -1, depth])
  else:
    weights = tf.reshape(weights, [batch, -1])
  per_location = loss_fn(tf.reshape(prediction, [batch, -1, depth]),
                         tf.reshape(target, [batch, -1, depth]),
                         weights=weights)
  return tf.reduce_sum(per_location) / normalizer
