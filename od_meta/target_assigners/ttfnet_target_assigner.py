"""TTFNet dense targets: elliptical Gaussian heatmaps and Gaussian-weighted
box regression samples.

Liu et al. 2019, "Training-Time-Friendly Network for Real-Time Object
Detection" (arXiv 1909.00700), Sec. 3.2-3.3, following the reference code
(github.com/ZJULearning/ttfnet, `mmdet/models/anchor_heads/ttf_head.py`,
`target_single_image`):

  * Localization: box m (mapped to the output map, h x w output-stride
    pixels) draws K_m(y, x) = exp(-(y - y0)^2 / (2 sy^2) - (x - x0)^2 /
    (2 sx^2)) with sx = alpha w / 6, sy = alpha h / 6 (alpha = 0.54) at its
    integer center (floor(center / stride)), truncated to the window
    |dy| <= int(alpha h / 2), |dx| <= int(alpha w / 2); per class,
    element-wise maximum.
  * Regression sub-area A_m: the nonzero part of the beta-Gaussian
    (same formula with beta), i.e. exactly the output locations of the
    box-centered window |dy| <= int(beta h / 2), |dx| <= int(beta w / 2)
    clipped to the map (the truncated Gaussian is > 0 everywhere in its
    window). Every location of A_m is a regression sample for box m; a
    location in several sub-areas belongs to the box with the smallest area
    (Sec. 3.3, "ambiguous sample"; ties: lower index).
  * Sample weight (Eq. 5): W_ij = log(a_m) * G_m(i, j) / sum_{A_m} G_m, with
    a_m the box area in input pixels^2 and G_m the beta-Gaussian.

The normalization sum runs over the whole sub-area A_m, before ambiguous
locations are handed to smaller boxes (as in the reference code), so the
weights a box keeps sum to log(a_m) only where it owns all of A_m.
"""

import tensorflow as tf

from od_meta.core import standard_fields
from od_meta.core import target_assigner
from od_meta.target_assigners import center_net_target_assigner
from od_meta.target_assigners import gaussian_heatmaps

_INT32_MAX = 2**31 - 1

DTF = standard_fields.DenseTargetFields


