"""Decodes TF OD API detection `tf.train.Example`s into od_meta's input dict.

The feature keys are the TF OD API's (`standard_fields.TfExampleFields`); the
output keys are `standard_fields.InputDataFields`. The semantics follow the
TF OD API's `object_detection/data_decoders/tf_example_decoder.py`:
  * the 1-based label-map id in image/object/class/label becomes the 0-based
    class id `label - 1` here, and only here (see label_map_util);
  * keypoints are read flattened from image/object/keypoint/{y,x}, reshaped
    to `[N, K, 2]`, and set to NaN where the visibility is 0 (a keypoint is
    visible when image/object/keypoint/visibility is 1 or 2, COCO's
    "labelled"; without a visibility feature, when its coordinates are
    finite).

`official.vision.dataloaders.tf_example_decoder.TfExampleDecoder` decodes the
same boxes/labels/area/is_crowd keys, but returns 1-based int64 labels,
replaces a missing area by the box area, has no keypoints, text, difficult or
weights, and importing it pulls in tf_keras; so this decoder parses the
features itself with `tf.io.parse_single_example` (same approach, same
default handling of a missing source_id: a hash of the image bytes).
"""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from od_meta.core import standard_fields
from od_meta.data import label_map_util

_F = standard_fields.TfExampleFields
_I = standard_fields.InputDataFields


def _dense(parsed, key, dtype):
  value = parsed[key]
  if isinstance(value, tf.sparse.SparseTensor):
    default = '' if dtype == tf.string else tf.cast(0, dtype)
    value = tf.sparse.to_dense(value, default_value=default)
  return value


