"""Speed/accuracy Pareto frontier and its critical points.

Huang et al. 2017 ("Speed/accuracy trade-offs for modern convolutional
object detectors"), Sec. 4.1.1-4.1.2 and Fig. 2: a detector is on the
optimality frontier when no other detector is both at least as fast and at
least as accurate (and strictly better in one of the two). The paper names
three *critical points* on that frontier: the fastest detector, the most
accurate one, and the "sweet spot" in between where accuracy stops being
cheap. We define the sweet spot as the frontier point farthest above the
chord joining the two extremes, with time and accuracy each scaled to [0, 1]
over the frontier (the knee of the curve).

Pure Python: no TensorFlow, no protos.
"""

import dataclasses
import math
from typing import List, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class CriticalPoints:
  """Indices (into the input point list) of the frontier's critical points.

  Attributes:
    fastest: index of the fastest frontier point (lowest time), or None when
      there is no valid point.
    most_accurate: index of the most accurate frontier point, or None.
    sweet_spot: index of the knee between them, or None when the frontier has
      fewer than three points or is a straight line.
  """
  fastest: Optional[int]
  most_accurate: Optional[int]
  sweet_spot: Optional[int]

  def as_dict(self):
    """{'fastest': i, 'sweet_spot': j, 'most_accurate': k} (None kept)."""
    return {'fastest': self.fastest, 'sweet_spot': self.sweet_spot,
            'most_accurate': self.most_accurate}


def _is_valid(value):
  return value is not None and isinstance(value, (int, float)) and (
      math.isfinite(value))


def _check_lengths(times, accuracies):
  if len(times) != len(accuracies):
    raise ValueError(f'times and accuracies differ in length: {len(times)} '
                     f'vs {len(accuracies)}')


def pareto_frontier(times: Sequence[float],
                    accuracies: Sequence[float]) -> List[int]:
  """Indices of the non-dominated points, sorted by increasing time.

  Point j dominates point i when time_j <= time_i and accuracy_j >=
  accuracy_i with at least one strict inequality (lower time is better,
  higher accuracy is better). Identical points do not dominate each other,
  so exact ties are all kept. Points whose time or accuracy is None, NaN or
  infinite (failed configurations) are ignored.

  Args:
    times: per point, e.g. inference milliseconds per image.
    accuracies: per point, e.g. COCO mAP in [0, 1].

  Returns:
    list of int indices into the inputs, ordered by (time, -accuracy, index).

  Raises:
    ValueError: if the two sequences differ in length.
  """
  _check_lengths(times, accuracies)
  valid = [i for i in range(len(times))
           if _is_valid(times[i]) and _is_valid(accuracies[i])]
  # Sweep by increasing time (ties: most accurate first): a point is on the
  # frontier iff it is strictly more accurate than everything strictly
  # faster, and not beaten by an equally fast point.
  order = sorted(valid, key=lambda i: (times[i], -accuracies[i], i))
  frontier = []
  best_accuracy = -math.inf
  k = 0
  while k < len(order):
    # Group of equal times.
    j = k
    while j < len(order) and times[order[j]] == times[order[k]]:
      j += 1
    group = order[k:j]
    top = accuracies[group[0]]
    if top > best_accuracy:
      frontier.extend(i for i in group if accuracies[i] == top)
      best_accuracy = top
    k = j
  return frontier


def critical_points(times: Sequence[float],
                    accuracies: Sequence[float]) -> CriticalPoints:
  """The fastest, sweet-spot and most accurate points of the frontier.

  Among exact ties the lowest index is reported.

  Args:
    times, accuracies: as in `pareto_frontier`.

  Returns:
    a `CriticalPoints` (all None when no point is valid).

  Raises:
    ValueError: if the two sequences differ in length.
  """
  frontier = pareto_frontier(times, accuracies)
  if not frontier:
    return CriticalPoints(None, None, None)
  fastest = frontier[0]
  most_accurate = frontier[-1]
  # Lowest index among ties of the extremes.
  fastest = min(i for i in frontier
                if (times[i], accuracies[i]) ==
                (times[fastest], accuracies[fastest]))
  most_accurate = min(i for i in frontier
                      if (times[i], accuracies[i]) ==
                      (times[most_accurate], accuracies[most_accurate]))
  t0, t1 = times[fastest], times[most_accurate]
  a0, a1 = accuracies[fastest], accuracies[most_accurate]
  sweet_spot = None
  if t1 > t0 and a1 > a0:
    best_gap = 1e-9
    for i in frontier:
      x = (times[i] - t0) / (t1 - t0)
      y = (accuracies[i] - a0) / (a1 - a0)
      gap = y - x  # Height above the chord y = x (scaled coordinates).
      if gap > best_gap:
        best_gap, sweet_spot = gap, i
  return CriticalPoints(fastest, most_accurate, sweet_spot)
