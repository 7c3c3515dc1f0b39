"""`DetectionModel`: the contract every meta-architecture fulfils.

The life of a batch, as in the TF Object Detection API
(`object_detection/core/model.py`):

    preprocessed, true_image_shapes = model.preprocess(images)
    prediction_dict = model.predict(preprocessed, true_image_shapes)
    model.provide_groundtruth(...)                 # training / evaluation
    losses = model.loss(prediction_dict, true_image_shapes)
    detections = model.postprocess(prediction_dict, true_image_shapes)

Anchor-based (SSD, Faster R-CNN, R-FCN) and dense (CenterNet, TTFNet,
CornerNet, FCOS) meta-architectures all subclass it, so the training loop,
the evaluators and the exporter never know which one they drive.

Frames: `images` are float32 NHWC in [0, 255]; groundtruth and detection boxes
are float32 `[ymin, xmin, ymax, xmax]` normalized to [0, 1] of the true image
window (`true_image_shapes`), keypoints normalized (y, x). Pixels appear only
inside subclasses.
"""

import abc

import tensorflow as tf

from od_meta.core import image_frames
from od_meta.core import standard_fields as fields
from od_meta.utils import keras_tracking


class DetectionModel(keras_tracking.CheckpointTrackedCollections,
                     tf.keras.layers.Layer, metaclass=abc.ABCMeta):
  """Abstract base class of od_meta's detection meta-architectures.

  Subclasses are Keras layers so that their variables are tracked by
  `tf.train.Checkpoint` and created under the active `tf.distribute` strategy.

  The shared parts of every meta-architecture live here once: `preprocess`
  (the config's image resizer, unless the input pipeline already resized,
  then the feature extractor's normalization), `restore_map` and
  `feature_extractor_model`.

  Args:
    num_classes: int, number of object classes, background excluded.
    image_resizer_fn: `image [H, W, 3] -> (float32 [H', W', 3], int32 [3]
      true shape)`, the config's image resizer; required by `preprocess`.
    feature_extractor: the meta-architecture's feature extractor (a Keras
      layer with `preprocess(images)` normalizing [0, 255] images); stored
      as `self.feature_extractor`.
    name: optional Keras layer name.

  Raises:
    ValueError: if num_classes is not a positive int.
  """

  def __init__(self, *, num_classes, image_resizer_fn=None,
               feature_extractor=None, name=None):
    if not isinstance(num_classes, int) or num_classes < 1:
      raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
    super().__init__(name=name)
    self._num_classes = num_classes
    self._groundtruth_lists = {}
    self._image_resizer_fn = image_resizer_fn
    self.feature_extractor = feature_extractor

  @property
  def num_classes(self):
    return self._num_classes

  # ---------------------------------------------------------------- groundtruth
  def groundtruth_has_field(self, field):
    """Whether `provide_groundtruth` was given `field` (a standard field)."""
    return field in self._groundtruth_lists

  def groundtruth_lists(self, field):
    """The list (one tensor per image) given for `field`.

    Raises:
      RuntimeError: if `provide_groundtruth` did not provide `field`.
    """
    if field not in self._groundtruth_lists:
      raise RuntimeError(
          f'groundtruth field {field!r} was not provided; call '
          'provide_groundtruth first')
    return self._groundtruth_lists[field]

  def provide_groundtruth(self,
                          groundtruth_boxes_list,
                          groundtruth_classes_list,
                          groundtruth_weights_list=None,
                          groundtruth_keypoints_list=None,
                          groundtruth_keypoint_visibilities_list=None,
                          groundtruth_is_crowd_list=None):
    """Stores the groundtruth of one batch for `loss`.

    Args:
      groundtruth_boxes_list: list (one per image) of float32 `[N_i, 4]`
        normalized `[ymin, xmin, ymax, xmax]`.
      groundtruth_classes_list: list of int32 `[N_i]` 0-based class ids, or
        float32 `[N_i, num_classes]` one-hot / multi-hot rows.
      groundtruth_weights_list: optional list of float32 `[N_i]`.
      groundtruth_keypoints_list: optional list of float32
        `[N_i, num_keypoints, 2]` normalized (y, x).
      groundtruth_keypoint_visibilities_list: optional list of bool
        `[N_i, num_keypoints]`.
      groundtruth_is_crowd_list: optional list of bool `[N_i]`.

    Raises:
      ValueError: if the lists have different lengths.
    """
    lists = {
        fields.BoxListFields.boxes: groundtruth_boxes_list,
        fields.BoxListFields.classes: groundtruth_classes_list,
        fields.BoxListFields.weights: groundtruth_weights_list,
        fields.BoxListFields.keypoints: groundtruth_keypoints_list,
        fields.BoxListFields.keypoint_visibilities:
            groundtruth_keypoint_visibilities_list,
        fields.BoxListFields.is_crowd: groundtruth_is_crowd_list,
    }
    batch = len(groundtruth_boxes_list)
    self._groundtruth_lists = {}
    for key, value in lists.items():
      if value is None:
        continue
      if len(value) != batch:
        raise ValueError(
            f'groundtruth {key} has {len(value)} entries but '
            f'groundtruth boxes have {batch}')
      self._groundtruth_lists[key] = list(value)
    if fields.BoxListFields.weights not in self._groundtruth_lists:
      self._groundtruth_lists[fields.BoxListFields.weights] = [
          tf.ones(tf.shape(b)[:1], tf.float32) for b in groundtruth_boxes_list]

  # ------------------------------------------------------------------ contract
  def preprocess(self, inputs, true_image_shapes=None):
    """Resizes (unless already done) and normalizes a batch of images.

    Args:
      inputs: float32 `[batch, H, W, 3]` in [0, 255].
      true_image_shapes: optional int32 `[batch, 3]`; when given, the images
        were already resized by the input pipeline with this model's
        resizer and only the extractor's normalization is applied.

    Returns:
      preprocessed_inputs: float32 `[batch, H', W', 3]`.
      true_image_shapes: int32 `[batch, 3]`, the (height, width, channels) of
        the valid window of each preprocessed image.

    Raises:
      ValueError: if `inputs` is not `[batch, height, width, 3]`.
      NotImplementedError: if the model has no image resizer or extractor
        (a subclass must then override this method).
    """
    if self._image_resizer_fn is None or self.feature_extractor is None:
      raise NotImplementedError(
          f'{type(self).__name__} has no image_resizer_fn / '
          'feature_extractor; override preprocess')
    return image_frames.preprocess_batch(
        inputs, true_image_shapes, self._image_resizer_fn,
        self.feature_extractor.preprocess, type(self).__name__)

  @property
  def feature_extractor_model(self):
    """The feature extractor (for fine-tuning and freezing)."""
    return self.feature_extractor

  @abc.abstractmethod
  def predict(self, preprocessed_inputs, true_image_shapes, training=False):
    """Runs the network; returns a dict of raw prediction tensors."""

  @abc.abstractmethod
  def loss(self, prediction_dict, true_image_shapes):
    """Returns a dict of scalar float32 loss tensors (names start `Loss/`)."""

  @abc.abstractmethod
  def postprocess(self, prediction_dict, true_image_shapes):
    """Decodes predictions into detections, inside the graph.

    Returns:
      dict with the `standard_fields.DetectionResultFields` keys
      detection_boxes, detection_scores, detection_classes (0-based int32 or
      float32 ids), num_detections, and detection_keypoints /
      detection_keypoint_scores where the model predicts keypoints.
    """

  def groundtruth_coverage(self, prediction_dict, true_image_shapes,
                           anchor_generator=None):
    """Which provided groundtruth boxes the model's target rule can learn.

    Uses the groundtruth given to `provide_groundtruth` and the anchors /
    output levels of `prediction_dict` (from `predict`), with the model's
    own target assigner: a box is matched when some anchor or location is
    a positive for it (see `target_assigner.GroundtruthCoverage`).

    Args:
      prediction_dict: the dict `predict` returned for the batch.
      true_image_shapes: int32 `[B, 3]`.
      anchor_generator: optional `AnchorGenerator` placed on the same
        feature maps instead of the model's own (anchor-based models only).

    Returns:
      list (one per image) of `GroundtruthCoverage` over that image's
      groundtruth rows, in the order given (rows with weight 0 included).

    Raises:
      NotImplementedError: for meta-architectures without a rule.
    """
    del prediction_dict, true_image_shapes, anchor_generator
    raise NotImplementedError(
        f'{type(self).__name__} does not report groundtruth coverage')

  def restore_map(self, fine_tune_checkpoint_type='detection'):
    """Objects to restore from a fine-tune checkpoint, keyed by attribute.

    Args:
      fine_tune_checkpoint_type: 'detection' restores the whole model,
        'classification' / 'feature_extractor' only the feature extractor.

    Raises:
      ValueError: on an unknown checkpoint type.
    """
    if fine_tune_checkpoint_type == 'detection':
      return {'model': self}
    if (fine_tune_checkpoint_type in ('classification', 'feature_extractor')
        and self.feature_extractor is not None):
      return {'feature_extractor': self.feature_extractor}
    raise ValueError(
        f'{type(self).__name__} does not support fine_tune_checkpoint_type '
        f'{fine_tune_checkpoint_type!r}')

  def call(self, images, training=False):
    """Keras entry point: preprocess, predict and postprocess."""
    preprocessed, true_image_shapes = self.preprocess(images)
    prediction_dict = self.predict(preprocessed, true_image_shapes,
                                   training=training)
    return self.postprocess(prediction_dict, true_image_shapes)
