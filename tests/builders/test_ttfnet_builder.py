"""Tests of od_meta.builders.ttfnet_builder (TTFNet from its config).

A full text-format `DetectionModel { ttfnet { ... } }` must parse, build
through model_builder, map its fields to TTFNetParams / the target assigner
/ the feature extractor (shared with CenterNet) and run preprocess /
predict / loss / postprocess on a batch of 2 64x64 images (ResNet-18 x0.125,
up-convolution (16, 16, 16) with TTFNet shortcuts, head_channels 8).
"""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.builders import ttfnet_builder
from od_meta.core import losses
from od_meta.core import standard_fields as fields
from od_meta.meta_architectures import ttfnet_meta_arch as tt
from od_meta.protos import model_pb2
from od_meta.utils import config_util

_DET = fields.DetectionResultFields

_FULL = """
ttfnet {
  num_classes: 3
  image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
  feature_extractor {
    type: "resnet_v1_18"
    depth_multiplier: 0.125
    up_convolution {
      num_filters: [16, 16, 16]
      shortcut_num_convs: [1, 2, 3]
    }
  }
  alpha: 0.6
  beta: 0.5
  regression_scale: 8.0
  localization_loss_weight: 1.5
  regression_loss_weight: 4.0
  classification_loss {
    penalty_reduced_logistic_focal_loss { alpha: 2.5 beta: 3.5 }
  }
  localization_loss { weighted_iou { } }
  heatmap_bias_init: -4.0
  max_box_predictions: 12
  peak_max_pool_kernel_size: 5
  score_threshold: 0.02
  use_log_area_weight: false
  head_channels: 8
}
"""

_MINIMAL = """
ttfnet {
  num_classes: 2
  image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
  feature_extractor {
    type: "resnet_v1_18"
    depth_multiplier: 0.125
    up_convolution { num_filters: [16, 16, 16] }
  }
}
"""


def _parse(text):
  config = model_pb2.DetectionModel()
  config_util.parse_text_proto(text, config)
  return config


def _build(text, is_training=True):
  return model_builder.build(_parse(text), is_training=is_training)


def test_full_config_maps_every_field():
  model = _build(_FULL)
  assert isinstance(model, tt.TTFNetMetaArch)
  assert model.num_classes == 3
  assert model.stride == 4
  params = model._params
  assert isinstance(params.classification_loss,
                    losses.PenaltyReducedLogisticFocalLoss)
  assert params.classification_loss._alpha == pytest.approx(2.5)
  assert params.classification_loss._beta == pytest.approx(3.5)
  assert isinstance(params.localization_loss,
                    losses.WeightedIOULocalizationLoss)
  assert params.regression_scale == pytest.approx(8.0)
  assert params.localization_loss_weight == pytest.approx(1.5)
  assert params.regression_loss_weight == pytest.approx(4.0)
  assert params.heatmap_bias_init == pytest.approx(-4.0)
  assert params.max_box_predictions == 12
  assert params.peak_max_pool_kernel_size == 5
  assert params.score_threshold == pytest.approx(0.02)
  assigner = model._target_assigner
  assert assigner.stride == 4 and assigner.num_classes == 3
  assert assigner._alpha == pytest.approx(0.6)
  assert assigner._beta == pytest.approx(0.5)
  assert assigner._use_log_area_weight is False
  neck = model.feature_extractor.neck
  assert neck.num_filters == (16, 16, 16)
  assert neck.shortcut_num_convs == (1, 2, 3)
  heads = model.prediction_heads
  assert heads[tt.HEATMAP][0].num_outputs == 3
  assert heads[tt.BOX_DISTANCES][0].num_outputs == 4
  assert heads[tt.HEATMAP][0]._head_channels == 8
  # regression_scale 8: distances = 8 * ReLU(raw).
  np.testing.assert_allclose(
      model.distances(tf.constant([-1.0, 0.5, 2.0])).numpy(), [0, 4, 16])


