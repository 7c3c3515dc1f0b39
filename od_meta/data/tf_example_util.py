"""Builds TF OD API `tf.train.Example`s and writes them to TFRecord files.

The feature keys are those of `standard_fields.TfExampleFields`, i.e. the ones
the TF OD API's dataset converters write (`create_coco_tf_record.py`,
`create_pascal_tf_record.py`) and its `TfExampleDecoder` reads:

  image/encoded, image/format, image/filename, image/height, image/width,
  image/source_id, image/key/sha256,
  image/object/bbox/{ymin,xmin,ymax,xmax}   normalized floats in [0, 1],
  image/object/class/{label,text}           label = 1-based label-map id,
  image/object/keypoint/{y,x,visibility}    flattened [N * K], normalized,
  image/object/keypoint/num                 labelled keypoints per object,
  image/object/{is_crowd,area,difficult,weight}.

Writers: `open_sharded_output_tfrecords` mirrors the TF OD API's
`object_detection/dataset_tools/tf_record_creation_util.py` (file names
`<base>-00000-of-00010`), but never overwrites an existing file unless
`overwrite=True`, writes to `<path>.partial` first and renames only when the
`with` block finishes without an exception (partial files are deleted on
error), so an interrupted conversion neither leaves a truncated record file
behind nor destroys a previous one.
"""

import contextlib
import hashlib
from typing import Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from od_meta.core import standard_fields

_F = standard_fields.TfExampleFields


