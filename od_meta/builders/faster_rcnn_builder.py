"""Builds `FasterRCNNMetaArch` / `RFCNMetaArch` from a `FasterRcnn` message
(protos/faster_rcnn.proto).

The second-stage predictor's oneof decides the meta-architecture:
`mask_rcnn_box_predictor` gives Faster R-CNN, `rfcn_box_predictor` R-FCN (as
in the TF OD API). This module only maps fields to constructor arguments;
the defaults of unset matchers follow Ren et al. 2015 (RPN 0.7 / 0.3,
second stage 0.5).
"""

from od_meta.builders import anchor_generator_builder
from od_meta.builders import builder_utils
from od_meta.builders import hyperparams_builder
from od_meta.builders import image_resizer_builder
from od_meta.builders import losses_builder
from od_meta.builders import matcher_builder
from od_meta.builders import post_processing_builder
from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.core import balanced_positive_negative_sampler as sampler_lib
from od_meta.core import losses
from od_meta.core import region_similarity_calculator
from od_meta.core import target_assigner
from od_meta.feature_extractors import faster_rcnn_feature_extractors
from od_meta.heads import two_stage_box_predictors
from od_meta.matchers import argmax_matcher
from od_meta.meta_architectures import faster_rcnn_meta_arch
from od_meta.meta_architectures import rfcn_meta_arch
from od_meta.protos import faster_rcnn_pb2


_BOX_CODER_SCALES = (10.0, 10.0, 5.0, 5.0)


def _required(config, field):
  if not config.HasField(field):
    raise ValueError(f'faster_rcnn.{field} is not set')
  return getattr(config, field)


def _hyperparams(config, field):
  if config.HasField(field):
    return hyperparams_builder.build(getattr(config, field))
  return None


def build_feature_extractor(config, *, rfcn=False):
  """Returns the extractor named by `feature_extractor.type`.

  With `rfcn`, ResNet extractors keep conv5 (MobileNetV2 its blocks 13-16)
  at stride 1, dilated, so the position-sensitive score maps stay at the
  first stage's stride (Dai et al. 2016 Sec. 2.3).

  Raises:
    ValueError: on an unknown type (the error lists the known ones).
  """
  extractors = faster_rcnn_feature_extractors.FEATURE_EXTRACTORS
  if config.type not in extractors:
    raise ValueError(
        f'faster_rcnn.feature_extractor.type {config.type!r} is unknown; use '
        f'one of {", ".join(sorted(extractors))}')
  kwargs = dict(first_stage_features_stride=config.first_stage_features_stride,
                batch_norm_trainable=config.batch_norm_trainable,
                weights=config.weights or None)
  if config.override_base_feature_extractor_hyperparams:
    kwargs['conv_hyperparams'] = _hyperparams(config, 'conv_hyperparams')
  if rfcn and 'resnet' in config.type:
    kwargs['conv5_stride'] = 1
  if rfcn and 'mobilenet' in config.type:
    kwargs['second_stage_stride'] = 1
  if 'mobilenet' in config.type:
    kwargs.update(depth_multiplier=config.depth_multiplier,
                  min_depth=config.min_depth)
  return extractors[config.type](**kwargs)


def _matcher(config, field, matched, unmatched, force_match):
  if config.HasField(field):
    return matcher_builder.build(getattr(config, field))
  return argmax_matcher.ArgMaxMatcher(
      matched_threshold=matched, unmatched_threshold=unmatched,
      force_match_for_each_row=force_match)


def _second_stage_predictor(config, num_classes):
  predictor = _required(config, 'second_stage_box_predictor')
  kind = builder_utils.which_oneof(predictor, 'box_predictor_oneof')
  if kind == 'mask_rcnn_box_predictor':
    p = predictor.mask_rcnn_box_predictor
    return kind, two_stage_box_predictors.MaskRCNNBoxPredictor(
        num_classes=num_classes,
        fc_hyperparams=_hyperparams(p, 'fc_hyperparams'),
        use_dropout=p.use_dropout,
        dropout_keep_probability=p.dropout_keep_probability,
        box_code_size=p.box_code_size,
        share_box_across_classes=p.share_box_across_classes)
  if kind == 'rfcn_box_predictor':
    p = predictor.rfcn_box_predictor
    return kind, two_stage_box_predictors.RfcnBoxPredictor(
        num_classes=num_classes,
        conv_hyperparams=_hyperparams(p, 'conv_hyperparams'),
        num_spatial_bins=(p.num_spatial_bins_height,
                          p.num_spatial_bins_width),
        depth=p.depth, crop_size=(p.crop_height, p.crop_width),
        box_code_size=p.box_code_size)
  raise ValueError(
      f'faster_rcnn.second_stage_box_predictor.{kind} is not a two-stage '
      'predictor; use mask_rcnn_box_predictor (Faster R-CNN) or '
      'rfcn_box_predictor (R-FCN)')


