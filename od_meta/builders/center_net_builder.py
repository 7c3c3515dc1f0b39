"""Builds `CenterNetMetaArch` from a `CenterNet` message (protos/center_net.proto).

`build_feature_extractor` maps the `CenterNetFeatureExtractor` message
(backbone + up-convolution neck to output stride 4), which TTFNet (and later
CornerNet) configs share.
"""

from od_meta.builders import builder_utils
from od_meta.builders import image_resizer_builder
from od_meta.builders import losses_builder
from od_meta.core import losses
from od_meta.data import label_map_util
from od_meta.feature_extractors import center_net_feature_extractor as cnfe
from od_meta.feature_extractors import up_convolution_neck
from od_meta.meta_architectures import center_net_meta_arch
from od_meta.protos import center_net_pb2
from od_meta.target_assigners import center_net_target_assigner


def build_feature_extractor(config, *, field='feature_extractor'):
  """Returns the `CenterNetFeatureExtractor` of its message.

  `use_depthwise` is read by the meta-architecture builders (prediction
  heads); `upsampling_interpolation` applies to the Hourglass backbones.

  Raises:
    ValueError: on an empty or unknown `type` (the error lists the known
      ones), a bad neck setting or an `upsampling_interpolation` the
      extractor cannot use.
  """
  builder_utils.check_message_type(
      config, center_net_pb2.CenterNetFeatureExtractor,
      'build_feature_extractor')
  if not config.type:
    raise ValueError(f'{field}.type is empty; one of: '
                     f'{", ".join(sorted(cnfe.BACKBONES))}')
  if config.type not in cnfe.BACKBONES:
    raise ValueError(f'{field}.type: unknown extractor {config.type!r}; '
                     f'known: {", ".join(sorted(cnfe.BACKBONES))}')
  backbone_kwargs = {}
  if config.type in cnfe.UPSAMPLING_BACKBONES:
    backbone_kwargs['upsampling_interpolation'] = (
        config.upsampling_interpolation)
  elif config.upsampling_interpolation != 'nearest':
    raise ValueError(
        f'{field}.upsampling_interpolation: {config.type} has no upsampling '
        'layers it applies to (only '
        f'{", ".join(cnfe.UPSAMPLING_BACKBONES)} do; the up-convolution neck '
        'uses transposed convs)')
  try:
    backbone = cnfe.BACKBONES[config.type](
        weights=config.weights, depth_multiplier=config.depth_multiplier,
        **backbone_kwargs)
  except ValueError as e:
    raise ValueError(f'{field}: {e}') from e
  neck = None
  if not cnfe.returns_map_list(backbone):
    up = config.up_convolution
    neck = up_convolution_neck.UpConvolutionNeck(
        num_filters=tuple(up.num_filters) or (256, 128, 64),
        kernel_size=up.kernel_size, bilinear_init=up.bilinear_init,
        shortcut_num_convs=tuple(up.shortcut_num_convs))
  elif config.HasField('up_convolution'):
    raise ValueError(f'{field}.up_convolution: {config.type} outputs stride-4 '
                     'maps itself and takes no neck')
  return cnfe.CenterNetFeatureExtractor(
      backbone=backbone, neck=neck,
      channel_means=tuple(config.channel_means),
      channel_stds=tuple(config.channel_stds),
      bgr_ordering=config.bgr_ordering, weights=config.weights)


# Losses that score dense [B, h, w, C] heatmaps.
HEATMAP_LOSSES = ('penalty_reduced_logistic_focal_loss',)
# Per-coordinate losses on [B, A, D] codes (sizes, offsets, keypoints).
CODE_LOSSES = ('l1_localization_loss', 'weighted_l2', 'weighted_smooth_l1',
               'balanced_l1')
# Losses on decoded [B, A, 4] boxes (TTFNet).
BOX_LOSSES = ('weighted_giou', 'weighted_iou')


def heatmap_loss(config, field):
  """A `ClassificationLoss` message's loss; default penalty-reduced focal.

  Raises:
    ValueError: naming `field`, for a loss that does not score heatmaps.
  """
  choice = config.WhichOneof('classification_loss')
  if choice is None:
    return losses.PenaltyReducedLogisticFocalLoss(alpha=2.0, beta=4.0)
  if choice not in HEATMAP_LOSSES:
    raise ValueError(f'{field}: {choice} does not apply to [B, h, w, C] '
                     f'heatmaps; use one of {", ".join(HEATMAP_LOSSES)}')
  try:
    return losses_builder.build_classification_loss(config)
  except ValueError as e:
    raise ValueError(f'{field}: {e}') from e