@pytest.mark.parametrize('is_training', [True, False])
def test_built_model_runs(is_training):
  model = _build(_FULL, is_training=is_training)
  rng = np.random.default_rng(1)
  images = tf.constant(rng.uniform(0, 255, [2, 48, 80, 3]), tf.float32)
  preprocessed, shapes = model.preprocess(images)
  assert preprocessed.shape == (2, 64, 64, 3)
  pred = model.predict(preprocessed, shapes, training=is_training)
  assert pred[tt.HEATMAP][0].shape == (2, 16, 16, 3)
  model.provide_groundtruth(
      [tf.constant([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.8]]),
       tf.zeros([0, 4])],
      [tf.constant([2, 0]), tf.zeros([0], tf.int32)])
  out = model.loss(pred, shapes)
  assert set(out) == {'Loss/heatmap', 'Loss/box/giou'}
  for name, value in out.items():
    assert np.isfinite(value.numpy()) and value.numpy() > 0, name
  det = model.postprocess(pred, shapes)
  assert det[_DET.detection_boxes].shape == (2, 12, 4)
  boxes = det[_DET.detection_boxes].numpy()
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0


def test_defaults_of_a_minimal_config():
  # The paper's settings (Sec. 3-4): alpha = beta = 0.54, s = 16, w_loc 1,
  # w_reg 5, penalty-reduced focal loss (2, 4), GIoU, log-area weights.
  model = _build(_MINIMAL)
  params = model._params
  assert isinstance(params.classification_loss,
                    losses.PenaltyReducedLogisticFocalLoss)
  assert (params.classification_loss._alpha,
          params.classification_loss._beta) == (2.0, 4.0)
  assert isinstance(params.localization_loss,
                    losses.WeightedGIOULocalizationLoss)
  assert params.regression_scale == pytest.approx(16.0)
  assert params.localization_loss_weight == pytest.approx(1.0)
  assert params.regression_loss_weight == pytest.approx(5.0)
  assert params.heatmap_bias_init == pytest.approx(-2.19)
  assert params.max_box_predictions == 100
  assert params.peak_max_pool_kernel_size == 3
  assert params.score_threshold == pytest.approx(0.01)
  assigner = model._target_assigner
  assert (assigner._alpha, assigner._beta) == pytest.approx((0.54, 0.54))
  assert assigner._use_log_area_weight is True
  assert model.prediction_heads[tt.HEATMAP][0]._head_channels == 64
  assert model.feature_extractor.neck.shortcut_num_convs == ()


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize('old,new,pattern', [
    ('type: "resnet_v1_18"', '', r'ttfnet\.feature_extractor\.type is empty'),
    ('type: "resnet_v1_18"', 'type: "resnet_v1_7"',
     r"ttfnet\.feature_extractor\.type: unknown extractor 'resnet_v1_7'"),
    ('num_classes: 2', 'num_classes: 0', r'ttfnet\.num_classes'),
])
def test_errors_name_the_field(old, new, pattern):
  with pytest.raises(ValueError, match=pattern):
    _build(_MINIMAL.replace(old, new))


def test_hourglass_with_up_convolution_is_rejected():
  text = _MINIMAL.replace('type: "resnet_v1_18"', 'type: "hourglass_small"')
  with pytest.raises(ValueError,
                     match=r'ttfnet\.feature_extractor\.up_convolution'):
    _build(text)


def test_heatmap_loss_must_be_a_heatmap_loss():
  config = _parse(_MINIMAL)
  config.ttfnet.classification_loss.weighted_sigmoid.SetInParent()
  with pytest.raises(ValueError, match=r'ttfnet\.classification_loss'):
    model_builder.build(config, is_training=True)


def test_wrong_message_type():
  with pytest.raises(TypeError, match='TtfNet'):
    ttfnet_builder.build(model_pb2.DetectionModel(), is_training=True)


def test_localization_loss_must_be_a_box_loss():
  # The loss compares decoded [B, A, 4] boxes (GIoU, Eq. 5-6); a code loss
  # is rejected naming the field.
  config = _parse(_MINIMAL)
  config.ttfnet.localization_loss.weighted_smooth_l1.SetInParent()
  with pytest.raises(ValueError, match=r'ttfnet\.localization_loss'):
    model_builder.build(config, is_training=True)


def test_use_depthwise_gives_separable_head_convs():
  plain = _build(_MINIMAL)
  depthwise = _build(_MINIMAL.replace('depth_multiplier: 0.125',
                                      'depth_multiplier: 0.125\n'
                                      '    use_depthwise: true'))
  for heads in plain.prediction_heads.values():
    assert isinstance(heads[0]._hidden_conv, tf.keras.layers.Conv2D)
    assert not isinstance(heads[0]._hidden_conv,
                          tf.keras.layers.SeparableConv2D)
  for heads in depthwise.prediction_heads.values():
    assert isinstance(heads[0]._hidden_conv,
                      tf.keras.layers.SeparableConv2D)
