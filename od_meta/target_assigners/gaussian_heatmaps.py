"""Gaussian heatmap targets shared by the keypoint-style dense detectors.

CornerNet (Law & Deng 2018, Sec. 3.2) reduces the focal-loss penalty of
negative locations near a groundtruth keypoint with an unnormalized 2D
Gaussian whose radius is chosen so that a box displaced by that radius still
has IoU >= `min_overlap` (0.7) with the groundtruth. CenterNet "Objects as
Points" (Zhou et al. 2019, Sec. 3) draws the same circular Gaussian at object
centers with sigma = (2r + 1) / 6 inside a (2r + 1) x (2r + 1) square; TTFNet
(Liu et al. 2019, Sec. 3.2) uses an elliptical Gaussian with
sigma_x = alpha * w / 6, sigma_y = alpha * h / 6 (alpha = 0.54) truncated to
the window of half-size (alpha * h / 2, alpha * w / 2). In both, overlapping
Gaussians of one class are combined by element-wise maximum.

All sizes and coordinates here are in output-stride pixels (the frame of the
heatmap: location (i, j) covers input pixels [i * s, (i + 1) * s), see
`od_meta.core.target_assigner.coordinates_grid`).
"""

import tensorflow as tf


def gaussian_radius(box_heights, box_widths, min_overlap=0.7):
  """CornerNet's Gaussian radius, exactly as in CenterNet's reference code.

  CornerNet (Sec. 3.2) picks the largest radius r such that a pair of
  corners displaced by r from the groundtruth corners still gives a box with
  IoU >= `min_overlap`. It solves one quadratic a r^2 + b r + c = 0 for each
  of three cases (h = box height, w = box width, m = min_overlap):

    r1 (both corners shifted, boxes overlap partially):
       a = 1,     b = -(h + w),      c = w h (1 - m) / (1 + m)
    r2 (detection inside the groundtruth):
       a = 4,     b = -2 (h + w),    c = (1 - m) w h
    r3 (groundtruth inside the detection):
       a = 4 m,   b = 2 m (h + w),   c = (m - 1) w h

  and returns min(r1, r2, r3). Like CenterNet's `gaussian_radius`
  (github.com/xingyizhou/CenterNet, `utils/image.py`) and the TF OD API's
  `max_distance_for_overlap`, each root is computed as
  `(-b + sqrt(b^2 - 4 a c)) / 2` (divided by 2, not 2a: the known
  discrepancy of the reference code, kept so that targets match the
  published models). Example: h = 10, w = 20, m = 0.7 gives r1 = 28.773,
  r2 = 55.690, r3 = 3.6779 -> 3.6779.

  Args:
    box_heights: float32 `[N]`, box heights in output-stride pixels
      (negative values are treated as 0).
    box_widths: float32 `[N]`, box widths in output-stride pixels.
    min_overlap: Python float in (0, 1), the minimum IoU.

  Returns:
    float32 `[N]`, the (real-valued, non-negative) radius in output-stride
    pixels; 0 for zero-size boxes.

  Raises:
    ValueError: if `min_overlap` is not in (0, 1).
  """
  if not 0.0 < min_overlap < 1.0:
    raise ValueError(f'min_overlap must be in (0, 1), got {min_overlap}.')
  h = tf.maximum(tf.cast(box_heights, tf.float32), 0.0)
  w = tf.maximum(tf.cast(box_widths, tf.float32), 0.0)
  m = float(min_overlap)

  def _root(a, b, c):
    # Discriminants are >= 0 for h, w >= 0 and 0 < m < 1 (see docstring);
    # the maximum only guards against float round-off.
    return (-b + tf.sqrt(tf.maximum(b * b - 4.0 * a * c, 0.0))) / 2.0

  r1 = _root(1.0, -(h + w), w * h * (1.0 - m) / (1.0 + m))
  r2 = _root(4.0, -2.0 * (h + w), (1.0 - m) * w * h)
  r3 = _root(4.0 * m, 2.0 * m * (h + w), (m - 1.0) * w * h)
  return tf.maximum(tf.minimum(tf.minimum(r1, r2), r3), 0.0)


