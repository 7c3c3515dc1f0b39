"""Groundtruth box statistics of a TFRecord dataset (TF OD API tf.Examples).

What `scripts/analyze_dataset.py` reports about a dataset before a config is
fitted to it: per class and overall, the distributions of box width, height,
area, square-root area and aspect ratio (width / height), in pixels of the
source images and at a config's input size, the number of objects per image,
and the shares of COCO's small / medium / large objects (box area below
32^2, below 96^2, and above, in source pixels; COCO measures the
segmentation area, od_meta the box area since records may carry no masks).

Boxes are read from `image/object/bbox/{ymin,xmin,ymax,xmax}` (normalized
`[0, 1]`) and `image/object/class/label` (label-map ids); the source size
from `image/height` / `image/width`, or from the encoded image's header when
those keys are absent.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

COCO_SMALL_MAX_AREA = 32.0 ** 2
COCO_MEDIUM_MAX_AREA = 96.0 ** 2
# Normalized coordinates may leave [0, 1] by this much (rounding) before a
# box counts as invalid.
COORDINATE_TOLERANCE = 0.01
_PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
# A TFRecord stores each record as length (8 bytes), its CRC (4), the data
# and the data's CRC (4).
_RECORD_FRAMING_BYTES = 16

_FEATURES = {
    'image/height': tf.io.FixedLenFeature([], tf.int64, default_value=0),
    'image/width': tf.io.FixedLenFeature([], tf.int64, default_value=0),
    'image/encoded': tf.io.FixedLenFeature([], tf.string, default_value=''),
    'image/object/bbox/ymin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/xmin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/ymax': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/xmax': tf.io.VarLenFeature(tf.float32),
    'image/object/class/label': tf.io.VarLenFeature(tf.int64),
}


class DatasetError(ValueError):
  """A dataset that cannot be analyzed; the message names the file and,
  where there is one, the record index (0-based)."""


@dataclasses.dataclass
class DatasetBoxes:
  """The groundtruth boxes of a dataset, one row per valid box.

  Attributes:
    boxes: float64 `[B, 4]` normalized `[ymin, xmin, ymax, xmax]` of the
      source image.
    classes: int64 `[B]` label-map ids.
    image_index: int64 `[B]` row of the box's image in `image_heights`.
    image_heights: int64 `[I]` source image heights, pixels.
    image_widths: int64 `[I]` source image widths, pixels.
    invalid: list of (file, record index, reason) for the boxes left out
      (ymin > ymax or xmin > xmax, non-finite coordinates, coordinates
      outside [0, 1] by more than `COORDINATE_TOLERANCE`, no area inside
      the image).
  """
  boxes: np.ndarray
  classes: np.ndarray
  image_index: np.ndarray
  image_heights: np.ndarray
  image_widths: np.ndarray
  invalid: List[tuple] = dataclasses.field(default_factory=list)

  @property
  def num_images(self) -> int:
    return int(len(self.image_heights))

  @property
  def num_boxes(self) -> int:
    return int(len(self.classes))

  def pixel_sizes(self, image_heights=None, image_widths=None):
    """(heights, widths) float64 `[B]` of the boxes in pixels of images of
    the given sizes (default: the source sizes), `[I]` arrays."""
    heights = self.image_heights if image_heights is None else image_heights
    widths = self.image_widths if image_widths is None else image_widths
    h = (self.boxes[:, 2] - self.boxes[:, 0]) * np.asarray(
        heights, np.float64)[self.image_index]
    w = (self.boxes[:, 3] - self.boxes[:, 1]) * np.asarray(
        widths, np.float64)[self.image_index]
    return h, w


def expand_input_paths(patterns: Sequence[str]) -> List[str]:
  """The files matching each path or glob pattern, in order.

  Raises:
    DatasetError: if a pattern matches no file.
  """
  files = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise DatasetError(f'{pattern}: no such file')
    files.extend(matched)
  return files


def _image_size(parsed, path, index):
  height = int(parsed['image/height'])
  width = int(parsed['image/width'])
  if height > 0 and width > 0:
    return height, width
  encoded = parsed['image/encoded']
  if not encoded:
    raise DatasetError(
        f'{path}: record {index} has neither image/height + image/width nor '
        'image/encoded, so its image size is unknown')
  try:
    shape = tf.image.decode_image(encoded, channels=3,
                                  expand_animations=False).shape
  except tf.errors.InvalidArgumentError:
    raise DatasetError(f'{path}: record {index}: image/encoded is not a '
                       'JPEG / PNG / GIF / BMP image') from None
  return int(shape[0]), int(shape[1])


def read_groundtruth(input_paths: Sequence[str],
                     max_images: Optional[int] = None) -> DatasetBoxes:
  """Reads the boxes of every record of the given TFRecord files.

  Args:
    input_paths: TFRecord paths or glob patterns (as `input_path` of a
      config's `tf_record_input_reader`).
    max_images: stop after this many records (default: all).

  Returns:
    a `DatasetBoxes`; invalid boxes are listed in `invalid`, not kept.

  Raises:
    DatasetError: a missing file, an unreadable (corrupt, truncated) or
      unparsable record, boxes without class labels, or no valid box at all;
      the message names the file and record index.
  """
  files = expand_input_paths(input_paths)
  boxes, classes, image_index, heights, widths, invalid = [], [], [], [], [], []
  for path in files:
    index = -1
    consumed = 0  # Bytes of the records read, framing included.
    iterator = iter(tf.data.TFRecordDataset(path))
    while max_images is None or len(heights) < max_images:
      try:
        record = next(iterator)
      except StopIteration:
        # TFRecordDataset ends quietly at a partial record header; every
        # byte must belong to a whole record.
        size = tf.io.gfile.stat(path).length
        if consumed != size:
          raise DatasetError(
              f'{path}: {size - consumed} bytes after record {index} are '
              'not a whole record (truncated or not a TFRecord file)'
          ) from None
        break
      except tf.errors.OpError as e:
        raise DatasetError(
            f'{path}: record {index + 1} cannot be read '
            f'({type(e).__name__}: {e.message.splitlines()[0]})') from None
      index += 1
      consumed += len(record.numpy()) + _RECORD_FRAMING_BYTES
      try:
        parsed = tf.io.parse_single_example(record, _FEATURES)
      except tf.errors.InvalidArgumentError as e:
        raise DatasetError(
            f'{path}: record {index} is not a tf.train.Example with the TF '
            f'OD API keys ({e.message.splitlines()[0]})') from None
      parsed = {k: (tf.sparse.to_dense(v).numpy()
                    if isinstance(v, tf.SparseTensor) else v.numpy())
                for k, v in parsed.items()}
      height, width = _image_size(parsed, path, index)
      keys = [f'image/object/bbox/{k}' for k in ('ymin', 'xmin', 'ymax',
                                                  'xmax')]
      if len({len(parsed[k]) for k in keys}) != 1:
        raise DatasetError(f'{path}: record {index}: the image/object/bbox/* '
                           'lists have different lengths')
      coords = np.stack([parsed[k].astype(np.float64) for k in keys], axis=-1)
      labels = parsed['image/object/class/label']
      if len(labels) != len(coords):
        raise DatasetError(
            f'{path}: record {index} has {len(coords)} boxes but '
            f'{len(labels)} image/object/class/label values')
      image_id = len(heights)
      heights.append(height)
      widths.append(width)
      for box, label in zip(coords, labels):
        reason = _invalid_reason(box)
        if reason:
          invalid.append((path, index, reason))
          continue
        box = np.clip(box, 0.0, 1.0)
        if box[0] >= box[2] or box[1] >= box[3]:
          invalid.append((path, index, 'no area inside the image'))
          continue
        boxes.append(box)
        classes.append(int(label))
        image_index.append(image_id)
  if not heights:
    raise DatasetError(f'{", ".join(files)}: no records')
  if not boxes:
    raise DatasetError(
        f'{", ".join(files)}: no valid groundtruth box in {len(heights)} '
        f'records ({len(invalid)} invalid)')
  return DatasetBoxes(
      boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
      classes=np.asarray(classes, np.int64),
      image_index=np.asarray(image_index, np.int64),
      image_heights=np.asarray(heights, np.int64),
      image_widths=np.asarray(widths, np.int64), invalid=invalid)


def _invalid_reason(box):
  if not np.all(np.isfinite(box)):
    return 'non-finite coordinate'
  if box[0] > box[2] or box[1] > box[3]:
    return 'ymin > ymax or xmin > xmax'
  if box.min() < -COORDINATE_TOLERANCE or box.max() > 1 + COORDINATE_TOLERANCE:
    return 'coordinate outside [0, 1]'
  if box[0] == box[2] or box[1] == box[3]:
    return 'zero height or width'
  return None


def input_image_sizes(dataset: DatasetBoxes, image_resizer_fn):
  """Each image's size after a config's image resizer (its true shape,
  padding excluded).

  Args:
    dataset: a `DatasetBoxes`.
    image_resizer_fn: `image [H, W, 3] -> (resized, int32 [3] true shape)`
      from `image_resizer_builder.build`.

  Returns:
    (heights, widths) int64 `[I]`.
  """
  cache = {}
  heights = np.empty(dataset.num_images, np.int64)
  widths = np.empty(dataset.num_images, np.int64)
  for i, (h, w) in enumerate(zip(dataset.image_heights, dataset.image_widths)):
    key = (int(h), int(w))
    if key not in cache:
      _, true_shape = image_resizer_fn(tf.zeros([key[0], key[1], 3],
                                                tf.float32))
      true_shape = np.asarray(true_shape)
      cache[key] = (int(true_shape[0]), int(true_shape[1]))
    heights[i], widths[i] = cache[key]
  return heights, widths


def distribution(values) -> Dict[str, float]:
  """count, mean, min, max and percentiles p1..p99 of a 1-d array."""
  values = np.asarray(values, np.float64)
  if values.size == 0:
    return {'count': 0}
  out = {'count': int(values.size), 'mean': float(values.mean()),
         'min': float(values.min()), 'max': float(values.max())}
  for p, v in zip(_PERCENTILES, np.percentile(values, _PERCENTILES)):
    out[f'p{p}'] = float(v)
  return out


def coco_size_shares(areas) -> Dict[str, float]:
  """Shares of COCO's small (< 32^2 px), medium (< 96^2) and large boxes."""
  areas = np.asarray(areas, np.float64)
  if areas.size == 0:
    return {'small': 0.0, 'medium': 0.0, 'large': 0.0}
  small = float(np.mean(areas < COCO_SMALL_MAX_AREA))
  medium = float(np.mean((areas >= COCO_SMALL_MAX_AREA) &
                         (areas < COCO_MEDIUM_MAX_AREA)))
  return {'small': small, 'medium': medium, 'large': 1.0 - small - medium}


def size_distributions(heights, widths) -> Dict[str, dict]:
  """Distributions of one set of box sizes (pixels)."""
  heights = np.asarray(heights, np.float64)
  widths = np.asarray(widths, np.float64)
  return {
      'height': distribution(heights),
      'width': distribution(widths),
      'area': distribution(heights * widths),
      'sqrt_area': distribution(np.sqrt(heights * widths)),
      'aspect_ratio': distribution(widths / heights),
  }


def summarize(dataset: DatasetBoxes, input_heights=None, input_widths=None,
              class_names: Optional[Dict[int, str]] = None) -> dict:
  """JSON-ready statistics of a dataset, overall and per class.

  Args:
    dataset: a `DatasetBoxes`.
    input_heights, input_widths: optional int `[I]` image sizes at a
      config's input (from `input_image_sizes`); adds 'input' entries.
    class_names: optional {label-map id: name}.

  Returns:
    dict with 'num_images', 'num_boxes', 'num_invalid_boxes',
    'objects_per_image', 'source_image_size', 'overall' and 'per_class'
    ({name: ...}); each of the last two holds 'num_boxes', 'source' (size
    distributions in source pixels), 'coco_sizes', and 'input' when input
    sizes are given.
  """
  class_names = class_names or {}
  src_h, src_w = dataset.pixel_sizes()
  in_h = in_w = None
  if input_heights is not None:
    in_h, in_w = dataset.pixel_sizes(input_heights, input_widths)

  def block(mask):
    out = {'num_boxes': int(mask.sum()),
           'source': size_distributions(src_h[mask], src_w[mask]),
           'coco_sizes': coco_size_shares(src_h[mask] * src_w[mask])}
    if in_h is not None:
      out['input'] = size_distributions(in_h[mask], in_w[mask])
    return out

  per_image = np.bincount(dataset.image_index, minlength=dataset.num_images)
  summary = {
      'num_images': dataset.num_images,
      'num_boxes': dataset.num_boxes,
      'num_invalid_boxes': len(dataset.invalid),
      'objects_per_image': distribution(per_image),
      'source_image_size': {
          'height': distribution(dataset.image_heights),
          'width': distribution(dataset.image_widths)},
      'overall': block(np.ones(dataset.num_boxes, bool)),
      'per_class': {},
  }
  for class_id in sorted(set(dataset.classes.tolist())):
    name = class_names.get(class_id, str(class_id))
    summary['per_class'][name] = dict(
        block(dataset.classes == class_id), label_map_id=class_id)
  return summary


def plot_histograms(dataset: DatasetBoxes, output_dir: str, *,
                    input_heights=None, input_widths=None,
                    anchor_sizes: Optional[Sequence[float]] = None) -> List[str]:
  """Writes PNG histograms of the box sizes.

  Files: `box_sqrt_area.png` (square-root area, source and input pixels,
  with the config's anchor sizes as vertical lines when given),
  `box_aspect_ratio.png` (width / height, log scale), `box_width_height.png`
  (a 2-d histogram of width against height at the input size, or the source
  size) and `objects_per_image.png`.

  Returns:
    the paths written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  tf.io.gfile.makedirs(output_dir)
  src_h, src_w = dataset.pixel_sizes()
  have_input = input_heights is not None
  if have_input:
    in_h, in_w = dataset.pixel_sizes(input_heights, input_widths)
  paths = []

  def save(fig, name):
    path = os.path.join(output_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

  fig, ax = plt.subplots(figsize=(7, 4))
  ax.hist(np.sqrt(src_h * src_w), bins=50, alpha=0.6, label='source pixels')
  if have_input:
    ax.hist(np.sqrt(in_h * in_w), bins=50, alpha=0.6, label='input pixels')
  for i, size in enumerate(anchor_sizes or ()):
    ax.axvline(size, color='k', linestyle='--', linewidth=0.8,
               label='anchor sizes (input px)' if i == 0 else None)
  ax.set_xlabel('box sqrt(width x height), pixels')
  ax.set_ylabel('boxes')
  ax.legend()
  save(fig, 'box_sqrt_area.png')

  fig, ax = plt.subplots(figsize=(7, 4))
  ratios = src_w / src_h
  ax.hist(ratios, bins=np.geomspace(max(ratios.min(), 1e-3),
                                    max(ratios.max(), 1e-3) * 1.001, 50))
  ax.set_xscale('log')
  ax.set_xlabel('aspect ratio width / height')
  ax.set_ylabel('boxes')
  save(fig, 'box_aspect_ratio.png')

  fig, ax = plt.subplots(figsize=(5, 5))
  h, w = (in_h, in_w) if have_input else (src_h, src_w)
  ax.hist2d(w, h, bins=40, cmap='viridis')
  ax.set_xlabel(f'width, {"input" if have_input else "source"} pixels')
  ax.set_ylabel(f'height, {"input" if have_input else "source"} pixels')
  save(fig, 'box_width_height.png')

  fig, ax = plt.subplots(figsize=(7, 4))
  per_image = np.bincount(dataset.image_index, minlength=dataset.num_images)
  ax.hist(per_image, bins=np.arange(per_image.max() + 2) - 0.5)
  ax.set_xlabel('objects per image')
  ax.set_ylabel('images')
  save(fig, 'objects_per_image.png')
  return paths
