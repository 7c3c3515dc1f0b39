"""Greedy bipartite matcher.

The "Bipartite" matching of Huang et al. 2017 (Sec. 3.1) and the TF OD API's
`matchers/bipartite_matcher.py` (which wraps the greedy
`bipartite_match` op): repeatedly take the globally most similar remaining
(row, column) pair, match it, and remove its row and its column, until no
valid row or no column remains. Every valid row gets exactly one column
while columns remain; the other columns are -1 (there is no ignore band and
no threshold). Ties go to the lowest row-major index.

Invalid rows (`valid_rows` False) are never matched; NaN similarities count
as the lowest value (those pairs are taken only when nothing else remains).
Written with `tf.while_loop`: min(valid rows, columns) iterations of a
`[N, M]` argmax.
"""

import tensorflow as tf

from od_meta.core import matcher


class GreedyBipartiteMatcher(matcher.Matcher):
  """Greedy one-to-one matcher (no thresholds)."""

  def __init__(self, use_matmul_gather=False):
    """Args: use_matmul_gather: see `Match`."""
    super().__init__(use_matmul_gather=use_matmul_gather)

  def _match(self, similarity_matrix, valid_rows):
    """Returns int32 `[M]` match results for a `[N, M]` similarity."""
    sim = matcher.sanitize_similarity(similarity_matrix, valid_rows)
    n = tf.shape(sim)[0]
    m = tf.shape(sim)[1]
    num_iterations = tf.minimum(
        tf.reduce_sum(tf.cast(valid_rows, tf.int32)), m)
    neg_inf = tf.constant(float('-inf'), tf.float32)

    def body(i, row_available, col_available, matches):
      available = tf.logical_and(row_available[:, tf.newaxis],
                                 col_available[tf.newaxis, :])
      masked = tf.where(available, sim, neg_inf)
      flat_index = tf.argmax(tf.reshape(masked, [-1]), output_type=tf.int32)
      row = flat_index // m
      col = flat_index % m
      matches = tf.tensor_scatter_nd_update(
          matches, tf.reshape(col, [1, 1]), tf.reshape(row, [1]))
      row_available = tf.logical_and(
          row_available, tf.logical_not(tf.one_hot(row, n, on_value=True,
                                                   off_value=False)))
      col_available = tf.logical_and(
          col_available, tf.logical_not(tf.one_hot(col, m, on_value=True,
                                                   off_value=False)))
      return i + 1, row_available, col_available, matches

    _, _, _, matches = tf.while_loop(
        lambda i, *_: i < num_iterations, body,
        (tf.constant(0), valid_rows, tf.ones(tf.reshape(m, [1]), tf.bool),
         tf.fill(tf.reshape(m, [1]), tf.constant(matcher.UNMATCHED))),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None]),
                          tf.TensorShape([None]), tf.TensorShape([None])))
    return matches