def center_net_radius_and_sigma(box_heights, box_widths, min_overlap=0.7):
  """CenterNet's integer radius and circular sigma from box sizes.

  r = max(0, int(gaussian_radius(h, w, min_overlap))) and
  sigma = (2 r + 1) / 6 (CenterNet reference `draw_umich_gaussian`: a
  (2r + 1)-wide kernel with sigma = diameter / 6; CornerNet Sec. 3.2 uses
  sigma = r / 3).

  Args:
    box_heights: float32 `[N]`, box heights in output-stride pixels.
    box_widths: float32 `[N]`, box widths in output-stride pixels.
    min_overlap: Python float in (0, 1).

  Returns:
    radius: float32 `[N]`, integer-valued radius in output-stride pixels.
    sigma: float32 `[N]`, the standard deviation in output-stride pixels.

  Raises:
    ValueError: if `min_overlap` is not in (0, 1).
  """
  radius = tf.floor(gaussian_radius(box_heights, box_widths, min_overlap))
  sigma = (2.0 * radius + 1.0) / 6.0
  return radius, sigma


def ttfnet_sigmas_and_radii(box_heights, box_widths, alpha=0.54):
  """TTFNet's elliptical sigmas and truncation radii from box sizes.

  sigma_y = alpha * h / 6, sigma_x = alpha * w / 6 (TTFNet Sec. 3.2), and
  the kernel is truncated to |dy| <= int(alpha * h / 2),
  |dx| <= int(alpha * w / 2) as in the reference code
  (github.com/ZJULearning/ttfnet, `ttf_head.py`, `h_radiuses_alpha =
  (feat_hs / 2. * self.alpha).int()`), i.e. at about 3 sigma. The same
  function with `beta` gives the regression sub-area kernel.

  Args:
    box_heights: float32 `[N]`, box heights in output-stride pixels.
    box_widths: float32 `[N]`, box widths in output-stride pixels.
    alpha: positive Python float (0.54 in TTFNet).

  Returns:
    sigmas_yx: float32 `[N, 2]`, (sigma_y, sigma_x) in output-stride pixels.
    radii_yx: float32 `[N, 2]`, integer-valued (r_y, r_x) window half-sizes.

  Raises:
    ValueError: if `alpha` is not positive.
  """
  if not alpha > 0:
    raise ValueError(f'alpha must be positive, got {alpha}.')
  sizes = tf.maximum(
      tf.stack([tf.cast(box_heights, tf.float32),
                tf.cast(box_widths, tf.float32)], axis=-1), 0.0)
  sigmas = float(alpha) * sizes / 6.0
  radii = tf.floor(float(alpha) * sizes / 2.0)
  return sigmas, radii


def _profiles_1d(size, centers, sigmas, radii):
  """exp(-d^2 / (2 sigma^2)) along one axis: `[N]` inputs -> `[N, size]`."""
  coords = tf.cast(tf.range(size), tf.float32)
  d = coords[tf.newaxis, :] - centers[:, tf.newaxis]
  sig = sigmas[:, tf.newaxis]
  positive = sig > 0.0
  safe_sig = tf.where(positive, sig, tf.ones_like(sig))
  exponent = d * d / (2.0 * safe_sig * safe_sig)
  # A zero sigma is a delta at the center.
  exponent = tf.where(positive, exponent,
                      tf.where(tf.equal(d, 0.0), tf.zeros_like(d),
                               tf.fill(tf.shape(d), float('inf'))))
  profile = tf.exp(-exponent)
  if radii is not None:
    profile = tf.where(tf.abs(d) <= radii[:, tf.newaxis], profile,
                       tf.zeros_like(profile))
  return profile


def _check_n2(name, tensor):
  if tensor.shape.rank is not None and (
      tensor.shape.rank != 2 or
      (tensor.shape[1] is not None and tensor.shape[1] != 2)):
    raise ValueError(f'{name} must be [N, 2], got shape {tensor.shape}.')


