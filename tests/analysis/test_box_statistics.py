"""Tests for od_meta.analysis.box_statistics (planted TFRecords, golden
statistics)."""

import functools
import io
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from od_meta.analysis import box_statistics as bs
from od_meta.data import image_resizer
from od_meta.data import tf_example_util

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _png(height, width):
  buffer = io.BytesIO()
  Image.new('RGB', (width, height), (10, 20, 30)).save(buffer, format='PNG')
  return buffer.getvalue()


def _example(height, width, boxes, labels, *, png_size=None):
  """A TF OD API tf.Example of a tiny PNG (of `png_size`, default the
  declared size)."""
  png_height, png_width = png_size or (height, width)
  return tf_example_util.build_tf_example(
      encoded_image=_png(png_height, png_width), image_format='png',
      height=height, width=width, boxes=np.reshape(boxes, [-1, 4]),
      class_labels=labels)


def _set_coordinate(example, box_index, name, value):
  """Overwrites one bbox coordinate (for values the builder refuses)."""
  feature = example.features.feature[f'image/object/bbox/{name}']
  feature.float_list.value[box_index] = value


def _write(path, records):
  """Writes tf.Examples (serialized) and raw bytes records to `path`."""
  path = str(path)
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      if isinstance(record, tf.train.Example):
        record = record.SerializeToString()
      writer.write(record)
  return path


def _dataset(boxes, classes, image_index, heights, widths, invalid=()):
  return bs.DatasetBoxes(
      boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
      classes=np.asarray(classes, np.int64),
      image_index=np.asarray(image_index, np.int64),
      image_heights=np.asarray(heights, np.int64),
      image_widths=np.asarray(widths, np.int64), invalid=list(invalid))


# Boxes with dyadic coordinates, exact in float32.
BOX_A = [0.25, 0.125, 0.75, 0.625]   # 64x128 image: 32 x 64 px
BOX_B = [0.0, 0.0, 0.5, 0.25]        # 64x128 image: 32 x 32 px
BOX_C = [0.5, 0.5, 1.0, 1.0]         # 16x48 image:  8 x 24 px


@pytest.fixture
def two_files(tmp_path):
  """a.record: an image with two boxes, an image without boxes; b.record:
  an image with one box."""
  a = _write(tmp_path / 'a.record', [
      _example(64, 128, [BOX_A, BOX_B], [1, 2]),
      _example(32, 32, [], [])])
  b = _write(tmp_path / 'b.record', [_example(16, 48, [BOX_C], [3])])
  return a, b


# ----------------------------------------------------------------------------
# read_groundtruth: contents


def test_read_groundtruth_planted_records(two_files):
  a, b = two_files
  data = bs.read_groundtruth([a, b])
  assert data.num_images == 3 and data.num_boxes == 3
  np.testing.assert_array_equal(data.boxes, [BOX_A, BOX_B, BOX_C])
  assert data.boxes.dtype == np.float64
  np.testing.assert_array_equal(data.classes, [1, 2, 3])
  assert data.classes.dtype == np.int64
  np.testing.assert_array_equal(data.image_index, [0, 0, 2])
  np.testing.assert_array_equal(data.image_heights, [64, 32, 16])
  np.testing.assert_array_equal(data.image_widths, [128, 32, 48])
  assert data.invalid == []
  heights, widths = data.pixel_sizes()
  np.testing.assert_allclose(heights, [32, 32, 8])
  np.testing.assert_allclose(widths, [64, 32, 24])


def test_read_groundtruth_follows_pattern_order_and_globs(two_files, tmp_path):
  a, b = two_files
  data = bs.read_groundtruth([b, a])
  np.testing.assert_array_equal(data.classes, [3, 1, 2])
  np.testing.assert_array_equal(data.image_index, [0, 1, 1])
  np.testing.assert_array_equal(data.image_heights, [16, 64, 32])
  # A glob matches both files, in sorted order.
  data = bs.read_groundtruth([str(tmp_path / '*.record')])
  assert data.num_images == 3
  np.testing.assert_array_equal(data.classes, [1, 2, 3])