class TfExampleDecoder:
  """Decodes one serialized detection tf.Example (works inside `tf.data` map).

  Args:
    label_map_path: optional label map; used to map image/object/class/text
      to ids for examples that have no image/object/class/label.
    num_keypoints: K >= 0; when > 0 the decoder outputs groundtruth_keypoints
      and groundtruth_keypoint_visibilities.
    load_instance_masks: instance masks are not supported; True raises.
    use_display_name: look class text up by the label map's display_name
      instead of name.
    num_additional_channels: must be 0 (additional channels are reserved).

  Raises:
    ValueError: for load_instance_masks=True, num_additional_channels != 0,
      num_keypoints < 0, or a bad label map (the label map error names file
      and line).
  """

  def __init__(self, *, label_map_path: Optional[str] = None,
               num_keypoints: int = 0, load_instance_masks: bool = False,
               use_display_name: bool = False,
               num_additional_channels: int = 0):
    if load_instance_masks:
      raise ValueError('load_instance_masks=True is not supported by od_meta '
                       '(no mask heads); set load_instance_masks to false')
    if num_additional_channels:
      raise ValueError('num_additional_channels must be 0 (additional image '
                       f'channels are not supported), got '
                       f'{num_additional_channels}')
    if int(num_keypoints) < 0:
      raise ValueError(f'num_keypoints must be >= 0, got {num_keypoints}')
    self._num_keypoints = int(num_keypoints)
    self._table = None
    if label_map_path:
      name_to_id = label_map_util.get_label_map_dict(
          label_map_path, use_display_name=use_display_name)
      keys = tf.constant(list(name_to_id.keys()), dtype=tf.string)
      values = tf.constant(list(name_to_id.values()), dtype=tf.int64)
      self._table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

    self._keys_to_features = {
        _F.image_encoded: tf.io.FixedLenFeature((), tf.string),
        _F.image_format: tf.io.FixedLenFeature((), tf.string, 'jpeg'),
        _F.filename: tf.io.FixedLenFeature((), tf.string, ''),
        _F.source_id: tf.io.FixedLenFeature((), tf.string, ''),
        _F.key: tf.io.FixedLenFeature((), tf.string, ''),
        _F.height: tf.io.FixedLenFeature((), tf.int64, -1),
        _F.width: tf.io.FixedLenFeature((), tf.int64, -1),
        _F.object_bbox_ymin: tf.io.VarLenFeature(tf.float32),
        _F.object_bbox_xmin: tf.io.VarLenFeature(tf.float32),
        _F.object_bbox_ymax: tf.io.VarLenFeature(tf.float32),
        _F.object_bbox_xmax: tf.io.VarLenFeature(tf.float32),
        _F.object_class_label: tf.io.VarLenFeature(tf.int64),
        _F.object_class_text: tf.io.VarLenFeature(tf.string),
        _F.object_is_crowd: tf.io.VarLenFeature(tf.int64),
        _F.object_area: tf.io.VarLenFeature(tf.float32),
        _F.object_difficult: tf.io.VarLenFeature(tf.int64),
        _F.object_weight: tf.io.VarLenFeature(tf.float32),
    }
    if self._num_keypoints:
      self._keys_to_features.update({
          _F.object_keypoint_y: tf.io.VarLenFeature(tf.float32),
          _F.object_keypoint_x: tf.io.VarLenFeature(tf.float32),
          _F.object_keypoint_visibility: tf.io.VarLenFeature(tf.int64),
      })

  @property
  def num_keypoints(self) -> int:
    return self._num_keypoints

  def _per_box(self, value, num_boxes, default, field):
    """`value` if it has num_boxes entries, `default` if empty, else error."""
    size = tf.shape(value)[0]
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(size, 0), tf.equal(size, num_boxes)),
        [f'{field} must have one entry per box (or none); entries:', size,
         'boxes:', num_boxes])
    with tf.control_dependencies([check]):
      return tf.cond(tf.equal(size, 0), lambda: default,
                     lambda: tf.identity(value))

  def _classes(self, parsed, num_boxes):
    labels = _dense(parsed, _F.object_class_label, tf.int64)
    texts = _dense(parsed, _F.object_class_text, tf.string)
    if self._table is not None:
      looked_up = self._table.lookup(texts)
      check_text = tf.debugging.Assert(
          tf.logical_or(tf.size(labels) > 0,
                        tf.reduce_all(looked_up >= 1)),
          ['image/object/class/text holds a name missing from the label map:',
           texts], summarize=20)
      with tf.control_dependencies([check_text]):
        labels = tf.cond(tf.size(labels) > 0, lambda: tf.identity(labels),
                         lambda: tf.identity(looked_up))
    check = tf.debugging.Assert(
        tf.equal(tf.size(labels), num_boxes),
        ['image/object/class/label must have one entry per box (give '
         'class/label, or class/text with a label_map_path); labels:',
         tf.size(labels), 'boxes:', num_boxes])
    check_range = tf.debugging.Assert(
        tf.reduce_all(labels >= 1),
        ['image/object/class/label holds 1-based label-map ids (>= 1), got',
         labels], summarize=20)
    with tf.control_dependencies([check, check_range]):
      return tf.cast(labels - 1, tf.int32)

  def _keypoints(self, parsed, num_boxes):
    k = self._num_keypoints
    y = _dense(parsed, _F.object_keypoint_y, tf.float32)
    x = _dense(parsed, _F.object_keypoint_x, tf.float32)
    vis = _dense(parsed, _F.object_keypoint_visibility, tf.int64)
    size = tf.size(y)
    check = tf.debugging.Assert(
        tf.logical_and(
            tf.equal(tf.size(x), size),
            tf.logical_or(tf.equal(size, 0), tf.equal(size, num_boxes * k))),
        ['image/object/keypoint/{y,x} must hold num_boxes * num_keypoints '
         'values (num_keypoints=%d); y, x, boxes:' % k, size, tf.size(x),
         num_boxes])
    with tf.control_dependencies([check]):
      nan = tf.fill([num_boxes, k, 2], tf.constant(np.nan, tf.float32))
      yx = tf.cond(
          tf.equal(size, 0), lambda: nan,
          lambda: tf.reshape(tf.stack([y, x], axis=-1), [num_boxes, k, 2]))
    finite = tf.reduce_all(tf.math.is_finite(yx), axis=-1)
    vis_size = tf.size(vis)
    check_vis = tf.debugging.Assert(
        tf.logical_or(tf.equal(vis_size, 0), tf.equal(vis_size, size)),
        ['image/object/keypoint/visibility must have one entry per keypoint '
         '(or none); entries, keypoints:', vis_size, size])
    with tf.control_dependencies([check_vis]):
      visible = tf.cond(
          tf.logical_and(tf.equal(vis_size, size), vis_size > 0),
          lambda: tf.reshape(vis > 0, [num_boxes, k]),
          lambda: finite)
    visible = tf.logical_and(visible, finite)
    yx = tf.where(visible[..., None], yx, tf.constant(np.nan, tf.float32))
    return yx, visible

  def decode(self, serialized_example) -> Dict[str, tf.Tensor]:
    """Decodes a serialized tf.Example.

    Args:
      serialized_example: tf.string scalar.

    Returns:
      dict keyed by `standard_fields.InputDataFields`:
        image: uint8 [H, W, 3] (JPEG/PNG/GIF/BMP via tf.io.decode_image,
          grayscale expanded to 3 channels, alpha dropped);
        original_image_spatial_shape: int32 [2], decoded (H, W) in pixels;
        source_id, filename, key: tf.string scalars (source_id is a hash of
          the image bytes when the example has none, as in official.vision);
        groundtruth_boxes: float32 [N, 4] normalized [ymin, xmin, ymax, xmax];
        groundtruth_classes: int32 [N], 0-based (label-map id - 1);
        groundtruth_text: tf.string [N] ('' where absent);
        groundtruth_is_crowd: bool [N]; groundtruth_area: float32 [N] pixels
          (0 where absent); groundtruth_difficult: bool [N];
        groundtruth_weights: float32 [N] (image/object/weight, else ones);
        groundtruth_keypoints: float32 [N, K, 2] normalized (y, x), NaN where
          not visible, and groundtruth_keypoint_visibilities: bool [N, K]
          (only when num_keypoints > 0);
        num_groundtruth_boxes: int32 scalar N.

    Raises:
      tf.errors.InvalidArgumentError (at run time): undecodable image,
        per-box features whose lengths disagree with the boxes, labels < 1,
        class text missing from the label map, or a keypoint count that is
        not N * num_keypoints.
    """
    parsed = tf.io.parse_single_example(serialized_example,
                                        self._keys_to_features)
    image = tf.io.decode_image(parsed[_F.image_encoded], channels=3,
                               dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    spatial_shape = tf.shape(image)[:2]

    ymin = _dense(parsed, _F.object_bbox_ymin, tf.float32)
    xmin = _dense(parsed, _F.object_bbox_xmin, tf.float32)
    ymax = _dense(parsed, _F.object_bbox_ymax, tf.float32)
    xmax = _dense(parsed, _F.object_bbox_xmax, tf.float32)
    num_boxes = tf.shape(ymin)[0]
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(
            tf.stack([tf.shape(xmin)[0], tf.shape(ymax)[0],
                      tf.shape(xmax)[0]]), num_boxes)),
        ['image/object/bbox/{ymin,xmin,ymax,xmax} must have equal lengths:',
         tf.shape(ymin), tf.shape(xmin), tf.shape(ymax), tf.shape(xmax)])
    with tf.control_dependencies([check]):
      boxes = tf.stack([ymin, xmin, ymax, xmax], axis=-1)
    boxes = tf.reshape(boxes, [-1, 4])

    classes = self._classes(parsed, num_boxes)
    texts = self._per_box(_dense(parsed, _F.object_class_text, tf.string),
                          num_boxes, tf.fill([num_boxes], ''),
                          _F.object_class_text)
    is_crowd = self._per_box(
        _dense(parsed, _F.object_is_crowd, tf.int64), num_boxes,
        tf.zeros([num_boxes], tf.int64), _F.object_is_crowd)
    area = self._per_box(_dense(parsed, _F.object_area, tf.float32),
                         num_boxes, tf.zeros([num_boxes], tf.float32),
                         _F.object_area)
    difficult = self._per_box(
        _dense(parsed, _F.object_difficult, tf.int64), num_boxes,
        tf.zeros([num_boxes], tf.int64), _F.object_difficult)
    weights = self._per_box(_dense(parsed, _F.object_weight, tf.float32),
                            num_boxes, tf.ones([num_boxes], tf.float32),
                            _F.object_weight)

    source_id = parsed[_F.source_id]
    source_id = tf.cond(
        tf.strings.length(source_id) > 0, lambda: source_id,
        lambda: tf.strings.as_string(tf.strings.to_hash_bucket_fast(
            parsed[_F.image_encoded], 2**22 - 1)))

    out = {
        _I.image: image,
        _I.original_image_spatial_shape: tf.cast(spatial_shape, tf.int32),
        _I.source_id: source_id,
        _I.filename: parsed[_F.filename],
        _I.key: parsed[_F.key],
        _I.groundtruth_boxes: boxes,
        _I.groundtruth_classes: classes,
        _I.groundtruth_text: texts,
        _I.groundtruth_is_crowd: tf.cast(is_crowd, tf.bool),
        _I.groundtruth_area: area,
        _I.groundtruth_difficult: tf.cast(difficult, tf.bool),
        _I.groundtruth_weights: weights,
        _I.num_groundtruth_boxes: tf.cast(num_boxes, tf.int32),
    }
    if self._num_keypoints:
      keypoints, visible = self._keypoints(parsed, num_boxes)
      out[_I.groundtruth_keypoints] = keypoints
      out[_I.groundtruth_keypoint_visibilities] = visible
    return out

  def __call__(self, serialized_example):
    """Same as `decode`, so the decoder can be passed to `Dataset.map`."""
    return self.decode(serialized_example)
