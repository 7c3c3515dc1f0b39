"""Per-anchor (unreduced) detection losses with the TF OD API interface.

Every loss is a plain Python object (no Keras) whose `__call__` takes a
prediction tensor and a target tensor and returns the loss for every anchor
(or every anchor and class, or every heatmap pixel), multiplied by `weights`.
Reduction (sum, normalization by the number of positives / objects) is left
to the caller, i.e. the meta-architecture, exactly as in the TF Object
Detection API (`object_detection/core/losses.py`).

Shapes used below:
  * localization losses: predictions and targets `[batch, num_anchors,
    code_size]` float32; weights `[batch, num_anchors]` or
    `[batch, num_anchors, code_size]` (or anything broadcastable to the
    latter); result `[batch, num_anchors]` (summed over the code).
  * IoU / GIoU losses: predictions and targets are *decoded* boxes
    `[batch, num_anchors, 4]` as `[ymin, xmin, ymax, xmax]` in any one frame
    (normalized or pixels, the same for both); weights `[batch,
    num_anchors]`; result `[batch, num_anchors]`.
  * classification losses: logits and targets `[batch, num_anchors,
    num_classes]`; weights `[batch, num_anchors]`, `[batch, num_anchors, 1]`
    or `[batch, num_anchors, num_classes]`; result `[batch, num_anchors,
    num_classes]` (sigmoid losses) or `[batch, num_anchors]` (softmax).
  * dense heatmap loss: logits and targets of any shape, typically
    `[batch, H // stride, W // stride, num_classes]` or
    `[batch, num_locations, num_classes]`; weights broadcastable to it (a
    weight tensor with one dimension less gets a trailing axis); result of
    the logits' shape.

`weights` defaults to 1 everywhere when omitted.

Common keyword arguments of `Loss.__call__`:
  ignore_nan_targets: NaN entries of the target contribute zero loss
    (regression losses replace them by the prediction; classification losses
    zero the affected entries / anchors; IoU losses zero any anchor whose
    target box has a NaN coordinate).
  losses_mask: bool `[batch]`; images with False contribute zero loss (their
    predictions, targets and weights are multiplied by 0, as in the TF OD
    API; when `weights` is omitted the mask becomes the weights).
"""

import abc
import math

import tensorflow as tf


def _to_float(tensor, name):
  tensor = tf.convert_to_tensor(tensor)
  if not (tensor.dtype.is_floating or tensor.dtype.is_integer or
          tensor.dtype == tf.bool):
    raise ValueError(f'{name} must be numeric, got dtype {tensor.dtype}.')
  return tf.cast(tensor, tf.float32)


def _check_rank(tensor, rank, name):
  """Raises ValueError if the static rank of `tensor` is known and != rank."""
  if tensor.shape.rank is not None and tensor.shape.rank != rank:
    raise ValueError(
        f'{name} must have rank {rank}, got shape {tensor.shape}.')


def _check_last_dim(tensor, size, name):
  dim = tensor.shape[-1] if tensor.shape.rank else None
  if dim is not None and dim != size:
    raise ValueError(
        f'{name} must have last dimension {size}, got shape {tensor.shape}.')


def _expand_weights(weights, rank, name='weights'):
  """Appends a trailing axis to `weights` if it has rank `rank - 1`.

  Args:
    weights: float32 tensor, or None.
    rank: the rank of the tensor the weights must broadcast against.
    name: name used in error messages.

  Returns:
    float32 tensor of rank `rank` (or a scalar / None passed through).

  Raises:
    ValueError: if the static rank of `weights` is neither `rank - 1`,
      `rank` nor 0.
  """
  if weights is None:
    return None
  weights = _to_float(weights, name)
  w_rank = weights.shape.rank
  if w_rank is None or w_rank == 0 or w_rank == rank:
    return weights
  if w_rank == rank - 1:
    return tf.expand_dims(weights, -1)
  raise ValueError(
      f'{name} must have rank {rank - 1} or {rank}, got shape '
      f'{weights.shape}.')