def test_read_groundtruth_sharded_glob(tmp_path):
  base = str(tmp_path / 'train.record')
  for i, path in enumerate(tf_example_util.sharded_tfrecord_paths(base, 2)):
    _write(path, [_example(16, 16, [BOX_B], [i + 1])] * (i + 1))
  data = bs.read_groundtruth([base + '-?????-of-00002'])
  assert data.num_images == 3
  np.testing.assert_array_equal(data.classes, [1, 2, 2])
  assert bs.expand_input_paths([base + '-*']) == (
      tf_example_util.sharded_tfrecord_paths(base, 2))


def test_read_groundtruth_max_images(two_files):
  a, b = two_files
  data = bs.read_groundtruth([a, b], max_images=1)
  assert data.num_images == 1 and data.num_boxes == 2
  data = bs.read_groundtruth([a, b], max_images=3)
  assert data.num_images == 3 and data.num_boxes == 3


def test_read_groundtruth_lists_and_drops_invalid_boxes(tmp_path):
  first = _example(64, 64, [
      [0.0, 0.0, 0.5, 0.5],          # 0 valid
      [0.25, 0.0, 0.5, 0.5],         # 1 -> ymin 0.75 > ymax
      [0.0, 0.0, 0.5, 0.5],          # 2 -> xmax 1.5
      [0.0, 0.0, 0.5, 0.5],          # 3 -> ymin NaN
      [0.5, 0.25, 0.5, 0.75],        # 4 zero height
      [0.0, 0.25, 0.5, 0.25],        # 5 zero width
      [0.0, 0.25, 0.5, 0.5],         # 6 -> xmin 0.75 > xmax
      [0.0, 0.25, 0.5, 1.0],         # 7 -> ymin -0.005, xmax 1.005: kept
  ], [1, 2, 3, 4, 5, 6, 7, 8])
  _set_coordinate(first, 1, 'ymin', 0.75)
  _set_coordinate(first, 2, 'xmax', 1.5)
  _set_coordinate(first, 3, 'ymin', float('nan'))
  _set_coordinate(first, 6, 'xmin', 0.75)
  _set_coordinate(first, 7, 'ymin', -0.005)
  _set_coordinate(first, 7, 'xmax', 1.005)
  second = _example(32, 32, [[0.0, 0.0, 0.5, 0.5]] * 2, [9, 10])
  _set_coordinate(second, 0, 'ymax', float('inf'))
  path = _write(tmp_path / 'bad_boxes.record', [first, second])

  data = bs.read_groundtruth([path])
  assert data.num_images == 2 and data.num_boxes == 3
  np.testing.assert_array_equal(data.classes, [1, 8, 10])
  np.testing.assert_array_equal(data.image_index, [0, 0, 1])
  # Within-tolerance coordinates are clipped into [0, 1].
  np.testing.assert_allclose(data.boxes, [[0.0, 0.0, 0.5, 0.5],
                                          [0.0, 0.25, 0.5, 1.0],
                                          [0.0, 0.0, 0.5, 0.5]])
  assert [(f, i) for f, i, _ in data.invalid] == [(path, 0)] * 6 + [(path, 1)]
  reasons = [r for _, _, r in data.invalid]
  assert 'ymin > ymax' in reasons[0]
  assert 'outside [0, 1]' in reasons[1]
  assert 'non-finite' in reasons[2]
  assert 'zero' in reasons[3] and 'zero' in reasons[4]
  assert 'xmin > xmax' in reasons[5]
  assert 'non-finite' in reasons[6]
  assert bs.summarize(data)['num_invalid_boxes'] == 7


