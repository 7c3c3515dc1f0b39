"""Tests for od_meta.data.tf_example_util."""

import hashlib
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from od_meta.core import standard_fields
from od_meta.data import tf_example_util as util

_F = standard_fields.TfExampleFields


def _png(h=4, w=6):
  out = io.BytesIO()
  Image.fromarray(np.zeros([h, w, 3], np.uint8)).save(out, format='PNG')
  return out.getvalue()


def _feature(example, key):
  feature = example.features.feature[key]
  kind = feature.WhichOneof('kind')
  return list(getattr(feature, kind).value)


def test_build_tf_example_keys_and_values():
  png = _png()
  ex = util.build_tf_example(
      encoded_image=png, image_format='PNG', height=4, width=6,
      boxes=[[0.25, 0.5, 0.75, 1.0]], class_labels=[3], class_texts=['cat'],
      filename='a.png', source_id='7',
      keypoints=[[[0.5, 0.25], [np.nan, np.nan]]], area=[12.0],
      is_crowd=[1], difficult=[0], weights=[0.5])
  assert _feature(ex, _F.image_format) == [b'png']
  assert _feature(ex, _F.height) == [4] and _feature(ex, _F.width) == [6]
  assert _feature(ex, _F.key) == [hashlib.sha256(png).hexdigest().encode()]
  assert _feature(ex, _F.object_bbox_ymin) == [0.25]
  assert _feature(ex, _F.object_bbox_xmin) == [0.5]
  assert _feature(ex, _F.object_bbox_ymax) == [0.75]
  assert _feature(ex, _F.object_bbox_xmax) == [1.0]
  assert _feature(ex, _F.object_class_label) == [3]
  assert _feature(ex, _F.object_class_text) == [b'cat']
  # Flattened object-major; the NaN keypoint is written as 0, visibility 0.
  assert _feature(ex, _F.object_keypoint_y) == [0.5, 0.0]
  assert _feature(ex, _F.object_keypoint_x) == [0.25, 0.0]
  assert _feature(ex, _F.object_keypoint_visibility) == [2, 0]
  assert _feature(ex, _F.object_keypoint_num) == [1]
  assert _feature(ex, _F.object_is_crowd) == [1]
  assert _feature(ex, _F.object_difficult) == [0]
  assert _feature(ex, _F.object_weight) == [0.5]
  assert _feature(ex, _F.object_area) == [12.0]


def test_build_tf_example_zero_boxes():
  ex = util.build_tf_example(encoded_image=_png(), image_format='png',
                             height=4, width=6, boxes=[], class_labels=[],
                             keypoints=np.zeros([0, 3, 2]))
  assert _feature(ex, _F.object_bbox_ymin) == []
  assert _feature(ex, _F.object_class_label) == []


@pytest.mark.parametrize('kwargs, match', [
    (dict(boxes=[[0.1, 0.1, 1.2, 0.5]]), 'normalized'),
    (dict(boxes=[[0.5, 0.1, 0.2, 0.5]]), 'ymin <= ymax'),
    (dict(boxes=[[np.nan, 0.1, 0.2, 0.5]]), 'finite'),
    (dict(boxes=[[0.1, 0.2]]), r'\[N, 4\]'),
    (dict(class_labels=[0]), '>= 1'),
    (dict(class_labels=[1, 2]), 'class_labels'),
    (dict(image_format='gif'), 'image_format'),
    (dict(keypoints=[[[0.1, 0.2]]], keypoint_visibilities=[[3]]),
     'keypoint_visibilities'),
    (dict(keypoints=[[[1.5, 0.2]]]), 'keypoints'),
    (dict(area=[-1.0]), 'area'),
])
def test_build_tf_example_rejects_bad_input(kwargs, match):
  args = dict(encoded_image=_png(), image_format='png', height=4, width=6,
              boxes=[[0.1, 0.1, 0.5, 0.5]], class_labels=[1])
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    util.build_tf_example(**args)


def test_sharded_names_tf_od_api_style():
  assert util.sharded_tfrecord_paths('/x/out', 10)[3] == (
      '/x/out-00003-of-00010')
  assert util.output_tfrecord_paths('/x/out', 1) == ['/x/out']
  with pytest.raises(ValueError, match='num_shards'):
    util.sharded_tfrecord_paths('/x/out', 0)


def test_open_sharded_output_tfrecords_writes_and_refuses_overwrite(
    tmp_path):
  base = str(tmp_path / 'out.record')
  with util.open_sharded_output_tfrecords(base, 2) as writers:
    for i in range(5):
      writers[i % 2].write(str(i).encode())
  paths = [base + '-00000-of-00002', base + '-00001-of-00002']
  assert sorted(os.listdir(tmp_path)) == sorted(
      os.path.basename(p) for p in paths)  # No .partial files left.
  records = [r.numpy() for r in tf.data.TFRecordDataset(paths[0])]
  assert records == [b'0', b'2', b'4']
  with pytest.raises(FileExistsError, match='00000-of-00002'):
    with util.open_sharded_output_tfrecords(base, 2):
      pass
  # The user's data survives the refusal.
  assert [r.numpy() for r in tf.data.TFRecordDataset(paths[1])] == [
      b'1', b'3']
  with util.open_sharded_output_tfrecords(base, 2, overwrite=True) as w:
    w[0].write(b'new')
  assert [r.numpy() for r in tf.data.TFRecordDataset(paths[0])] == [b'new']


def test_error_inside_writer_keeps_previous_file(tmp_path):
  path = str(tmp_path / 'a.record')
  with util.open_tfrecord_writers([path]) as (w,):
    w.write(b'old')
  with pytest.raises(RuntimeError):
    with util.open_tfrecord_writers([path], overwrite=True) as (w,):
      w.write(b'half')
      raise RuntimeError('interrupted')
  assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == [b'old']
  assert os.listdir(tmp_path) == ['a.record']


def test_load_image_file(tmp_path):
  good = tmp_path / 'g.png'
  good.write_bytes(_png(3, 5))
  data, fmt, h, w = util.load_image_file(str(good))
  assert (fmt, h, w) == ('png', 3, 5) and data == good.read_bytes()
  bmp = tmp_path / 'b.bmp'
  Image.fromarray(np.full([2, 2, 3], 9, np.uint8)).save(bmp)
  data, fmt, h, w = util.load_image_file(str(bmp))
  assert fmt == 'png' and (h, w) == (2, 2)
  assert np.all(tf.io.decode_image(data).numpy() == 9)
  truncated = tmp_path / 't.png'
  truncated.write_bytes(_png(30, 30)[:40])
  with pytest.raises(util.ImageFileError, match='cannot be decoded'):
    util.load_image_file(str(truncated))
  with pytest.raises(util.ImageFileError, match='missing'):
    util.load_image_file(str(tmp_path / 'nope.png'))
