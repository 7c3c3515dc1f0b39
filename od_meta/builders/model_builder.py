"""Builds a `DetectionModel` from a `DetectionModel` config (protos/model.proto).

This module only dispatches on the `model` oneof; each meta-architecture has
its own builder (`<meta_architecture>_builder.py`) that maps its message's
fields to the constructor arguments.
"""

from od_meta.builders import builder_utils
from od_meta.builders import center_net_builder
from od_meta.builders import faster_rcnn_builder
from od_meta.builders import fcos_builder
from od_meta.builders import ssd_builder
from od_meta.builders import ttfnet_builder
from od_meta.protos import model_pb2

# oneof field -> function(config, is_training) -> DetectionModel.
# Grows as the meta-architectures land.
META_ARCHITECTURE_BUILDERS = {
    'ssd': ssd_builder.build,
    'faster_rcnn': faster_rcnn_builder.build,
    'center_net': center_net_builder.build,
    'ttfnet': ttfnet_builder.build,
    'fcos': fcos_builder.build,
}


def build(model_config, *, is_training):
  """Returns the `DetectionModel` the config describes.

  Args:
    model_config: a `DetectionModel` message.
    is_training: bool, whether the model is built for training (batch-norm
      updates, dropout, samplers).

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if the `model` oneof is empty or names a meta-architecture
      that od_meta does not build yet (the error lists those it builds).
  """
  builder_utils.check_message_type(model_config, model_pb2.DetectionModel,
                                   'model_builder')
  choice = builder_utils.which_oneof(model_config, 'model')
  if choice not in META_ARCHITECTURE_BUILDERS:
    supported = ', '.join(sorted(META_ARCHITECTURE_BUILDERS)) or 'none yet'
    raise ValueError(
        f'model.{choice}: this meta-architecture is not implemented yet '
        f'(implemented: {supported})')
  return META_ARCHITECTURE_BUILDERS[choice](getattr(model_config, choice),
                                            is_training=is_training)
