"""Distance box coder for anchor-free detectors (FCOS, TTFNet).

A box is encoded relative to a point, the center of its "anchor" (anchors
may be zero-size points at feature-map locations), as the distances from the
point to the box's four sides divided by `scale`. FCOS (Tian et al. 2019,
Eq. 1) regresses (l, t, r, b) normalized by the level's stride; TTFNet (Liu
et al. 2019, Eq. 3-4) predicts them on pixel distances scaled by s = 16.

Code order: **[top, left, bottom, right]** (`[t, l, b, r]`), i.e. y before
x, matching the `[ymin, xmin, ymax, xmax]` box layout:

  t = (yc - ymin) / scale     l = (xc - xmin) / scale
  b = (ymax - yc) / scale     r = (xmax - xc) / scale

with (yc, xc) the anchor center. FCOS's (l, t, r, b) is the permutation
`[1, 0, 3, 2]` of this code. Distances are in the frame of the inputs
(pixels or normalized) divided by `scale`. A point outside its box gives
negative distances (not clipped); decode is the exact inverse:
`[yc - t*s, xc - l*s, yc + b*s, xc + r*s]`.
"""

import tensorflow as tf

from od_meta.core import box_coder
from od_meta.core import box_list


class LtrbDistanceBoxCoder(box_coder.BoxCoder):
  """Point-to-side distance coder; code_size 4, codes `[t, l, b, r]`."""

  def __init__(self, scale=1.0):
    """Creates the coder.

    Args:
      scale: positive float dividing the distances (the stride for FCOS,
        16 for TTFNet on pixel distances, 1 for none).

    Raises:
      ValueError: if `scale` is not positive.
    """
    if not scale > 0:
      raise ValueError(f'scale must be positive, got {scale}')
    self._scale = float(scale)

  @property
  def code_size(self):
    return 4

  def _encode(self, boxes, anchors):
    """`[N, 4]` boxes and anchors (points) -> float32 `[N, 4]` `[t, l, b, r]`.
    """
    yc, xc, _, _ = anchors.get_center_coordinates_and_sizes()
    ymin, xmin, ymax, xmax = tf.unstack(boxes.get(), axis=1)
    return tf.stack([yc - ymin, xc - xmin, ymax - yc, xmax - xc],
                    axis=1) / self._scale

  def _decode(self, rel_codes, anchors):
    """`[N, 4]` `[t, l, b, r]` codes -> BoxList `[N, 4]` in the anchors' frame.
    """
    yc, xc, _, _ = anchors.get_center_coordinates_and_sizes()
    t, l, b, r = tf.unstack(rel_codes * self._scale, axis=1)
    return box_list.BoxList(tf.stack([yc - t, xc - l, yc + b, xc + r], axis=1))