def localization_loss(config, default, field='localization_loss',
                      allowed=CODE_LOSSES):
  """A `LocalizationLoss` message's loss, or `default` when unset.

  Raises:
    ValueError: naming `field`, for a loss not in `allowed`.
  """
  choice = config.WhichOneof('localization_loss')
  if choice is None:
    return default
  if choice not in allowed:
    raise ValueError(f'{field}: {choice} does not apply here; use one of '
                     f'{", ".join(allowed)}')
  return losses_builder.build_localization_loss(config)


def _keypoint_params(center_net, num_classes):
  """`KeypointEstimationParams` of the (single) keypoint task, or None."""
  tasks = center_net.keypoint_estimation_task
  if not tasks:
    return None
  if len(tasks) > 1:
    raise ValueError('center_net.keypoint_estimation_task: od_meta builds '
                     f'one keypoint task, the config has {len(tasks)}')
  task = tasks[0]
  if not center_net.keypoint_label_map_path:
    raise ValueError('center_net.keypoint_label_map_path is required by '
                     'keypoint_estimation_task (it lists the keypoints)')
  items = label_map_util.load_labelmap(center_net.keypoint_label_map_path)
  class_id, item = None, None
  for candidate in items:
    if task.keypoint_class_name:
      if candidate.get('name') == task.keypoint_class_name:
        item, class_id = candidate, int(candidate['id']) - 1
        break
    elif candidate.get('keypoints'):
      item = candidate
      break
  if item is None or not item.get('keypoints'):
    what = (f'class {task.keypoint_class_name!r}' if task.keypoint_class_name
            else 'any item')
    raise ValueError(
        f'{center_net.keypoint_label_map_path}: no keypoints found for {what}'
        ' (center_net.keypoint_estimation_task.keypoint_class_name)')
  if class_id is not None and not 0 <= class_id < num_classes:
    raise ValueError(f'keypoint_class_name {task.keypoint_class_name!r} has '
                     f'id {class_id + 1}, outside 1..{num_classes}')
  keypoints = sorted(item['keypoints'], key=lambda k: int(k['id']))
  labels = [k.get('label', str(k['id'])) for k in keypoints]
  unknown = set(task.keypoint_label_to_std) - set(labels)
  if unknown:
    raise ValueError('keypoint_estimation_task.keypoint_label_to_std names '
                     f'unknown keypoints {sorted(unknown)}; known: {labels}')
  loss = task.loss
  return center_net_meta_arch.KeypointEstimationParams(
      task_name=task.task_name or 'keypoints',
      num_keypoints=len(labels),
      classification_loss=heatmap_loss(
          loss.classification_loss,
          'center_net.keypoint_estimation_task.loss.classification_loss'),
      localization_loss=localization_loss(
          loss.localization_loss, losses.WeightedL1LocalizationLoss(),
          'center_net.keypoint_estimation_task.loss.localization_loss'),
      class_id=class_id,
      keypoint_std_dev=[task.keypoint_label_to_std.get(l, 1.0)
                        for l in labels],
      task_loss_weight=task.task_loss_weight,
      keypoint_regression_loss_weight=task.keypoint_regression_loss_weight,
      keypoint_heatmap_loss_weight=task.keypoint_heatmap_loss_weight,
      keypoint_offset_loss_weight=task.keypoint_offset_loss_weight,
      heatmap_bias_init=task.heatmap_bias_init,
      keypoint_candidate_score_threshold=(
          task.keypoint_candidate_score_threshold),
      num_candidates_per_keypoint=task.num_candidates_per_keypoint,
      peak_max_pool_kernel_size=task.peak_max_pool_kernel_size,
      unmatched_keypoint_score=task.unmatched_keypoint_score,
      box_scale=task.box_scale,
      candidate_search_scale=task.candidate_search_scale,
      candidate_ranking_mode=task.candidate_ranking_mode,
      per_keypoint_offset=task.per_keypoint_offset,
      keypoint_flip_permutation=_flip_permutation(center_net, task,
                                                  len(labels)))