def _apply_weights(loss, weights):
  if weights is None:
    return loss
  return loss * weights


class Loss(abc.ABC):
  """Abstract base class for the per-anchor loss functions.

  Subclasses implement `_compute_loss(prediction_tensor, target_tensor,
  **params)`; `__call__` handles NaN targets and the per-image loss mask.
  """

  # How NaN targets are replaced before `_compute_loss` when
  # `ignore_nan_targets=True`: 'prediction' (regression) or 'zero'
  # (classification; the entries are then zeroed in the loss by
  # `_nan_loss_multiplier`).
  _nan_replacement = 'prediction'

  def __call__(self,
               prediction_tensor,
               target_tensor,
               ignore_nan_targets=False,
               losses_mask=None,
               scope=None,
               **params):
    """Computes the unreduced loss.

    Args:
      prediction_tensor: float32 tensor of predictions (see the subclass
        for its shape).
      target_tensor: float32 tensor of targets, same shape as the prediction.
      ignore_nan_targets: whether NaN targets contribute zero loss.
      losses_mask: optional bool `[batch]`; False drops the image's loss.
      scope: optional name scope.
      **params: subclass-specific keyword arguments, typically `weights`.

    Returns:
      The per-anchor (or per-entry) loss tensor, see the subclass.

    Raises:
      ValueError: on inputs of the wrong rank or dtype.
    """
    with tf.name_scope(scope or type(self).__name__):
      prediction_tensor = _to_float(prediction_tensor, 'prediction_tensor')
      target_tensor = _to_float(target_tensor, 'target_tensor')
      nan_mask = None
      if ignore_nan_targets:
        nan_mask = tf.math.is_nan(target_tensor)
        if self._nan_replacement == 'prediction':
          replacement = tf.stop_gradient(prediction_tensor)
        else:
          replacement = tf.zeros_like(target_tensor)
        target_tensor = tf.where(nan_mask, replacement, target_tensor)
      if losses_mask is not None:
        losses_mask = tf.convert_to_tensor(losses_mask)
        _check_rank(losses_mask, 1, 'losses_mask')
        prediction_tensor *= self._loss_multiplier_for_tensor(
            prediction_tensor, losses_mask)
        target_tensor *= self._loss_multiplier_for_tensor(
            target_tensor, losses_mask)
        weights = params.get('weights')
        if weights is not None:
          weights = _to_float(weights, 'weights')
        if weights is None or weights.shape.rank == 0:
          multiplier = self._loss_multiplier_for_tensor(
              prediction_tensor, losses_mask)
          weights = multiplier if weights is None else weights * multiplier
        else:
          weights *= self._loss_multiplier_for_tensor(weights, losses_mask)
        params['weights'] = weights
      loss = self._compute_loss(prediction_tensor, target_tensor, **params)
      if nan_mask is not None:
        multiplier = self._nan_loss_multiplier(nan_mask)
        if multiplier is not None:
          loss *= multiplier
      return loss

  @staticmethod
  def _loss_multiplier_for_tensor(tensor, losses_mask):
    """Reshapes the bool `[batch]` mask to broadcast against `tensor`."""
    rank = tensor.shape.rank
    if rank is None:
      raise ValueError('Loss inputs must have a static rank to use '
                       'losses_mask.')
    shape = [-1] + [1] * (rank - 1)
    return tf.cast(tf.reshape(losses_mask, shape), tf.float32)

  def _nan_loss_multiplier(self, nan_mask):
    """Multiplier zeroing the loss where targets were NaN (None: no-op)."""
    del nan_mask
    return None

  @abc.abstractmethod
  def _compute_loss(self, prediction_tensor, target_tensor, **params):
    """Returns the unreduced loss; see the subclasses."""


