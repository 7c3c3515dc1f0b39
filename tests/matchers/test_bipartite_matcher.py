import numpy as np
import tensorflow as tf

from od_meta.matchers import bipartite_matcher

# 3 groundtruth rows x 4 anchor columns.
SIM = [[0.5, 0.9, 0.1, 0.3],
       [0.8, 0.85, 0.2, 0.0],
       [0.1, 0.3, 0.7, 0.6]]


def _run(sim, valid_rows=None):
  m = bipartite_matcher.GreedyBipartiteMatcher()
  return m.match(tf.constant(sim, tf.float32), valid_rows).match_results.numpy()


def test_greedy_3x4():
  # Step 1: global max 0.9 at (row 0, col 1). Step 2: without row 0 / col 1
  # the max is 0.8 at (row 1, col 0). Step 3: row 2 takes col 2 (0.7).
  # Column 3 stays unmatched.
  np.testing.assert_array_equal(_run(SIM), [1, 0, 2, -1])


def test_greedy_is_not_optimal():
  # Greedy takes (0, 0) = 0.9 first and is left with (1, 1) = 0.1 (total
  # 1.0), whereas the optimal assignment (0,1) + (1,0) totals 1.65.
  np.testing.assert_array_equal(_run([[0.9, 0.8], [0.85, 0.1]]), [0, 1])


def test_valid_rows():
  # Row 0 invalid: (1, 1) = 0.85 first, then (2, 2) = 0.7.
  np.testing.assert_array_equal(
      _run(SIM, tf.constant([False, True, True])), [-1, 1, 2, -1])


def test_more_rows_than_columns():
  # (2, 0) = 0.9 first, then (0, 1) = 0.7; row 1 stays unmatched.
  np.testing.assert_array_equal(
      _run([[0.5, 0.7], [0.6, 0.2], [0.9, 0.1]]), [2, 0])


def test_nan_and_negative_similarities_still_matched():
  np.testing.assert_array_equal(
      _run([[float('nan'), -5.], [-1., float('nan')]]), [1, 0])


def test_empty_rows_and_columns():
  np.testing.assert_array_equal(_run(np.zeros([0, 3])), [-1, -1, -1])
  assert _run(np.zeros([2, 0])).shape == (0,)


def test_graph_mode():
  m = bipartite_matcher.GreedyBipartiteMatcher(use_matmul_gather=True)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                tf.TensorSpec([None], tf.bool)])
  def fn(sim, valid):
    match = m.match(sim, valid)
    targets = match.gather_based_on_match(
        tf.cast(tf.range(tf.shape(sim)[0]), tf.float32) * 10., -1., -2.)
    return match.match_results, targets

  res, targets = fn(tf.constant(SIM), tf.constant([True, True, True]))
  np.testing.assert_array_equal(res.numpy(), [1, 0, 2, -1])
  np.testing.assert_allclose(targets.numpy(), [10., 0., 20., -1.])
  res, _ = fn(tf.zeros([0, 2]), tf.zeros([0], tf.bool))
  np.testing.assert_array_equal(res.numpy(), [-1, -1])
