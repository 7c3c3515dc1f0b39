"""Matcher interface and the `Match` result.

Modelled on the TF Object Detection API's `object_detection/core/matcher.py`.
A matcher takes a similarity matrix `[N_gt, M_anchors]` (rows are
groundtruth, columns anchors, as in the TF OD API) and assigns each column
(anchor) one of:

  * `>= 0`: the index of the matched groundtruth row;
  * `-1`: unmatched (a negative / background anchor);
  * `-2`: ignored (contributes to no loss).

`Match` wraps that int32 `[M]` vector and gathers per-anchor targets from it.
"""

import abc

import tensorflow as tf

UNMATCHED = -1
IGNORED = -2


def matmul_gather_on_zeroth_axis(params, indices):
  """`tf.gather(params, indices)` computed as a one-hot matmul.

  Faster than gather on some accelerators (TPU) for small `params`; float
  dtypes only.

  Args:
    params: float tensor `[R, ...]`.
    indices: int32 `[K]` in `[0, R)`.

  Returns:
    tensor `[K, ...]` of `params`' dtype.
  """
  params = tf.convert_to_tensor(params)
  rows = tf.shape(params)[0]
  flat = tf.reshape(params, tf.stack([rows, -1]))
  one_hot = tf.one_hot(indices, rows, dtype=params.dtype)
  gathered = tf.matmul(one_hot, flat)
  out_shape = tf.concat([tf.shape(indices), tf.shape(params)[1:]], axis=0)
  out = tf.reshape(gathered, out_shape)
  out.set_shape(indices.shape.concatenate(params.shape[1:]))
  return out


class Match:
  """The result of a matcher: int32 `[M]` match results, one per anchor."""

  def __init__(self, match_results, use_matmul_gather=False):
    """Creates a Match.

    Args:
      match_results: int32 `[M]`; `>= 0` matched groundtruth row, -1
        unmatched, -2 ignored.
      use_matmul_gather: if True, `gather_based_on_match` uses a one-hot
        matmul instead of `tf.gather` (float inputs only).

    Raises:
      ValueError: if `match_results` is not a rank-1 int32 tensor.
    """
    match_results = tf.convert_to_tensor(match_results)
    if match_results.shape.rank != 1:
      raise ValueError(
          f'match_results must be rank 1, got shape {match_results.shape}')
    if match_results.dtype != tf.int32:
      raise ValueError(
          f'match_results must be int32, got {match_results.dtype}')
    self._match_results = match_results
    self._use_matmul_gather = use_matmul_gather

  @property
  def match_results(self):
    """int32 `[M]`, the raw match results."""
    return self._match_results

  @staticmethod
  def _indices(indicator):
    return tf.cast(tf.reshape(tf.where(indicator), [-1]), tf.int32)

  def matched_column_indices(self):
    """int32 `[num_matched]`, the columns (anchors) matched to a row."""
    return self._indices(self._match_results >= 0)

  def matched_column_indicator(self):
    """bool `[M]`, True where the column is matched."""
    return self._match_results >= 0

  def num_matched_columns(self):
    """int32 scalar, the number of matched columns."""
    return tf.reduce_sum(tf.cast(self.matched_column_indicator(), tf.int32))

  def unmatched_column_indices(self):
    """int32 `[num_unmatched]`, the columns with result -1."""
    return self._indices(tf.equal(self._match_results, UNMATCHED))

  def unmatched_column_indicator(self):
    """bool `[M]`, True where the column is unmatched (-1)."""
    return tf.equal(self._match_results, UNMATCHED)

  def num_unmatched_columns(self):
    """int32 scalar, the number of unmatched (-1) columns."""
    return tf.reduce_sum(tf.cast(self.unmatched_column_indicator(), tf.int32))

  def ignored_column_indices(self):
    """int32 `[num_ignored]`, the columns with result -2."""
    return self._indices(tf.equal(self._match_results, IGNORED))

  def ignored_column_indicator(self):
    """bool `[M]`, True where the column is ignored (-2)."""
    return tf.equal(self._match_results, IGNORED)

  def num_ignored_columns(self):
    """int32 scalar, the number of ignored (-2) columns."""
    return tf.reduce_sum(tf.cast(self.ignored_column_indicator(), tf.int32))

  def unmatched_or_ignored_column_indices(self):
    """int32, the columns with a negative result."""
    return self._indices(self._match_results < 0)

  def matched_row_indices(self):
    """int32 `[num_matched]`, the rows matched by `matched_column_indices()`
    (same order)."""
    return tf.gather(self._match_results, self.matched_column_indices())

  def num_matched_rows(self):
    """int32 scalar, the number of distinct rows matched."""
    return tf.size(tf.unique(self.matched_row_indices())[0])

  def gather_based_on_match(self, input_tensor, unmatched_value,
                            ignored_value):
    """Gathers one row of `input_tensor` per column according to the match.

    Args:
      input_tensor: tensor `[N, ...]` (one row per groundtruth).
      unmatched_value: value of shape `[...]` (broadcastable) used for
        unmatched columns.
      ignored_value: value of shape `[...]` (broadcastable) used for ignored
        columns.

    Returns:
      tensor `[M, ...]` of `input_tensor`'s dtype: row `match_results[j]` for
      matched column j, else `unmatched_value` / `ignored_value`.
    """
    input_tensor = tf.convert_to_tensor(input_tensor)
    row_shape = tf.shape(input_tensor)[1:]
    unmatched_value = tf.broadcast_to(
        tf.cast(unmatched_value, input_tensor.dtype), row_shape)
    ignored_value = tf.broadcast_to(
        tf.cast(ignored_value, input_tensor.dtype), row_shape)
    params = tf.concat(
        [tf.stack([ignored_value, unmatched_value]), input_tensor], axis=0)
    gather_indices = tf.maximum(self._match_results + 2, 0)
    if self._use_matmul_gather and params.dtype.is_floating:
      return matmul_gather_on_zeroth_axis(params, gather_indices)
    return tf.gather(params, gather_indices)