class _LocalizationCodeLoss(Loss):
  """Base of the per-coordinate localization losses summed over the code."""

  def _elementwise(self, diff):
    raise NotImplementedError

  def _compute_loss(self, prediction_tensor, target_tensor, weights=None):
    """Returns `[batch, num_anchors]`, the weighted loss summed over the code.

    Args:
      prediction_tensor: float32 `[batch, num_anchors, code_size]` encoded
        box predictions.
      target_tensor: float32 `[batch, num_anchors, code_size]` regression
        targets.
      weights: float32 `[batch, num_anchors]` or `[batch, num_anchors,
        code_size]`; default 1.
    """
    _check_rank(prediction_tensor, 3, 'prediction_tensor')
    _check_rank(target_tensor, 3, 'target_tensor')
    weights = _expand_weights(weights, 3)
    loss = self._elementwise(prediction_tensor - target_tensor)
    return tf.reduce_sum(_apply_weights(loss, weights), axis=2)


class WeightedL2LocalizationLoss(_LocalizationCodeLoss):
  """L2 localization loss: `sum_j 0.5 * w * (pred_j - target_j)^2`.

  Returns float32 `[batch, num_anchors]`. Note: the TF OD API multiplies the
  difference by the weight before squaring (so weights act squared); here the
  weight multiplies the loss linearly. The two agree for 0/1 weights.
  """

  def _elementwise(self, diff):
    return 0.5 * tf.square(diff)


class WeightedSmoothL1LocalizationLoss(_LocalizationCodeLoss):
  """Smooth L1 (Huber) localization loss.

  Fast R-CNN (Girshick 2015) eq. 3 with `delta=1`:
  `smooth_L1(x) = 0.5 x^2` if `|x| < delta`, else `delta * (|x| - 0.5 delta)`
  (the Huber loss, as in the TF OD API), summed over the code and multiplied
  by the per-anchor weights. Returns float32 `[batch, num_anchors]`.

  Args:
    delta: float > 0, the point where the loss changes from quadratic to
      linear (in code units).

  Raises:
    ValueError: if delta <= 0.
  """

  def __init__(self, delta=1.0):
    if not delta > 0:
      raise ValueError(f'delta must be > 0, got {delta}.')
    self._delta = float(delta)

  def _elementwise(self, diff):
    abs_diff = tf.abs(diff)
    quadratic = tf.minimum(abs_diff, self._delta)
    linear = abs_diff - quadratic
    return 0.5 * tf.square(quadratic) + self._delta * linear


class WeightedL1LocalizationLoss(_LocalizationCodeLoss):
  """L1 localization loss `sum_j w * |pred_j - target_j|`.

  Returns float32 `[batch, num_anchors]`.
  """

  def _elementwise(self, diff):
    return tf.abs(diff)


class BalancedL1LocalizationLoss(_LocalizationCodeLoss):
  """Balanced L1 loss, Libra R-CNN (Pang et al. 2019) eqs. 8-10.

  For `x = pred - target` per coordinate, with `b` such that
  `alpha * ln(b + 1) = gamma` (eq. 10, i.e. `b = exp(gamma / alpha) - 1`):

    L_b(x) = alpha / b * (b|x| + 1) * ln(b|x| / beta + 1) - alpha |x|
                                                         if |x| < beta
    L_b(x) = gamma |x| + gamma / b - alpha * beta          otherwise

  (`beta` generalizes the paper's switch point 1, as in MMDetection; the
  constant `C = gamma / b - alpha * beta` makes L_b continuous at beta.)
  Summed over the code and weighted per anchor; returns `[batch,
  num_anchors]`.

  Args:
    alpha: float > 0, promotes the gradients of inliers (paper: 0.5).
    gamma: float > 0, upper bound of the gradient of outliers (paper: 1.5).
    beta: float > 0, the inlier/outlier switch point (paper: 1.0).

  Raises:
    ValueError: if a parameter is not positive.
  """

  def __init__(self, alpha=0.5, gamma=1.5, beta=1.0):
    for name, value in (('alpha', alpha), ('gamma', gamma), ('beta', beta)):
      if not value > 0:
        raise ValueError(f'{name} must be > 0, got {value}.')
    self._alpha = float(alpha)
    self._gamma = float(gamma)
    self._beta = float(beta)
    self._b = math.exp(self._gamma / self._alpha) - 1.0

  def _elementwise(self, diff):
    x = tf.abs(diff)
    a, g, beta, b = self._alpha, self._gamma, self._beta, self._b
    inlier = a / b * (b * x + 1.0) * tf.math.log(b * x / beta + 1.0) - a * x
    outlier = g * x + g / b - a * beta
    return tf.where(x < beta, inlier, outlier)


