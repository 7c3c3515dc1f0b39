"""Standard names for the tensors that cross od_meta's public boundaries.

Every dictionary exchanged between the data pipeline, a `DetectionModel`, the
evaluators and the exporter uses these keys, so components never agree on
strings privately. The names follow the TF Object Detection API
(`object_detection/core/standard_fields.py`) wherever the concept is the
same, so that its users find the keys they know.

Conventions (see DESIGN.md):
  * boxes are float32 `[ymin, xmin, ymax, xmax]` normalized to [0, 1] of the
    true image window;
  * class ids are int32 in `[0, num_classes)`; background is not a class id;
  * keypoints are float32 `[..., num_keypoints, 2]` as normalized (y, x).
"""


class InputDataFields:
  """Keys of the dictionaries produced by the input pipeline (`od_meta.data`).

  Attributes:
    image: uint8 or float32 image, `[H, W, 3]` (per example) or
      `[batch, H, W, 3]` (batched).
    original_image: the image before resizing, for visualization.
    original_image_spatial_shape: int32 `[2]`, (height, width) in pixels of
      the decoded image.
    true_image_shape: int32 `[3]`, (height, width, channels) of the resized
      image before padding; the valid window of a padded batch.
    image_additional_channels: not used yet; reserved.
    source_id: string, the `image/source_id` of the tf.Example.
    filename: string, `image/filename`.
    key: string, `image/key/sha256`.
    groundtruth_boxes: float32 `[num_boxes, 4]` normalized yxyx.
    groundtruth_classes: int32 `[num_boxes]`, 0-based class ids.
    groundtruth_text: string `[num_boxes]`, class names.
    groundtruth_is_crowd: bool `[num_boxes]`.
    groundtruth_area: float32 `[num_boxes]`, area in pixels of the original
      image (COCO's segmentation area), 0 when unknown.
    groundtruth_difficult: bool `[num_boxes]` (PASCAL VOC `difficult`).
    groundtruth_weights: float32 `[num_boxes]`, per-box loss weight.
    groundtruth_keypoints: float32 `[num_boxes, num_keypoints, 2]` normalized
      (y, x); NaN where the keypoint is absent.
    groundtruth_keypoint_visibilities: bool `[num_boxes, num_keypoints]`.
    num_groundtruth_boxes: int32 scalar, valid boxes before padding.
  """
  image = 'image'
  original_image = 'original_image'
  original_image_spatial_shape = 'original_image_spatial_shape'
  true_image_shape = 'true_image_shape'
  source_id = 'source_id'
  filename = 'filename'
  key = 'key'
  groundtruth_boxes = 'groundtruth_boxes'
  groundtruth_classes = 'groundtruth_classes'
  groundtruth_text = 'groundtruth_text'
  groundtruth_is_crowd = 'groundtruth_is_crowd'
  groundtruth_area = 'groundtruth_area'
  groundtruth_difficult = 'groundtruth_difficult'
  groundtruth_weights = 'groundtruth_weights'
  groundtruth_keypoints = 'groundtruth_keypoints'
  groundtruth_keypoint_visibilities = 'groundtruth_keypoint_visibilities'
  num_groundtruth_boxes = 'num_groundtruth_boxes'


class DetectionResultFields:
  """Keys of the dictionary returned by `DetectionModel.postprocess`.

  Attributes:
    detection_boxes: float32 `[batch, max_detections, 4]` normalized yxyx,
      clipped to the true image window.
    detection_scores: float32 `[batch, max_detections]`, in [0, 1].
    detection_classes: float32 (exported, label-map ids) or int32 (inside the
      framework, 0-based) `[batch, max_detections]`.
    detection_multiclass_scores: float32 `[batch, max_detections,
      num_classes]`.
    num_detections: float32 `[batch]`, the number of valid rows.
    detection_keypoints: float32 `[batch, max_detections, num_keypoints, 2]`
      normalized (y, x).
    detection_keypoint_scores: float32 `[batch, max_detections,
      num_keypoints]`.
    raw_detection_boxes: float32 `[batch, num_anchors_or_locations, 4]`
      normalized yxyx, before non-max suppression.
    raw_detection_scores: float32 `[batch, num_anchors_or_locations,
      num_classes]`, before non-max suppression.
    detection_anchor_indices: int32 `[batch, max_detections]`, which raw row
      each detection came from.
  """
  detection_boxes = 'detection_boxes'
  detection_scores = 'detection_scores'
  detection_classes = 'detection_classes'
  detection_multiclass_scores = 'detection_multiclass_scores'
  num_detections = 'num_detections'
  detection_keypoints = 'detection_keypoints'
  detection_keypoint_scores = 'detection_keypoint_scores'
  raw_detection_boxes = 'raw_detection_boxes'
  raw_detection_scores = 'raw_detection_scores'
  detection_anchor_indices = 'detection_anchor_indices'


