"""Region similarity calculators: pairwise scores between two sets of boxes.

Modelled on the TF Object Detection API's
`object_detection/core/region_similarity_calculator.py`. `compare(boxlist1,
boxlist2)` returns an `[N, M]` float32 matrix whose rows index `boxlist1`
(groundtruth, by convention of the target assigner) and columns `boxlist2`
(anchors). Higher means more similar; matchers take this matrix.
"""

import abc

import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import box_list_ops


class RegionSimilarityCalculator(abc.ABC):
  """Abstract base: `compare(boxlist1, boxlist2) -> [N, M]` float32."""

  def compare(self, boxlist1, boxlist2, scope=None):
    """Computes the pairwise similarity matrix.

    Args:
      boxlist1: BoxList with N boxes (groundtruth rows).
      boxlist2: BoxList with M boxes (anchor columns), same frame.
      scope: optional name scope.

    Returns:
      float32 `[N, M]`.

    Raises:
      ValueError: if an argument is not a BoxList.
    """
    for name, b in (('boxlist1', boxlist1), ('boxlist2', boxlist2)):
      if not isinstance(b, box_list.BoxList):
        raise ValueError(f'{name} must be a BoxList, got {type(b).__name__}')
    with tf.name_scope(scope or type(self).__name__):
      return self._compare(boxlist1, boxlist2)

  @abc.abstractmethod
  def _compare(self, boxlist1, boxlist2):
    """Returns the `[N, M]` similarity; subclasses implement this."""


class IouSimilarity(RegionSimilarityCalculator):
  """Pairwise intersection-over-union, in [0, 1] (`box_list_ops.iou`)."""

  def _compare(self, boxlist1, boxlist2):
    return box_list_ops.iou(boxlist1, boxlist2)


class IoaSimilarity(RegionSimilarityCalculator):
  """Pairwise intersection over the area of the `boxlist2` box, in [0, 1].

  `ioa(b1_i, b2_j) = |b1_i ∩ b2_j| / |b2_j|` (`box_list_ops.ioa`), as in the
  TF OD API; not symmetric.
  """

  def _compare(self, boxlist1, boxlist2):
    return box_list_ops.ioa(boxlist1, boxlist2)


class NegSqDistSimilarity(RegionSimilarityCalculator):
  """Negative squared Euclidean distance between box centers, <= 0.

  `-((yc1 - yc2)^2 + (xc1 - xc2)^2)` in squared units of the boxes' frame
  (`box_list_ops.center_sq_dist`); the center-distance ranking of ATSS
  (Zhang et al. 2020, Alg. 1 line 5). Note: the TF OD API's class of this
  name treats boxes as 4-d corner points instead (`box_list_ops.sq_dist`);
  we use centers, which is what anchor-to-groundtruth ranking needs.
  """

  def _compare(self, boxlist1, boxlist2):
    return -1.0 * box_list_ops.center_sq_dist(boxlist1, boxlist2)


class GIouSimilarity(RegionSimilarityCalculator):
  """Pairwise generalized IoU, in [-1, 1] (Rezatofighi et al. 2019).

  See `box_list_ops.giou`. Unlike IoU it is informative for disjoint boxes.
  """

  def _compare(self, boxlist1, boxlist2):
    return box_list_ops.giou(boxlist1, boxlist2)
