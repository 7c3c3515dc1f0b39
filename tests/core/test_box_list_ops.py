import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import box_list_ops


def _bl(boxes, **fields):
  bl = box_list.BoxList(tf.constant(boxes, tf.float32))
  for k, v in fields.items():
    bl.add_field(k, tf.constant(v))
  return bl


# Boxes of the TF OD API's box_list_ops tests.
B1 = [[4., 3., 7., 5.], [5., 6., 10., 7.]]             # areas 6, 5
B2 = [[3., 4., 6., 8.], [14., 14., 15., 15.], [0., 0., 20., 20.]]  # 12, 1, 400


def test_area_and_height_width():
  bl = _bl([[0., 0., 2., 3.], [1., 1., 2., 2.]])
  np.testing.assert_allclose(box_list_ops.area(bl).numpy(), [6., 1.])
  h, w = box_list_ops.height_width(bl)
  np.testing.assert_allclose(h.numpy(), [2., 1.])
  np.testing.assert_allclose(w.numpy(), [3., 1.])


def test_intersection_iou_ioa():
  # B1[0] & B2[0]: y [4, 6] x [4, 5] -> 2; union 6 + 12 - 2 = 16.
  # B1[1] & B2[0]: y [5, 6] x [6, 7] -> 1; union 5 + 12 - 1 = 16.
  # B2[2] contains both B1 boxes: intersections 6 and 5, union 400.
  b1, b2 = _bl(B1), _bl(B2)
  np.testing.assert_allclose(box_list_ops.intersection(b1, b2).numpy(),
                             [[2., 0., 6.], [1., 0., 5.]])
  np.testing.assert_allclose(box_list_ops.iou(b1, b2).numpy(),
                             [[2. / 16, 0., 6. / 400], [1. / 16, 0., 5. / 400]],
                             rtol=1e-6)
  # ioa = intersection / area(boxlist2 box).
  np.testing.assert_allclose(box_list_ops.ioa(b1, b2).numpy(),
                             [[2. / 12, 0., 6. / 400], [1. / 12, 0., 5. / 400]],
                             rtol=1e-6)


def test_matched_ops():
  b1 = _bl(B1)
  b2 = _bl([B2[0], B2[2]])
  np.testing.assert_allclose(
      box_list_ops.matched_intersection(b1, b2).numpy(), [2., 5.])
  np.testing.assert_allclose(box_list_ops.matched_iou(b1, b2).numpy(),
                             [2. / 16, 5. / 400], rtol=1e-6)
  with pytest.raises(ValueError, match='same number'):
    box_list_ops.matched_iou(b1, _bl(B2))


def test_giou_golden():
  a = [0., 0., 2., 2.]
  b = [1., 1., 3., 3.]   # inter 1, union 7, enclosing 3x3 = 9
  c = [2., 2., 3., 3.]   # with `a`... see below
  d = [3., 3., 4., 4.]   # with `a`: inter 0, union 5, enclosing 16
  g = box_list_ops.giou(_bl([a]), _bl([a, b, d])).numpy()
  # GIoU = IoU - (C - U) / C (Rezatofighi et al. 2019, Alg. 1).
  np.testing.assert_allclose(
      g, [[1., 1. / 7 - 2. / 9, 0. - 11. / 16]], rtol=1e-6)
  m = box_list_ops.matched_giou(_bl([a, b]), _bl([b, c])).numpy()
  # b & c: inter [2,3]^2 = 1, union 4 + 1 - 1 = 4, enclosing [1,3]^2 = 4.
  np.testing.assert_allclose(m, [1. / 7 - 2. / 9, 0.25], rtol=1e-6)
  # Zero-area identical boxes: all ratios 0.
  z = box_list_ops.matched_giou(_bl([[1., 1., 1., 1.]]),
                                _bl([[1., 1., 1., 1.]])).numpy()
  np.testing.assert_allclose(z, [0.])


