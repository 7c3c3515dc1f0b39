"""Tests for od_meta.benchmark.pareto (Huang et al. 2017, Sec. 4.1.2)."""

import math

import pytest

from od_meta.benchmark import pareto

# index: (time ms, mAP)
#   0 A (10, 0.20)  fastest
#   1 B (20, 0.32)
#   2 C (15, 0.18)  dominated by A (slower and worse)
#   3 D (20, 0.32)  exact tie with B: both stay
#   4 E (30, 0.32)  dominated by B (as accurate, slower)
#   5 F (25, 0.35)  most accurate
#   6 G (10, 0.15)  dominated by A (as fast, worse)
#   7 H (nan, 0.9)  failed configuration: ignored
#   8 I (40, None)  failed configuration: ignored
TIMES = [10.0, 20.0, 15.0, 20.0, 30.0, 25.0, 10.0, math.nan, 40.0]
MAPS = [0.20, 0.32, 0.18, 0.32, 0.32, 0.35, 0.15, 0.9, None]


def test_frontier_keeps_ties_and_drops_dominated_points():
  assert pareto.pareto_frontier(TIMES, MAPS) == [0, 1, 3, 5]


def test_frontier_is_order_independent():
  order = [5, 8, 2, 0, 7, 4, 1, 6, 3]
  times = [TIMES[i] for i in order]
  maps = [MAPS[i] for i in order]
  frontier = pareto.pareto_frontier(times, maps)
  assert sorted(order[i] for i in frontier) == [0, 1, 3, 5]


def test_equal_accuracy_slower_point_is_dominated():
  # (1, 0.5) dominates (2, 0.5): as accurate and strictly faster.
  assert pareto.pareto_frontier([2.0, 1.0], [0.5, 0.5]) == [1]
  # (1, 0.5) dominates (1, 0.4): as fast and strictly more accurate.
  assert pareto.pareto_frontier([1.0, 1.0], [0.4, 0.5]) == [1]


def test_every_point_on_a_monotone_curve_is_on_the_frontier():
  assert pareto.pareto_frontier([3, 1, 2], [0.3, 0.1, 0.2]) == [1, 2, 0]


def test_empty_and_all_invalid_inputs():
  assert pareto.pareto_frontier([], []) == []
  assert pareto.pareto_frontier([math.inf, None], [0.1, 0.2]) == []
  assert pareto.critical_points([], []) == pareto.CriticalPoints(
      None, None, None)


def test_length_mismatch_raises():
  with pytest.raises(ValueError, match='length'):
    pareto.pareto_frontier([1.0], [0.1, 0.2])


def test_critical_points_knee():
  # Scaled to the frontier's range (time 10..25, mAP 0.20..0.35):
  #   B: x = (20-10)/15 = 0.667, y = (0.32-0.20)/0.15 = 0.8
  #   height above the chord y = x: 0.133 > 0 -> the sweet spot; B and D tie,
  #   the lower index (1) is reported.
  critical = pareto.critical_points(TIMES, MAPS)
  assert critical == pareto.CriticalPoints(fastest=0, most_accurate=5,
                                           sweet_spot=1)
  assert critical.as_dict() == {'fastest': 0, 'sweet_spot': 1,
                                'most_accurate': 5}


def test_no_sweet_spot_on_a_straight_or_short_frontier():
  # Collinear frontier: no point above the chord.
  assert pareto.critical_points([1, 2, 3], [0.1, 0.2, 0.3]).sweet_spot is None
  # Below the chord only (convex curve): no knee either.
  assert pareto.critical_points([1, 2, 3],
                                [0.1, 0.12, 0.3]).sweet_spot is None
  two = pareto.critical_points([1, 2], [0.1, 0.2])
  assert (two.fastest, two.most_accurate, two.sweet_spot) == (0, 1, None)
  one = pareto.critical_points([5], [0.4])
  assert (one.fastest, one.most_accurate, one.sweet_spot) == (0, 0, None)
