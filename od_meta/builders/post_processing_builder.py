"""Builds the non-max suppression and score-converter functions
(protos/post_processing.proto)."""

import collections
import functools

from od_meta.builders import builder_utils
from od_meta.core import post_processing
from od_meta.protos import post_processing_pb2

PostProcessingFns = collections.namedtuple(
    'PostProcessingFns', ['non_max_suppression_fn', 'score_converter_fn'])
PostProcessingFns.__doc__ = """What a `PostProcessing` message describes.

Fields:
  non_max_suppression_fn: `post_processing.batch_multiclass_non_max_suppression`
    with the config's thresholds bound; call it with
    `(boxes [batch, N, q, 4], scores [batch, N, num_classes], clip_window=...,
    additional_fields=...)`.
  score_converter_fn: float32 logits `[..., C]` -> scores `[..., C]`.
"""


def build_non_max_suppressor(config):
  """Returns the batched NMS function of a `BatchNonMaxSuppression` message.

  Raises:
    ValueError: on thresholds outside [0, 1] or non-positive sizes.
  """
  builder_utils.check_message_type(
      config, post_processing_pb2.BatchNonMaxSuppression,
      'post_processing_builder')
  if not 0.0 <= config.iou_threshold <= 1.0:
    raise ValueError('BatchNonMaxSuppression.iou_threshold must be in [0, 1], '
                     f'got {config.iou_threshold}')
  if config.max_detections_per_class <= 0:
    raise ValueError('BatchNonMaxSuppression.max_detections_per_class must be '
                     f'> 0, got {config.max_detections_per_class}')
  if config.max_total_detections <= 0:
    raise ValueError('BatchNonMaxSuppression.max_total_detections must be > 0, '
                     f'got {config.max_total_detections}')
  return functools.partial(
      post_processing.batch_multiclass_non_max_suppression,
      score_thresh=config.score_threshold,
      iou_thresh=config.iou_threshold,
      max_size_per_class=config.max_detections_per_class,
      max_total_size=config.max_total_detections,
      soft_nms_sigma=config.soft_nms_sigma,
      use_class_agnostic_nms=config.use_class_agnostic_nms,
      max_classes_per_detection=config.max_classes_per_detection,
      use_combined_nms=config.use_combined_nms)


def build(post_processing_config):
  """Returns `PostProcessingFns` for a `PostProcessing` message.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if `batch_non_max_suppression` is missing or invalid.
  """
  builder_utils.check_message_type(post_processing_config,
                                   post_processing_pb2.PostProcessing,
                                   'post_processing_builder')
  if not post_processing_config.HasField('batch_non_max_suppression'):
    raise ValueError('PostProcessing.batch_non_max_suppression is not set')
  name = post_processing_pb2.PostProcessing.ScoreConverter.Name(
      post_processing_config.score_converter)
  return PostProcessingFns(
      non_max_suppression_fn=build_non_max_suppressor(
          post_processing_config.batch_non_max_suppression),
      score_converter_fn=post_processing.get_score_converter(
          name, logit_scale=post_processing_config.logit_scale))
