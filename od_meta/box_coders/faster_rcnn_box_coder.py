"""Faster R-CNN box coder.

Faster R-CNN (Ren et al. 2015, Eq. 2) box parameterization, with the scale
factors of Huang et al. 2017 (Sec. 3.1: "[10 x_c/w_a, 10 y_c/h_a, 5 log w,
5 log h]"), as in the TF OD API's `box_coders/faster_rcnn_box_coder.py`:

  ty = (y - ya) / ha * sy     tx = (x - xa) / wa * sx
  th = log(h / ha) * sh       tw = log(w / wa) * sw

where (y, x, h, w) are the box's center and size, (ya, xa, ha, wa) the
anchor's, and `scale_factors = [sy, sx, sh, sw]`. Codes are ordered
`[ty, tx, th, tw]` (y first, as in the TF OD API). The frame of boxes and
anchors must be the same (normalized or pixels); the codes are frame-free.
"""

import tensorflow as tf

from od_meta.core import box_coder
from od_meta.core import box_list

EPSILON = 1e-8


def check_scale_factors(scale_factors, length=4):
  """Validates scale factors.

  Args:
    scale_factors: None or a sequence of `length` positive numbers.
    length: int, the required number of entries.

  Returns:
    None, or the scale factors as a list of Python floats.

  Raises:
    ValueError: if the length is wrong or an entry is not positive.
  """
  if scale_factors is None:
    return None
  scale_factors = [float(s) for s in scale_factors]
  if len(scale_factors) != length:
    raise ValueError(
        f'scale_factors must have {length} entries, got {len(scale_factors)}')
  if any(not s > 0 for s in scale_factors):
    raise ValueError(f'scale_factors must be positive, got {scale_factors}')
  return scale_factors


class FasterRcnnBoxCoder(box_coder.BoxCoder):
  """Faster R-CNN box coder; code_size 4, codes `[ty, tx, th, tw]`."""

  def __init__(self, scale_factors=None):
    """Creates the coder.

    Args:
      scale_factors: None (no scaling) or 4 positive floats
        `[y_scale, x_scale, height_scale, width_scale]`; the builder's
        default is `[10, 10, 5, 5]` (Huang et al. 2017).

    Raises:
      ValueError: if `scale_factors` does not have 4 positive entries.
    """
    self._scale_factors = check_scale_factors(scale_factors)

  @property
  def code_size(self):
    return 4

  def _encode(self, boxes, anchors):
    """Encodes boxes `[N, 4]` against anchors `[N, 4]` -> float32 `[N, 4]`.

    `EPSILON` (1e-8) is added to every height and width before dividing and
    taking the log, so zero-size boxes or anchors give large finite codes
    instead of NaN/Inf (as in the TF OD API).
    """
    ycenter_a, xcenter_a, ha, wa = anchors.get_center_coordinates_and_sizes()
    ycenter, xcenter, h, w = boxes.get_center_coordinates_and_sizes()
    ha += EPSILON
    wa += EPSILON
    h += EPSILON
    w += EPSILON
    ty = (ycenter - ycenter_a) / ha
    tx = (xcenter - xcenter_a) / wa
    th = tf.math.log(h / ha)
    tw = tf.math.log(w / wa)
    if self._scale_factors:
      ty *= self._scale_factors[0]
      tx *= self._scale_factors[1]
      th *= self._scale_factors[2]
      tw *= self._scale_factors[3]
    return tf.stack([ty, tx, th, tw], axis=1)

  def _decode(self, rel_codes, anchors):
    """Decodes `[N, 4]` codes -> BoxList `[N, 4]` in the anchors' frame.

    No epsilon and no clipping of `th`, `tw` (TF OD API semantics): very
    large codes overflow `exp` to Inf.
    """
    ycenter_a, xcenter_a, ha, wa = anchors.get_center_coordinates_and_sizes()
    ty, tx, th, tw = tf.unstack(rel_codes, axis=1)
    if self._scale_factors:
      ty /= self._scale_factors[0]
      tx /= self._scale_factors[1]
      th /= self._scale_factors[2]
      tw /= self._scale_factors[3]
    h = tf.exp(th) * ha
    w = tf.exp(tw) * wa
    ycenter = ty * ha + ycenter_a
    xcenter = tx * wa + xcenter_a
    return box_list.BoxList(tf.stack(
        [ycenter - h / 2., xcenter - w / 2., ycenter + h / 2.,
         xcenter + w / 2.], axis=1))
