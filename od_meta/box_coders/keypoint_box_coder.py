"""Keypoint box coder: a Faster R-CNN box code plus keypoints.

As in the TF OD API's `box_coders/keypoint_box_coder.py`. The box part is the
Faster R-CNN code `[ty, tx, th, tw]` (Ren et al. 2015, Eq. 2; scale factors
of Huang et al. 2017); each keypoint (y, x) is encoded relative to the anchor
center and size,

  tky = (ky - ya) / ha * sy     tkx = (kx - xa) / wa * sx,

so a code is `[ty, tx, th, tw, tky_1, tkx_1, ..., tky_K, tkx_K]`
(code_size `4 + 2K`). Boxes carry a 'keypoints' field float32 `[N, K, 2]`
of (y, x) in the same frame as the boxes and anchors. Absent keypoints
(NaN, DESIGN.md) encode to NaN; the target assigner must give them zero
weight.
"""

import tensorflow as tf

from od_meta.box_coders import faster_rcnn_box_coder
from od_meta.core import box_coder

EPSILON = faster_rcnn_box_coder.EPSILON
KEYPOINTS_FIELD = 'keypoints'


class KeypointBoxCoder(box_coder.BoxCoder):
  """Box + keypoint coder; code_size `4 + 2 * num_keypoints`."""

  def __init__(self, num_keypoints, scale_factors=None):
    """Creates the coder.

    Args:
      num_keypoints: int >= 1, K.
      scale_factors: None or 4 positive floats `[sy, sx, sh, sw]`; keypoint
        offsets use `sy`, `sx`.

    Raises:
      ValueError: if `num_keypoints` is not a positive int, or
        `scale_factors` does not have 4 positive entries.
    """
    if (not isinstance(num_keypoints, int) or isinstance(num_keypoints, bool)
        or num_keypoints < 1):
      raise ValueError(
          f'num_keypoints must be a positive int, got {num_keypoints}')
    self._num_keypoints = num_keypoints
    self._scale_factors = faster_rcnn_box_coder.check_scale_factors(
        scale_factors)
    self._box_coder = faster_rcnn_box_coder.FasterRcnnBoxCoder(
        scale_factors=self._scale_factors)

  @property
  def code_size(self):
    return 4 + 2 * self._num_keypoints

  def _encode(self, boxes, anchors):
    """Encodes boxes with a 'keypoints' field `[N, K, 2]` -> `[N, 4 + 2K]`.

    Raises:
      ValueError: if `boxes` has no 'keypoints' field or it is not
        `[N, K, 2]` with K = num_keypoints.
    """
    if not boxes.has_field(KEYPOINTS_FIELD):
      raise ValueError("boxes must have a 'keypoints' field [N, K, 2]")
    keypoints = tf.cast(boxes.get_field(KEYPOINTS_FIELD), tf.float32)
    if (keypoints.shape.rank != 3 or
        keypoints.shape[1:].as_list() != [self._num_keypoints, 2]):
      raise ValueError(
          f"'keypoints' must have shape [N, {self._num_keypoints}, 2], got "
          f'{keypoints.shape}')
    tboxes = self._box_coder.encode(boxes, anchors)
    ycenter_a, xcenter_a, ha, wa = anchors.get_center_coordinates_and_sizes()
    centers = tf.stack([ycenter_a, xcenter_a], axis=1)[:, tf.newaxis, :]
    sizes = tf.stack([ha + EPSILON, wa + EPSILON], axis=1)[:, tf.newaxis, :]
    tkeypoints = (keypoints - centers) / sizes  # [N, K, 2]
    if self._scale_factors:
      tkeypoints *= tf.constant(self._scale_factors[:2], tf.float32)
    tkeypoints = tf.reshape(tkeypoints, [-1, 2 * self._num_keypoints])
    return tf.concat([tboxes, tkeypoints], axis=1)

  def _decode(self, rel_codes, anchors):
    """Decodes `[N, 4 + 2K]` -> BoxList with a 'keypoints' field `[N, K, 2]`.
    """
    boxes = self._box_coder.decode(rel_codes[:, :4], anchors)
    ycenter_a, xcenter_a, ha, wa = anchors.get_center_coordinates_and_sizes()
    tkeypoints = tf.reshape(rel_codes[:, 4:], [-1, self._num_keypoints, 2])
    if self._scale_factors:
      tkeypoints /= tf.constant(self._scale_factors[:2], tf.float32)
    centers = tf.stack([ycenter_a, xcenter_a], axis=1)[:, tf.newaxis, :]
    sizes = tf.stack([ha, wa], axis=1)[:, tf.newaxis, :]
    boxes.add_field(KEYPOINTS_FIELD, tkeypoints * sizes + centers)
    return boxes
