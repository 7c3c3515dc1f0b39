"""Builds `SSDMetaArch` from an `Ssd` message (protos/ssd.proto).

Each sub-message goes to its own builder; this module maps the `Ssd` fields
(and its `SsdFeatureExtractor`) to constructor arguments.
"""

from od_meta.builders import anchor_generator_builder
from od_meta.builders import box_coder_builder
from od_meta.builders import box_predictor_builder
from od_meta.builders import hyperparams_builder
from od_meta.builders import image_resizer_builder
from od_meta.builders import losses_builder
from od_meta.builders import matcher_builder
from od_meta.builders import post_processing_builder
from od_meta.builders import region_similarity_calculator_builder
from od_meta.builders import target_assigner_builder
from od_meta.core import target_assigner
from od_meta.feature_extractors import ssd_mobilenet_v2
from od_meta.feature_extractors import ssd_mobilenet_v2_fpn
from od_meta.feature_extractors import ssd_resnet_fpn
from od_meta.feature_extractors import ssd_vgg16
from od_meta.meta_architectures import ssd_meta_arch
from od_meta.protos import ssd_pb2
from od_meta.utils import config_util


def _common_extractor_kwargs(config):
  kwargs = dict(depth_multiplier=config.depth_multiplier,
                min_depth=config.min_depth,
                pad_to_multiple=config.pad_to_multiple,
                use_depthwise=config.use_depthwise,
                weights=config.weights or None)
  if config.HasField('conv_hyperparams'):
    kwargs['conv_hyperparams'] = hyperparams_builder.build(
        config.conv_hyperparams)
  return kwargs


def _fpn_kwargs(config):
  fpn = config.fpn
  return dict(min_level=fpn.min_level, max_level=fpn.max_level,
              additional_layer_depth=fpn.additional_layer_depth)


def _mobilenet_v2(config):
  kwargs = _common_extractor_kwargs(config)
  if config.from_layers:
    kwargs['from_layers'] = list(config.from_layers)
  return ssd_mobilenet_v2.SSDMobileNetV2FeatureExtractor(
      first_feature_layer=config.first_feature_layer or None,
      num_layers=config.num_layers, **kwargs)


def _mobilenet_v2_fpn(config):
  kwargs = _common_extractor_kwargs(config)
  if not config.HasField('use_depthwise'):
    kwargs['use_depthwise'] = True  # FPN-lite unless the config says not.
  return ssd_mobilenet_v2_fpn.SSDMobileNetV2FpnFeatureExtractor(
      **kwargs, **_fpn_kwargs(config))


def _resnet_fpn(depth):
  def build(config):
    return ssd_resnet_fpn.SSDResNetFpnFeatureExtractor(
        resnet_depth=depth, **_common_extractor_kwargs(config),
        **_fpn_kwargs(config))
  return build


def _vgg16(config):
  return ssd_vgg16.SSDVgg16FeatureExtractor(
      extra_layer_style=config.extra_layer_style,
      num_extra_layers=max(config.num_layers - 2, 0),
      **_common_extractor_kwargs(config))


FEATURE_EXTRACTORS = {
    'ssd_mobilenet_v2_keras': _mobilenet_v2,
    'ssd_mobilenet_v2_fpn_keras': _mobilenet_v2_fpn,
    'ssd_resnet50_v1_fpn_keras': _resnet_fpn(50),
    'ssd_resnet101_v1_fpn_keras': _resnet_fpn(101),
    'ssd_resnet152_v1_fpn_keras': _resnet_fpn(152),
    'ssd_vgg16_keras': _vgg16,
}


def build_feature_extractor(config, field='ssd.feature_extractor'):
  """Returns the SSD feature extractor named by `config.type`.

  Args:
    config: an `SsdFeatureExtractor` message.
    field: its path in the pipeline config, for errors.

  Raises:
    ValueError: on an unknown type (the error lists the known ones), or an
      extractor constructor's error, prefixed with `field`.
  """
  if config.type not in FEATURE_EXTRACTORS:
    raise ValueError(
        f'{field}.type {config.type!r} is unknown; use one of '
        f'{", ".join(sorted(FEATURE_EXTRACTORS))}')
  try:
    return FEATURE_EXTRACTORS[config.type](config)
  except ValueError as e:
    raise ValueError(f'{field} ({config.type}): {e}') from e


def _required(config, field):
  if not config.HasField(field):
    raise ValueError(f'ssd.{field} is not set')
  return getattr(config, field)