class BoxListFields:
  """Names of the extra fields a `BoxList` may carry besides its boxes."""
  boxes = 'boxes'
  classes = 'classes'
  scores = 'scores'
  weights = 'weights'
  confidences = 'confidences'
  objectness = 'objectness'
  masks = 'masks'
  keypoints = 'keypoints'
  keypoint_visibilities = 'keypoint_visibilities'
  is_crowd = 'is_crowd'
  group_of = 'group_of'


class TfExampleFields:
  """tf.Example feature keys, as written by the TF OD API's converters."""
  image_encoded = 'image/encoded'
  image_format = 'image/format'
  filename = 'image/filename'
  height = 'image/height'
  width = 'image/width'
  source_id = 'image/source_id'
  key = 'image/key/sha256'
  object_bbox_ymin = 'image/object/bbox/ymin'
  object_bbox_xmin = 'image/object/bbox/xmin'
  object_bbox_ymax = 'image/object/bbox/ymax'
  object_bbox_xmax = 'image/object/bbox/xmax'
  object_class_label = 'image/object/class/label'
  object_class_text = 'image/object/class/text'
  object_keypoint_y = 'image/object/keypoint/y'
  object_keypoint_x = 'image/object/keypoint/x'
  object_keypoint_visibility = 'image/object/keypoint/visibility'
  object_keypoint_num = 'image/object/keypoint/num'
  object_is_crowd = 'image/object/is_crowd'
  object_area = 'image/object/area'
  object_difficult = 'image/object/difficult'
  object_weight = 'image/object/weight'


class TargetAssignmentFields:
  """Keys of `core.target_assigner.TargetAssignment.as_dict()`: the one
  target vocabulary of anchor-based and anchor-point detectors (SSD,
  RetinaNet, Faster R-CNN's RPN, FCOS, ATSS, SAPD).

  Attributes:
    cls_targets: float32 `[(batch,) M, d]` class target rows.
    cls_weights: float32 `[(batch,) M, d]` classification weights.
    reg_targets: float32 `[(batch,) M, code_size]` box coder encodings.
    reg_weights: float32 `[(batch,) M]` regression weights.
    matches: int32 `[(batch,) M]`: `>= 0` matched groundtruth row, -1
      negative, -2 ignored.
  """
  cls_targets = 'cls_targets'
  cls_weights = 'cls_weights'
  reg_targets = 'reg_targets'
  reg_weights = 'reg_weights'
  matches = 'matches'


class DenseTargetFields:
  """Keys of the per-level target dicts of the heatmap assigners
  (`core.target_assigner.DenseTargetAssigner`). Shapes are per level,
  `[batch, h, w, ...]`; each assigner documents units and frames.

  Attributes:
    heatmap: float32 `[B, h, w, num_classes]` Gaussian class heatmaps.
    size: float32 `[B, h, w, 2]` box (height, width) at center pixels.
    offset: float32 `[B, h, w, 2]` sub-pixel center offsets.
    center_weights: float32 `[B, h, w]` 1 at the center pixels.
    box_targets: float32 `[B, h, w, 4]` the owning box (input pixels).
    box_weights: float32 `[B, h, w]` regression sample weights.
    num_objects: float32 `[B]` valid groundtruth boxes per image.
    keypoint_heatmap: float32 `[B, h, w, K]`.
    keypoint_regression: float32 `[B, h, w, 2K]`.
    keypoint_regression_weights: float32 `[B, h, w, 2K]`.
    keypoint_offset: float32 `[B, h, w, 2]` or `[B, h, w, 2K]`.
    keypoint_offset_weights: float32 `[B, h, w]` or `[B, h, w, 2K]`.
    num_keypoints: float32 `[B]` visible keypoints used.
  """
  heatmap = 'heatmap'
  size = 'size'
  offset = 'offset'
  center_weights = 'center_weights'
  box_targets = 'box_targets'
  box_weights = 'box_weights'
  num_objects = 'num_objects'
  keypoint_heatmap = 'keypoint_heatmap'
  keypoint_regression = 'keypoint_regression'
  keypoint_regression_weights = 'keypoint_regression_weights'
  keypoint_offset = 'keypoint_offset'
  keypoint_offset_weights = 'keypoint_offset_weights'
  num_keypoints = 'num_keypoints'
