"""Builds `FCOSMetaArch` from an `Fcos` message (protos/fcos.proto).

Maps the fields to constructor arguments: the FPN extractor (shared with
SSD), one point anchor per location of its levels, the ltrb coder in
strides, the target assigner (FCOS size ranges by default; ATSS; SAPD), the
`FCOSHead`, losses, post-processing and SAPD's level selection network.
"""

import math

from od_meta.anchor_generators import point_anchor_generator
from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.builders import builder_utils
from od_meta.builders import hyperparams_builder
from od_meta.builders import image_resizer_builder
from od_meta.builders import losses_builder
from od_meta.builders import post_processing_builder
from od_meta.builders import ssd_builder
from od_meta.builders import target_assigner_builder
from od_meta.core import losses
from od_meta.heads import fcos_head
from od_meta.heads import sapd_level_selection
from od_meta.meta_architectures import fcos_meta_arch
from od_meta.protos import fcos_pb2
from od_meta.protos import post_processing_pb2
from od_meta.protos import target_assigner_pb2
from od_meta.utils import config_util

_BOX_LOSSES = (losses.WeightedIOULocalizationLoss,
               losses.WeightedGIOULocalizationLoss)


def _levels(config):
  extractor = config.feature_extractor
  if not extractor.HasField('fpn'):
    raise ValueError(
        'fcos.feature_extractor.fpn is not set: FCOS needs an FPN extractor '
        '(type ssd_*_fpn_keras with fpn { min_level max_level })')
  fpn = extractor.fpn
  if fpn.min_level > fpn.max_level:
    raise ValueError(
        f'fcos.feature_extractor.fpn.min_level ({fpn.min_level}) must be <= '
        f'max_level ({fpn.max_level})')
  return fpn.min_level, fpn.max_level


def _head(config, num_classes, num_levels):
  head = config.head
  if not 0.0 < head.class_prior_probability < 1.0:
    raise ValueError('fcos.head.class_prior_probability must be in (0, 1), '
                     f'got {head.class_prior_probability}')
  kwargs = {}
  if head.HasField('conv_hyperparams'):
    kwargs['conv_hyperparams'] = hyperparams_builder.build(
        head.conv_hyperparams)
  try:
    return fcos_head.FCOSHead(
        num_class_slots=num_classes, num_levels=num_levels,
        depth=head.depth,
        num_layers_before_predictor=head.num_layers_before_predictor,
        kernel_size=head.kernel_size, use_group_norm=head.use_group_norm,
        group_norm_groups=head.group_norm_groups,
        class_prediction_bias_init=-math.log(
            (1.0 - head.class_prior_probability) /
            head.class_prior_probability),
        predict_centerness=head.predict_centerness,
        centerness_on_regression_branch=head.centerness_on_regression_branch,
        use_scales=head.use_scales, use_depthwise=head.use_depthwise,
        **kwargs)
  except ValueError as e:
    raise ValueError(f'fcos.head: {e}') from e


def _losses(config):
  if config.HasField('classification_loss'):
    cls_loss = losses_builder.build_classification_loss(
        config.classification_loss)
  else:
    cls_loss = losses.SigmoidFocalClassificationLoss(gamma=2.0, alpha=0.25)
  if not isinstance(cls_loss, (losses.SigmoidFocalClassificationLoss,
                               losses.WeightedSigmoidClassificationLoss)):
    raise ValueError('fcos.classification_loss must be weighted_sigmoid_focal '
                     'or weighted_sigmoid (sigmoid logits, no background)')
  if config.HasField('localization_loss'):
    box_loss = losses_builder.build_localization_loss(config.localization_loss)
  else:
    box_loss = losses.WeightedIOULocalizationLoss()
  if not isinstance(box_loss, _BOX_LOSSES):
    raise ValueError('fcos.localization_loss must be weighted_iou or '
                     'weighted_giou (a loss on decoded boxes)')
  return cls_loss, box_loss


def _post_processing(config):
  if not config.HasField('post_processing'):
    raise ValueError('fcos.post_processing is not set')
  if (config.post_processing.score_converter !=
      post_processing_pb2.PostProcessing.SIGMOID):
    raise ValueError('fcos.post_processing.score_converter must be SIGMOID '
                     '(the head has sigmoid class logits)')
  return post_processing_builder.build(config.post_processing)