def test_read_groundtruth_size_from_encoded_png(tmp_path):
  example = _example(12, 20, [BOX_B], [1])
  del example.features.feature['image/height']
  del example.features.feature['image/width']
  with_size = _example(30, 40, [BOX_B], [1], png_size=(2, 2))
  path = _write(tmp_path / 'nosize.record', [example, with_size])
  data = bs.read_groundtruth([path])
  np.testing.assert_array_equal(data.image_heights, [12, 30])
  np.testing.assert_array_equal(data.image_widths, [20, 40])
  heights, widths = data.pixel_sizes()
  np.testing.assert_allclose(heights, [6, 15])
  np.testing.assert_allclose(widths, [5, 10])


# ----------------------------------------------------------------------------
# read_groundtruth: errors


def test_missing_file_or_pattern_raises(two_files, tmp_path):
  a, _ = two_files
  missing = str(tmp_path / 'missing.record')
  with pytest.raises(bs.DatasetError, match='missing.record: no such file'):
    bs.read_groundtruth([a, missing])
  pattern = str(tmp_path / 'nothing-*.record')
  with pytest.raises(bs.DatasetError) as error:
    bs.read_groundtruth([pattern])
  assert pattern in str(error.value)


def test_truncated_record_raises_with_file_and_index(tmp_path):
  path = _write(tmp_path / 'truncated.record',
                [_example(16, 16, [BOX_B], [1])] * 2)
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:-5])
  with pytest.raises(bs.DatasetError) as error:
    bs.read_groundtruth([path])
  message = str(error.value)
  assert message.startswith(path + ':')
  assert 'record 1 cannot be read' in message


def test_garbage_after_records_raises_with_file_and_index(tmp_path):
  path = _write(tmp_path / 'garbage.record',
                [_example(16, 16, [BOX_B], [1])] * 2)
  with open(path, 'ab') as f:
    f.write(b'this is not a tfrecord frame')
  with pytest.raises(bs.DatasetError) as error:
    bs.read_groundtruth([path])
  message = str(error.value)
  assert message.startswith(path + ':')
  assert 'record 2 cannot be read' in message


def test_record_that_is_not_an_example_raises(tmp_path):
  path = _write(tmp_path / 'raw.record',
                [_example(16, 16, [BOX_B], [1]), b'not an example'])
  with pytest.raises(bs.DatasetError) as error:
    bs.read_groundtruth([path])
  message = str(error.value)
  assert message.startswith(path + ':')
  assert 'record 1 is not a tf.train.Example' in message


def test_boxes_without_class_labels_raise(tmp_path):
  f = tf_example_util
  example = tf.train.Example(features=tf.train.Features(feature={
      'image/height': f.int64_feature(16),
      'image/width': f.int64_feature(16),
      'image/object/bbox/ymin': f.float_list_feature([0.0, 0.25]),
      'image/object/bbox/xmin': f.float_list_feature([0.0, 0.25]),
      'image/object/bbox/ymax': f.float_list_feature([0.5, 0.75]),
      'image/object/bbox/xmax': f.float_list_feature([0.5, 0.75]),
  }))
  path = _write(tmp_path / 'nolabels.record', [example])
  with pytest.raises(bs.DatasetError) as error:
    bs.read_groundtruth([path])
  message = str(error.value)
  assert message.startswith(path + ': record 0')
  assert '2 boxes but 0 image/object/class/label' in message


def test_bbox_lists_of_different_lengths_raise(tmp_path):
  example = _example(16, 16, [BOX_B, BOX_A], [1, 2])
  del example.features.feature['image/object/bbox/xmax'].float_list.value[1]
  path = _write(tmp_path / 'ragged.record',
                [_example(16, 16, [BOX_B], [1]), example])
  with pytest.raises(bs.DatasetError,
                     match=r'ragged.record: record 1: .*different lengths'):
    bs.read_groundtruth([path])