def _target_assigner(ssd_config, box_coder, anchor_generator,
                     feature_extractor):
  """The IoU rule (`matcher` + `similarity_calculator`) or the rule of
  `target_assigner` (e.g. ATSS); the two are exclusive."""
  if ssd_config.HasField('target_assigner'):
    for field in ('matcher', 'similarity_calculator'):
      if ssd_config.HasField(field):
        raise ValueError(
            f'ssd.{field} is not used when ssd.target_assigner is set (it '
            'defines the IoU rule); remove one of them')
    per_location = anchor_generator.num_anchors_per_location()
    strides = getattr(feature_extractor, 'feature_map_strides', None)
    counts = None
    if strides is not None and len(strides) == len(per_location):
      counts = target_assigner_builder.level_anchor_counts(
          config_util.get_spatial_image_size(ssd_config.image_resizer),
          strides)
      counts = counts and [c * a for c, a in zip(counts, per_location)]
    return target_assigner_builder.build(
        ssd_config.target_assigner, box_coder=box_coder,
        num_levels=len(per_location),
        negative_class_weight=ssd_config.negative_class_weight,
        field='ssd.target_assigner', level_anchor_counts=counts,
        strides=strides)
  matcher = matcher_builder.build(_required(ssd_config, 'matcher'))
  similarity = region_similarity_calculator_builder.build(
      _required(ssd_config, 'similarity_calculator'))
  return target_assigner.TargetAssigner(
      similarity, matcher, box_coder,
      negative_class_weight=ssd_config.negative_class_weight)


def build(ssd_config, *, is_training):
  """Returns the `SSDMetaArch` an `Ssd` message describes.

  Raises:
    ValueError: naming the missing or invalid field.
  """
  if not isinstance(ssd_config, ssd_pb2.Ssd):
    raise TypeError(f'ssd_builder.build expects an Ssd message, got '
                    f'{type(ssd_config).__name__}')
  if ssd_config.num_classes <= 0:
    raise ValueError(f'ssd.num_classes must be > 0, got '
                     f'{ssd_config.num_classes}')
  feature_extractor = build_feature_extractor(
      _required(ssd_config, 'feature_extractor'))
  anchor_generator = anchor_generator_builder.build(
      _required(ssd_config, 'anchor_generator'))
  box_coder = box_coder_builder.build(_required(ssd_config, 'box_coder'))
  add_background_class = (ssd_config.add_background_class and
                          not ssd_config.encode_background_as_zeros)
  num_class_slots = ssd_config.num_classes + (1 if add_background_class else
                                              0)
  predictor_config = _required(ssd_config, 'box_predictor')
  kind = predictor_config.WhichOneof('box_predictor_oneof')
  code_size = getattr(getattr(predictor_config, kind), 'box_code_size',
                      None) if kind else None
  if code_size is not None and code_size != box_coder.code_size:
    raise ValueError(
        f'ssd.box_predictor.{kind}.box_code_size is {code_size} but the box '
        f'coder encodes {box_coder.code_size} values per box')
  predictor = box_predictor_builder.build(
      predictor_config,
      num_class_slots=num_class_slots,
      num_predictions_per_location_list=(
          anchor_generator.num_anchors_per_location()))
  loss_bundle = losses_builder.build(_required(ssd_config, 'loss'))
  post_processing = post_processing_builder.build(
      _required(ssd_config, 'post_processing'))
  loss_config = ssd_meta_arch.SSDLossConfig(
      classification_loss=loss_bundle.classification_loss,
      localization_loss=loss_bundle.localization_loss,
      classification_weight=loss_bundle.classification_weight,
      localization_weight=loss_bundle.localization_weight,
      hard_example_miner=loss_bundle.hard_example_miner,
      normalize_loss_by_num_matches=ssd_config.normalize_loss_by_num_matches,
      normalize_loc_loss_by_codesize=ssd_config.normalize_loc_loss_by_codesize)
  return ssd_meta_arch.SSDMetaArch(
      is_training=is_training,
      num_classes=ssd_config.num_classes,
      image_resizer_fn=image_resizer_builder.build(
          _required(ssd_config, 'image_resizer')),
      feature_extractor=feature_extractor,
      box_predictor=predictor,
      anchor_generator=anchor_generator,
      box_coder=box_coder,
      target_assigner=_target_assigner(ssd_config, box_coder,
                                       anchor_generator, feature_extractor),
      non_max_suppression_fn=post_processing.non_max_suppression_fn,
      score_conversion_fn=post_processing.score_converter_fn,
      loss_config=loss_config,
      add_background_class=add_background_class)
