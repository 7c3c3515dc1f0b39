"""Base class for minibatch samplers (choosing which anchors enter the loss).

Follows the TF OD API's `object_detection/core/minibatch_sampler.py`: a
sampler takes a boolean indicator of the candidate anchors and returns a
boolean indicator of the sampled subset.
"""

import abc

import tensorflow as tf


class MinibatchSampler(abc.ABC):
  """Abstract base class for subsampling minibatches."""

  @abc.abstractmethod
  def subsample(self, indicator, batch_size, **params):
    """Returns a subsample of the entries marked True in `indicator`.

    Args:
      indicator: bool `[N]`, the candidates that may be sampled.
      batch_size: int, the desired number of samples (or None where the
        subclass allows it).
      **params: subclass-specific arguments (e.g. `labels`).

    Returns:
      bool `[N]`, True for the sampled entries (a subset of `indicator`).
    """

  @staticmethod
  def subsample_indicator(indicator, num_samples):
    """Samples `min(num_samples, count(indicator))` True entries uniformly.

    Args:
      indicator: bool `[N]`.
      num_samples: int or int32 scalar tensor >= 0.

    Returns:
      bool `[N]`, True at the sampled entries (a random subset of the True
      entries of `indicator`, of size `min(num_samples, sum(indicator))`).

    Raises:
      ValueError: if `indicator` is not rank 1 bool.
    """
    indicator = tf.convert_to_tensor(indicator)
    if indicator.dtype != tf.bool:
      raise ValueError(f'indicator must be bool, got {indicator.dtype}.')
    if indicator.shape.rank is not None and indicator.shape.rank != 1:
      raise ValueError(f'indicator must be [N], got {indicator.shape}.')
    indices = tf.reshape(tf.where(indicator), [-1])
    indices = tf.random.shuffle(indices)
    num_samples = tf.minimum(tf.size(indices),
                             tf.cast(num_samples, tf.int32))
    selected = indices[:num_samples]
    size = tf.shape(indicator, out_type=tf.int64)[0]
    dense = tf.scatter_nd(selected[:, tf.newaxis],
                          tf.ones_like(selected, dtype=tf.int32), [size])
    return tf.greater(dense, 0)