class Matcher(abc.ABC):
  """Abstract matcher: similarity `[N_gt, M_anchors]` -> `Match`."""

  def __init__(self, use_matmul_gather=False):
    """Args: use_matmul_gather: passed to the `Match`es returned."""
    self._use_matmul_gather = use_matmul_gather

  @property
  def matched_threshold(self):
    """The similarity at or above which a column is matched on its own
    merit (float), or None for matchers without one (bipartite)."""
    return None

  def match(self, similarity_matrix, valid_rows=None, scope=None):
    """Matches columns (anchors) to rows (groundtruth).

    Args:
      similarity_matrix: float32 `[N, M]`, rows groundtruth, columns
        anchors; higher is more similar. N and M may be 0 or dynamic.
      valid_rows: optional bool `[N]`; False rows (e.g. padding) are never
        matched. All rows are valid by default.
      scope: optional name scope.

    Returns:
      Match with int32 `[M]` results.

    Raises:
      ValueError: if `similarity_matrix` is not rank 2 or `valid_rows` is
        not rank 1.
    """
    similarity_matrix = tf.convert_to_tensor(similarity_matrix)
    if similarity_matrix.shape.rank != 2:
      raise ValueError(f'similarity_matrix must be rank 2 [N, M], got shape '
                       f'{similarity_matrix.shape}')
    similarity_matrix = tf.cast(similarity_matrix, tf.float32)
    with tf.name_scope(scope or type(self).__name__):
      if valid_rows is None:
        valid_rows = tf.ones(tf.shape(similarity_matrix)[:1], dtype=tf.bool)
      valid_rows = tf.cast(tf.convert_to_tensor(valid_rows), tf.bool)
      if valid_rows.shape.rank != 1:
        raise ValueError(
            f'valid_rows must be rank 1 [N], got shape {valid_rows.shape}')
      results = self._match(similarity_matrix, valid_rows)
      results = tf.cast(results, tf.int32)
      results.set_shape(similarity_matrix.shape[1:])
      return Match(results, self._use_matmul_gather)

  @abc.abstractmethod
  def _match(self, similarity_matrix, valid_rows):
    """Returns int32 `[M]` match results."""


def sanitize_similarity(similarity_matrix, valid_rows):
  """Prepares a similarity matrix for argmax-based matching.

  Valid entries are made finite (NaN -> lowest float32, +-Inf -> the largest
  / lowest finite float32) and entries of invalid rows are set to -Inf, so
  that any valid entry beats any invalid one.

  Args:
    similarity_matrix: float32 `[N, M]`.
    valid_rows: bool `[N]`.

  Returns:
    float32 `[N, M]`.
  """
  lowest = tf.float32.min
  sim = tf.where(tf.math.is_nan(similarity_matrix), lowest, similarity_matrix)
  sim = tf.clip_by_value(sim, lowest, tf.float32.max)
  return tf.where(valid_rows[:, tf.newaxis], sim, float('-inf'))