def build(config, *, is_training):
  """Returns the Faster R-CNN or R-FCN model a `FasterRcnn` message gives.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: naming the missing or invalid field.
  """
  builder_utils.check_message_type(config, faster_rcnn_pb2.FasterRcnn,
                                   'faster_rcnn_builder')
  if config.num_classes <= 0:
    raise ValueError(f'faster_rcnn.num_classes must be > 0, got '
                     f'{config.num_classes}')
  anchor_generator = anchor_generator_builder.build(
      _required(config, 'first_stage_anchor_generator'))
  if anchor_generator.__class__.__name__ != 'GridAnchorGenerator':
    raise ValueError('faster_rcnn.first_stage_anchor_generator must be a '
                     'grid_anchor_generator')
  rpn_hyperparams = _hyperparams(
      config, 'first_stage_box_predictor_conv_hyperparams')
  rpn_predictor = two_stage_box_predictors.RPNBoxPredictor(
      num_anchors_per_location=anchor_generator.num_anchors_per_location()[0],
      depth=config.first_stage_box_predictor_depth,
      kernel_size=config.first_stage_box_predictor_kernel_size,
      atrous_rate=config.first_stage_atrous_rate,
      conv_hyperparams=rpn_hyperparams)
  similarity = region_similarity_calculator.IouSimilarity()
  # Both stages encode with scale factors [10, 10, 5, 5] (TF OD API
  # create_target_assigner('FasterRCNN', ...); Huang et al. 2017 Sec. 3.2.2).
  first_assigner = target_assigner.TargetAssigner(
      similarity, _matcher(config, 'first_stage_matcher', 0.7, 0.3, True),
      faster_rcnn_box_coder.FasterRcnnBoxCoder(_BOX_CODER_SCALES))
  second_assigner = target_assigner.TargetAssigner(
      similarity, _matcher(config, 'second_stage_matcher', 0.5, 0.5, False),
      faster_rcnn_box_coder.FasterRcnnBoxCoder(_BOX_CODER_SCALES))
  kind, second_predictor = _second_stage_predictor(config, config.num_classes)
  extractor = build_feature_extractor(
      _required(config, 'feature_extractor'),
      rfcn=kind == 'rfcn_box_predictor')
  post = post_processing_builder.build(
      _required(config, 'second_stage_post_processing'))
  if config.HasField('second_stage_classification_loss'):
    cls_loss = losses_builder.build_classification_loss(
        config.second_stage_classification_loss)
  else:
    cls_loss = losses.WeightedSoftmaxClassificationLoss()
  miner = None
  if config.HasField('hard_example_miner'):
    miner = losses_builder.build_hard_example_miner(
        config.hard_example_miner,
        config.second_stage_classification_loss_weight,
        config.second_stage_localization_loss_weight)
  kwargs = dict(
      is_training=is_training,
      num_classes=config.num_classes,
      image_resizer_fn=image_resizer_builder.build(
          _required(config, 'image_resizer')),
      feature_extractor=extractor,
      number_of_stages=config.number_of_stages,
      first_stage_anchor_generator=anchor_generator,
      first_stage_box_predictor=rpn_predictor,
      first_stage_target_assigner=first_assigner,
      first_stage_sampler=sampler_lib.BalancedPositiveNegativeSampler(
          positive_fraction=config.first_stage_positive_balance_fraction),
      first_stage_minibatch_size=config.first_stage_minibatch_size,
      first_stage_nms_score_threshold=config.first_stage_nms_score_threshold,
      first_stage_nms_iou_threshold=config.first_stage_nms_iou_threshold,
      first_stage_max_proposals=config.first_stage_max_proposals,
      inference_max_proposals=config.inference_max_proposals,
      first_stage_localization_loss_weight=(
          config.first_stage_localization_loss_weight),
      first_stage_objectness_loss_weight=(
          config.first_stage_objectness_loss_weight),
      first_stage_localization_loss=(
          losses.WeightedSmoothL1LocalizationLoss()),
      first_stage_objectness_loss=losses.WeightedSoftmaxClassificationLoss(),
      initial_crop_size=config.initial_crop_size,
      maxpool_kernel_size=config.maxpool_kernel_size,
      maxpool_stride=config.maxpool_stride,
      second_stage_box_predictor=second_predictor,
      second_stage_target_assigner=second_assigner,
      second_stage_sampler=sampler_lib.BalancedPositiveNegativeSampler(
          positive_fraction=config.second_stage_balance_fraction),
      second_stage_batch_size=config.second_stage_batch_size,
      second_stage_non_max_suppression_fn=post.non_max_suppression_fn,
      second_stage_score_conversion_fn=post.score_converter_fn,
      second_stage_localization_loss_weight=(
          config.second_stage_localization_loss_weight),
      second_stage_classification_loss_weight=(
          config.second_stage_classification_loss_weight),
      second_stage_localization_loss=(
          losses.WeightedSmoothL1LocalizationLoss()),
      second_stage_classification_loss=cls_loss,
      hard_example_miner=miner,
      clip_anchors_to_image=config.clip_anchors_to_image)
  if kind == 'rfcn_box_predictor':
    return rfcn_meta_arch.RFCNMetaArch(**kwargs)
  return faster_rcnn_meta_arch.FasterRCNNMetaArch(**kwargs)
