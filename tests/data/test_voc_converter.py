"""Tests for od_meta.data.voc_converter on a tiny VOC set in tmp_path."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from od_meta.core import standard_fields
from od_meta.data import label_map_util
from od_meta.data import tf_example_decoder
from od_meta.data import tf_example_util
from od_meta.data import voc_converter

_I = standard_fields.InputDataFields


def _obj(name, xmin, ymin, xmax, ymax, difficult=0):
  return (f'<object><name>{name}</name><difficult>{difficult}</difficult>'
          f'<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>'
          f'<ymax>{ymax}</ymax></bndbox></object>')


def _xml(filename, objects, height=20, width=30):
  return (f'<annotation><filename>{filename}</filename><size><width>{width}'
          f'</width><height>{height}</height><depth>3</depth></size>'
          + ''.join(objects) + '</annotation>')


def _make_voc(tmp_path):
  ann_dir = tmp_path / 'Annotations'
  img_dir = tmp_path / 'JPEGImages'
  ann_dir.mkdir()
  img_dir.mkdir()
  Image.fromarray(np.full([20, 30, 3], 50, np.uint8)).save(img_dir / 'a.png')
  (ann_dir / 'a.xml').write_text(_xml('a.png', [
      _obj('cat', 3, 2, 13, 10, difficult=1),   # good
      _obj('dog', 5, 2, 5, 10),                 # zero width
      _obj('bird', 1, 1, 4, 4),                 # unknown class
      _obj('dog', 20, 2, 35, 10),               # xmax 35 > width 30
      _obj('dog', 0, 0, 30, 20),                # good, whole image
  ]))
  (ann_dir / 'b.xml').write_text(_xml('b.png', [_obj('cat', 1, 1, 4, 4)]))
  (ann_dir / 'c.xml').write_text('<annotation><filename>')
  label_map = str(tmp_path / 'voc_label_map.pbtxt')
  label_map_util.write_label_map(label_map, ['cat', 'dog'])
  return str(ann_dir), str(img_dir), label_map


def test_convert_skip_reports_each_problem(tmp_path):
  ann_dir, img_dir, label_map = _make_voc(tmp_path)
  out = str(tmp_path / 'voc.record')
  summary = voc_converter.convert_voc(ann_dir, img_dir, label_map, out)
  assert summary.num_images_written == 1
  assert summary.num_images_skipped == 2  # b (missing image), c (bad XML)
  assert summary.num_annotations_written == 2
  assert summary.num_annotations_skipped == 4  # 3 bad objects + b's object
  reasons = [(os.path.basename(p.file), p.annotation, p.reason)
             for p in summary.problems]
  assert len(reasons) == 5
  assert reasons[0][:2] == ('a.xml', 'object 1 (dog)')
  assert 'zero or negative box area' in reasons[0][2]
  assert reasons[1][:2] == ('a.xml', 'object 2 (bird)')
  assert "unknown class 'bird'" in reasons[1][2]
  assert 'outside the 30x20 image' in reasons[2][2]
  assert reasons[3][0] == 'b.png' and 'missing' in reasons[3][2]
  assert reasons[4][0] == 'c.xml' and 'XML' in reasons[4][2]

  decoder = tf_example_decoder.TfExampleDecoder()
  (example,) = [decoder.decode(r) for r in tf.data.TFRecordDataset(out)]
  # cat (3, 2, 13, 10) in 30x20: [2/20, 3/30, 10/20, 13/30].
  np.testing.assert_allclose(example[_I.groundtruth_boxes].numpy(),
                             [[0.1, 0.1, 0.5, 13 / 30], [0, 0, 1, 1]],
                             rtol=1e-6)
  np.testing.assert_array_equal(example[_I.groundtruth_classes], [0, 1])
  np.testing.assert_array_equal(example[_I.groundtruth_difficult],
                                [True, False])
  assert example[_I.source_id].numpy() == b'a.png'


def test_set_file_ignore_difficult_and_reject(tmp_path):
  ann_dir, img_dir, label_map = _make_voc(tmp_path)
  set_file = tmp_path / 'trainval.txt'
  set_file.write_text('a\n')
  out = str(tmp_path / 'voc.record')
  summary = voc_converter.convert_voc(ann_dir, img_dir, label_map, out,
                                      set_file=str(set_file),
                                      ignore_difficult_instances=True)
  assert summary.num_images_written == 1
  assert summary.num_annotations_written == 1  # The difficult cat is left out.
  with pytest.raises(tf_example_util.ConversionError,
                     match=r'a.xml \(annotation object 1 \(dog\)\): zero'):
    voc_converter.convert_voc(ann_dir, img_dir, label_map,
                              str(tmp_path / 'r.record'),
                              set_file=str(set_file), on_error='reject')
  assert not os.path.exists(tmp_path / 'r.record')
  with pytest.raises(FileExistsError):
    voc_converter.convert_voc(ann_dir, img_dir, label_map, out,
                              set_file=str(set_file))


def test_size_mismatch_skips_image(tmp_path):
  ann_dir, img_dir, label_map = _make_voc(tmp_path)
  with open(os.path.join(ann_dir, 'a.xml'), 'w') as f:
    f.write(_xml('a.png', [_obj('cat', 3, 2, 13, 10)], height=40))
  set_file = tmp_path / 's.txt'
  set_file.write_text('a\n')
  summary = voc_converter.convert_voc(ann_dir, img_dir, label_map,
                                      str(tmp_path / 'o.record'),
                                      set_file=str(set_file))
  assert summary.num_images_written == 0
  assert 'height is 20' in summary.problems[0].reason
