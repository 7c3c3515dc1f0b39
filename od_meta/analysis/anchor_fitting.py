"""Anchor shapes and input sizes chosen from a dataset's boxes.

* `iou_kmeans`: k-means on box shapes `(height, width)` with the distance
  `1 - IoU` of two shapes placed on a common center (YOLO9000, Redmon and
  Farhadi 2017, Sec. 2 "Dimension Clusters": Euclidean k-means favours large
  boxes; the IoU distance does not).
* `aspect_ratios_from_shapes`: the anchor aspect ratios (width / height, the
  TF OD API's convention) of k-means centroids.
* `propose_input_scale`: how much to enlarge the input so that the small
  objects reach a size the feature extractor's finest level can resolve.
* `grid_search`: the best candidate under a coverage score (matched share
  first, then mean best IoU), as MMDetection's anchor optimizer and
  YOLOv5's autoanchor search anchors for "best possible recall".

Everything here works on numpy arrays in pixels; the config side is in
`od_meta.analysis.config_fitting`.
"""

import math
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence

import numpy as np


def shape_iou(shapes, centroids):
  """IoU of box shapes placed on a common center.

  Args:
    shapes: float `[N, 2]` (height, width), any unit, > 0.
    centroids: float `[K, 2]` (height, width), same unit.

  Returns:
    float64 `[N, K]` in [0, 1].
  """
  shapes = np.asarray(shapes, np.float64)[:, np.newaxis, :]
  centroids = np.asarray(centroids, np.float64)[np.newaxis, :, :]
  inter = np.prod(np.minimum(shapes, centroids), axis=-1)
  union = np.prod(shapes, axis=-1) + np.prod(centroids, axis=-1) - inter
  return inter / np.maximum(union, 1e-12)


def iou_kmeans(shapes, k: int, *, max_iterations: int = 300,
               seed: int = 0) -> np.ndarray:
  """k-means of box shapes with the `1 - IoU` distance (YOLO9000 Sec. 2).

  Initialization is deterministic: the shapes at the k evenly spaced
  quantiles of the square-root area. Each iteration assigns every shape to
  the centroid of highest IoU and moves each centroid to the mean shape of
  its members; an empty cluster takes the shape worst fitted so far.

  Args:
    shapes: float `[N, 2]` (height, width), N >= k, all > 0.
    k: number of centroids, >= 1.
    max_iterations: iteration cap (stops earlier when assignments settle).
    seed: only breaks exact ties in the initial quantiles.

  Returns:
    float64 `[k, 2]` centroid (height, width), by increasing area.

  Raises:
    ValueError: k < 1, fewer shapes than k, or non-positive shapes.
  """
  shapes = np.asarray(shapes, np.float64).reshape(-1, 2)
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}')
  if len(shapes) < k:
    raise ValueError(f'k-means needs at least k={k} box shapes, got '
                     f'{len(shapes)}')
  if not np.all(shapes > 0):
    raise ValueError('box shapes must be > 0')
  rng = np.random.default_rng(seed)
  order = np.argsort(np.prod(shapes, axis=1) + rng.uniform(0, 1e-9,
                                                          len(shapes)))
  picks = order[np.round(np.linspace(0, len(shapes) - 1, 2 * k + 1)[1::2])
                .astype(int)]
  centroids = shapes[picks].copy()
  assignment = None
  for _ in range(max_iterations):
    iou = shape_iou(shapes, centroids)
    new_assignment = np.argmax(iou, axis=1)
    if assignment is not None and np.array_equal(new_assignment, assignment):
      break
    assignment = new_assignment
    best = iou[np.arange(len(shapes)), assignment]
    for j in range(k):
      members = shapes[assignment == j]
      if len(members):
        centroids[j] = members.mean(axis=0)
      else:
        worst = int(np.argmin(best))
        centroids[j] = shapes[worst]
        best[worst] = 1.0
  return centroids[np.argsort(np.prod(centroids, axis=1))]


def mean_best_iou(shapes, centroids) -> float:
  """Mean over the shapes of the best centroid IoU (shapes centered)."""
  return float(np.mean(np.max(shape_iou(shapes, centroids), axis=1)))


def aspect_ratios_from_shapes(centroids, decimals: int = 2) -> List[float]:
  """Sorted distinct width / height ratios of `[K, 2]` (height, width)
  shapes, rounded (the TF OD API's `aspect_ratios` convention)."""
  centroids = np.asarray(centroids, np.float64).reshape(-1, 2)
  ratios = np.round(centroids[:, 1] / centroids[:, 0], decimals)
  return sorted({float(r) for r in ratios})


