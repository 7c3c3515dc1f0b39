"""Builds SSD box predictors from a `BoxPredictor` message
(protos/box_predictor.proto).

The two-stage predictors (`mask_rcnn_box_predictor`, `rfcn_box_predictor`)
are built by the Faster R-CNN builder, which knows the ROI geometry.
"""

from od_meta.builders import builder_utils
from od_meta.builders import hyperparams_builder
from od_meta.heads import box_predictor
from od_meta.protos import box_predictor_pb2


def _hyperparams(config):
  if config.HasField('conv_hyperparams'):
    return hyperparams_builder.build(config.conv_hyperparams)
  return None


def build_convolutional_box_predictor(config, *, num_class_slots,
                                      num_predictions_per_location_list):
  """Maps a `ConvolutionalBoxPredictor` message to the Keras layer."""
  return box_predictor.ConvolutionalBoxPredictor(
      num_class_slots=num_class_slots,
      num_predictions_per_location_list=num_predictions_per_location_list,
      kernel_size=config.kernel_size,
      box_code_size=config.box_code_size,
      use_dropout=config.use_dropout,
      dropout_keep_prob=config.dropout_keep_probability,
      use_depthwise=config.use_depthwise,
      class_prediction_bias_init=config.class_prediction_bias_init,
      conv_hyperparams=_hyperparams(config),
      num_layers_before_predictor=config.num_layers_before_predictor,
      min_depth=config.min_depth,
      max_depth=config.max_depth)


def build_weight_shared_box_predictor(config, *, num_class_slots,
                                      num_predictions_per_location_list):
  """Maps a `WeightSharedConvolutionalBoxPredictor` message to the layer.

  Batch norm follows `conv_hyperparams` (a `batch_norm` block turns it on).
  """
  hyperparams = _hyperparams(config)
  return box_predictor.WeightSharedConvolutionalBoxPredictor(
      num_class_slots=num_class_slots,
      num_predictions_per_location_list=num_predictions_per_location_list,
      depth=config.depth,
      num_layers_before_predictor=config.num_layers_before_predictor,
      kernel_size=config.kernel_size,
      box_code_size=config.box_code_size,
      class_prediction_bias_init=config.class_prediction_bias_init,
      use_dropout=config.use_dropout,
      dropout_keep_prob=config.dropout_keep_probability,
      share_prediction_tower=config.share_prediction_tower,
      use_depthwise=config.use_depthwise,
      apply_batch_norm=bool(hyperparams and hyperparams.use_batch_norm),
      conv_hyperparams=hyperparams)


def build(box_predictor_config, *, num_class_slots,
          num_predictions_per_location_list):
  """Returns the single-stage box predictor a `BoxPredictor` describes.

  Args:
    box_predictor_config: a `BoxPredictor` message.
    num_class_slots: class columns predicted per anchor (num_classes + 1 with
      a background column, num_classes without).
    num_predictions_per_location_list: anchors per location of each feature
      map (from the anchor generator).

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if none is set, or a two-stage predictor is given.
  """
  builder_utils.check_message_type(box_predictor_config,
                                   box_predictor_pb2.BoxPredictor,
                                   'box_predictor_builder')
  choice = builder_utils.which_oneof(box_predictor_config,
                                     'box_predictor_oneof')
  table = {
      'convolutional_box_predictor': build_convolutional_box_predictor,
      'weight_shared_convolutional_box_predictor':
          build_weight_shared_box_predictor,
  }
  if choice not in table:
    raise ValueError(
        f'BoxPredictor.{choice} is a two-stage predictor; use it as '
        'faster_rcnn.second_stage_box_predictor')
  return table[choice](
      getattr(box_predictor_config, choice), num_class_slots=num_class_slots,
      num_predictions_per_location_list=list(
          num_predictions_per_location_list))
