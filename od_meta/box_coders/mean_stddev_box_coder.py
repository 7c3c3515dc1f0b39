"""Mean/stddev box coder: corners relative to the anchor's corners.

As in the TF OD API's `box_coders/mean_stddev_box_coder.py` (used by the
MultiBox-style SSD variants): the anchor's corners are the mean and a single
scalar `stddev` normalizes the offsets,

  code = ([ymin, xmin, ymax, xmax] - anchor_corners) / stddev.

Same frame for boxes and anchors; codes are in units of `stddev` of that
frame.
"""

from od_meta.core import box_coder
from od_meta.core import box_list


class MeanStddevBoxCoder(box_coder.BoxCoder):
  """Mean/stddev box coder; code_size 4, codes ordered like the corners."""

  def __init__(self, stddev=0.01):
    """Creates the coder.

    Args:
      stddev: positive float, the standard deviation dividing the offsets.

    Raises:
      ValueError: if `stddev` is not positive.
    """
    if not stddev > 0:
      raise ValueError(f'stddev must be positive, got {stddev}')
    self._stddev = float(stddev)

  @property
  def code_size(self):
    return 4

  def _encode(self, boxes, anchors):
    """`[N, 4]` boxes and anchors -> float32 `[N, 4]` codes."""
    return (boxes.get() - anchors.get()) / self._stddev

  def _decode(self, rel_codes, anchors):
    """`[N, 4]` codes -> BoxList of corners `codes * stddev + anchors`."""
    return box_list.BoxList(rel_codes * self._stddev + anchors.get())
