"""Tests for od_meta.core.hard_example_miner (SSD OHEM)."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import box_list
from od_meta.core import hard_example_miner
from od_meta.core import matcher

# Anchors 0 and 1 overlap (IoU 1/1.05 = 0.952 > 0.7); the rest are disjoint.
BOXES = np.array([[0, 0, 1, 1], [0, 0, 1, 1.05], [0, 2, 1, 3], [0, 4, 1, 5],
                  [0, 6, 1, 7], [0, 8, 1, 9]], np.float32)
CLS = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], np.float32)
LOC = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], np.float32)


def _run(miner, cls=CLS, loc=LOC, matches=None, batch=1):
  boxlists = [box_list.BoxList(tf.constant(BOXES)) for _ in range(batch)]
  match_list = None
  if matches is not None:
    match_list = [matcher.Match(tf.constant(m, tf.int32)) for m in matches]
  loc_loss, cls_loss = miner(np.stack([loc] * batch), np.stack([cls] * batch),
                             boxlists, match_list)
  return float(loc_loss.numpy()), float(cls_loss.numpy())


def test_nms_and_num_hard_examples():
  # Ranking by cls loss: 0 (5), [1 suppressed by 0], 2 (3), 3 (2) -> kept
  # [0, 2, 3]: cls 5 + 3 + 2 = 10, loc 1.
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=3, iou_threshold=0.7, loss_type='cls')
  assert _run(miner) == (1.0, 10.0)
  # Without duplicate removal (iou 1.0): 0, 1, 2 -> 12.
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=3, iou_threshold=1.0, loss_type='cls')
  assert _run(miner) == (1.0, 12.0)
  # Two images sum.
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=3, iou_threshold=0.7, loss_type='cls')
  assert _run(miner, batch=2) == (2.0, 20.0)


def test_negative_positive_ratio_and_ignored():
  # SSD 2.2: neg:pos <= ratio. Anchor 0 positive, 3 ignored (-2), others
  # negative. NMS keeps [0, 2, 3, 4, 5]; ratio 1 -> 1 negative: the hardest,
  # anchor 2. The ignored anchor 3 is never kept. cls 5 + 3 = 8, loc 1.
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=None, iou_threshold=0.7, loss_type='cls',
      max_negatives_per_positive=1.0)
  assert _run(miner, matches=[[0, -1, -1, -2, -1, -1]]) == (1.0, 8.0)
  stats = miner.summarize()
  np.testing.assert_allclose(stats['HardExampleMiner/NumPositives'], 1.0)
  np.testing.assert_allclose(stats['HardExampleMiner/NumNegatives'], 1.0)
  # Ratio 3 (SSD): all 3 remaining negatives 2, 4, 5: 5 + 3 + 1 + 0.5.
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=None, iou_threshold=0.7, loss_type='cls',
      max_negatives_per_positive=3.0)
  assert _run(miner, matches=[[0, -1, -1, -2, -1, -1]]) == (1.0, 9.5)


def test_min_negatives_without_positives():
  # No positives: max(min_negatives=2, 3 * 0) = 2 hardest negatives 0, 2.
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=None, iou_threshold=0.7, loss_type='cls',
      max_negatives_per_positive=3.0, min_negatives_per_image=2)
  assert _run(miner, matches=[[-1] * 6]) == (1.0, 8.0)


def test_both_loss_type_ranking():
  # 'both': 0.05 * cls + 0.06 * loc; anchor 5 with loc 100 ranks first
  # (0.025 + 6.0 = 6.025 > 0.31), so num_hard_examples=1 keeps only it.
  loc = np.array([1.0, 0, 0, 0, 0, 100.0], np.float32)
  miner = hard_example_miner.HardExampleMiner(num_hard_examples=1)
  assert _run(miner, loc=loc) == (100.0, 0.5)


def test_under_tf_function_and_empty():
  miner = hard_example_miner.HardExampleMiner(
      num_hard_examples=3, iou_threshold=0.7, loss_type='cls',
      max_negatives_per_positive=3.0)

  @tf.function(input_signature=[tf.TensorSpec([1, None, 4]),
                                tf.TensorSpec([1, None]),
                                tf.TensorSpec([1, None]),
                                tf.TensorSpec([1, None], tf.int32)])
  def fn(boxes, loc, cls, matches):
    return miner(loc, cls, [box_list.BoxList(boxes[0])],
                 [matcher.Match(matches[0])])

  loc_loss, cls_loss = fn(BOXES[None], LOC[None], CLS[None],
                          np.array([[0, -1, -1, -1, -1, -1]], np.int32))
  assert (loc_loss.numpy(), cls_loss.numpy()) == (1.0, 10.0)
  loc_loss, cls_loss = fn(np.zeros([1, 0, 4], np.float32),
                          np.zeros([1, 0], np.float32),
                          np.zeros([1, 0], np.float32),
                          np.zeros([1, 0], np.int32))
  assert (loc_loss.numpy(), cls_loss.numpy()) == (0.0, 0.0)


def test_bad_arguments():
  with pytest.raises(ValueError, match='loss_type'):
    hard_example_miner.HardExampleMiner(loss_type='focal')
  miner = hard_example_miner.HardExampleMiner()
  with pytest.raises(ValueError, match='match_list'):
    miner(np.zeros([1, 6], np.float32), np.zeros([1, 6], np.float32),
          [box_list.BoxList(BOXES)], [None, None])
  with pytest.raises(ValueError, match='location_losses'):
    miner(np.zeros([2, 6], np.float32), np.zeros([2, 6], np.float32),
          [box_list.BoxList(BOXES)])


def test_batched_path_without_nms_matches_per_image_nms_path():
  # iou_threshold 1.0 takes the batched top-k path; on pairwise-disjoint
  # boxes NMS at 0.5 suppresses nothing, so the per-image NMS path must
  # select the same anchors and give the same sums and mining statistics.
  rng = np.random.default_rng(0)
  batch, num_anchors = 3, 40
  x = np.arange(num_anchors, dtype=np.float32) * 2.0
  boxes = np.stack([np.zeros_like(x), x, np.ones_like(x), x + 1.0], axis=1)
  cls = rng.uniform(0, 5, (batch, num_anchors)).astype(np.float32)
  loc = rng.uniform(0, 1, (batch, num_anchors)).astype(np.float32)
  matches = rng.choice([-2, -1, -1, -1, 0, 1], (batch, num_anchors))
  matches[2] = np.where(matches[2] >= 0, -1, matches[2])  # no positives
  results = []
  for iou in (1.0, 0.5):
    miner = hard_example_miner.HardExampleMiner(
        num_hard_examples=25, iou_threshold=iou, loss_type='both',
        cls_loss_weight=1.0, loc_loss_weight=0.5,
        max_negatives_per_positive=2, min_negatives_per_image=3)
    loc_loss, cls_loss = miner(
        loc, cls, [box_list.BoxList(tf.constant(boxes))] * batch,
        [matcher.Match(tf.constant(m, tf.int32)) for m in matches])
    stats = miner.summarize()
    results.append((float(loc_loss), float(cls_loss),
                    float(stats['HardExampleMiner/NumPositives']),
                    float(stats['HardExampleMiner/NumNegatives'])))
  np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
  # Image 2 has no positives: exactly min_negatives_per_image negatives.
  assert results[0][3] > 0
