"""Argmax matcher: each anchor takes its most similar groundtruth.

As in the TF OD API's `matchers/argmax_matcher.py` (the "Argmax" matching of
Huang et al. 2017, Sec. 3.1; the MaxIoU assignment of Faster R-CNN, Ren et al.
2015, Sec. 3.1.2, and SSD, Liu et al. 2016, Sec. 2.2). For each column
(anchor) j with best row i* = argmax_i S[i, j] and value v = S[i*, j]:

  * v >= matched_threshold                       -> i* (matched);
  * unmatched_threshold <= v < matched_threshold -> -2 (ignored) if
    `negatives_lower_than_unmatched`, else -1;
  * v < unmatched_threshold                      -> -1 (unmatched) if
    `negatives_lower_than_unmatched`, else -2.

With `matched_threshold=None` every column is matched to its argmax row.
With `force_match_for_each_row`, each valid row additionally takes its best
column (so every groundtruth gets at least one anchor, Faster R-CNN's
"highest IoU" rule); when two rows choose the same column the lower row
index wins. Ties in argmax go to the lowest index.

With no valid rows (no groundtruth) every column is -1.

Departure from the TF OD API (deliberate): rows with `valid_rows` False are
never matched (the TF OD API uses `valid_rows` only for forced matches, so a
padded row with a high similarity could be matched). NaN similarities count
as the lowest value.
"""

import tensorflow as tf

from od_meta.core import matcher


class ArgMaxMatcher(matcher.Matcher):
  """Argmax matcher with a matched / ignore / unmatched threshold band."""

  def __init__(self, matched_threshold, unmatched_threshold=None,
               negatives_lower_than_unmatched=True,
               force_match_for_each_row=False, use_matmul_gather=False):
    """Creates the matcher.

    Args:
      matched_threshold: float or None; columns whose best similarity is
        >= this are matched. None: no thresholding at all.
      unmatched_threshold: float or None (defaults to `matched_threshold`);
        columns whose best similarity is < this are unmatched (or ignored,
        see below). Must be <= `matched_threshold`.
      negatives_lower_than_unmatched: if True, below `unmatched_threshold`
        is unmatched (-1) and the band between thresholds ignored (-2); if
        False the other way round.
      force_match_for_each_row: if True, every valid row is matched to its
        best column, overriding thresholds.
      use_matmul_gather: see `Match`.

    Raises:
      ValueError: if `unmatched_threshold` is set without
        `matched_threshold`, is larger than it, or equals it while
        `negatives_lower_than_unmatched` is False.
    """
    super().__init__(use_matmul_gather=use_matmul_gather)
    if matched_threshold is None and unmatched_threshold is not None:
      raise ValueError('unmatched_threshold needs matched_threshold to be set')
    self._matched_threshold = (
        None if matched_threshold is None else float(matched_threshold))
    if unmatched_threshold is None:
      self._unmatched_threshold = self._matched_threshold
    else:
      if unmatched_threshold > matched_threshold:
        raise ValueError(
            f'unmatched_threshold ({unmatched_threshold}) must be <= '
            f'matched_threshold ({matched_threshold})')
      self._unmatched_threshold = float(unmatched_threshold)
    if (not negatives_lower_than_unmatched and
        self._matched_threshold is not None and
        self._unmatched_threshold == self._matched_threshold):
      raise ValueError(
          'negatives_lower_than_unmatched=False needs unmatched_threshold < '
          f'matched_threshold, got both {self._matched_threshold}')
    self._negatives_lower_than_unmatched = negatives_lower_than_unmatched
    self._force_match_for_each_row = force_match_for_each_row

  @property
  def matched_threshold(self):
    """float or None: the `matched_threshold` given to the constructor."""
    return self._matched_threshold

  def _match(self, similarity_matrix, valid_rows):
    """Returns int32 `[M]` match results for a `[N, M]` similarity."""
    sim = matcher.sanitize_similarity(similarity_matrix, valid_rows)
    n = tf.shape(sim)[0]
    m = tf.shape(sim)[1]
    neg_inf = float('-inf')
    # An extra -inf row keeps argmax defined when N == 0; it never wins
    # against a valid (finite) entry.
    padded = tf.concat([sim, tf.fill(tf.stack([1, m]), neg_inf)], axis=0)
    matches = tf.argmax(padded, axis=0, output_type=tf.int32)
    if self._matched_threshold is not None:
      matched_vals = tf.reduce_max(padded, axis=0)
      below_unmatched = matched_vals < self._unmatched_threshold
      between = tf.logical_and(matched_vals >= self._unmatched_threshold,
                               matched_vals < self._matched_threshold)
      if self._negatives_lower_than_unmatched:
        below_value, between_value = matcher.UNMATCHED, matcher.IGNORED
      else:
        below_value, between_value = matcher.IGNORED, matcher.UNMATCHED
      matches = tf.where(below_unmatched, below_value, matches)
      matches = tf.where(between, between_value, matches)
    if self._force_match_for_each_row:
      # An extra -inf column keeps argmax defined when M == 0.
      padded_cols = tf.concat(
          [sim, tf.fill(tf.stack([n, 1]), neg_inf)], axis=1)
      force_cols = tf.argmax(padded_cols, axis=1, output_type=tf.int32)
      indicators = tf.one_hot(force_cols, m) * tf.cast(
          valid_rows[:, tf.newaxis], tf.float32)  # [N, M]
      indicators = tf.concat([indicators, tf.zeros(tf.stack([1, m]))], axis=0)
      force_rows = tf.argmax(indicators, axis=0, output_type=tf.int32)
      force_mask = tf.reduce_max(indicators, axis=0) > 0
      matches = tf.where(force_mask, force_rows, matches)
    return tf.where(tf.reduce_any(valid_rows), matches, matcher.UNMATCHED)