class InputScaleProposal(NamedTuple):
  """Result of `propose_input_scale`.

  Attributes:
    scale: factor (>= 1) to multiply the input height and width by.
    small_object_size: the chosen percentile of sqrt(box area) at the
      current input size, pixels.
    target_size: the size that percentile should reach, pixels.
    limited_by_source: True when the source images' resolution capped the
      scale below what the target asked for.
  """
  scale: float
  small_object_size: float
  target_size: float
  limited_by_source: bool


def propose_input_scale(sqrt_areas_at_input, finest_stride: float, *,
                        percentile: float = 10.0,
                        min_size_in_strides: float = 1.0,
                        max_scale: float = math.inf) -> InputScaleProposal:
  """How much to enlarge the input so the small objects can be seen.

  A feature map of stride s samples the image every s pixels; an object
  whose side is below s falls between the samples of the finest level and is
  represented by a single cell at best (Huang et al. 2017, Sec. 4.4: small
  objects gain most from higher input resolution). The rule: the
  `percentile`-th object size (sqrt of the box area) at the input should be
  at least `min_size_in_strides` x the finest stride. For an IoU matcher at
  0.5, a square object of side a and an anchor of the same size on a grid of
  stride s reach IoU 0.5 only when a >= 1.4 s at the average offset (s / 4
  per axis) and a >= 2.7 s at the worst (s / 2); `scripts/analyze_dataset.py`
  asks for 2 s.

  Args:
    sqrt_areas_at_input: float `[B]`, sqrt(width x height) of the boxes at
      the config's current input size, pixels.
    finest_stride: the finest anchor level's stride, input pixels.
    percentile: which small-object size to lift (0-100).
    min_size_in_strides: target size in units of the finest stride.
    max_scale: the largest allowed scale (e.g. the source resolution over
      the input resolution: more input pixels than the source has add no
      detail).

  Returns:
    an `InputScaleProposal` (scale 1 when nothing needs to change).

  Raises:
    ValueError: on an empty size array or non-positive stride.
  """
  sizes = np.asarray(sqrt_areas_at_input, np.float64)
  if sizes.size == 0:
    raise ValueError('no box sizes to propose an input size from')
  if finest_stride <= 0:
    raise ValueError(f'finest_stride must be > 0, got {finest_stride}')
  small = float(np.percentile(sizes, percentile))
  target = float(min_size_in_strides * finest_stride)
  wanted = max(1.0, target / max(small, 1e-9))
  scale = min(wanted, max(1.0, max_scale))
  return InputScaleProposal(scale, small, target, scale < wanted)


def round_up_to_multiple(value: float, multiple: int) -> int:
  """The smallest multiple of `multiple` that is >= value."""
  return int(math.ceil(value / multiple - 1e-9) * multiple)


class CoverageScore(NamedTuple):
  """How well a candidate's anchors cover the groundtruth.

  Attributes:
    matched_share: share of groundtruth boxes with at least one positive.
    mean_best_iou: mean over boxes of the best anchor IoU (NaN without
      anchors).
    num_anchors: anchors per image (fewer is cheaper).
  """
  matched_share: float
  mean_best_iou: float
  num_anchors: int

  def key(self, share_tolerance: float = 0.005):
    """Sort key, larger is better: matched share (rounded to the
    tolerance), then mean best IoU, then fewer anchors."""
    share = round(self.matched_share / share_tolerance) * share_tolerance
    iou = -1.0 if math.isnan(self.mean_best_iou) else self.mean_best_iou
    return (share, round(iou, 3), -self.num_anchors)


def grid_search(candidates: Iterable, score_fn: Callable[[object],
                                                         CoverageScore],
                *, log_fn: Optional[Callable[[str], None]] = None):
  """Scores every candidate and returns the best.

  Args:
    candidates: iterable of candidate descriptions (any objects).
    score_fn: candidate -> `CoverageScore`.
    log_fn: optional, called with one line per candidate.

  Returns:
    (best candidate, its `CoverageScore`, list of (candidate, score)).

  Raises:
    ValueError: if there are no candidates.
  """
  scored = []
  for candidate in candidates:
    score = score_fn(candidate)
    scored.append((candidate, score))
    if log_fn:
      log_fn(f'  {candidate}: matched {score.matched_share:.3f}, mean best '
             f'IoU {score.mean_best_iou:.3f}, {score.num_anchors} anchors')
  if not scored:
    raise ValueError('no candidates to search')
  best = max(scored, key=lambda item: item[1].key())
  return best[0], best[1], scored


def linspace_candidates(low: float, high: float, num: int,
                        decimals: int = 3) -> List[float]:
  """`num` rounded, distinct values from low to high inclusive."""
  values = np.round(np.linspace(low, high, num), decimals)
  return sorted({float(v) for v in values if v > 0})


def geometric_candidates(center: float, factors: Sequence[float],
                         decimals: int = 3) -> List[float]:
  """Rounded, distinct `center * f` for each factor."""
  return sorted({float(round(center * f, decimals)) for f in factors
                 if center * f > 0})
