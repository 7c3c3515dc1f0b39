"""Builds a `BoxCoder` from a `BoxCoder` config (protos/box_coder.proto)."""

from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.box_coders import keypoint_box_coder
from od_meta.box_coders import ltrb_distance_box_coder
from od_meta.box_coders import mean_stddev_box_coder
from od_meta.builders import builder_utils
from od_meta.protos import box_coder_pb2


def _scale_factors(config):
  return [config.y_scale, config.x_scale, config.height_scale,
          config.width_scale]


_BUILDERS = {
    'faster_rcnn_box_coder': lambda c: faster_rcnn_box_coder.FasterRcnnBoxCoder(
        scale_factors=_scale_factors(c)),
    'mean_stddev_box_coder': lambda c: mean_stddev_box_coder.MeanStddevBoxCoder(
        stddev=c.stddev),
    'keypoint_box_coder': lambda c: keypoint_box_coder.KeypointBoxCoder(
        num_keypoints=c.num_keypoints, scale_factors=_scale_factors(c)),
    'ltrb_distance_box_coder': lambda c: (
        ltrb_distance_box_coder.LtrbDistanceBoxCoder(
            scale=c.scale,
            normalize_by_anchor_size=c.normalize_by_anchor_size)),
}


def build(box_coder_config):
  """Returns the box coder named by the `box_coder_oneof`.

  Raises:
    TypeError: if the argument is not a `BoxCoder` message.
    ValueError: if no coder is set.
  """
  builder_utils.check_message_type(box_coder_config, box_coder_pb2.BoxCoder,
                                   'box_coder_builder')
  return builder_utils.dispatch(box_coder_config, 'box_coder_oneof',
                                _BUILDERS)