def test_batch_overlaps_match_per_image():
  b1 = tf.constant([B1, B1])
  b2 = tf.constant([B2, B2])
  np.testing.assert_allclose(
      box_list_ops.batch_iou(b1, b2).numpy()[1],
      box_list_ops.iou(_bl(B1), _bl(B2)).numpy())
  g = box_list_ops.batch_matched_giou(b1, b1)
  np.testing.assert_allclose(g.numpy(), np.ones([2, 2]), rtol=1e-6)
  np.testing.assert_allclose(
      box_list_ops.batch_matched_iou(b1, b1).numpy(), np.ones([2, 2]))


def test_distances():
  b1 = _bl([[0., 0., 2., 2.]])            # center (1, 1)
  b2 = _bl([[2., 3., 4., 5.]])            # center (3, 4)
  # centers: (3-1)^2 + (4-1)^2 = 13; corners: 4 + 9 + 4 + 9 = 26.
  np.testing.assert_allclose(box_list_ops.center_sq_dist(b1, b2).numpy(),
                             [[13.]])
  np.testing.assert_allclose(box_list_ops.sq_dist(b1, b2).numpy(), [[26.]])


def test_scale_keeps_fields():
  bl = _bl([[0., 0., 1., 1.]], scores=[0.5])
  out = box_list_ops.scale(bl, 10., 20.)
  np.testing.assert_allclose(out.get().numpy(), [[0., 0., 10., 20.]])
  np.testing.assert_allclose(out.get_field('scores').numpy(), [0.5])


def test_clip_to_window():
  window = [0., 0., 9., 14.]
  boxes = [[5., 6., 10., 14.],    # clipped to [5, 6, 9, 14]
           [-2., -3., 4., 5.],    # clipped to [0, 0, 4, 5]
           [-5., -6., -1., -1.]]  # outside: area 0 after clipping
  bl = _bl(boxes, classes=[1, 2, 3])
  out = box_list_ops.clip_to_window(bl, window)
  np.testing.assert_allclose(out.get().numpy(),
                             [[5., 6., 9., 14.], [0., 0., 4., 5.]])
  np.testing.assert_array_equal(out.get_field('classes').numpy(), [1, 2])
  out = box_list_ops.clip_to_window(bl, window, filter_nonoverlapping=False)
  np.testing.assert_allclose(out.get().numpy()[2], [0., 0., 0., 0.])
  with pytest.raises(ValueError, match='window'):
    box_list_ops.clip_to_window(bl, [0., 0., 1.])


def test_prune_outside_and_completely_outside():
  window = [5., 5., 10., 10.]
  boxes = [[5., 5., 6., 6.],      # inside
           [-1., -4., 2., 2.],    # completely outside
           [2., 3., 5.5, 6.],     # partly outside
           [2., 3., 5., 6.],      # touches the top edge only
           [6., 6., 10., 10.]]    # inside
  bl = _bl(boxes, scores=[1., 2., 3., 4., 5.])
  out, idx = box_list_ops.prune_outside_window(bl, window)
  np.testing.assert_array_equal(idx.numpy(), [0, 4])
  np.testing.assert_allclose(out.get_field('scores').numpy(), [1., 5.])
  out, idx = box_list_ops.prune_completely_outside_window(bl, window)
  np.testing.assert_array_equal(idx.numpy(), [0, 2, 4])


def test_prune_small_boxes():
  bl = _bl([[0., 0., 3., 4.], [0., 0., 2., 5.], [0., 0., 4., 3.]])
  out = box_list_ops.prune_small_boxes(bl, 3.)
  np.testing.assert_allclose(out.get().numpy(),
                             [[0., 0., 3., 4.], [0., 0., 4., 3.]])


