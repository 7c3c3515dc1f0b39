"""Region-of-interest feature cropping for the two-stage meta-architectures.

Two ops, both batched (one call for all images and proposals), both usable
eagerly and inside tf.function with a dynamic number of proposals:

  * `crop_and_resize_features`: Faster R-CNN's second-stage input. Huang et
    al. 2017 ("Speed/accuracy trade-offs for modern convolutional object
    detectors"), sections 3.4 and 3.6.1, replace the RoI pooling of Ren et al.
    2015 by TensorFlow's `crop_and_resize` (bilinear resampling of the box
    onto a fixed grid) followed by a max pool: a 14x14 crop max-pooled 2x2 /
    stride 2 to 7x7 for VGG-16, ResNet-101 and MobileNet, a 17x17 crop (no
    pool) for Inception v3 and Inception-ResNet-v2.
  * `position_sensitive_crop_regions`: R-FCN's position-sensitive RoI
    pooling (Dai et al. 2016, section 2, Eq. 1), again with bilinear
    crop_and_resize instead of pooling inside integer bins (Huang et al.
    2017, section 3.6.2: e.g. 3x3 bins resized to a 12x12 crop for Inception
    v2 and MobileNet, 7x7 bins to 21x21 for ResNet-101).

Coordinate frame: boxes are float32 `[ymin, xmin, ymax, xmax]` normalized to
the frame of the feature map (for od_meta's meta-architectures, the padded /
resized image the feature map was computed from, not the true image window).
As in `tf.image.crop_and_resize`, normalized coordinate `y` maps to feature
row `y * (H - 1)`: the box [0, 0, 1, 1] spans the centers of the first and
last feature cells, and samples outside the map read 0.

No gradient flows into the box coordinates (`tf.stop_gradient`): Huang et
al. 2017, section 3.4, found back-propagating into the boxes unstable during
training (as in Ren et al. 2015's approximate joint training).
"""

from typing import Sequence, Tuple, Union

import tensorflow as tf

IntOrPair = Union[int, Sequence[int]]


def _to_pair(value: IntOrPair, name: str) -> Tuple[int, int]:
  """Returns (h, w) positive ints from an int or a 2-sequence."""
  if isinstance(value, (list, tuple)):
    if len(value) != 2:
      raise ValueError(f'{name} must be an int or a (height, width) pair, got '
                       f'{value!r}')
    pair = (int(value[0]), int(value[1]))
  else:
    try:
      pair = (int(value), int(value))
    except (TypeError, ValueError) as e:
      raise ValueError(f'{name} must be an int or a (height, width) pair, '
                       f'got {value!r}') from e
  if pair[0] < 1 or pair[1] < 1:
    raise ValueError(f'{name} must be positive, got {value!r}')
  return pair


def _check_inputs(features, boxes, owner):
  """Converts and rank-checks features [B, H, W, C] and boxes [B, N, 4]."""
  features = tf.convert_to_tensor(features)
  if not features.dtype.is_floating:
    raise ValueError(f'{owner}: features must be a float tensor, got '
                     f'{features.dtype.name}')
  boxes = tf.convert_to_tensor(boxes)
  if features.shape.rank != 4:
    raise ValueError(f'{owner}: features must be [B, H, W, C] (rank 4), got '
                     f'shape {features.shape}')
  if boxes.shape.rank != 3:
    raise ValueError(f'{owner}: boxes must be [B, N, 4] (rank 3), got shape '
                     f'{boxes.shape}')
  if boxes.shape[-1] is not None and boxes.shape[-1] != 4:
    raise ValueError(f'{owner}: boxes must have 4 coordinates [ymin, xmin, '
                     f'ymax, xmax] in the last axis, got shape {boxes.shape}')
  if (features.shape[0] is not None and boxes.shape[0] is not None and
      features.shape[0] != boxes.shape[0]):
    raise ValueError(f'{owner}: features batch {features.shape[0]} differs '
                     f'from boxes batch {boxes.shape[0]}')
  features = tf.cast(features, tf.float32)
  boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
  return features, boxes


def _flatten_boxes(boxes):
  """[B, N, 4] -> ([B * N, 4] boxes, [B * N] int32 batch index, B*N static).

  Row b * N + n of the result is box n of image b.
  """
  shape = tf.shape(boxes)
  batch, num = shape[0], shape[1]
  flat = tf.reshape(boxes, [-1, 4])
  box_indices = tf.reshape(
      tf.tile(tf.range(batch)[:, tf.newaxis], tf.stack([1, num])), [-1])
  static_b, static_n = boxes.shape[0], boxes.shape[1]
  total = (static_b * static_n
           if static_b is not None and static_n is not None else None)
  return flat, box_indices, total