def _flip_permutation(center_net, task, num_keypoints):
  """keypoint_estimation_task.keypoint_flip_permutation, or None.

  Raises:
    ValueError: naming the field, when flip_test is on and it is empty, or
      it is not a permutation of the task's keypoints.
  """
  field = 'center_net.keypoint_estimation_task.keypoint_flip_permutation'
  permutation = list(task.keypoint_flip_permutation)
  if not permutation:
    if center_net.flip_test:
      raise ValueError(f'{field} is required with flip_test (it says which '
                       'keypoints swap in a mirror, e.g. left / right)')
    return None
  if sorted(permutation) != list(range(num_keypoints)):
    raise ValueError(f'{field}: {permutation} is not a permutation of the '
                     f'{num_keypoints} keypoints (0..{num_keypoints - 1})')
  return permutation


def _offset_peak_radius(center_net):
  """keypoint_estimation_task.offset_peak_radius (0 without a task).

  Raises:
    ValueError: naming the field, for a negative radius.
  """
  tasks = center_net.keypoint_estimation_task
  radius = tasks[0].offset_peak_radius if tasks else 0
  if radius < 0:
    raise ValueError('center_net.keypoint_estimation_task.offset_peak_radius '
                     f'must be >= 0, got {radius}')
  return radius


def check_num_classes(config, message):
  """Raises ValueError naming `message.num_classes` when it is < 1."""
  if config.num_classes < 1:
    raise ValueError(f'{message}.num_classes must be >= 1, got '
                     f'{config.num_classes}')


def build(config, *, is_training):
  """Returns the `CenterNetMetaArch` a `CenterNet` message describes.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: naming the field, on missing / bad fields.
  """
  builder_utils.check_message_type(config, center_net_pb2.CenterNet,
                                   'center_net_builder')
  check_num_classes(config, 'center_net')
  if not config.HasField('object_center_params'):
    raise ValueError('center_net.object_center_params is required')
  extractor = build_feature_extractor(config.feature_extractor,
                                      field='center_net.feature_extractor')
  center = config.object_center_params
  center_params = center_net_meta_arch.ObjectCenterParams(
      classification_loss=heatmap_loss(
          center.classification_loss,
          'center_net.object_center_params.classification_loss'),
      object_center_loss_weight=center.object_center_loss_weight,
      heatmap_bias_init=center.heatmap_bias_init,
      min_box_overlap_iou=center.min_box_overlap_iou,
      max_box_predictions=center.max_box_predictions,
      peak_max_pool_kernel_size=center.peak_max_pool_kernel_size,
      center_score_threshold=center.center_score_threshold)
  detection_params = None
  if config.HasField('object_detection_task'):
    task = config.object_detection_task
    detection_params = center_net_meta_arch.ObjectDetectionParams(
        localization_loss=localization_loss(
            task.localization_loss, losses.WeightedL1LocalizationLoss(),
            'center_net.object_detection_task.localization_loss'),
        task_loss_weight=task.task_loss_weight,
        offset_loss_weight=task.offset_loss_weight,
        scale_loss_weight=task.scale_loss_weight)
  keypoint_params = _keypoint_params(config, config.num_classes)
  assigner = center_net_target_assigner.CenterNetTargetAssigner(
      stride=extractor.out_stride, num_classes=config.num_classes,
      min_overlap=center.min_box_overlap_iou,
      keypoint_std_devs=(keypoint_params.keypoint_std_dev
                         if keypoint_params else None),
      compute_keypoints=keypoint_params is not None,
      per_keypoint_offset=bool(keypoint_params and
                               keypoint_params.per_keypoint_offset),
      offset_peak_radius=_offset_peak_radius(config))
  return center_net_meta_arch.CenterNetMetaArch(
      is_training=is_training, num_classes=config.num_classes,
      image_resizer_fn=image_resizer_builder.build(config.image_resizer),
      feature_extractor=extractor, target_assigner=assigner,
      object_center_params=center_params,
      object_detection_params=detection_params,
      keypoint_params=keypoint_params, flip_test=config.flip_test,
      head_channels=config.head_channels,
      use_depthwise=config.feature_extractor.use_depthwise)