def _matched_iou_and_giou(boxes1, boxes2):
  """IoU and GIoU of matching rows of two `[..., 4]` yxyx box tensors.

  Degenerate (zero-area) pairs get IoU 0 (no division by zero). Boxes with
  `ymax < ymin` are treated as empty.

  Returns:
    (iou, giou): float32 tensors of shape `[...]`.
  """
  ymin1, xmin1, ymax1, xmax1 = tf.unstack(boxes1, axis=-1)
  ymin2, xmin2, ymax2, xmax2 = tf.unstack(boxes2, axis=-1)
  area1 = tf.maximum(ymax1 - ymin1, 0.) * tf.maximum(xmax1 - xmin1, 0.)
  area2 = tf.maximum(ymax2 - ymin2, 0.) * tf.maximum(xmax2 - xmin2, 0.)
  inter_h = tf.maximum(tf.minimum(ymax1, ymax2) - tf.maximum(ymin1, ymin2), 0.)
  inter_w = tf.maximum(tf.minimum(xmax1, xmax2) - tf.maximum(xmin1, xmin2), 0.)
  intersection = inter_h * inter_w
  union = area1 + area2 - intersection
  iou = tf.math.divide_no_nan(intersection, union)
  encl_h = tf.maximum(tf.maximum(ymax1, ymax2) - tf.minimum(ymin1, ymin2), 0.)
  encl_w = tf.maximum(tf.maximum(xmax1, xmax2) - tf.minimum(xmin1, xmin2), 0.)
  enclosing = encl_h * encl_w
  giou = iou - tf.math.divide_no_nan(enclosing - union, enclosing)
  return iou, giou


class _BoxOverlapLoss(Loss):
  """Base for losses on decoded boxes."""

  def _per_anchor(self, iou, giou):
    raise NotImplementedError

  def _nan_loss_multiplier(self, nan_mask):
    return 1.0 - tf.cast(tf.reduce_any(nan_mask, axis=-1), tf.float32)

  def _compute_loss(self, prediction_tensor, target_tensor, weights=None):
    """Returns float32 `[batch, num_anchors]`.

    Args:
      prediction_tensor: float32 `[batch, num_anchors, 4]` decoded predicted
        boxes `[ymin, xmin, ymax, xmax]`.
      target_tensor: float32 `[batch, num_anchors, 4]` groundtruth boxes in
        the same frame.
      weights: float32 `[batch, num_anchors]`; default 1.
    """
    _check_rank(prediction_tensor, 3, 'prediction_tensor')
    _check_rank(target_tensor, 3, 'target_tensor')
    _check_last_dim(prediction_tensor, 4, 'prediction_tensor')
    _check_last_dim(target_tensor, 4, 'target_tensor')
    if weights is not None:
      weights = _to_float(weights, 'weights')
      if weights.shape.rank == 3:
        weights = tf.squeeze(weights, axis=-1)
    iou, giou = _matched_iou_and_giou(prediction_tensor, target_tensor)
    return _apply_weights(self._per_anchor(iou, giou), weights)


class WeightedIOULocalizationLoss(_BoxOverlapLoss):
  """IoU loss `w * (1 - IoU(pred, target))` on decoded yxyx boxes.

  Used by FCOS-style heads (Yu et al. 2016 "UnitBox" uses -ln IoU; the TF
  OD API and this class use 1 - IoU). Returns `[batch, num_anchors]`.
  """

  def _per_anchor(self, iou, giou):
    del giou
    return 1.0 - iou


