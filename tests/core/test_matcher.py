import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import matcher


def _match(results, **kw):
  return matcher.Match(tf.constant(results, tf.int32), **kw)


def test_match_indices():
  m = _match([6, -1, 0, -2, -1, 2])
  np.testing.assert_array_equal(m.matched_column_indices().numpy(), [0, 2, 5])
  np.testing.assert_array_equal(m.matched_row_indices().numpy(), [6, 0, 2])
  np.testing.assert_array_equal(m.unmatched_column_indices().numpy(), [1, 4])
  np.testing.assert_array_equal(m.ignored_column_indices().numpy(), [3])
  np.testing.assert_array_equal(
      m.unmatched_or_ignored_column_indices().numpy(), [1, 3, 4])
  np.testing.assert_array_equal(m.matched_column_indicator().numpy(),
                                [True, False, True, False, False, True])
  np.testing.assert_array_equal(m.unmatched_column_indicator().numpy(),
                                [False, True, False, False, True, False])
  np.testing.assert_array_equal(m.ignored_column_indicator().numpy(),
                                [False, False, False, True, False, False])
  assert int(m.num_matched_columns()) == 3
  assert int(m.num_unmatched_columns()) == 2
  assert int(m.num_ignored_columns()) == 1
  assert int(_match([1, 1, 0, -1]).num_matched_rows()) == 2


@pytest.mark.parametrize('use_matmul_gather', [False, True])
def test_gather_based_on_match(use_matmul_gather):
  m = _match([2, -1, 0, -2], use_matmul_gather=use_matmul_gather)
  rows = tf.constant([[1., 1.], [2., 2.], [3., 3.]])
  out = m.gather_based_on_match(rows, unmatched_value=[-1., -1.],
                                ignored_value=0.)
  np.testing.assert_allclose(out.numpy(),
                             [[3., 3.], [-1., -1.], [1., 1.], [0., 0.]])


def test_gather_int_and_empty_rows():
  m = _match([-1, -2])
  out = m.gather_based_on_match(tf.zeros([0], tf.int32), 7, 9)
  np.testing.assert_array_equal(out.numpy(), [7, 9])
  assert out.dtype == tf.int32


def test_match_rejects_bad_results():
  with pytest.raises(ValueError, match='rank 1'):
    matcher.Match(tf.zeros([2, 2], tf.int32))
  with pytest.raises(ValueError, match='int32'):
    matcher.Match(tf.zeros([2], tf.int64))


def test_matmul_gather_equals_gather():
  params = tf.reshape(tf.range(12, dtype=tf.float32), [3, 2, 2])
  idx = tf.constant([2, 0, 0])
  np.testing.assert_allclose(
      matcher.matmul_gather_on_zeroth_axis(params, idx).numpy(),
      tf.gather(params, idx).numpy())


def test_sanitize_similarity():
  sim = tf.constant([[float('nan'), float('-inf'), 1.], [2., 3., 4.]])
  out = matcher.sanitize_similarity(sim, tf.constant([True, False])).numpy()
  assert out[0, 0] == np.finfo(np.float32).min
  assert out[0, 1] == np.finfo(np.float32).min
  assert out[0, 2] == 1.
  assert np.all(np.isneginf(out[1]))