def _selection(config, num_levels):
  if not config.HasField('soft_level_selection'):
    return None
  sel = config.soft_level_selection
  if not 0 <= sel.num_selected_levels <= num_levels:
    raise ValueError(
        'fcos.soft_level_selection.num_selected_levels must be in '
        f'[0, {num_levels}], got {sel.num_selected_levels}')
  if sel.crop_size < 1 or sel.depth < 1 or sel.num_convs < 0:
    raise ValueError('fcos.soft_level_selection: crop_size and depth must be '
                     '>= 1 and num_convs >= 0')
  network = sapd_level_selection.SoftLevelSelectionNetwork(
      num_levels=num_levels, crop_size=sel.crop_size, depth=sel.depth,
      num_convs=sel.num_convs)
  return fcos_meta_arch.SoftLevelSelectionParams(
      network=network, num_selected_levels=sel.num_selected_levels,
      loss_weight=sel.loss_weight)


def build(config, *, is_training):
  """Returns the `FCOSMetaArch` an `Fcos` message describes.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: naming the field, on missing / bad fields.
  """
  builder_utils.check_message_type(config, fcos_pb2.Fcos, 'fcos_builder')
  if config.num_classes <= 0:
    raise ValueError(f'fcos.num_classes must be > 0, got {config.num_classes}')
  if not config.HasField('image_resizer'):
    raise ValueError('fcos.image_resizer is not set')
  if not config.HasField('feature_extractor'):
    raise ValueError('fcos.feature_extractor is not set')
  min_level, max_level = _levels(config)
  num_levels = max_level - min_level + 1
  extractor = ssd_builder.build_feature_extractor(
      config.feature_extractor, field='fcos.feature_extractor')
  strides = getattr(extractor, 'feature_map_strides', None)
  if strides != [2 ** l for l in range(min_level, max_level + 1)]:
    raise ValueError(
        f'fcos.feature_extractor ({config.feature_extractor.type}) gives '
        f'strides {strides}, not the FPN levels {min_level}..{max_level}')
  box_coder = ltrb_distance_box_coder.LtrbDistanceBoxCoder(
      normalize_by_anchor_size=True)
  if config.HasField('target_assigner'):
    assigner_config = config.target_assigner
  else:
    assigner_config = target_assigner_pb2.TargetAssigner()
    assigner_config.fcos.SetInParent()
  assigner = target_assigner_builder.build(
      assigner_config, box_coder=box_coder, num_levels=num_levels,
      field='fcos.target_assigner',
      level_anchor_counts=target_assigner_builder.level_anchor_counts(
          config_util.get_spatial_image_size(config.image_resizer), strides),
      strides=strides)
  if config.pre_nms_top_k_per_level < 1:
    raise ValueError('fcos.pre_nms_top_k_per_level must be >= 1, got '
                     f'{config.pre_nms_top_k_per_level}')
  selection = _selection(config, num_levels)
  if selection is not None and (
      assigner_config.WhichOneof('target_assigner_oneof') != 'sapd'):
    raise ValueError(
        'fcos.soft_level_selection is SAPD\'s: it needs '
        'fcos.target_assigner.sapd')
  if selection is not None and assigner_config.sapd.num_levels_per_box != 0:
    raise ValueError(
        'fcos.soft_level_selection weighs every level of a box: set '
        'fcos.target_assigner.sapd.num_levels_per_box to 0 (all levels)')
  cls_loss, box_loss = _losses(config)
  post = _post_processing(config)
  params = fcos_meta_arch.FCOSParams(
      classification_loss=cls_loss, localization_loss=box_loss,
      classification_loss_weight=config.classification_loss_weight,
      localization_loss_weight=config.localization_loss_weight,
      centerness_loss_weight=config.centerness_loss_weight,
      use_centerness=config.head.predict_centerness,
      pre_nms_top_k_per_level=config.pre_nms_top_k_per_level,
      soft_level_selection=selection)
  return fcos_meta_arch.FCOSMetaArch(
      is_training=is_training, num_classes=config.num_classes,
      image_resizer_fn=image_resizer_builder.build(config.image_resizer),
      feature_extractor=extractor,
      box_predictor=_head(config, config.num_classes, num_levels),
      anchor_generator=point_anchor_generator.PointAnchorGenerator(
          min_level, max_level),
      box_coder=box_coder, target_assigner=assigner,
      non_max_suppression_fn=post.non_max_suppression_fn,
      score_conversion_fn=post.score_converter_fn, params=params)