def test_unknown_image_size_raises(tmp_path):
  no_size = _example(16, 16, [BOX_B], [1])
  for key in ('image/height', 'image/width', 'image/encoded'):
    del no_size.features.feature[key]
  path = _write(tmp_path / 'nosize.record', [no_size])
  with pytest.raises(bs.DatasetError,
                     match=r'nosize.record: record 0 has neither'):
    bs.read_groundtruth([path])

  not_an_image = _example(16, 16, [BOX_B], [1])
  del not_an_image.features.feature['image/height']
  not_an_image.features.feature['image/encoded'].bytes_list.value[0] = (
      b'not an image')
  path = _write(tmp_path / 'notimage.record',
                [_example(16, 16, [BOX_B], [1]), not_an_image])
  with pytest.raises(bs.DatasetError,
                     match=r'notimage.record: record 1: image/encoded'):
    bs.read_groundtruth([path])


def test_dataset_without_boxes_raises(tmp_path):
  path = _write(tmp_path / 'empty_boxes.record',
                [_example(16, 16, [], [])] * 2)
  with pytest.raises(bs.DatasetError) as error:
    bs.read_groundtruth([path])
  message = str(error.value)
  assert path in message and 'no valid groundtruth box in 2 records' in message
  # Only invalid boxes: the same error, counting them.
  example = _example(16, 16, [BOX_B], [1])
  _set_coordinate(example, 0, 'xmax', 2.0)
  path = _write(tmp_path / 'only_invalid.record', [example])
  with pytest.raises(bs.DatasetError, match=r'only_invalid.record: .*'
                     r'in 1 records \(1 invalid\)'):
    bs.read_groundtruth([path])


def test_file_without_records_raises(tmp_path):
  path = _write(tmp_path / 'no_records.record', [])
  with pytest.raises(bs.DatasetError, match='no_records.record: no records'):
    bs.read_groundtruth([path])


def test_file_cut_inside_a_record_header_raises(tmp_path):
  # TFRecordDataset stops quietly when 1-11 bytes of a record header are
  # left; the reader compares the bytes read with the file size.
  record = _example(16, 16, [BOX_B], [1])
  path = _write(tmp_path / 'cut.record', [record] * 2)
  frame = len(record.SerializeToString()) + 16  # 12 header + 4 footer bytes
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:frame + 5])
  with pytest.raises(bs.DatasetError,
                     match=r'cut.record: 5 bytes after record 0 are not'):
    bs.read_groundtruth([path])


def test_box_clipped_to_zero_size_is_invalid(tmp_path):
  example = _example(16, 16, [BOX_B, BOX_A], [1, 2])
  _set_coordinate(example, 1, 'ymin', 1.002)
  _set_coordinate(example, 1, 'ymax', 1.008)
  path = _write(tmp_path / 'edge.record', [example])
  data = bs.read_groundtruth([path])
  heights, widths = data.pixel_sizes()
  assert np.all(heights > 0) and np.all(widths > 0)
  assert data.num_boxes == 1 and len(data.invalid) == 1
  assert data.invalid[0][1:] == (0, 'no area inside the image')


# ----------------------------------------------------------------------------
# input_image_sizes / pixel_sizes


def _three_images():
  # Source (height, width): 30x40, 20x64, 30x40; one box per image.
  return _dataset([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 0.5],
                   [0.5, 0.25, 1.0, 0.75]], [1, 1, 2], [0, 1, 2],
                  [30, 20, 30], [40, 64, 40])


def test_input_image_sizes_fixed_shape_resizer():
  resizer = functools.partial(image_resizer.fixed_shape_resizer, height=24,
                              width=32)
  heights, widths = bs.input_image_sizes(_three_images(), resizer)
  np.testing.assert_array_equal(heights, [24, 24, 24])
  np.testing.assert_array_equal(widths, [32, 32, 32])
  assert heights.dtype == np.int64 and widths.dtype == np.int64


