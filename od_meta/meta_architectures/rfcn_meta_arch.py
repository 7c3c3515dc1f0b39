"""R-FCN meta-architecture (Dai et al. 2016), as Huang et al. 2017 built it.

The first stage (RPN, proposals) is Faster R-CNN's. The second stage runs the
rest of the extractor (e.g. ResNet conv5) once on the whole first-stage map,
not per proposal; an `RfcnBoxPredictor` turns it into k x k position-sensitive
score maps for the classes and the box, and pools each proposal with
position-sensitive crop_and_resize and average voting (Dai et al. 2016 Sec. 2,
Eq. 1-2). The per-proposal cost is only the pooling, which is why R-FCN is
faster than Faster R-CNN at many proposals (Huang et al. 2017 Sec. 3.1.3).
Training scores all proposals and, as the R-FCN paper configures it, keeps
the 128 RoIs with the highest loss (OHEM) when a hard example miner is given.
"""

from typing import Optional

from od_meta.meta_architectures import faster_rcnn_meta_arch


class RFCNMetaArch(faster_rcnn_meta_arch.FasterRCNNMetaArch):
  """R-FCN: Faster R-CNN's first stage + position-sensitive second stage.

  Same arguments as `FasterRCNNMetaArch`, with `second_stage_box_predictor`
  an `RfcnBoxPredictor` (called as `predictor(feature_map, proposal_boxes,
  training=...)`); `initial_crop_size` and the max-pool settings are unused
  (the predictor's crop size applies).
  """

  def __init__(self, *, name: Optional[str] = None, **kwargs):
    super().__init__(name=name or 'rfcn', **kwargs)

  def _predict_second_stage(self, rpn_features, proposal_boxes, training):
    """Position-sensitive second stage on the whole feature map.

    Args:
      rpn_features: float32 `[B, h, w, C]` first-stage features.
      proposal_boxes: float32 `[B, P, 4]` normalized, padded frame.
      training: bool.

    Returns:
      dict with 'refined_box_encodings' `[B, P, 1, 4]` (class-agnostic, as
      the R-FCN paper's default) and 'class_predictions_with_background'
      `[B, P, num_classes + 1]`.
    """
    features = self.feature_extractor.extract_box_classifier_features(
        rpn_features, training=training)
    predictions = self.second_stage_box_predictor(
        features, proposal_boxes, training=training)
    return self._reshape_second_stage(predictions, proposal_boxes)
