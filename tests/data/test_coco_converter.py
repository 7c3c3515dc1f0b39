"""Tests for od_meta.data.coco_converter on a tiny COCO set in tmp_path."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from od_meta.core import standard_fields
from od_meta.data import coco_converter
from od_meta.data import label_map_util
from od_meta.data import tf_example_decoder
from od_meta.data import tf_example_util

_I = standard_fields.InputDataFields


def _make_coco(tmp_path):
  """img1.png 20x30 (good), img2.png missing, img3.png corrupt."""
  image_dir = tmp_path / 'images'
  image_dir.mkdir()
  Image.fromarray(np.full([20, 30, 3], 100, np.uint8)).save(
      image_dir / 'img1.png')
  (image_dir / 'img3.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really a png')
  data = {
      'images': [
          {'id': 1, 'file_name': 'img1.png', 'height': 20, 'width': 30},
          {'id': 2, 'file_name': 'img2.png', 'height': 20, 'width': 30},
          {'id': 3, 'file_name': 'img3.png', 'height': 20, 'width': 30},
      ],
      'categories': [
          {'id': 5, 'name': 'dog'},
          {'id': 1, 'name': 'person', 'keypoints': ['nose', 'tail']},
      ],
      'annotations': [
          {'id': 11, 'image_id': 1, 'category_id': 1, 'bbox': [3, 2, 10, 8],
           'area': 50.0, 'iscrowd': 0, 'keypoints': [5, 4, 2, 0, 0, 0]},
          {'id': 12, 'image_id': 1, 'category_id': 5, 'bbox': [0, 0, 0, 5],
           'area': 1.0, 'iscrowd': 0},
          {'id': 13, 'image_id': 1, 'category_id': 5, 'bbox': [25, 10, 10, 5],
           'area': 50.0, 'iscrowd': 0},
          {'id': 14, 'image_id': 1, 'category_id': 7, 'bbox': [1, 1, 2, 2],
           'area': 4.0, 'iscrowd': 0},
          {'id': 15, 'image_id': 2, 'category_id': 1, 'bbox': [1, 1, 2, 2],
           'area': 4.0, 'iscrowd': 0},
          {'id': 16, 'image_id': 1, 'category_id': 5, 'bbox': [10, 10, 5, 5],
           'area': 20.0, 'iscrowd': 1},
          {'id': 17, 'image_id': 99, 'category_id': 5, 'bbox': [1, 1, 2, 2],
           'area': 4.0, 'iscrowd': 0},
      ],
  }
  ann_file = tmp_path / 'instances.json'
  ann_file.write_text(json.dumps(data))
  return str(ann_file), str(image_dir)


def _decode_all(paths, num_keypoints=0):
  decoder = tf_example_decoder.TfExampleDecoder(num_keypoints=num_keypoints)
  return [decoder.decode(r) for r in tf.data.TFRecordDataset(paths)]


def test_convert_skip_reports_each_problem(tmp_path):
  ann_file, image_dir = _make_coco(tmp_path)
  out = str(tmp_path / 'out' / 'train.record')
  summary = coco_converter.convert_coco(ann_file, image_dir, out,
                                        include_keypoints=True)
  assert summary.num_images_written == 1
  assert summary.num_images_skipped == 2
  assert summary.num_annotations_written == 2  # ids 11 and 16
  assert summary.num_annotations_skipped == 5  # 12, 13, 14, 15, 17
  reasons = {(os.path.basename(p.file), p.annotation): p.reason
             for p in summary.problems}
  assert 'zero or negative box area' in reasons[('img1.png', 12)]
  assert 'outside the 30x20 image' in reasons[('img1.png', 13)]
  assert 'unknown category_id 7' in reasons[('img1.png', 14)]
  assert 'missing' in reasons[('img2.png', None)]
  assert 'cannot be decoded' in reasons[('img3.png', None)]
  assert 'image_id 99' in reasons[('instances.json', 17)]
  assert len(summary.problems) == 6
  assert summary.label_map == {1: 1, 5: 2}  # Sorted COCO ids -> 1, 2.

  (example,) = _decode_all([out], num_keypoints=2)
  # bbox [x=3, y=2, w=10, h=8] in a 30x20 image:
  # [2/20, 3/30, (2+8)/20, (3+10)/30] = [0.1, 0.1, 0.5, 0.4333].
  np.testing.assert_allclose(
      example[_I.groundtruth_boxes].numpy(),
      [[0.1, 0.1, 0.5, 13 / 30], [0.5, 1 / 3, 0.75, 0.5]], rtol=1e-6)
  # person (COCO 1) -> label 1 -> class 0; dog (COCO 5) -> label 2 -> 1.
  np.testing.assert_array_equal(example[_I.groundtruth_classes], [0, 1])
  np.testing.assert_array_equal(example[_I.groundtruth_text],
                                [b'person', b'dog'])
  np.testing.assert_array_equal(example[_I.groundtruth_is_crowd],
                                [False, True])
  np.testing.assert_allclose(example[_I.groundtruth_area], [50.0, 20.0])
  assert example[_I.source_id].numpy() == b'1'
  kpts = example[_I.groundtruth_keypoints].numpy()
  # Keypoint (x=5, y=4, v=2) -> (4/20, 5/30); v=0 -> NaN; dog has none.
  np.testing.assert_allclose(kpts[0, 0], [0.2, 5 / 30], rtol=1e-6)
  assert np.isnan(kpts[0, 1]).all() and np.isnan(kpts[1]).all()

  label_map = label_map_util.load_labelmap(out + '_label_map.pbtxt')
  assert [(i['id'], i['name']) for i in label_map] == [(1, 'person'),
                                                        (2, 'dog')]
  assert [k['label'] for k in label_map[0]['keypoints']] == ['nose', 'tail']
  assert summary.label_map_path == out + '_label_map.pbtxt'


def test_reject_raises_naming_file_and_writes_nothing(tmp_path):
  ann_file, image_dir = _make_coco(tmp_path)
  out = str(tmp_path / 'train.record')
  with pytest.raises(tf_example_util.ConversionError,
                     match=r'instances.json \(annotation 17\): image_id 99'):
    coco_converter.convert_coco(ann_file, image_dir, out, on_error='reject')
  # Remove the orphan annotation: the first image problem is then reported.
  data = json.loads(open(ann_file).read())
  data['annotations'] = [a for a in data['annotations'] if a['id'] != 17]
  open(ann_file, 'w').write(json.dumps(data))
  with pytest.raises(tf_example_util.ConversionError,
                     match=r'img1.png \(annotation 12\): zero or negative'):
    coco_converter.convert_coco(ann_file, image_dir, out, on_error='reject')
  assert not [f for f in os.listdir(tmp_path) if 'record' in f]


def test_sharding_and_overwrite_refusal(tmp_path):
  ann_file, image_dir = _make_coco(tmp_path)
  data = json.loads(open(ann_file).read())
  data['images'] = data['images'][:1] + [
      {'id': 4, 'file_name': 'img1.png', 'height': 20, 'width': 30}]
  data['annotations'] = [data['annotations'][0]]
  open(ann_file, 'w').write(json.dumps(data))
  out = str(tmp_path / 'train.record')
  summary = coco_converter.convert_coco(ann_file, image_dir, out,
                                        num_shards=2)
  assert summary.output_paths == [out + '-00000-of-00002',
                                  out + '-00001-of-00002']
  assert summary.problems == [] and summary.num_images_written == 2
  assert [len(_decode_all([p])) for p in summary.output_paths] == [1, 1]
  # No keypoints requested: none written.
  (example,) = _decode_all(summary.output_paths[:1])
  assert _I.groundtruth_keypoints not in example
  with pytest.raises(FileExistsError, match='already exists'):
    coco_converter.convert_coco(ann_file, image_dir, out, num_shards=2)
  coco_converter.convert_coco(ann_file, image_dir, out, num_shards=2,
                              overwrite=True)


def test_missing_inputs(tmp_path):
  ann_file, image_dir = _make_coco(tmp_path)
  with pytest.raises(FileNotFoundError, match='nope.json'):
    coco_converter.convert_coco(str(tmp_path / 'nope.json'), image_dir,
                                str(tmp_path / 'o'))
  with pytest.raises(FileNotFoundError, match='image_dir'):
    coco_converter.convert_coco(ann_file, str(tmp_path / 'noimg'),
                                str(tmp_path / 'o'))
  with pytest.raises(ValueError, match='on_error'):
    coco_converter.convert_coco(ann_file, image_dir, str(tmp_path / 'o'),
                                on_error='ignore')
