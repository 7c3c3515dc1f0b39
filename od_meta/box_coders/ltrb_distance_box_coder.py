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

with (yc, xc) the anchor center. With `normalize_by_anchor_size`, t and b
are also divided by the anchor's height and l and r by its width: an
anchor-point detector whose "anchor" of a location is the stride x stride
square around it then regresses distances in strides (FCOS Sec. 3.1), in
whichever frame (pixels or normalized) the boxes are. FCOS's (l, t, r, b)
is the permutation `[1, 0, 3, 2]` of this code.

This coder is the one ltrb decoding of od_meta: FCOS / ATSS / SAPD decode
through it, and so do TTFNet's loss and the heatmap detectors' peak
decoding (`dense_post_processing.decode_ltrb_boxes`). Distances are in the frame of the inputs
(pixels or normalized) divided by `scale`. A point outside its box gives
negative distances (not clipped); decode is the exact inverse:
`[yc - t*s, xc - l*s, yc + b*s, xc + r*s]`.
"""

import tensorflow as tf

from od_meta.core import box_coder
from od_meta.core import box_list


class LtrbDistanceBoxCoder(box_coder.BoxCoder):
  """Point-to-side distance coder; code_size 4, codes `[t, l, b, r]`."""

  def __init__(self, scale=1.0, normalize_by_anchor_size=False):
    """Creates the coder.

    Args:
      scale: positive float dividing the distances (the stride for FCOS on
        pixel distances, 16 for TTFNet, 1 for none).
      normalize_by_anchor_size: also divide by the anchor's height (t, b)
        and width (l, r).

    Raises:
      ValueError: if `scale` is not positive.
    """
    if not scale > 0:
      raise ValueError(f'scale must be positive, got {scale}')
    self._scale = float(scale)
    self._normalize_by_anchor_size = bool(normalize_by_anchor_size)

  @property
  def code_size(self):
    return 4

  def _encode(self, boxes, anchors):
    """`[N, 4]` boxes and anchors (points) -> float32 `[N, 4]` `[t, l, b, r]`.
    """
    yc, xc, ha, wa = anchors.get_center_coordinates_and_sizes()
    ymin, xmin, ymax, xmax = tf.unstack(boxes.get(), axis=1)
    codes = tf.stack([yc - ymin, xc - xmin, ymax - yc, xmax - xc], axis=1)
    return codes / self._divisors(ha, wa)

  def _decode(self, rel_codes, anchors):
    """`[N, 4]` `[t, l, b, r]` codes -> BoxList `[N, 4]` in the anchors' frame.
    """
    yc, xc, ha, wa = anchors.get_center_coordinates_and_sizes()
    t, l, b, r = tf.unstack(rel_codes * self._divisors(ha, wa), axis=1)
    return box_list.BoxList(tf.stack([yc - t, xc - l, yc + b, xc + r], axis=1))

  def _divisors(self, anchor_heights, anchor_widths):
    """float32 `[N, 4]` (or a scalar) dividing the `[t, l, b, r]` codes."""
    if not self._normalize_by_anchor_size:
      return self._scale
    return self._scale * tf.stack([anchor_heights, anchor_widths,
                                   anchor_heights, anchor_widths], axis=1)