@pytest.mark.parametrize('pad', [False, True])
def test_input_image_sizes_keep_aspect_ratio_resizer(pad):
  # min 60, max 100: 30x40 x2 -> 60x80; 20x64 x3 = 60x192 is too long, so
  # x100/64 -> 31.25x100 -> 31x100. Padding is excluded from the true shape.
  resizer = functools.partial(image_resizer.keep_aspect_ratio_resizer,
                              min_dimension=60, max_dimension=100,
                              pad_to_max_dimension=pad)
  data = _three_images()
  heights, widths = bs.input_image_sizes(data, resizer)
  np.testing.assert_array_equal(heights, [60, 31, 60])
  np.testing.assert_array_equal(widths, [80, 100, 80])
  # Box pixel sizes at the input: [0.5 x 60, 1.0 x 31, 0.5 x 60] high,
  # [0.5 x 80, 0.5 x 100, 0.5 x 80] wide.
  box_h, box_w = data.pixel_sizes(heights, widths)
  np.testing.assert_allclose(box_h, [30, 31, 30])
  np.testing.assert_allclose(box_w, [40, 50, 40])


def test_pixel_sizes_at_source():
  box_h, box_w = _three_images().pixel_sizes()
  np.testing.assert_allclose(box_h, [15, 20, 15])
  np.testing.assert_allclose(box_w, [20, 32, 20])


# ----------------------------------------------------------------------------
# distribution / coco_size_shares / size_distributions


def test_distribution_hand_values():
  d = bs.distribution([5.0, 1.0, 4.0, 2.0, 3.0])
  assert d['count'] == 5 and isinstance(d['count'], int)
  assert d['mean'] == pytest.approx(3.0)
  assert d['min'] == 1.0 and d['max'] == 5.0
  assert d['p50'] == pytest.approx(3.0)
  assert d['p25'] == pytest.approx(2.0)
  assert d['p1'] == pytest.approx(1.04)    # linear: 1 + 0.01 x 4
  assert d['p99'] == pytest.approx(4.96)
  assert set(d) == {'count', 'mean', 'min', 'max', 'p1', 'p5', 'p10', 'p25',
                    'p50', 'p75', 'p90', 'p95', 'p99'}
  assert bs.distribution([]) == {'count': 0}


def test_coco_size_shares_planted_areas():
  # 10x10, 50x50, 100x100 px: one small, one medium, one large.
  shares = bs.coco_size_shares([10.0 ** 2, 50.0 ** 2, 100.0 ** 2])
  assert shares['small'] == pytest.approx(1 / 3)
  assert shares['medium'] == pytest.approx(1 / 3)
  assert shares['large'] == pytest.approx(1 / 3)
  # Boundaries: area 32^2 is medium, 96^2 is large.
  shares = bs.coco_size_shares([1023.0, 1024.0, 9215.0, 9216.0])
  assert shares['small'] == pytest.approx(0.25)
  assert shares['medium'] == pytest.approx(0.5)
  assert shares['large'] == pytest.approx(0.25)
  assert bs.coco_size_shares([]) == {'small': 0.0, 'medium': 0.0,
                                     'large': 0.0}


def test_size_distributions_hand_values():
  d = bs.size_distributions([2.0, 4.0], [4.0, 4.0])
  assert d['height']['mean'] == pytest.approx(3.0)
  assert d['width']['min'] == d['width']['max'] == 4.0
  assert (d['area']['min'], d['area']['max']) == (8.0, 16.0)
  assert d['sqrt_area']['min'] == pytest.approx(math.sqrt(8.0))
  assert d['sqrt_area']['max'] == pytest.approx(4.0)
  assert (d['aspect_ratio']['min'], d['aspect_ratio']['max']) == (1.0, 2.0)


# ----------------------------------------------------------------------------
# summarize / plot_histograms


def _coco_planted():
  """Three 200x200 images; boxes of 10x10 (class 1, image 0), 50x50 (class
  2, image 0) and 100x100 px (class 1, image 2); image 1 has none."""
  return _dataset([[0.0, 0.0, 0.05, 0.05], [0.0, 0.0, 0.25, 0.25],
                   [0.25, 0.25, 0.75, 0.75]], [1, 2, 1], [0, 0, 2],
                  [200, 200, 200], [200, 200, 200],
                  invalid=[('x.record', 1, 'zero height or width')])


