"""Balanced positive / negative minibatch sampler (Faster R-CNN).

Ren et al. 2015 (Faster R-CNN), section 3.1.3: each RPN minibatch samples 256
anchors with up to half positives, padding with negatives; the second stage
(Fast R-CNN, Girshick 2015, section 2.3) samples 64 RoIs (TF OD API default;
the paper uses 128) with 25% positives. Semantics follow the TF OD API's
`object_detection/core/balanced_positive_negative_sampler.py`.
"""

import tensorflow as tf

from od_meta.core import minibatch_sampler


class BalancedPositiveNegativeSampler(minibatch_sampler.MinibatchSampler):
  """Subsamples anchors to a desired positive fraction.

  Args:
    positive_fraction: float in [0, 1], the desired fraction of positives in
      the minibatch (RPN: 0.5, second stage: 0.25).
    is_static: if True, sampling uses only fixed-shape ops (random
      permutation + cumulative counts, no `tf.where` with dynamic output),
      suitable for TPUs / XLA; requires an integer `batch_size`. The sampled
      distribution is the same as the dynamic version's.

  Raises:
    ValueError: if positive_fraction is outside [0, 1].
  """

  def __init__(self, positive_fraction=0.5, is_static=False):
    if not 0.0 <= positive_fraction <= 1.0:
      raise ValueError('positive_fraction must be in [0, 1], got '
                       f'{positive_fraction}.')
    self._positive_fraction = float(positive_fraction)
    self._is_static = bool(is_static)

  def subsample(self, indicator, batch_size, labels, scope=None):
    """Returns a balanced random subsample of the candidate anchors.

    With an integer `batch_size`: up to `floor(positive_fraction *
    batch_size)` positives are sampled, and the rest of the batch
    (`batch_size - num_sampled_positives`) is filled with negatives, so the
    result has `min(batch_size, count(indicator))` entries when there are
    enough negatives. With `batch_size=None` (dynamic mode only): all
    positives are kept and `floor((1 - f) / f * num_positives)` negatives are
    sampled.

    Args:
      indicator: bool `[N]`, anchors that may be sampled (e.g. not ignored).
      batch_size: int > 0, or None.
      labels: bool `[N]`, True for positive anchors.
      scope: optional name scope.

    Returns:
      bool `[N]`, True for sampled anchors (a subset of `indicator`).

    Raises:
      ValueError: on bad ranks/dtypes, `batch_size=None` with is_static, or
        `batch_size=None` with positive_fraction 0.
    """
    with tf.name_scope(scope or 'BalancedPositiveNegativeSampler'):
      indicator = tf.convert_to_tensor(indicator)
      labels = tf.convert_to_tensor(labels)
      for name, tensor in (('indicator', indicator), ('labels', labels)):
        if tensor.dtype != tf.bool:
          raise ValueError(f'{name} must be bool, got {tensor.dtype}.')
        if tensor.shape.rank is not None and tensor.shape.rank != 1:
          raise ValueError(f'{name} must be [N], got {tensor.shape}.')
      if batch_size is not None and int(batch_size) < 0:
        raise ValueError(f'batch_size must be >= 0, got {batch_size}.')
      positive_idx = tf.logical_and(labels, indicator)
      negative_idx = tf.logical_and(tf.logical_not(labels), indicator)
      if self._is_static:
        if batch_size is None:
          raise ValueError('batch_size must be an int when is_static=True.')
        return self._static_subsample(positive_idx, negative_idx,
                                      int(batch_size))
      if batch_size is None:
        if self._positive_fraction == 0.0:
          raise ValueError('batch_size=None requires positive_fraction > 0.')
        max_num_pos = tf.reduce_sum(tf.cast(positive_idx, tf.int32))
      else:
        max_num_pos = int(self._positive_fraction * int(batch_size))
      sampled_pos = self.subsample_indicator(positive_idx, max_num_pos)
      num_sampled_pos = tf.reduce_sum(tf.cast(sampled_pos, tf.int32))
      if batch_size is None:
        ratio = (1.0 - self._positive_fraction) / self._positive_fraction
        max_num_neg = tf.cast(ratio * tf.cast(num_sampled_pos, tf.float32),
                              tf.int32)
      else:
        max_num_neg = int(batch_size) - num_sampled_pos
      sampled_neg = self.subsample_indicator(negative_idx, max_num_neg)
      return tf.logical_or(sampled_pos, sampled_neg)

  def _static_subsample(self, positive_idx, negative_idx, batch_size):
    """Fixed-shape sampling: first k of each kind in a random permutation."""
    n = tf.shape(positive_idx)[0]
    perm = tf.random.shuffle(tf.range(n))
    pos_perm = tf.gather(positive_idx, perm)
    neg_perm = tf.gather(negative_idx, perm)
    max_num_pos = int(self._positive_fraction * batch_size)
    pos_rank = tf.cumsum(tf.cast(pos_perm, tf.int32))
    sampled_pos = tf.logical_and(pos_perm, pos_rank <= max_num_pos)
    num_pos = tf.reduce_sum(tf.cast(sampled_pos, tf.int32))
    neg_rank = tf.cumsum(tf.cast(neg_perm, tf.int32))
    sampled_neg = tf.logical_and(neg_perm, neg_rank <= batch_size - num_pos)
    sampled_perm = tf.logical_or(sampled_pos, sampled_neg)
    return tf.gather(sampled_perm, tf.math.invert_permutation(perm))