def object_gaussians(height, width, centers_yx, sigmas_yx, radii_yx=None):
  """One unnormalized Gaussian map per object.

  G_n(y, x) = exp(-((y - cy)^2 / (2 sy^2) + (x - cx)^2 / (2 sx^2))), set to 0
  where |y - cy| > ry or |x - cx| > rx when radii are given. Computed as the
  product of the two separable 1-D profiles (exact 1.0 at an integer
  center). A zero sigma gives a delta (1 at the center row/column only).

  Args:
    height: int or int32 scalar, rows of the output map.
    width: int or int32 scalar, columns of the output map.
    centers_yx: int32 or float32 `[N, 2]`, (y, x) centers in output-stride
      pixels (integer locations; float centers are used as given).
    sigmas_yx: float32 `[N, 2]`, (sigma_y, sigma_x) in output-stride pixels.
    radii_yx: optional float32 `[N, 2]` (or int32) window half-sizes in
      output-stride pixels; None for no truncation.

  Returns:
    float32 `[N, height, width]`.

  Raises:
    ValueError: if an argument's static shape is not `[N, 2]`.
  """
  centers = tf.cast(tf.convert_to_tensor(centers_yx), tf.float32)
  sigmas = tf.cast(tf.convert_to_tensor(sigmas_yx), tf.float32)
  _check_n2('centers_yx', centers)
  _check_n2('sigmas_yx', sigmas)
  if radii_yx is not None:
    radii_yx = tf.cast(tf.convert_to_tensor(radii_yx), tf.float32)
    _check_n2('radii_yx', radii_yx)
    ry, rx = radii_yx[:, 0], radii_yx[:, 1]
  else:
    ry = rx = None
  gy = _profiles_1d(height, centers[:, 0], sigmas[:, 0], ry)
  gx = _profiles_1d(width, centers[:, 1], sigmas[:, 1], rx)
  return gy[:, :, tf.newaxis] * gx[:, tf.newaxis, :]


def draw_gaussian_heatmaps(height, width, centers_yx, sigmas_yx,
                           class_weights, radii_yx=None):
  """Draws per-class Gaussian heatmaps, combined by element-wise maximum.

  heatmap[y, x, c] = max_n class_weights[n, c] * G_n(y, x), with G_n the
  object's Gaussian from `object_gaussians` (value exactly 1.0 at an
  integer center; CenterNet Sec. 3 / TTFNet Sec. 3.2: "element-wise
  maximum", not a sum). Only positive class weights draw; rows of zeros
  draw nothing; the map is 0 where nothing is drawn. Vectorized over
  objects: memory is O(M * height * width) with M the number of positive
  entries of `class_weights` (N for one-hot rows).

  Args:
    height: int or int32 scalar, rows of the output map.
    width: int or int32 scalar, columns of the output map.
    centers_yx: int32 or float32 `[N, 2]`, (y, x) integer locations in
      output-stride pixels.
    sigmas_yx: float32 `[N, 2]`, (sigma_y, sigma_x) in output-stride pixels.
    class_weights: float32 `[N, C]`, one-hot rows times box weight.
    radii_yx: optional `[N, 2]` window half-sizes (output-stride pixels):
      CenterNet passes (r, r) (a (2r + 1) square), TTFNet
      (int(alpha h / 2), int(alpha w / 2)). None: no truncation.

  Returns:
    float32 `[height, width, C]`.

  Raises:
    ValueError: if a static shape is wrong (`[N, 2]` inputs, `[N, C]`
      class_weights).
  """
  class_weights = tf.cast(tf.convert_to_tensor(class_weights), tf.float32)
  if class_weights.shape.rank is not None and class_weights.shape.rank != 2:
    raise ValueError('class_weights must be [N, C], got shape '
                     f'{class_weights.shape}.')
  num_classes = class_weights.shape[1]
  if num_classes is None:
    num_classes = tf.shape(class_weights)[1]
  gaussians = object_gaussians(height, width, centers_yx, sigmas_yx,
                               radii_yx)
  # One entry per (object, class) pair with a positive weight.
  pairs = tf.where(class_weights > 0.0)
  values = tf.gather_nd(class_weights, pairs)
  drawn = tf.gather(gaussians, pairs[:, 0]) * values[:, tf.newaxis,
                                                     tf.newaxis]
  heat = tf.math.unsorted_segment_max(drawn, pairs[:, 1], num_classes)
  # Empty segments hold the lowest float: no object of that class.
  heat = tf.maximum(heat, 0.0)
  heat = tf.transpose(heat, [1, 2, 0])
  if isinstance(num_classes, int):
    static_h = height if isinstance(height, int) else None
    static_w = width if isinstance(width, int) else None
    heat.set_shape([static_h, static_w, num_classes])
  return heat
