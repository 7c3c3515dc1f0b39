import numpy as np
import pytest
import tensorflow as tf

from od_meta.matchers import argmax_matcher

# Rows are groundtruth, columns anchors.
SIM = [[0.6, 0.4, 0.1, 0.0, 0.55],
       [0.2, 0.45, 0.05, 0.9, 0.5]]
# Column maxima: 0.6 (row 0), 0.45 (row 1), 0.1 (row 0), 0.9 (row 1),
# 0.55 (row 0).
SIM3 = SIM + [[0.1, 0.35, 0.2, 0.0, 0.1]]
# Row 2's best column is 1 (0.35); column 1's best row stays row 1 (0.45).


def _run(m, sim, valid_rows=None):
  return m.match(tf.constant(sim, tf.float32), valid_rows).match_results.numpy()


def test_threshold_band():
  m = argmax_matcher.ArgMaxMatcher(matched_threshold=0.5,
                                   unmatched_threshold=0.3)
  # >= 0.5 matched; 0.45 in [0.3, 0.5) ignored (-2); 0.1 < 0.3 unmatched.
  np.testing.assert_array_equal(_run(m, SIM), [0, -2, -1, 1, 0])


def test_negatives_between_thresholds():
  m = argmax_matcher.ArgMaxMatcher(matched_threshold=0.5,
                                   unmatched_threshold=0.3,
                                   negatives_lower_than_unmatched=False)
  # Band -> unmatched (-1); below 0.3 -> ignored (-2).
  np.testing.assert_array_equal(_run(m, SIM), [0, -1, -2, 1, 0])


def test_single_threshold_and_no_threshold():
  m = argmax_matcher.ArgMaxMatcher(matched_threshold=0.5)
  np.testing.assert_array_equal(_run(m, SIM), [0, -1, -1, 1, 0])
  m = argmax_matcher.ArgMaxMatcher(matched_threshold=None)
  np.testing.assert_array_equal(_run(m, SIM), [0, 1, 0, 1, 0])


def test_force_match_for_each_row():
  m = argmax_matcher.ArgMaxMatcher(0.5, 0.3)
  np.testing.assert_array_equal(_run(m, SIM3), [0, -2, -1, 1, 0])
  m = argmax_matcher.ArgMaxMatcher(0.5, 0.3, force_match_for_each_row=True)
  # Row 0 -> col 0, row 1 -> col 3, row 2 -> col 1 (forced over the band).
  np.testing.assert_array_equal(_run(m, SIM3), [0, 2, -1, 1, 0])


def test_force_match_conflict_lower_row_wins():
  m = argmax_matcher.ArgMaxMatcher(0.9, force_match_for_each_row=True)
  # Both rows prefer column 0; row 0 (lower index) wins the forced match.
  np.testing.assert_array_equal(_run(m, [[0.5, 0.1], [0.4, 0.2]]), [0, -1])


def test_valid_rows_are_never_matched():
  m = argmax_matcher.ArgMaxMatcher(0.5, 0.3, force_match_for_each_row=True)
  # Row 1 invalid: column 3 falls to 0.0 (row 0 / row 2) -> -1, column 1 is
  # forced to row 2. (The TF OD API would still match column 3 to row 1.)
  out = _run(m, SIM3, tf.constant([True, False, True]))
  np.testing.assert_array_equal(out, [0, 2, -1, -1, 0])


def test_empty_groundtruth_all_unmatched():
  for kwargs in [dict(matched_threshold=0.5),
                 dict(matched_threshold=None),
                 dict(matched_threshold=0.5, unmatched_threshold=0.3,
                      negatives_lower_than_unmatched=False,
                      force_match_for_each_row=True)]:
    m = argmax_matcher.ArgMaxMatcher(**kwargs)
    np.testing.assert_array_equal(_run(m, np.zeros([0, 4])), [-1] * 4)
    # All rows invalid behaves like no groundtruth.
    np.testing.assert_array_equal(
        _run(m, SIM, tf.constant([False, False])), [-1] * 5)


def test_empty_anchors():
  m = argmax_matcher.ArgMaxMatcher(0.5, force_match_for_each_row=True)
  assert _run(m, np.zeros([3, 0])).shape == (0,)


def test_nan_similarity_is_lowest():
  m = argmax_matcher.ArgMaxMatcher(0.5)
  out = _run(m, [[float('nan'), 0.7], [0.6, float('nan')]])
  np.testing.assert_array_equal(out, [1, 0])


def test_graph_mode_dynamic_shapes():
  m = argmax_matcher.ArgMaxMatcher(0.5, 0.3, force_match_for_each_row=True)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def fn(sim):
    return m.match(sim).match_results

  np.testing.assert_array_equal(fn(tf.constant(SIM3)).numpy(),
                                [0, 2, -1, 1, 0])
  np.testing.assert_array_equal(fn(tf.zeros([0, 3])).numpy(), [-1, -1, -1])
  assert fn(tf.zeros([2, 0])).shape == (0,)


def test_bad_arguments():
  with pytest.raises(ValueError, match='matched_threshold'):
    argmax_matcher.ArgMaxMatcher(None, 0.3)
  with pytest.raises(ValueError, match='unmatched_threshold'):
    argmax_matcher.ArgMaxMatcher(0.3, 0.5)
  with pytest.raises(ValueError, match='negatives_lower_than_unmatched'):
    argmax_matcher.ArgMaxMatcher(0.5, 0.5,
                                 negatives_lower_than_unmatched=False)
  with pytest.raises(ValueError, match='similarity_matrix'):
    argmax_matcher.ArgMaxMatcher(0.5).match(tf.zeros([3]))
