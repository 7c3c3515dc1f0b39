"""TTFNet, "Training-Time-Friendly Network for Real-Time Object Detection"
(Liu et al. 2019, arXiv 1909.00700; seed 000).

The same heatmap machinery as CenterNet, with two changes that make training
converge in far fewer steps (Sec. 3):

* Localization: elliptical Gaussian targets, sigma_x = alpha w / 6,
  sigma_y = alpha h / 6 (alpha 0.54), trained with the penalty-reduced focal
  loss (alpha_f 2, beta_f 4), normalized by the number of objects.
* Regression: every pixel of a box's Gaussian sub-area (beta 0.54) is a
  training sample, not only the center. At pixel (i, j) the head predicts
  the distances to the four sides (top, left, bottom, right) in input
  pixels as `s * ReLU(raw)` with s = 16 (Eq. 3-4); the predicted box is
  compared with the assigned groundtruth box by a GIoU loss weighted by
  W_ij = log(area) G(i, j) / sum of G over the sub-area (Eq. 5-6); a pixel in
  several sub-areas belongs to the smallest box. L = w_loc L_loc + w_reg
  L_reg with w_loc 1, w_reg 5.

Decoding: 3x3 max-pool peaks of the heatmap, top 100, the distances at the
peak give the box; no NMS.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.core import box_coder as box_coder_lib
from od_meta.core import box_list
from od_meta.core import dense_post_processing as dpp
from od_meta.core import standard_fields
from od_meta.core import target_assigner as target_assigner_lib
from od_meta.meta_architectures import dense_meta_arch

DTF = standard_fields.DenseTargetFields
# Distances in input pixels (s * ReLU(raw) already applied).
_LTRB_CODER = ltrb_distance_box_coder.LtrbDistanceBoxCoder()
HEATMAP = 'heatmap'
BOX_DISTANCES = 'box_distances'


@dataclasses.dataclass(frozen=True)
class TTFNetParams:
  """Loss and decoding hyperparameters (protos/ttfnet.proto).

  Attributes:
    classification_loss: per-pixel heatmap loss (penalty-reduced focal).
    localization_loss: per-location box loss on `[B, A, 4]` decoded boxes
      (GIoU), taking `weights` `[B, A]`.
    regression_scale: s, distances are `s * ReLU(raw)` input pixels (16).
    localization_loss_weight: w_loc (1).
    regression_loss_weight: w_reg (5).
    heatmap_bias_init: initial bias of the heatmap logits (-2.19).
    max_box_predictions: detections kept per image (100).
    peak_max_pool_kernel_size: side of the peak max-pool (3).
    score_threshold: peaks scoring at or below are dropped (0.01).
  """
  classification_loss: Callable
  localization_loss: Callable
  regression_scale: float = 16.0
  localization_loss_weight: float = 1.0
  regression_loss_weight: float = 5.0
  heatmap_bias_init: float = -2.19
  max_box_predictions: int = 100
  peak_max_pool_kernel_size: int = 3
  score_threshold: float = 0.01


class TTFNetMetaArch(dense_meta_arch.DenseHeatmapMetaArch):
  """TTFNet meta-architecture.

  Args:
    is_training, num_classes, image_resizer_fn, feature_extractor,
    head_channels, use_depthwise: see `DenseHeatmapMetaArch`.
    target_assigner: a `TTFNetTargetAssigner` with the extractor's stride.
    params: `TTFNetParams`.
    name: Keras layer name.

  Raises:
    ValueError: if the assigner's strides differ from the extractor's.
  """

  def __init__(self, *, is_training, num_classes, image_resizer_fn,
               feature_extractor, target_assigner, params: TTFNetParams,
               head_channels: int = 64, use_depthwise: bool = False,
               name: Optional[str] = None):
    self._params = params
    super().__init__(is_training=is_training, num_classes=num_classes,
                     image_resizer_fn=image_resizer_fn,
                     feature_extractor=feature_extractor,
                     target_assigner=target_assigner,
                     head_channels=head_channels,
                     use_depthwise=use_depthwise, name=name or 'ttfnet')

  def _head_specs(self):
    return {HEATMAP: (self.num_classes, self._params.heatmap_bias_init),
            BOX_DISTANCES: (4, 0.0)}

  def distances(self, raw):
    """(top, left, bottom, right) in input pixels: s * ReLU(raw) (Eq. 4)."""
    return self._params.regression_scale * tf.nn.relu(raw)

  def _predicted_boxes(self, raw_distances):
    """`[B, h, w, 4]` input-pixel yxyx boxes from the distance head,
    decoded by `LtrbDistanceBoxCoder` against the locations' centers."""
    distances = self.distances(raw_distances)
    shape = tf.shape(raw_distances)
    grid = target_assigner_lib.coordinates_grid(shape[1], shape[2],
                                                self.stride)
    points = box_list.BoxList(tf.reshape(tf.tile(grid, [1, 1, 2]), [-1, 4]))
    boxes = box_coder_lib.batch_decode(
        tf.reshape(distances, tf.stack([shape[0], -1, 4])), _LTRB_CODER,
        points)
    return tf.reshape(boxes, shape)

  def _stack_loss(self, predictions, targets, num_objects):
    params = self._params
    heatmap_loss = tf.reduce_sum(params.classification_loss(
        predictions[HEATMAP], targets[DTF.heatmap])) / num_objects
    boxes = self._predicted_boxes(predictions[BOX_DISTANCES])
    batch = tf.shape(boxes)[0]
    weights = tf.reshape(targets[DTF.box_weights], [batch, -1])
    per_location = params.localization_loss(
        tf.reshape(boxes, [batch, -1, 4]),
        tf.reshape(targets[DTF.box_targets], [batch, -1, 4]), weights=weights)
    # TTFNet's reference code divides by the summed weights (+ 1e-4).
    regression_loss = (tf.reduce_sum(per_location) /
                       (tf.reduce_sum(weights) + 1e-4))
    return {
        'Loss/heatmap': params.localization_loss_weight * heatmap_loss,
        'Loss/box/giou': params.regression_loss_weight * regression_loss,
    }

  def postprocess(self, prediction_dict, true_image_shapes):
    """Decodes the last stack into detections, in the graph.

    Returns:
      dict with detection_boxes float32 `[B, max_det, 4]` (normalized to the
      true image window), detection_scores `[B, max_det]`,
      detection_classes float32 `[B, max_det]` (0-based), num_detections
      float32 `[B]`.
    """
    params = self._params
    preprocessed = prediction_dict['preprocessed_inputs']
    heatmap = tf.sigmoid(prediction_dict[HEATMAP][-1])
    peaks = dpp.extract_peaks(
        heatmap, max_pool_kernel_size=params.peak_max_pool_kernel_size,
        max_detections=params.max_box_predictions,
        score_threshold=params.score_threshold)
    distances = self.distances(dpp.gather_at_locations(
        prediction_dict[BOX_DISTANCES][-1], peaks.y_indices,
        peaks.x_indices))
    height, width = self._input_size(preprocessed)
    boxes = dpp.decode_ltrb_boxes(peaks.y_indices, peaks.x_indices,
                                  distances, self.stride, height, width)
    return self._detections_in_window(boxes, peaks.scores, peaks.classes,
                                      peaks.valid, preprocessed,
                                      true_image_shapes)