def test_summarize_overall_and_per_class():
  summary = bs.summarize(_coco_planted(), class_names={1: 'cat', 2: 'dog'})
  json.dumps(summary)  # JSON-ready.
  assert summary['num_images'] == 3 and summary['num_boxes'] == 3
  assert summary['num_invalid_boxes'] == 1
  per_image = summary['objects_per_image']
  assert per_image['count'] == 3 and per_image['mean'] == pytest.approx(1.0)
  assert (per_image['min'], per_image['p50'], per_image['max']) == (0, 1, 2)
  assert summary['source_image_size']['height']['mean'] == 200.0
  assert summary['source_image_size']['width']['max'] == 200.0

  overall = summary['overall']
  assert overall['num_boxes'] == 3 and 'input' not in overall
  sqrt_area = overall['source']['sqrt_area']
  assert sqrt_area['min'] == pytest.approx(10.0)
  assert sqrt_area['p50'] == pytest.approx(50.0)
  assert sqrt_area['max'] == pytest.approx(100.0)
  for share in overall['coco_sizes'].values():
    assert share == pytest.approx(1 / 3)

  assert set(summary['per_class']) == {'cat', 'dog'}
  cat, dog = summary['per_class']['cat'], summary['per_class']['dog']
  assert cat['label_map_id'] == 1 and dog['label_map_id'] == 2
  assert cat['num_boxes'] == 2 and dog['num_boxes'] == 1
  assert cat['coco_sizes']['small'] == pytest.approx(0.5)
  assert cat['coco_sizes']['large'] == pytest.approx(0.5)
  assert dog['coco_sizes']['medium'] == pytest.approx(1.0)
  assert cat['source']['height']['mean'] == pytest.approx(55.0)
  assert 'input' not in cat


def test_summarize_unnamed_class_and_input_sizes():
  data = _coco_planted()
  summary = bs.summarize(data, [100, 100, 100], [400, 400, 400],
                         class_names={1: 'cat'})
  assert set(summary['per_class']) == {'cat', '2'}
  # At the input, heights halve and widths double: aspect ratio 4.
  overall = summary['overall']['input']
  assert overall['height']['min'] == pytest.approx(5.0)
  assert overall['width']['max'] == pytest.approx(200.0)
  assert overall['aspect_ratio']['p50'] == pytest.approx(4.0)
  assert summary['per_class']['2']['input']['width']['mean'] == (
      pytest.approx(100.0))
  # COCO shares stay in source pixels.
  assert summary['overall']['coco_sizes']['small'] == pytest.approx(1 / 3)
  assert bs.summarize(data)['per_class'].keys() == {'1', '2'}


def test_plot_histograms_writes_the_four_pngs(tmp_path):
  names = {'box_sqrt_area.png', 'box_aspect_ratio.png',
           'box_width_height.png', 'objects_per_image.png'}
  data = _coco_planted()
  output_dir = str(tmp_path / 'plots' / 'nested')
  paths = bs.plot_histograms(data, output_dir, input_heights=[100] * 3,
                             input_widths=[400] * 3,
                             anchor_sizes=[16.0, 32.0, 64.0])
  assert len(paths) == 4
  assert {os.path.basename(p) for p in paths} == names
  for path in paths:
    assert os.path.dirname(path) == output_dir
    with open(path, 'rb') as f:
      assert f.read(8) == _PNG_SIGNATURE
  # Without input sizes (source only) and a single box.
  single = _dataset([BOX_A], [1], [0], [64], [128])
  paths = bs.plot_histograms(single, str(tmp_path / 'single'))
  assert {os.path.basename(p) for p in paths} == names
  assert all(os.path.getsize(p) > 0 for p in paths)