class WeightedGIOULocalizationLoss(_BoxOverlapLoss):
  """Generalized IoU loss `w * (1 - GIoU(pred, target))`.

  Rezatofighi et al. 2019, Algorithm 1: `GIoU = IoU - |C \\ (A u B)| / |C|`
  with C the smallest enclosing box; the loss lies in [0, 2]. Boxes are
  decoded `[ymin, xmin, ymax, xmax]`. TTFNet (Liu et al. 2019) weights each
  regression sample by `log(area) * G(i, j) / sum G`; pass that as
  `weights`. Returns `[batch, num_anchors]`.
  """

  def _per_anchor(self, iou, giou):
    del iou
    return 1.0 - giou


class WeightedSigmoidClassificationLoss(Loss):
  """Per-class sigmoid cross entropy, returns `[batch, num_anchors, C]`."""

  _nan_replacement = 'zero'

  def _nan_loss_multiplier(self, nan_mask):
    return 1.0 - tf.cast(nan_mask, tf.float32)

  def _compute_loss(self, prediction_tensor, target_tensor, weights=None,
                    class_indices=None):
    """Computes the loss.

    Args:
      prediction_tensor: float32 `[batch, num_anchors, num_classes]` logits.
      target_tensor: float32 `[batch, num_anchors, num_classes]` targets in
        [0, 1] (one-hot, multi-hot or soft).
      weights: float32 `[batch, num_anchors]`, `[batch, num_anchors, 1]` or
        `[batch, num_anchors, num_classes]`; default 1.
      class_indices: optional int32 `[k]`; only these classes contribute.

    Returns:
      float32 `[batch, num_anchors, num_classes]`.
    """
    _check_rank(prediction_tensor, 3, 'prediction_tensor')
    weights = _class_weights(weights, prediction_tensor, class_indices)
    loss = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=target_tensor, logits=prediction_tensor)
    return _apply_weights(loss, weights)


def _class_weights(weights, prediction_tensor, class_indices):
  """Expands weights to rank 3 and masks out classes not in class_indices."""
  weights = _expand_weights(weights, 3)
  if class_indices is not None:
    num_classes = tf.shape(prediction_tensor)[-1]
    class_indices = tf.cast(tf.reshape(class_indices, [-1]), tf.int32)
    class_mask = tf.reduce_max(
        tf.one_hot(class_indices, num_classes, dtype=tf.float32), axis=0)
    class_mask = tf.reshape(class_mask, [1, 1, -1])
    weights = class_mask if weights is None else weights * class_mask
  return weights


class SigmoidFocalClassificationLoss(Loss):
  """Sigmoid focal loss, Lin et al. 2017 (RetinaNet) eq. 5.

  `FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)` per class, with
  `p_t = p` for target 1 and `1 - p` for target 0 (soft targets interpolate
  as in the TF OD API), `alpha_t = alpha` for positives and `1 - alpha` for
  negatives. Returns `[batch, num_anchors, num_classes]`; the caller
  normalizes by the number of positive anchors (RetinaNet section 3.3).

  Args:
    gamma: float >= 0, the focusing parameter (0 gives alpha-balanced CE).
    alpha: float in [0, 1] or None (no alpha balancing).

  Raises:
    ValueError: on a negative gamma or alpha outside [0, 1].
  """

  _nan_replacement = 'zero'

  def __init__(self, gamma=2.0, alpha=0.25):
    if gamma is None or gamma < 0:
      raise ValueError(f'gamma must be >= 0, got {gamma}.')
    if alpha is not None and not 0.0 <= alpha <= 1.0:
      raise ValueError(f'alpha must be in [0, 1] or None, got {alpha}.')
    self._gamma = float(gamma)
    self._alpha = None if alpha is None else float(alpha)

  def _nan_loss_multiplier(self, nan_mask):
    return 1.0 - tf.cast(nan_mask, tf.float32)

  def _compute_loss(self, prediction_tensor, target_tensor, weights=None,
                    class_indices=None):
    """Computes the loss.

    Args:
      prediction_tensor: float32 `[batch, num_anchors, num_classes]` logits.
      target_tensor: float32 `[batch, num_anchors, num_classes]` in [0, 1].
      weights: float32 `[batch, num_anchors]`, `[batch, num_anchors, 1]` or
        `[batch, num_anchors, num_classes]`; default 1.
      class_indices: optional int32 `[k]`; only these classes contribute.

    Returns:
      float32 `[batch, num_anchors, num_classes]`.
    """
    _check_rank(prediction_tensor, 3, 'prediction_tensor')
    weights = _class_weights(weights, prediction_tensor, class_indices)
    per_entry_ce = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=target_tensor, logits=prediction_tensor)
    probs = tf.sigmoid(prediction_tensor)
    p_t = target_tensor * probs + (1.0 - target_tensor) * (1.0 - probs)
    loss = per_entry_ce
    if self._gamma:
      loss *= tf.pow(1.0 - p_t, self._gamma)
    if self._alpha is not None:
      loss *= (target_tensor * self._alpha +
               (1.0 - target_tensor) * (1.0 - self._alpha))
    return _apply_weights(loss, weights)