def int64_feature(value: int) -> tf.train.Feature:
  """A `tf.train.Feature` holding one int64."""
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def int64_list_feature(values) -> tf.train.Feature:
  """A `tf.train.Feature` holding a list of int64 (any int iterable)."""
  return tf.train.Feature(
      int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def bytes_feature(value) -> tf.train.Feature:
  """A `tf.train.Feature` holding one bytes value (str is UTF-8 encoded)."""
  if isinstance(value, str):
    value = value.encode('utf-8')
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def bytes_list_feature(values) -> tf.train.Feature:
  """A `tf.train.Feature` holding a list of bytes (str is UTF-8 encoded)."""
  values = [v.encode('utf-8') if isinstance(v, str) else v for v in values]
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def float_list_feature(values) -> tf.train.Feature:
  """A `tf.train.Feature` holding a list of float32 values."""
  return tf.train.Feature(
      float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _as_array(name, value, dtype, shape_tail, num_boxes):
  """Converts `value` to a numpy array of shape [num_boxes] + shape_tail."""
  array = np.asarray(value, dtype=dtype)
  if num_boxes == 0 and array.size == 0:
    return np.zeros([0] + list(shape_tail), dtype=dtype)
  expected = [num_boxes] + list(shape_tail)
  if list(array.shape) != expected:
    raise ValueError(f'{name} must have shape {expected}, got '
                     f'{list(array.shape)}')
  return array


def build_tf_example(
    *,
    encoded_image: bytes,
    image_format: str,
    height: int,
    width: int,
    boxes,
    class_labels,
    class_texts: Optional[Sequence[str]] = None,
    filename: str = '',
    source_id: str = '',
    keypoints=None,
    keypoint_visibilities=None,
    is_crowd=None,
    area=None,
    difficult=None,
    weights=None,
) -> tf.train.Example:
  """Builds one detection `tf.train.Example` in the TF OD API's keys.

  Args:
    encoded_image: the encoded image file bytes (JPEG or PNG).
    image_format: 'jpeg' or 'png' (written to image/format).
    height: image height in pixels (> 0).
    width: image width in pixels (> 0).
    boxes: float `[N, 4]` `[ymin, xmin, ymax, xmax]` normalized to [0, 1],
      with ymin <= ymax and xmin <= xmax.
    class_labels: int `[N]`, 1-based label-map ids (>= 1). The model's
      0-based class is `label - 1`; the shift happens once, in
      `tf_example_decoder.TfExampleDecoder`.
    class_texts: optional `[N]` class names (image/object/class/text).
    filename: image/filename.
    source_id: image/source_id (COCO image id as a string for COCO).
    keypoints: optional float `[N, K, 2]` normalized (y, x); written
      flattened as image/object/keypoint/{y,x} in object-major order. NaN
      coordinates are written as 0 with visibility 0.
    keypoint_visibilities: optional int `[N, K]` in {0, 1, 2} (COCO meaning:
      0 not labelled, 1 labelled but occluded, 2 visible). Defaults to 2 where
      the keypoint is finite and 0 where it is NaN.
    is_crowd: optional bool/int `[N]`.
    area: optional float `[N]` object area in pixels of the original image.
    difficult: optional bool/int `[N]` (PASCAL VOC).
    weights: optional float `[N]` per-box loss weights.

  Returns:
    The `tf.train.Example`; image/key/sha256 is the SHA-256 hex digest of
    `encoded_image`.

  Raises:
    ValueError: naming the argument, for wrong shapes, non-finite or out of
      [0, 1] boxes, inverted boxes, labels < 1, bad visibilities, a
      non-positive size or an unknown image format.
  """
  if not isinstance(encoded_image, (bytes, bytearray)):
    raise ValueError('encoded_image must be bytes')
  image_format = image_format.lower()
  if image_format == 'jpg':
    image_format = 'jpeg'
  if image_format not in ('jpeg', 'png'):
    raise ValueError(f"image_format must be 'jpeg' or 'png', got "
                     f'{image_format!r}')
  if int(height) <= 0 or int(width) <= 0:
    raise ValueError(f'height and width must be > 0, got {height}x{width}')
  boxes = np.asarray(boxes, dtype=np.float64)
  if boxes.size == 0:
    boxes = np.zeros([0, 4], np.float64)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f'boxes must have shape [N, 4], got {list(boxes.shape)}')
  num_boxes = boxes.shape[0]
  if not np.all(np.isfinite(boxes)):
    raise ValueError('boxes must be finite')
  if np.any(boxes < 0.0) or np.any(boxes > 1.0):
    raise ValueError('boxes must be normalized to [0, 1]')
  if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
    raise ValueError('boxes must satisfy ymin <= ymax and xmin <= xmax')
  labels = _as_array('class_labels', class_labels, np.int64, [], num_boxes)
  if np.any(labels < 1):
    raise ValueError('class_labels are 1-based label-map ids and must be >= 1')

  feature = {
      _F.image_encoded: bytes_feature(bytes(encoded_image)),
      _F.image_format: bytes_feature(image_format),
      _F.filename: bytes_feature(filename),
      _F.height: int64_feature(height),
      _F.width: int64_feature(width),
      _F.source_id: bytes_feature(source_id),
      _F.key: bytes_feature(hashlib.sha256(encoded_image).hexdigest()),
      _F.object_bbox_ymin: float_list_feature(boxes[:, 0]),
      _F.object_bbox_xmin: float_list_feature(boxes[:, 1]),
      _F.object_bbox_ymax: float_list_feature(boxes[:, 2]),
      _F.object_bbox_xmax: float_list_feature(boxes[:, 3]),
      _F.object_class_label: int64_list_feature(labels),
  }
  if class_texts is not None:
    if len(class_texts) != num_boxes:
      raise ValueError(f'class_texts must have {num_boxes} entries, got '
                       f'{len(class_texts)}')
    feature[_F.object_class_text] = bytes_list_feature(class_texts)
  if keypoints is not None:
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[0] != num_boxes or kpts.shape[2] != 2:
      raise ValueError(f'keypoints must have shape [{num_boxes}, K, 2], got '
                       f'{list(kpts.shape)}')
    num_kpts = kpts.shape[1]
    finite = np.all(np.isfinite(kpts), axis=-1)
    if keypoint_visibilities is None:
      vis = np.where(finite, 2, 0).astype(np.int64)
    else:
      vis = _as_array('keypoint_visibilities', keypoint_visibilities,
                      np.int64, [num_kpts], num_boxes)
      if np.any((vis < 0) | (vis > 2)):
        raise ValueError('keypoint_visibilities must be in {0, 1, 2}')
      if np.any((vis > 0) & ~finite):
        raise ValueError('keypoints with visibility > 0 must be finite')
    kpts = np.where(finite[..., None], kpts, 0.0)
    labelled = vis > 0
    if np.any(labelled[..., None] & ((kpts < 0.0) | (kpts > 1.0))):
      raise ValueError('labelled keypoints must be normalized to [0, 1]')
    feature[_F.object_keypoint_y] = float_list_feature(kpts[..., 0].ravel())
    feature[_F.object_keypoint_x] = float_list_feature(kpts[..., 1].ravel())
    feature[_F.object_keypoint_visibility] = int64_list_feature(vis.ravel())
    feature[_F.object_keypoint_num] = int64_list_feature(
        labelled.sum(axis=1))
  elif keypoint_visibilities is not None:
    raise ValueError('keypoint_visibilities given without keypoints')
  if is_crowd is not None:
    feature[_F.object_is_crowd] = int64_list_feature(
        _as_array('is_crowd', is_crowd, np.int64, [], num_boxes))
  if area is not None:
    area = _as_array('area', area, np.float64, [], num_boxes)
    if not np.all(np.isfinite(area)) or np.any(area < 0):
      raise ValueError('area must be finite and >= 0')
    feature[_F.object_area] = float_list_feature(area)
  if difficult is not None:
    feature[_F.object_difficult] = int64_list_feature(
        _as_array('difficult', difficult, np.int64, [], num_boxes))
  if weights is not None:
    weights = _as_array('weights', weights, np.float64, [], num_boxes)
    if not np.all(np.isfinite(weights)):
      raise ValueError('weights must be finite')
    feature[_F.object_weight] = float_list_feature(weights)
  return tf.train.Example(features=tf.train.Features(feature=feature))


def sharded_tfrecord_paths(base_path: str, num_shards: int) -> List[str]:
  """TF OD API shard names: `<base_path>-00000-of-00010`, ...

  Args:
    base_path: output path prefix.
    num_shards: number of shards (>= 1).

  Returns:
    list of `num_shards` paths.

  Raises:
    ValueError: if num_shards < 1.
  """
  if int(num_shards) < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  return ['{}-{:05d}-of-{:05d}'.format(base_path, idx, num_shards)
          for idx in range(num_shards)]


def output_tfrecord_paths(base_path: str, num_shards: int = 1) -> List[str]:
  """`[base_path]` for one shard, else `sharded_tfrecord_paths`.

  This is the naming the od_meta converters use: a single file keeps the
  name the user gave.
  """
  if int(num_shards) == 1:
    return [base_path]
  return sharded_tfrecord_paths(base_path, num_shards)


def check_can_write(paths: Sequence[str], overwrite: bool = False) -> None:
  """Raises `FileExistsError` naming the first existing path unless overwrite.

  Args:
    paths: output files that are about to be written.
    overwrite: if True, existing files may be replaced.

  Raises:
    FileExistsError: if a path exists and overwrite is False.
  """
  if overwrite:
    return
  for path in paths:
    if tf.io.gfile.exists(path):
      raise FileExistsError(
          f'{path} already exists; refusing to overwrite it (pass '
          'overwrite=True / --overwrite to replace it)')


@contextlib.contextmanager
def open_tfrecord_writers(paths: Sequence[str],
                          overwrite: bool = False
                          ) -> Iterator[List[tf.io.TFRecordWriter]]:
  """Opens one `tf.io.TFRecordWriter` per path, safely.

  The records go to `<path>.partial`; when the `with` block exits normally
  each partial file is renamed to its final path, and when it raises the
  partial files are deleted (a previous file at `path` stays untouched).

  Args:
    paths: output file paths (local or any tf.io.gfile filesystem).
    overwrite: replace existing files at `paths`. Without it, any existing
      file makes this raise before anything is written.

  Yields:
    list of writers, in the order of `paths`.

  Raises:
    FileExistsError: if a path exists and overwrite is False.
  """
  paths = list(paths)
  if not paths:
    raise ValueError('paths must not be empty')
  check_can_write(paths, overwrite)
  partial = [p + '.partial' for p in paths]
  for p in paths:
    parent = p.rsplit('/', 1)[0] if '/' in p else ''
    if parent and not tf.io.gfile.exists(parent):
      tf.io.gfile.makedirs(parent)
  writers = []
  ok = False
  try:
    for p in partial:
      writers.append(tf.io.TFRecordWriter(p))
    yield writers
    ok = True
  finally:
    for w in writers:
      w.close()
    try:
      if ok:
        check_can_write(paths, overwrite)  # A file may have appeared since.
        for src, dst in zip(partial, paths):
          tf.io.gfile.rename(src, dst, overwrite=True)
    finally:
      for p in partial:
        if tf.io.gfile.exists(p):
          tf.io.gfile.remove(p)


@contextlib.contextmanager
def open_sharded_output_tfrecords(base_path: str, num_shards: int,
                                  overwrite: bool = False
                                  ) -> Iterator[List[tf.io.TFRecordWriter]]:
  """Opens `num_shards` writers named `<base_path>-0000i-of-0000n`.

  Same contract as the TF OD API's
  `tf_record_creation_util.open_sharded_output_tfrecords` (write example `i`
  to `writers[i % num_shards]`), used as a context manager:

      with open_sharded_output_tfrecords('/tmp/train.record', 10) as writers:
        writers[i % 10].write(example.SerializeToString())

  Args:
    base_path: output path prefix.
    num_shards: number of shards (>= 1); one shard is still suffixed
      `-00000-of-00001`, as in the TF OD API.
    overwrite: replace existing shard files (default: refuse).

  Yields:
    list of `num_shards` `tf.io.TFRecordWriter`.

  Raises:
    FileExistsError: if a shard exists and overwrite is False.
    ValueError: if num_shards < 1.
  """
  with open_tfrecord_writers(sharded_tfrecord_paths(base_path, num_shards),
                             overwrite=overwrite) as writers:
    yield writers


# ----------------------------------------------------------------------------
# Helpers shared by the dataset converters (coco_converter, voc_converter).


class ConversionError(ValueError):
  """A dataset problem met with on_error='reject'; names file and reason."""


class ImageFileError(ValueError):
  """An image file that is missing or cannot be decoded."""


class ConversionProblem:
  """One reported problem: the file (image or annotation), a reason, and
  optionally the annotation it concerns.

  Attributes:
    file: path of the image or annotation file concerned.
    reason: human-readable reason.
    annotation: identifier of the annotation (COCO annotation id, VOC object
      index) or None when the whole file is concerned.
    skipped: 'annotation' or 'image' -- what was left out because of it.
  """

  def __init__(self, file: str, reason: str, annotation=None,
               skipped: str = 'annotation'):
    self.file = file
    self.reason = reason
    self.annotation = annotation
    self.skipped = skipped

  def as_dict(self):
    return {'file': self.file, 'reason': self.reason,
            'annotation': self.annotation, 'skipped': self.skipped}

  def __repr__(self):
    ann = '' if self.annotation is None else f' [annotation {self.annotation}]'
    return f'{self.file}{ann}: {self.reason} (skipped {self.skipped})'

  __str__ = __repr__


class ConversionSummary:
  """What a converter wrote and what it left out.

  Attributes:
    num_images_written, num_images_skipped: images (tf.Examples).
    num_annotations_written, num_annotations_skipped: objects.
    problems: list of `ConversionProblem`, in the order met.
    output_paths: the TFRecord files written.
    label_map_path: the label map written or used.
    label_map: for COCO, {COCO category id: label-map id}.
  """

  def __init__(self):
    self.num_images_written = 0
    self.num_images_skipped = 0
    self.num_annotations_written = 0
    self.num_annotations_skipped = 0
    self.problems = []
    self.output_paths = []
    self.label_map_path = None
    self.label_map = {}

  def as_dict(self):
    return {
        'num_images_written': self.num_images_written,
        'num_images_skipped': self.num_images_skipped,
        'num_annotations_written': self.num_annotations_written,
        'num_annotations_skipped': self.num_annotations_skipped,
        'problems': [p.as_dict() for p in self.problems],
        'output_paths': list(self.output_paths),
        'label_map_path': self.label_map_path,
    }

  def __str__(self):
    lines = [
        f'images written: {self.num_images_written}, skipped: '
        f'{self.num_images_skipped}',
        f'annotations written: {self.num_annotations_written}, skipped: '
        f'{self.num_annotations_skipped}',
        'output: ' + ', '.join(self.output_paths),
        f'label map: {self.label_map_path}',
        f'problems: {len(self.problems)}',
    ]
    lines.extend('  ' + str(p) for p in self.problems)
    return '\n'.join(lines)


def report_problem(summary: ConversionSummary, on_error: str,
                   problem: ConversionProblem) -> None:
  """Records `problem`, or raises `ConversionError` when on_error='reject'."""
  if on_error == 'reject':
    ann = ('' if problem.annotation is None
           else f' (annotation {problem.annotation})')
    raise ConversionError(f'{problem.file}{ann}: {problem.reason}')
  summary.problems.append(problem)


def check_on_error(on_error: str) -> None:
  """Raises ValueError unless on_error is 'skip' or 'reject'."""
  if on_error not in ('skip', 'reject'):
    raise ValueError(f"on_error must be 'skip' or 'reject', got {on_error!r}")


def load_image_file(path: str):
  """Reads an image file, checking that it fully decodes.

  JPEG (grayscale or RGB) and PNG files are kept byte for byte; any other
  format Pillow reads (or a CMYK JPEG) is re-encoded losslessly as RGB PNG so
  that `tf.io.decode_image` reads it.

  Args:
    path: image path (any tf.io.gfile filesystem).

  Returns:
    (encoded bytes, 'jpeg' or 'png', height, width) -- size in pixels.

  Raises:
    ImageFileError: if the file is missing, empty, or not a decodable image
      (including truncated files).
  """
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if not tf.io.gfile.exists(path):
    raise ImageFileError('image file is missing')
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = f.read()
  if not data:
    raise ImageFileError('image file is empty')
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      fmt = (img.format or '').upper()
      width, height = img.size
      if fmt == 'JPEG' and img.mode in ('L', 'RGB'):
        return data, 'jpeg', height, width
      if fmt == 'PNG':
        return data, 'png', height, width
      out = io.BytesIO()
      img.convert('RGB').save(out, format='PNG')
      return out.getvalue(), 'png', height, width
  except Exception as e:  # pylint: disable=broad-except
    raise ImageFileError(f'image cannot be decoded ({type(e).__name__}: '
                         f'{e})') from None
