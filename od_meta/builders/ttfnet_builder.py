"""Builds `TTFNetMetaArch` from a `TtfNet` message (protos/ttfnet.proto).

The feature extractor message is CenterNet's (`center_net_builder`).
"""

from od_meta.builders import builder_utils
from od_meta.builders import center_net_builder
from od_meta.builders import image_resizer_builder
from od_meta.core import losses
from od_meta.meta_architectures import ttfnet_meta_arch
from od_meta.protos import ttfnet_pb2
from od_meta.target_assigners import ttfnet_target_assigner


def build(config, *, is_training):
  """Returns the `TTFNetMetaArch` a `TtfNet` message describes.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: naming the field, on missing / bad fields.
  """
  builder_utils.check_message_type(config, ttfnet_pb2.TtfNet,
                                   'ttfnet_builder')
  center_net_builder.check_num_classes(config, 'ttfnet')
  extractor = center_net_builder.build_feature_extractor(config.feature_extractor,
                                      field='ttfnet.feature_extractor')
  params = ttfnet_meta_arch.TTFNetParams(
      classification_loss=center_net_builder.heatmap_loss(config.classification_loss,
                                        'ttfnet.classification_loss'),
      localization_loss=center_net_builder.localization_loss(
          config.localization_loss, losses.WeightedGIOULocalizationLoss(),
          'ttfnet.localization_loss', center_net_builder.BOX_LOSSES),
      regression_scale=config.regression_scale,
      localization_loss_weight=config.localization_loss_weight,
      regression_loss_weight=config.regression_loss_weight,
      heatmap_bias_init=config.heatmap_bias_init,
      max_box_predictions=config.max_box_predictions,
      peak_max_pool_kernel_size=config.peak_max_pool_kernel_size,
      score_threshold=config.score_threshold)
  assigner = ttfnet_target_assigner.TTFNetTargetAssigner(
      stride=extractor.out_stride, num_classes=config.num_classes,
      alpha=config.alpha, beta=config.beta,
      use_log_area_weight=config.use_log_area_weight)
  return ttfnet_meta_arch.TTFNetMetaArch(
      is_training=is_training, num_classes=config.num_classes,
      image_resizer_fn=image_resizer_builder.build(config.image_resizer),
      feature_extractor=extractor, target_assigner=assigner, params=params,
      head_channels=config.head_channels,
      use_depthwise=config.feature_extractor.use_depthwise)