class WeightedSoftmaxClassificationLoss(Loss):
  """Softmax cross entropy over `num_classes + 1` columns (0: background).

  Args:
    logit_scale: float > 0; logits are divided by it before the softmax
      (a temperature, as in the TF OD API).

  Raises:
    ValueError: if logit_scale <= 0.
  """

  _nan_replacement = 'zero'

  def __init__(self, logit_scale=1.0):
    if not logit_scale > 0:
      raise ValueError(f'logit_scale must be > 0, got {logit_scale}.')
    self._logit_scale = float(logit_scale)

  def _nan_loss_multiplier(self, nan_mask):
    return 1.0 - tf.cast(tf.reduce_any(nan_mask, axis=-1), tf.float32)

  def _compute_loss(self, prediction_tensor, target_tensor, weights=None):
    """Computes the loss.

    Args:
      prediction_tensor: float32 `[batch, num_anchors, num_classes + 1]`
        logits.
      target_tensor: float32 `[batch, num_anchors, num_classes + 1]` one-hot
        (or a distribution) targets.
      weights: float32 `[batch, num_anchors]` or `[batch, num_anchors,
        num_classes + 1]` (averaged over classes, as in the TF OD API);
        default 1.

    Returns:
      float32 `[batch, num_anchors]`.
    """
    _check_rank(prediction_tensor, 3, 'prediction_tensor')
    if weights is not None:
      weights = _to_float(weights, 'weights')
      if weights.shape.rank == 3:
        weights = tf.reduce_mean(weights, axis=2)
    logits = prediction_tensor / self._logit_scale
    loss = tf.nn.softmax_cross_entropy_with_logits(
        labels=target_tensor, logits=logits)
    return _apply_weights(loss, weights)


