"""Builds losses and the hard example miner (protos/losses.proto)."""

import collections

from od_meta.builders import builder_utils
from od_meta.core import hard_example_miner as miner_lib
from od_meta.core import losses
from od_meta.protos import losses_pb2

LossBundle = collections.namedtuple('LossBundle', [
    'classification_loss', 'localization_loss', 'classification_weight',
    'localization_weight', 'hard_example_miner'])
LossBundle.__doc__ = """What a `Loss` message describes.

Fields:
  classification_loss: a `losses.Loss` on class logits.
  localization_loss: a `losses.Loss` on box encodings or decoded boxes.
  classification_weight: float multiplier of the classification term.
  localization_weight: float multiplier of the localization term.
  hard_example_miner: a `HardExampleMiner` or None.
"""

_LOCALIZATION = {
    'weighted_l2': lambda c: losses.WeightedL2LocalizationLoss(),
    'weighted_smooth_l1': lambda c: losses.WeightedSmoothL1LocalizationLoss(
        delta=c.delta),
    'weighted_iou': lambda c: losses.WeightedIOULocalizationLoss(),
    'l1_localization_loss': lambda c: losses.WeightedL1LocalizationLoss(),
    'weighted_giou': lambda c: losses.WeightedGIOULocalizationLoss(),
    'balanced_l1': lambda c: losses.BalancedL1LocalizationLoss(
        alpha=c.alpha, gamma=c.gamma, beta=c.beta),
}

_CLASSIFICATION = {
    'weighted_sigmoid': lambda c: losses.WeightedSigmoidClassificationLoss(),
    'weighted_softmax': lambda c: losses.WeightedSoftmaxClassificationLoss(
        logit_scale=c.logit_scale),
    'weighted_sigmoid_focal': lambda c: losses.SigmoidFocalClassificationLoss(
        gamma=c.gamma, alpha=c.alpha),
    'penalty_reduced_logistic_focal_loss': lambda c: (
        losses.PenaltyReducedLogisticFocalLoss(
            alpha=c.alpha, beta=c.beta,
            sigmoid_clip_value=c.sigmoid_clip_value)),
}

_LOSS_TYPES = {
    losses_pb2.HardExampleMiner.BOTH: 'both',
    losses_pb2.HardExampleMiner.CLASSIFICATION: 'cls',
    losses_pb2.HardExampleMiner.LOCALIZATION: 'loc',
}


def build_localization_loss(config):
  """Returns the `losses.Loss` of a `LocalizationLoss` message.

  Raises:
    TypeError / ValueError: on a wrong message or an empty oneof.
  """
  builder_utils.check_message_type(config, losses_pb2.LocalizationLoss,
                                   'losses_builder')
  return builder_utils.dispatch(config, 'localization_loss', _LOCALIZATION)


def build_classification_loss(config):
  """Returns the `losses.Loss` of a `ClassificationLoss` message.

  Raises:
    TypeError / ValueError: on a wrong message or an empty oneof.
  """
  builder_utils.check_message_type(config, losses_pb2.ClassificationLoss,
                                   'losses_builder')
  return builder_utils.dispatch(config, 'classification_loss',
                                _CLASSIFICATION)


def build_hard_example_miner(config, classification_weight,
                             localization_weight):
  """Returns a `HardExampleMiner` (SSD online hard example mining).

  `max_negatives_per_positive` 0 means no cap, as in the TF OD API.
  """
  builder_utils.check_message_type(config, losses_pb2.HardExampleMiner,
                                   'losses_builder')
  if config.num_hard_examples < 0:
    raise ValueError('HardExampleMiner.num_hard_examples must be >= 0')
  return miner_lib.HardExampleMiner(
      num_hard_examples=config.num_hard_examples or None,
      iou_threshold=config.iou_threshold,
      loss_type=_LOSS_TYPES[config.loss_type],
      cls_loss_weight=classification_weight,
      loc_loss_weight=localization_weight,
      max_negatives_per_positive=config.max_negatives_per_positive or None,
      min_negatives_per_image=config.min_negatives_per_image)


def build(loss_config):
  """Returns a `LossBundle` for a `Loss` message.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if `localization_loss` or `classification_loss` is missing
      or empty.
  """
  builder_utils.check_message_type(loss_config, losses_pb2.Loss,
                                   'losses_builder')
  for field in ('localization_loss', 'classification_loss'):
    if not loss_config.HasField(field):
      raise ValueError(f'Loss.{field} is not set')
  miner = None
  if loss_config.HasField('hard_example_miner'):
    miner = build_hard_example_miner(loss_config.hard_example_miner,
                                     loss_config.classification_weight,
                                     loss_config.localization_weight)
  return LossBundle(
      classification_loss=build_classification_loss(
          loss_config.classification_loss),
      localization_loss=build_localization_loss(loss_config.localization_loss),
      classification_weight=loss_config.classification_weight,
      localization_weight=loss_config.localization_weight,
      hard_example_miner=miner)