def test_change_coordinate_frame():
  bl = _bl([[0., 0., 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
  out = box_list_ops.change_coordinate_frame(bl, [0.25, 0.25, 0.75, 0.75])
  # (y - 0.25) / 0.5
  np.testing.assert_allclose(out.get().numpy(),
                             [[-0.5, -0.5, 0.5, 0.5], [0., 0., 1., 1.]])


def test_normalized_absolute_round_trip_and_check_range():
  bl = _bl([[10., 20., 50., 100.]])
  norm = box_list_ops.to_normalized_coordinates(bl, 100, 200)
  np.testing.assert_allclose(norm.get().numpy(), [[0.1, 0.1, 0.5, 0.5]])
  back = box_list_ops.to_absolute_coordinates(norm, 100, 200)
  np.testing.assert_allclose(back.get().numpy(), bl.get().numpy(), rtol=1e-6)
  with pytest.raises(tf.errors.InvalidArgumentError):
    box_list_ops.to_normalized_coordinates(norm, 100, 200)
  with pytest.raises(tf.errors.InvalidArgumentError):
    box_list_ops.to_absolute_coordinates(bl, 100, 200)
  # check_range=False skips the assertion; empty BoxLists pass.
  box_list_ops.to_absolute_coordinates(bl, 100, 200, check_range=False)
  empty = _bl(np.zeros([0, 4]))
  assert box_list_ops.to_normalized_coordinates(empty, 5, 5).num_boxes() == 0
  assert box_list_ops.to_absolute_coordinates(empty, 5, 5).num_boxes() == 0


def test_check_range_in_graph_mode():
  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
  def fn(boxes):
    return box_list_ops.to_normalized_coordinates(
        box_list.BoxList(boxes), 10, 10).get()
  np.testing.assert_allclose(fn(tf.constant([[0., 0., 5., 10.]])).numpy(),
                             [[0., 0., 0.5, 1.]])
  with pytest.raises(tf.errors.InvalidArgumentError):
    fn(tf.constant([[0., 0., 0.5, 1.]]))


def test_gather_boolean_mask_concatenate():
  bl = _bl([[0., 0., 1., 1.], [1., 1., 2., 2.], [2., 2., 3., 3.]],
           scores=[0.1, 0.2, 0.3], classes=[0, 1, 2])
  out = box_list_ops.gather(bl, tf.constant([2, 0]))
  np.testing.assert_allclose(out.get().numpy()[0], [2., 2., 3., 3.])
  np.testing.assert_array_equal(out.get_field('classes').numpy(), [2, 0])
  out = box_list_ops.gather(bl, tf.constant([1], tf.int64), fields=['scores'])
  assert out.get_extra_fields() == ['scores']
  with pytest.raises(ValueError, match='indices'):
    box_list_ops.gather(bl, tf.constant([[1]]))
  with pytest.raises(ValueError, match='missing_field'):
    box_list_ops.gather(bl, tf.constant([1]), fields=['missing_field'])
  out = box_list_ops.boolean_mask(bl, tf.constant([True, False, True]))
  np.testing.assert_allclose(out.get_field('scores').numpy(), [0.1, 0.3])
  with pytest.raises(ValueError, match='indicator'):
    box_list_ops.boolean_mask(bl, tf.constant([1, 0, 1]))
  cat = box_list_ops.concatenate([bl, out])
  assert cat.num_boxes_static() == 5
  np.testing.assert_array_equal(cat.get_field('classes').numpy(),
                                [0, 1, 2, 0, 2])
  with pytest.raises(ValueError, match='scores'):
    box_list_ops.concatenate([bl, _bl([[0., 0., 1., 1.]])])
  with pytest.raises(ValueError, match='non-empty'):
    box_list_ops.concatenate([])


def test_sort_and_filter_scores():
  bl = _bl([[0., 0., 1., 1.], [1., 1., 2., 2.], [2., 2., 3., 3.]],
           scores=[0.2, float('nan'), 0.7])
  out = box_list_ops.filter_scores_greater_than(bl, 0.1)
  np.testing.assert_allclose(out.get_field('scores').numpy(), [0.2, 0.7])
  bl = _bl([[0., 0., 1., 1.], [1., 1., 2., 2.], [2., 2., 3., 3.]],
           scores=[0.2, 0.9, 0.7])
  out = box_list_ops.sort_by_field(bl, 'scores')
  np.testing.assert_allclose(out.get_field('scores').numpy(), [0.9, 0.7, 0.2])
  np.testing.assert_allclose(out.get().numpy()[0], [1., 1., 2., 2.])
  out = box_list_ops.sort_by_field(bl, 'scores', box_list_ops.SortOrder.ascend)
  np.testing.assert_allclose(out.get_field('scores').numpy(), [0.2, 0.7, 0.9])
  with pytest.raises(ValueError, match='scores'):
    box_list_ops.filter_scores_greater_than(_bl([[0., 0., 1., 1.]]), 0.)


NMS_BOXES = [[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, -0.1, 1, 0.9],
             [0, 10, 1, 11], [0, 10.1, 1, 11.1], [0, 100, 1, 101]]
NMS_SCORES = [.9, .75, .6, .95, .5, .3]


def test_non_max_suppression():
  # IoU([0,0,1,1], [0,0.1,1,1.1]) = 0.9 / 1.1 > 0.5: suppressed; the three
  # clusters keep their best: 0.95 (box 3), 0.9 (box 0), 0.3 (box 5).
  bl = _bl(NMS_BOXES, scores=NMS_SCORES, classes=[0, 1, 2, 3, 4, 5])
  out, num = box_list_ops.non_max_suppression(bl, 0.5, 3)
  assert int(num) == 3
  np.testing.assert_allclose(out.get().numpy(),
                             [[0, 10, 1, 11], [0, 0, 1, 1], [0, 100, 1, 101]])
  np.testing.assert_array_equal(out.get_field('classes').numpy(), [3, 0, 5])
  out, num = box_list_ops.non_max_suppression(
      bl, 0.5, 5, score_thresh=0.4, pad_to_max_output_size=True)
  assert int(num) == 2 and out.num_boxes_static() == 5
  np.testing.assert_allclose(out.get_field('scores').numpy(),
                             [0.95, 0.9, 0., 0., 0.])
  with pytest.raises(ValueError, match='iou_thresh'):
    box_list_ops.non_max_suppression(bl, 1.5, 3)


def test_soft_nms_decays_scores():
  bl = _bl(NMS_BOXES[:2], scores=NMS_SCORES[:2])
  out, num = box_list_ops.non_max_suppression(bl, 1.0, 2, soft_nms_sigma=0.5)
  assert int(num) == 2
  # Gaussian Soft-NMS (TF): s * exp(-iou^2 / sigma) with a scale of 0.5 in
  # TF's kernel: exp(-0.5 * iou^2 / sigma), iou = 0.9 / 1.1.
  iou = 0.9 / 1.1
  np.testing.assert_allclose(out.get_field('scores').numpy(),
                             [0.9, 0.75 * math.exp(-0.5 * iou**2 / 0.5)],
                             rtol=1e-4)


def test_empty_inputs_and_graph_mode():
  @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                tf.TensorSpec([None], tf.float32)])
  def fn(boxes, scores):
    bl = box_list.BoxList(boxes)
    bl.add_field('scores', scores)
    sim = box_list_ops.iou(bl, box_list.BoxList(tf.constant(B2)))
    clipped = box_list_ops.clip_to_window(bl, [0., 0., 5., 5.])
    nms, num = box_list_ops.non_max_suppression(
        bl, 0.5, 4, pad_to_max_output_size=True)
    return sim, clipped.num_boxes(), nms.get(), num

  sim, n, nms, num = fn(tf.zeros([0, 4]), tf.zeros([0]))
  assert sim.shape == (0, 3) and int(n) == 0 and int(num) == 0
  np.testing.assert_allclose(nms.numpy(), np.zeros([4, 4]))
  sim, n, _, num = fn(tf.constant(B1), tf.constant([0.5, 0.6]))
  np.testing.assert_allclose(sim.numpy()[0, 0], 2. / 16)
  assert int(n) == 1 and int(num) == 2
  assert box_list_ops.iou(_bl(B1), _bl(np.zeros([0, 4]))).shape == (2, 0)


def test_pad_or_clip_box_list():
  bl = _bl(B2, valid=[True, True, False])
  out = box_list_ops.pad_or_clip_box_list(bl, 4)
  assert out.get().shape == (4, 4)
  np.testing.assert_array_equal(out.get_field('valid').numpy(),
                                [True, True, False, False])
  out = box_list_ops.pad_or_clip_box_list(bl, 1)
  np.testing.assert_allclose(out.get().numpy(), [B2[0]])
