"""Tests for od_meta.core.balanced_positive_negative_sampler."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import balanced_positive_negative_sampler as bpns
from od_meta.core import minibatch_sampler


def _counts(sampled, labels):
  sampled = np.asarray(sampled)
  labels = np.asarray(labels)
  return int((sampled & labels).sum()), int((sampled & ~labels).sum())


@pytest.mark.parametrize('is_static', [False, True])
def test_few_positives_filled_with_negatives(is_static):
  # RPN setting (Faster R-CNN 3.1.3): 256/0.5 style with 10 positives of 300:
  # batch 64, fraction 0.5 -> all 10 positives + 64 - 10 = 54 negatives.
  tf.random.set_seed(1)
  labels = np.zeros(300, bool)
  labels[:10] = True
  indicator = np.ones(300, bool)
  sampler = bpns.BalancedPositiveNegativeSampler(0.5, is_static=is_static)
  sampled = sampler.subsample(indicator, 64, labels).numpy()
  assert _counts(sampled, labels) == (10, 54)


@pytest.mark.parametrize('is_static', [False, True])
def test_many_positives_capped(is_static):
  # Second stage: batch 64, fraction 0.25 -> floor(16) positives, 48 negatives.
  tf.random.set_seed(2)
  labels = np.zeros(300, bool)
  labels[::3] = True  # 100 positives
  indicator = np.ones(300, bool)
  indicator[1] = False  # a negative that must never be sampled
  sampler = bpns.BalancedPositiveNegativeSampler(0.25, is_static=is_static)
  for _ in range(5):
    sampled = sampler.subsample(indicator, 64, labels).numpy()
    assert _counts(sampled, labels) == (16, 48)
    assert not sampled[1]


def test_batch_size_none_keeps_ratio():
  # All 10 positives; (1 - 0.25) / 0.25 * 10 = 30 negatives.
  labels = np.zeros(100, bool)
  labels[:10] = True
  sampler = bpns.BalancedPositiveNegativeSampler(0.25)
  sampled = sampler.subsample(np.ones(100, bool), None, labels)
  assert _counts(sampled.numpy(), labels) == (10, 30)
  with pytest.raises(ValueError, match='batch_size'):
    bpns.BalancedPositiveNegativeSampler(0.25, is_static=True).subsample(
        np.ones(100, bool), None, labels)


@pytest.mark.parametrize('is_static', [False, True])
def test_too_few_candidates_and_empty(is_static):
  sampler = bpns.BalancedPositiveNegativeSampler(0.5, is_static=is_static)
  labels = np.array([True, False, False])
  sampled = sampler.subsample(np.ones(3, bool), 64, labels).numpy()
  np.testing.assert_array_equal(sampled, [True, True, True])
  empty = sampler.subsample(np.zeros(0, bool), 64, np.zeros(0, bool))
  assert empty.shape == (0,)


@pytest.mark.parametrize('is_static', [False, True])
def test_under_tf_function_dynamic_n_and_coverage(is_static):
  tf.random.set_seed(3)
  sampler = bpns.BalancedPositiveNegativeSampler(0.5, is_static=is_static)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.bool),
                                tf.TensorSpec([None], tf.bool)])
  def fn(indicator, labels):
    return sampler.subsample(indicator, 8, labels)

  labels = np.zeros(20, bool)
  labels[:2] = True
  seen = np.zeros(20, bool)
  for _ in range(30):
    sampled = fn(np.ones(20, bool), labels).numpy()
    assert _counts(sampled, labels) == (2, 6)
    seen |= sampled
  # Uniform sampling: every negative is drawn at least once in 30 draws
  # (P(miss one) = (12/18)^30 ~ 5e-6).
  assert seen.all()


def test_subsample_indicator_and_errors():
  tf.random.set_seed(4)
  indicator = np.array([True, False, True, True, False])
  out = minibatch_sampler.MinibatchSampler.subsample_indicator(indicator, 2)
  out = out.numpy()
  assert out.sum() == 2 and not (out & ~indicator).any()
  out = minibatch_sampler.MinibatchSampler.subsample_indicator(indicator, 10)
  np.testing.assert_array_equal(out.numpy(), indicator)
  with pytest.raises(ValueError, match='positive_fraction'):
    bpns.BalancedPositiveNegativeSampler(1.5)
  with pytest.raises(ValueError, match='labels'):
    bpns.BalancedPositiveNegativeSampler().subsample(
        np.ones(3, bool), 2, np.ones(3, np.float32))