class PenaltyReducedLogisticFocalLoss(Loss):
  """Penalty-reduced pixel-wise logistic focal loss on dense heatmaps.

  CornerNet (Law & Deng 2018) eq. 1 / CenterNet "Objects as Points" (Zhou et
  al. 2019) eq. 1 / TTFNet eq. 2, per pixel and class, with
  `p = clip(sigmoid(logit), eps, 1 - eps)` and Gaussian target `y`:

    -(1 - p)^alpha log(p)                    if y == 1
    -(1 - y)^beta p^alpha log(1 - p)         otherwise

  The returned tensor is the per-pixel loss (times weights), same shape as
  the logits. The papers divide the sum by N, the number of objects (pixels
  with y == 1); that normalization is the caller's: see
  `normalized_penalty_reduced_focal_loss`.

  Args:
    alpha: float >= 0, focal exponent (paper: 2).
    beta: float >= 0, penalty-reduction exponent (paper: 4).
    sigmoid_clip_value: float in [0, 0.5), clipping of the probabilities for
      numerical stability (CenterNet's code uses 1e-4).

  Raises:
    ValueError: on out-of-range parameters.
  """

  _nan_replacement = 'zero'

  def __init__(self, alpha=2.0, beta=4.0, sigmoid_clip_value=1e-4):
    if alpha < 0 or beta < 0:
      raise ValueError(f'alpha and beta must be >= 0, got {alpha}, {beta}.')
    if not 0.0 <= sigmoid_clip_value < 0.5:
      raise ValueError('sigmoid_clip_value must be in [0, 0.5), got '
                       f'{sigmoid_clip_value}.')
    self._alpha = float(alpha)
    self._beta = float(beta)
    self._clip = float(sigmoid_clip_value)

  def _nan_loss_multiplier(self, nan_mask):
    return 1.0 - tf.cast(nan_mask, tf.float32)

  def _compute_loss(self, prediction_tensor, target_tensor, weights=None):
    """Computes the per-pixel loss.

    Args:
      prediction_tensor: float32 logits, e.g. `[batch, H', W', C]` or
        `[batch, num_locations, C]`.
      target_tensor: float32 Gaussian heatmap targets in [0, 1], same shape;
        exactly 1.0 marks an object center.
      weights: float32 broadcastable to the logits (a tensor of rank one less
        gets a trailing axis); default 1.

    Returns:
      float32 tensor of the logits' shape.
    """
    rank = prediction_tensor.shape.rank
    if weights is not None and rank is not None:
      weights = _expand_weights(weights, rank)
    probs = tf.clip_by_value(tf.sigmoid(prediction_tensor), self._clip,
                             1.0 - self._clip)
    positive_loss = tf.pow(1.0 - probs, self._alpha) * tf.math.log(probs)
    negative_loss = (tf.pow(1.0 - target_tensor, self._beta) *
                     tf.pow(probs, self._alpha) * tf.math.log(1.0 - probs))
    loss = -tf.where(tf.equal(target_tensor, 1.0), positive_loss,
                     negative_loss)
    return _apply_weights(loss, weights)


def normalized_penalty_reduced_focal_loss(prediction_tensor,
                                          target_tensor,
                                          weights=None,
                                          num_objects=None,
                                          alpha=2.0,
                                          beta=4.0,
                                          sigmoid_clip_value=1e-4):
  """Scalar CenterNet / CornerNet heatmap loss, normalized by object count.

  `L_k = 1/N * sum_{pixels, classes} PenaltyReducedLogisticFocalLoss` (CenterNet
  eq. 1), N = `num_objects`, by default the number of target entries equal to
  1.0 (times their weight), clamped to at least 1 so that images without
  objects give the (un-normalized) negative loss instead of a division by 0.

  Args:
    prediction_tensor: float32 logits `[batch, H', W', C]` (any shape).
    target_tensor: float32 Gaussian heatmap, same shape.
    weights: optional float32 weights broadcastable to the logits.
    num_objects: optional float32 scalar N; default counts target == 1.
    alpha, beta, sigmoid_clip_value: see `PenaltyReducedLogisticFocalLoss`.

  Returns:
    float32 scalar.
  """
  loss_fn = PenaltyReducedLogisticFocalLoss(
      alpha=alpha, beta=beta, sigmoid_clip_value=sigmoid_clip_value)
  per_pixel = loss_fn(prediction_tensor, target_tensor, weights=weights)
  if num_objects is None:
    positives = tf.cast(
        tf.equal(tf.cast(target_tensor, tf.float32), 1.0), tf.float32)
    if weights is not None:
      rank = per_pixel.shape.rank
      if rank is not None:
        weights = _expand_weights(weights, rank)
      positives *= tf.cast(weights, tf.float32)
    num_objects = tf.reduce_sum(positives)
  num_objects = tf.maximum(tf.cast(num_objects, tf.float32), 1.0)
  return tf.reduce_sum(per_pixel) / num_objects