class TTFNetTargetAssigner(target_assigner.SingleLevelDenseTargetAssigner):
  """TTFNet targets: heatmap, per-location box targets and sample weights.

  Output maps are at `h = height // stride`, `w = width // stride`.
  Rules shared with `CenterNetTargetAssigner`: boxes are clipped to the
  image; an object is valid iff its coordinates are finite, weight > 0,
  clipped height and width > 0 and its class row has a positive entry;
  the heatmap Gaussian is scaled by the one-hot class row times the box
  weight (peak 1.0 for weight 1); the box weight also multiplies W_ij.

  Deviations from the reference code, stated:
    * log(area) is clamped at 0 (a box under 1 input pixel^2 would otherwise
      get a negative weight); with `use_log_area_weight=False` the factor
      is 1 (the paper's "norm" variant).
    * sigma = alpha * size / 6 exactly (the paper's formula); the reference
      code uses (2 int(alpha size / 2) + 1) / 6.
    * Sizes of the box on the map come from the box clipped to the image
      (the reference clips to [0, map size - 1] on the map).
  """

  def __init__(self, *, stride, num_classes, alpha=0.54, beta=0.54,
               use_log_area_weight=True):
    """Creates the assigner.

    Args:
      stride: positive int, output stride (4 in TTFNet).
      num_classes: positive int, number of object classes C.
      alpha: positive float, size of the localization Gaussian (0.54).
      beta: positive float, size of the regression sub-area Gaussian (0.54).
      use_log_area_weight: bool, scale each box's sample weights by
        log(area in input pixels^2) (TTFNet Eq. 5); False uses 1.

    Raises:
      ValueError: on a non-positive stride, num_classes, alpha or beta.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride <= 0:
      raise ValueError(f'stride must be a positive int, got {stride!r}.')
    if (isinstance(num_classes, bool) or not isinstance(num_classes, int) or
        num_classes <= 0):
      raise ValueError(
          f'num_classes must be a positive int, got {num_classes!r}.')
    if not alpha > 0:
      raise ValueError(f'alpha must be positive, got {alpha}.')
    if not beta > 0:
      raise ValueError(f'beta must be positive, got {beta}.')
    self._stride = stride
    self._num_classes = num_classes
    self._alpha = float(alpha)
    self._beta = float(beta)
    self._use_log_area_weight = bool(use_log_area_weight)

  @property
  def stride(self):
    return self._stride

  @property
  def num_classes(self):
    return self._num_classes

  # Plain tensor code (no tensor-dependent Python control flow): AutoGraph
  # conversion is skipped to keep tracing cheap inside tf.function.
  @tf.autograph.experimental.do_not_convert
  def assign(self, height, width, groundtruth_boxes_list,
             groundtruth_classes_list, groundtruth_weights_list=None):
    """Builds the batched TTFNet targets.

    Args:
      height: int or int32 scalar, input height in pixels (>= stride).
      width: int or int32 scalar, input width in pixels (>= stride).
      groundtruth_boxes_list: list of `batch` float32 `[N_i, 4]` normalized
        [ymin, xmin, ymax, xmax] relative to the `height x width` input.
      groundtruth_classes_list: list of `batch` int32 `[N_i]` 0-based class
        ids or float32 `[N_i, num_classes]` one-hot rows.
      groundtruth_weights_list: optional list of `batch` float32 `[N_i]`;
        weight 0 drops a box.

    Returns:
      dict of float32 tensors (B = batch, h = height // stride,
      w = width // stride):
        DTF.heatmap: `[B, h, w, C]` elliptical alpha-Gaussians.
        DTF.box_targets: `[B, h, w, 4]` the owning box, clipped to the image,
          in INPUT-IMAGE PIXELS [ymin, xmin, ymax, xmax]; zeros where no
          box owns the location.
        DTF.box_weights: `[B, h, w]` W_ij (TTFNet Eq. 5) of the owning box,
          0 elsewhere.
        DTF.num_objects: `[B]` number of valid boxes.

    Raises:
      ValueError: on missing / mismatched lists or bad static shapes,
        naming the argument.
    """
    batch, weights_list, _ = (
        center_net_target_assigner.check_groundtruth_lists(
            groundtruth_boxes_list, groundtruth_classes_list,
            groundtruth_weights_list))
    with tf.name_scope('TTFNetTargetAssigner'):
      per_image = [
          self._assign_image(height, width, groundtruth_boxes_list[i],
                             groundtruth_classes_list[i], weights_list[i])
          for i in range(batch)
      ]
      return {key: tf.stack([t[key] for t in per_image])
              for key in per_image[0]}

  def _assign_image(self, height, width, boxes, classes, weights):
    """Targets for one image; see `assign`."""
    gt = center_net_target_assigner.prepare_image_groundtruth(
        height, width, self._stride, self._num_classes, boxes, classes,
        weights)
    out_h = height // self._stride
    out_w = width // self._stride
    valid = gt['valid']
    valid_f = tf.cast(valid, tf.float32)
    box_weight = gt['weights'] * valid_f
    sizes = gt['sizes']
    locations = gt['center_locations']

    sigmas_a, radii_a = gaussian_heatmaps.ttfnet_sigmas_and_radii(
        sizes[:, 0], sizes[:, 1], self._alpha)
    heatmap = gaussian_heatmaps.draw_gaussian_heatmaps(
        out_h, out_w, locations, sigmas_a,
        gt['class_rows'] * box_weight[:, tf.newaxis], radii_a)

    sigmas_b, radii_b = gaussian_heatmaps.ttfnet_sigmas_and_radii(
        sizes[:, 0], sizes[:, 1], self._beta)
    gauss = gaussian_heatmaps.object_gaussians(out_h, out_w, locations,
                                               sigmas_b, radii_b)
    sub_area = (gauss > 0.0) & valid[:, tf.newaxis, tf.newaxis]
    gauss = tf.where(sub_area, gauss, tf.zeros_like(gauss))
    # >= 1 for a valid box: its center location is in the map with G = 1.
    gauss_sum = tf.maximum(tf.reduce_sum(gauss, axis=[1, 2]), 1e-12)
    if self._use_log_area_weight:
      area_factor = tf.maximum(
          tf.math.log(tf.maximum(gt['areas'], 1e-12)), 0.0)
    else:
      area_factor = tf.ones_like(gt['areas'])
    sample_weights = gauss * (area_factor * box_weight / gauss_sum)[
        :, tf.newaxis, tf.newaxis]

    # Smallest-area box owns each location (priority = area rank).
    priority = gt['priority']
    prio_map = tf.where(sub_area, priority[:, tf.newaxis, tf.newaxis],
                        _INT32_MAX)
    owner_prio = tf.reduce_min(
        tf.concat([prio_map, tf.fill(tf.concat(
            [[1], tf.shape(prio_map)[1:]], 0), _INT32_MAX)], axis=0), axis=0)
    own = sub_area & tf.equal(prio_map, owner_prio[tf.newaxis])
    box_weights = tf.reduce_sum(
        tf.where(own, sample_weights, tf.zeros_like(sample_weights)), axis=0)
    # Owner index via the sorted order; row N of the padded table is zeros.
    num_boxes = tf.shape(priority)[0]
    order = tf.argsort(priority)  # order[rank] = object index.
    order_padded = tf.concat([order, [num_boxes]], axis=0)
    boxes_padded = tf.concat([gt['boxes_pixels'], tf.zeros([1, 4])], axis=0)
    owner_rank = tf.minimum(owner_prio, num_boxes)
    box_targets = tf.gather(boxes_padded,
                            tf.gather(order_padded, owner_rank))

    static = (height // self._stride if isinstance(height, int) else None,
              width // self._stride if isinstance(width, int) else None)
    heatmap.set_shape(static + (self._num_classes,))
    box_targets.set_shape(static + (4,))
    box_weights.set_shape(static)
    return {
        DTF.heatmap: heatmap,
        DTF.box_targets: box_targets,
        DTF.box_weights: box_weights,
        DTF.num_objects: tf.reduce_sum(valid_f),
    }