def crop_and_resize_features(features, boxes, crop_size: IntOrPair,
                             maxpool_kernel_size: int = 2,
                             maxpool_stride: int = 2) -> tf.Tensor:
  """Crops every box from its image's feature map (Faster R-CNN stage 2).

  `tf.image.crop_and_resize` (bilinear, samples outside the map read 0)
  resamples each box onto a `crop_size` grid, then a max pool with a
  `maxpool_kernel_size` square window, stride `maxpool_stride` and 'VALID'
  padding reduces it (Huang et al. 2017, section 3.6.1: 14x14 crop, 2x2 /
  stride 2 max pool -> 7x7; 17x17 crops without pool for the Inception
  extractors; section 3.4: crop_and_resize instead of RoI pooling).

  The pool is skipped (identity) when both `maxpool_kernel_size` and
  `maxpool_stride` are <= 1 (a 1x1 window at stride 1; 0 means unset, as in
  the TF OD API config). Otherwise a 0 kernel or stride counts as 1, e.g.
  kernel 1 / stride 2 subsamples every other cell.

  No gradient reaches `boxes` (`tf.stop_gradient`, Huang et al. 2017,
  section 3.4); gradients reach `features`.

  Args:
    features: float tensor [B, H, W, C] (cast to float32).
    boxes: float32 [B, N, 4], `[ymin, xmin, ymax, xmax]` normalized to the
      feature map's frame (the padded input image), N may be dynamic or 0.
    crop_size: int or (height, width), the bilinear crop grid (cells).
    maxpool_kernel_size: int >= 0, square max-pool window.
    maxpool_stride: int >= 0, max-pool stride.

  Returns:
    float32 [B * N, h', w', C], row `b * N + n` holding box n of image b,
    with h' = (crop_h - k) // s + 1 (w' likewise) or the crop size when the
    pool is skipped.

  Raises:
    ValueError: features not rank 4 / not float, boxes not [B, N, 4],
      different static batch sizes, a bad crop_size, a negative pool
      argument, or a pool window larger than the crop.
  """
  owner = 'crop_and_resize_features'
  crop_h, crop_w = _to_pair(crop_size, 'crop_size')
  kernel, stride = int(maxpool_kernel_size), int(maxpool_stride)
  if kernel < 0 or stride < 0:
    raise ValueError(f'{owner}: maxpool_kernel_size and maxpool_stride must '
                     f'be >= 0, got {maxpool_kernel_size}, {maxpool_stride}')
  kernel, stride = max(kernel, 1), max(stride, 1)
  if kernel > min(crop_h, crop_w):
    raise ValueError(f'{owner}: maxpool_kernel_size {kernel} is larger than '
                     f'crop_size {(crop_h, crop_w)}')
  features, boxes = _check_inputs(features, boxes, owner)
  flat, box_indices, total = _flatten_boxes(boxes)
  crops = tf.image.crop_and_resize(features, flat, box_indices,
                                   [crop_h, crop_w], method='bilinear')
  if kernel > 1 or stride > 1:
    crops = tf.nn.max_pool2d(crops, ksize=[kernel, kernel],
                             strides=[stride, stride], padding='VALID')
  crops.set_shape([total] + crops.shape.as_list()[1:])
  return crops


