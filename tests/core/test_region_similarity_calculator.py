import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import region_similarity_calculator as rsc


def _bl(boxes):
  return box_list.BoxList(tf.constant(boxes, tf.float32))


B1 = [[4., 3., 7., 5.], [5., 6., 10., 7.]]
B2 = [[3., 4., 6., 8.], [14., 14., 15., 15.], [0., 0., 20., 20.]]


def test_iou_similarity():
  # See test_box_list_ops: intersections [[2,0,6],[1,0,5]], unions 16/16/400.
  sim = rsc.IouSimilarity().compare(_bl(B1), _bl(B2))
  np.testing.assert_allclose(sim.numpy(),
                             [[2. / 16, 0., 6. / 400], [1. / 16, 0., 5. / 400]],
                             rtol=1e-6)


def test_ioa_similarity_divides_by_second_area():
  sim = rsc.IoaSimilarity().compare(_bl(B1), _bl(B2))
  np.testing.assert_allclose(sim.numpy(),
                             [[2. / 12, 0., 6. / 400], [1. / 12, 0., 5. / 400]],
                             rtol=1e-6)


def test_neg_sq_dist_similarity_uses_centers():
  # Centers: B1 (5.5, 4), (7.5, 6.5); anchors (1, 1) and (5.5, 4).
  anchors = _bl([[0., 0., 2., 2.], [4., 3., 7., 5.]])
  sim = rsc.NegSqDistSimilarity().compare(_bl(B1), anchors)
  # (5.5-1)^2 + (4-1)^2 = 20.25 + 9 = 29.25; (7.5-1)^2 + (6.5-1)^2 = 72.5;
  # (7.5-5.5)^2 + (6.5-4)^2 = 4 + 6.25 = 10.25.
  np.testing.assert_allclose(sim.numpy(), [[-29.25, 0.], [-72.5, -10.25]])


def test_giou_similarity():
  sim = rsc.GIouSimilarity().compare(_bl([[0., 0., 2., 2.]]),
                                     _bl([[1., 1., 3., 3.], [0., 0., 2., 2.]]))
  np.testing.assert_allclose(sim.numpy(), [[1. / 7 - 2. / 9, 1.]], rtol=1e-6)


def test_empty_and_graph_mode():
  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2)
  def fn(a, b):
    return rsc.IouSimilarity().compare(box_list.BoxList(a),
                                       box_list.BoxList(b))
  assert fn(tf.zeros([0, 4]), tf.constant(B2)).shape == (0, 3)
  assert fn(tf.constant(B1), tf.zeros([0, 4])).shape == (2, 0)


def test_rejects_non_boxlist():
  with pytest.raises(ValueError, match='boxlist1'):
    rsc.IouSimilarity().compare(tf.zeros([1, 4]), _bl(B1))
