"""Online hard example mining (OHEM) for SSD-style losses.

SSD (Liu et al. 2016), section 2.2 "Hard negative mining": after matching,
most anchors are negatives; instead of using them all, sort them by their
loss and keep the highest so that negatives:positives is at most 3:1. The
TF OD API (`object_detection/core/losses.py`, `HardExampleMiner`) generalizes
this following Shrivastava et al. 2016 (OHEM): per image, the anchors are
ranked by a (weighted) loss, near-duplicate anchors are removed with NMS on
their decoded boxes (IoU > `iou_threshold`), at most `num_hard_examples` are
kept, and, when matches are given, negatives are capped to
`max_negatives_per_positive * num_positives` (at least
`min_negatives_per_image`). The losses of the kept anchors are summed.

Difference from the TF OD API: anchors that the matcher *ignored* (-2) are
never kept by the negative cap here (the TF OD API keeps them when they rank
before the cap is reached); their losses are normally zero-weighted anyway.
"""

import tensorflow as tf


def _match_results(match):
  """Returns the int32 `[num_anchors]` match vector of a Match (or tensor)."""
  if hasattr(match, 'match_results'):
    return tf.convert_to_tensor(match.match_results)
  return tf.convert_to_tensor(match)


class HardExampleMiner:
  """Hard example mining for regression and classification losses.

  Args:
    num_hard_examples: int > 0, maximum anchors kept per image by the NMS
      step (None: all anchors).
    iou_threshold: float in [0, 1], NMS IoU threshold on decoded boxes
      (1.0 disables duplicate removal).
    loss_type: 'cls', 'loc' or 'both': the loss used for ranking; with
      'both' it is `cls_loss_weight * cls + loc_loss_weight * loc`.
    cls_loss_weight: float, weight of the classification loss for 'both'.
    loc_loss_weight: float, weight of the localization loss for 'both'.
    max_negatives_per_positive: float or None; SSD uses 3 (neg:pos <= 3:1).
      Only applied when `match_list` is passed to `__call__`.
    min_negatives_per_image: int >= 0, negatives kept even in images with
      no positives (used with max_negatives_per_positive).

  Raises:
    ValueError: on a bad loss_type or out-of-range arguments.
  """

  def __init__(self,
               num_hard_examples=64,
               iou_threshold=0.7,
               loss_type='both',
               cls_loss_weight=0.05,
               loc_loss_weight=0.06,
               max_negatives_per_positive=None,
               min_negatives_per_image=0):
    if loss_type not in ('cls', 'loc', 'both'):
      raise ValueError(
          f"loss_type must be 'cls', 'loc' or 'both', got {loss_type!r}.")
    if num_hard_examples is not None and int(num_hard_examples) <= 0:
      raise ValueError(
          f'num_hard_examples must be > 0 or None, got {num_hard_examples}.')
    if not 0.0 <= iou_threshold <= 1.0:
      raise ValueError(
          f'iou_threshold must be in [0, 1], got {iou_threshold}.')
    if (max_negatives_per_positive is not None and
        max_negatives_per_positive < 0):
      raise ValueError('max_negatives_per_positive must be >= 0, got '
                       f'{max_negatives_per_positive}.')
    if min_negatives_per_image < 0:
      raise ValueError('min_negatives_per_image must be >= 0, got '
                       f'{min_negatives_per_image}.')
    self._num_hard_examples = (None if num_hard_examples is None else
                               int(num_hard_examples))
    self._iou_threshold = float(iou_threshold)
    self._loss_type = loss_type
    self._cls_loss_weight = float(cls_loss_weight)
    self._loc_loss_weight = float(loc_loss_weight)
    self._max_negatives_per_positive = (
        None if max_negatives_per_positive is None else
        float(max_negatives_per_positive))
    self._min_negatives_per_image = int(min_negatives_per_image)
    self._num_positives_list = None
    self._num_negatives_list = None

  @property
  def num_hard_examples(self):
    """int or None: examples kept per image (None: no limit)."""
    return self._num_hard_examples

  def __call__(self, location_losses, cls_losses, decoded_boxlist_list,
               match_list=None):
    """Mines hard examples and returns the summed losses of the kept anchors.

    Args:
      location_losses: float32 `[batch, num_anchors]` per-anchor regression
        losses (already weighted, e.g. zero for negatives).
      cls_losses: float32 `[batch, num_anchors]` per-anchor classification
        losses (summed over classes).
      decoded_boxlist_list: list of `batch` BoxLists, each with the
        `num_anchors` decoded predicted boxes of one image (yxyx, any frame),
        used for NMS.
      match_list: optional list of `batch` Match objects (match_results
        `[num_anchors]`: >= 0 positive, -1 negative, -2 ignored); needed for
        the negatives-per-positive cap.

    Returns:
      (location_loss, cls_loss): float32 scalars, the sums over images of the
      mined anchors' losses. The caller normalizes (e.g. by the number of
      matched anchors).

    Raises:
      ValueError: if the lists and the batch size disagree.
    """
    if not isinstance(decoded_boxlist_list, (list, tuple)):
      raise ValueError('decoded_boxlist_list must be a list of BoxLists.')
    num_images = len(decoded_boxlist_list)
    location_losses = tf.convert_to_tensor(location_losses, tf.float32)
    cls_losses = tf.convert_to_tensor(cls_losses, tf.float32)
    for name, tensor in (('location_losses', location_losses),
                         ('cls_losses', cls_losses)):
      if tensor.shape.rank != 2:
        raise ValueError(
            f'{name} must be [batch, num_anchors], got {tensor.shape}.')
      if tensor.shape[0] is not None and tensor.shape[0] != num_images:
        raise ValueError(f'{name} has batch {tensor.shape[0]} but '
                         f'decoded_boxlist_list has {num_images} entries.')
    if match_list:
      if len(match_list) != num_images:
        raise ValueError(f'match_list has {len(match_list)} entries, '
                         f'decoded_boxlist_list {num_images}.')
    else:
      match_list = [None] * num_images
    if self._iou_threshold >= 1.0 and num_images:
      # No box can have IoU > 1 with another, so NMS keeps everything: the
      # selection is the top-k anchors by loss, computed for the whole batch
      # at once (the per-image NMS loop costs more than the network on CPU).
      return self._mine_without_nms(location_losses, cls_losses,
                                    match_list)
    location_losses = tf.unstack(location_losses, num=num_images)
    cls_losses = tf.unstack(cls_losses, num=num_images)

    mined_location_losses = []
    mined_cls_losses = []
    num_positives_list = []
    num_negatives_list = []
    for ind, boxlist in enumerate(decoded_boxlist_list):
      boxes = boxlist.get()
      if self._loss_type == 'cls':
        image_losses = cls_losses[ind]
      elif self._loss_type == 'loc':
        image_losses = location_losses[ind]
      else:
        image_losses = (cls_losses[ind] * self._cls_loss_weight +
                        location_losses[ind] * self._loc_loss_weight)
      if self._num_hard_examples is not None:
        num_hard_examples = self._num_hard_examples
      else:
        num_hard_examples = boxlist.num_boxes()
      selected = tf.image.non_max_suppression(
          boxes, image_losses, num_hard_examples, self._iou_threshold)
      match = match_list[ind]
      if self._max_negatives_per_positive is not None and match is not None:
        selected, num_pos, num_neg = self._subsample_to_neg_pos_ratio(
            selected, _match_results(match))
        num_positives_list.append(num_pos)
        num_negatives_list.append(num_neg)
      mined_location_losses.append(
          tf.reduce_sum(tf.gather(location_losses[ind], selected)))
      mined_cls_losses.append(
          tf.reduce_sum(tf.gather(cls_losses[ind], selected)))
    location_loss = tf.add_n(mined_location_losses) if num_images else 0.0
    cls_loss = tf.add_n(mined_cls_losses) if num_images else 0.0
    if num_positives_list:
      self._num_positives_list = num_positives_list
      self._num_negatives_list = num_negatives_list
    return (tf.convert_to_tensor(location_loss, tf.float32),
            tf.convert_to_tensor(cls_loss, tf.float32))

  def _ranking_losses(self, location_losses, cls_losses):
    if self._loss_type == 'cls':
      return cls_losses
    if self._loss_type == 'loc':
      return location_losses
    return (cls_losses * self._cls_loss_weight +
            location_losses * self._loc_loss_weight)

  def _mine_without_nms(self, location_losses, cls_losses, match_list):
    """Batched mining when `iou_threshold >= 1` (no duplicate removal).

    Same selection as the per-image path: anchors ranked by decreasing
    loss, the first `num_hard_examples` kept, then the negatives capped to
    `max(min_negatives_per_image, max_negatives_per_positive * num_pos)`.
    """
    num_anchors = tf.shape(cls_losses)[1]
    k = num_anchors
    if self._num_hard_examples is not None:
      k = tf.minimum(num_anchors, self._num_hard_examples)
    _, order = tf.math.top_k(
        self._ranking_losses(location_losses, cls_losses), k=k)
    keep = tf.ones_like(order, tf.float32)
    if self._max_negatives_per_positive is not None and all(
        m is not None for m in match_list):
      matches = tf.stack([_match_results(m) for m in match_list])
      ranked = tf.gather(matches, order, batch_dims=1)
      positives = ranked >= 0
      negatives = tf.equal(ranked, -1)
      num_positives = tf.reduce_sum(tf.cast(positives, tf.int32), axis=1)
      max_negatives = tf.maximum(
          self._min_negatives_per_image,
          tf.cast(self._max_negatives_per_positive *
                  tf.cast(num_positives, tf.float32), tf.int32))
      negative_rank = tf.cumsum(tf.cast(negatives, tf.int32), axis=1)
      kept_negatives = tf.logical_and(
          negatives, negative_rank <= max_negatives[:, tf.newaxis])
      keep = tf.cast(tf.logical_or(positives, kept_negatives), tf.float32)
      num_negatives = tf.reduce_sum(tf.cast(kept_negatives, tf.int32), axis=1)
      self._num_positives_list = tf.unstack(num_positives,
                                            num=len(match_list))
      self._num_negatives_list = tf.unstack(num_negatives,
                                            num=len(match_list))
    location_loss = tf.reduce_sum(
        tf.gather(location_losses, order, batch_dims=1) * keep)
    cls_loss = tf.reduce_sum(tf.gather(cls_losses, order, batch_dims=1) * keep)
    return location_loss, cls_loss

  def _subsample_to_neg_pos_ratio(self, indices, match_results):
    """Keeps all selected positives and the first `max_neg` negatives.

    `indices` are ordered by decreasing loss (NMS output), so the first
    negatives are the hardest.

    Returns:
      (indices int32 [k], num_positives int32, num_negatives int32).
    """
    selected_matches = tf.gather(match_results, indices)
    positives = selected_matches >= 0
    negatives = tf.equal(selected_matches, -1)
    num_positives = tf.reduce_sum(tf.cast(positives, tf.int32))
    max_negatives = tf.maximum(
        self._min_negatives_per_image,
        tf.cast(self._max_negatives_per_positive *
                tf.cast(num_positives, tf.float32), tf.int32))
    negative_rank = tf.cumsum(tf.cast(negatives, tf.int32))
    kept_negatives = tf.logical_and(negatives, negative_rank <= max_negatives)
    keep = tf.logical_or(positives, kept_negatives)
    kept = tf.boolean_mask(indices, keep)
    num_negatives = tf.reduce_sum(tf.cast(kept_negatives, tf.int32))
    return kept, num_positives, num_negatives

  def summarize(self, step=None):
    """Returns (and, with a default summary writer, writes) mining stats.

    Args:
      step: optional int64 step for `tf.summary.scalar`; default is the
        global `tf.summary.experimental.get_step()`.

    Returns:
      dict with float32 scalars 'HardExampleMiner/NumPositives' and
      'HardExampleMiner/NumNegatives' (means over the images of the last
      call), or an empty dict if the last call had no match_list / cap.
    """
    if not self._num_positives_list:
      return {}
    stats = {
        'HardExampleMiner/NumPositives': tf.reduce_mean(
            tf.cast(tf.stack(self._num_positives_list), tf.float32)),
        'HardExampleMiner/NumNegatives': tf.reduce_mean(
            tf.cast(tf.stack(self._num_negatives_list), tf.float32)),
    }
    if step is None:
      step = tf.summary.experimental.get_step()
    if step is not None:
      for name, value in stats.items():
        tf.summary.scalar(name, value, step=step)
    return stats