def position_sensitive_crop_regions(features, boxes, crop_size: IntOrPair,
                                    num_spatial_bins: IntOrPair,
                                    global_pool: bool = True) -> tf.Tensor:
  """R-FCN position-sensitive RoI pooling with bilinear crops.

  Dai et al. 2016 (R-FCN), section 2, Eq. 1: a RoI is divided into
  k_h x k_w bins; bin (i, j) pools only its own group of score maps,
  r_c(i, j) = mean over the bin of z_{i, j, c}. As in the TF OD API's
  `ops.position_sensitive_crop_regions` (Huang et al. 2017, section 3.6.2),
  bin (i, j) covers the sub-box
  `[ymin + i * dy, xmin + j * dx, ymin + (i + 1) * dy, xmin + (j + 1) * dx]`
  (dy = (ymax - ymin) / k_h, dx = (xmax - xmin) / k_w), which is
  bilinearly cropped (`tf.image.crop_and_resize`, samples outside the map
  read 0) at (crop_h / k_h, crop_w / k_w) resolution from channel group
  g = i * k_w + j only, i.e. channels [g * C', (g + 1) * C'), and averaged.
  With `global_pool` the k_h * k_w bin averages are averaged again
  ("voting", Dai et al. 2016 Eq. 2 before the softmax).

  All bins of all images are cropped by one crop_and_resize call on the
  feature map reshaped to [B * k_h * k_w, H, W, C'].

  No gradient reaches `boxes` (`tf.stop_gradient`, Huang et al. 2017,
  section 3.4).

  Args:
    features: float tensor [B, H, W, k_h * k_w * C'] (cast to float32),
      channel groups bin-major: bin (i, j) uses channels
      [(i * k_w + j) * C', (i * k_w + j + 1) * C'). The channel depth must be
      static.
    boxes: float32 [B, N, 4], `[ymin, xmin, ymax, xmax]` normalized to the
      feature map's frame; N may be dynamic or 0.
    crop_size: int or (crop_h, crop_w), the total crop size; each a multiple
      of the corresponding number of bins.
    num_spatial_bins: int or (k_h, k_w).
    global_pool: average the bins (True) or return one value per bin.

  Returns:
    float32 [B * N, 1, 1, C'] with `global_pool`, else [B * N, k_h, k_w, C']
    (bin (i, j) at [:, i, j, :]); row `b * N + n` is box n of image b.

  Raises:
    ValueError: bad ranks, dtype or batch sizes, a crop size that is not a
      multiple of the bins, or a channel depth unknown or not divisible by
      k_h * k_w.
  """
  owner = 'position_sensitive_crop_regions'
  crop_h, crop_w = _to_pair(crop_size, 'crop_size')
  bins_h, bins_w = _to_pair(num_spatial_bins, 'num_spatial_bins')
  if crop_h % bins_h or crop_w % bins_w:
    raise ValueError(f'{owner}: crop_size {(crop_h, crop_w)} must be a '
                     f'multiple of num_spatial_bins {(bins_h, bins_w)}')
  features, boxes = _check_inputs(features, boxes, owner)
  total_bins = bins_h * bins_w
  depth = features.shape[-1]
  if depth is None:
    raise ValueError(f'{owner}: features need a static channel depth, got '
                     f'shape {features.shape}')
  if depth % total_bins:
    raise ValueError(f'{owner}: features depth {depth} is not divisible by '
                     f'num_spatial_bins {bins_h}x{bins_w} = {total_bins}')
  out_depth = depth // total_bins

  # [B, H, W, K * C'] -> [B * K, H, W, C'], image b / group g at b * K + g.
  shape = tf.shape(features)
  grouped = tf.reshape(
      features, tf.stack([shape[0], shape[1], shape[2], total_bins,
                          out_depth]))
  grouped = tf.transpose(grouped, [0, 3, 1, 2, 4])
  grouped = tf.reshape(
      grouped, tf.stack([shape[0] * total_bins, shape[1], shape[2],
                         out_depth]))

  flat, box_indices, total = _flatten_boxes(boxes)  # [M, 4], [M]
  ymin, xmin, ymax, xmax = tf.unstack(flat, axis=1)
  step_y = (ymax - ymin) / bins_h
  step_x = (xmax - xmin) / bins_w
  bin_y = tf.repeat(tf.range(bins_h, dtype=tf.float32), bins_w)  # [K]
  bin_x = tf.tile(tf.range(bins_w, dtype=tf.float32), [bins_h])  # [K]
  # Sub-boxes [M, K, 4], bin g = i * k_w + j.
  sub_boxes = tf.stack([
      ymin[:, None] + bin_y[None, :] * step_y[:, None],
      xmin[:, None] + bin_x[None, :] * step_x[:, None],
      ymin[:, None] + (bin_y[None, :] + 1.0) * step_y[:, None],
      xmin[:, None] + (bin_x[None, :] + 1.0) * step_x[:, None],
  ], axis=-1)
  sub_indices = (box_indices[:, None] * total_bins +
                 tf.range(total_bins)[None, :])  # [M, K]
  crops = tf.image.crop_and_resize(
      grouped, tf.reshape(sub_boxes, [-1, 4]), tf.reshape(sub_indices, [-1]),
      [crop_h // bins_h, crop_w // bins_w], method='bilinear')
  bin_means = tf.reduce_mean(crops, axis=[1, 2])  # [M * K, C']
  if global_pool:
    result = tf.reduce_mean(
        tf.reshape(bin_means, [-1, total_bins, out_depth]), axis=1)
    result = tf.reshape(result, [-1, 1, 1, out_depth])
  else:
    result = tf.reshape(bin_means, [-1, bins_h, bins_w, out_depth])
  result.set_shape([total] + result.shape.as_list()[1:])
  return result
