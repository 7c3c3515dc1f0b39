"""Tests for od_meta.data.digits_dataset (the embedded MNIST-scenes dataset)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.core import standard_fields
from od_meta.data import digits_dataset as dd
from od_meta.data import label_map_util
from od_meta.data import tf_example_decoder

_I = standard_fields.InputDataFields


@pytest.fixture(scope='module')
def digits():
  return dd.load_mnist_digits()


def test_source_split_is_disjoint_and_balanced(digits):
  images, labels = digits
  assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
  train, val = dd.split_source_indices(labels)
  assert len(train) == 4000 and len(val) == 1000
  assert not set(train) & set(val)
  np.testing.assert_array_equal(np.bincount(labels[train]), [400] * 10)
  np.testing.assert_array_equal(np.bincount(labels[val]), [100] * 10)
  # Disjoint in content too: no val digit is pixel-identical to a train one.
  train_rows = {images[i].tobytes() for i in train}
  assert not any(images[i].tobytes() in train_rows for i in val)


def test_keypoints_from_mask_golden():
  mask = np.zeros([6, 6], bool)
  mask[1, 2:4] = True   # top row 1, columns 2 and 3
  mask[2, 1] = True     # leftmost column 1
  mask[3, 4] = True     # rightmost column 4, bottom row 3
  kpts = dd._keypoints_from_mask(mask)  # pylint: disable=protected-access
  # Pixel centres (+0.5): top = (1, mean(2, 3)) = (1.5, 3.0);
  # bottom = (3, 4) = (3.5, 4.5); left = (2, 1) = (2.5, 1.5);
  # right = (3, 4) = (3.5, 4.5); center = mean rows (1+1+2+3)/4 = 1.75,
  # mean cols (2+3+1+4)/4 = 2.5 -> (2.25, 3.0).
  np.testing.assert_allclose(
      kpts, [[1.5, 3.0], [3.5, 4.5], [2.5, 1.5], [3.5, 4.5], [2.25, 3.0]])


def test_scene_boxes_tight_and_keypoints_inside(digits):
  images, labels = digits
  for i in range(5):
    scene = dd.compose_scene(np.random.default_rng(i), images[:50],
                             labels[:50], image_size=96)
    n = len(scene['classes'])
    assert 2 <= n <= 5
    size = 96
    union = np.zeros([size, size], bool)
    for box, mask, kpts, area in zip(scene['boxes'], scene['ink_masks'],
                                     scene['keypoints'], scene['areas']):
      y0, x0, y1, x1 = np.round(box * size).astype(int)
      # All ink inside the box, and every box edge touches ink.
      assert mask[y0:y1, x0:x1].sum() == mask.sum() == area > 0
      assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()
      assert mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()
      assert np.all(kpts[:, 0] >= box[0]) and np.all(kpts[:, 0] <= box[2])
      assert np.all(kpts[:, 1] >= box[1]) and np.all(kpts[:, 1] <= box[3])
      union |= mask
    # The scene differs from its background exactly at the ink pixels: no
    # faint ink outside the boxes.
    changed = np.any(scene['image'] != scene['background'], axis=-1)
    np.testing.assert_array_equal(changed, union)
    # Source digit labels match the classes.
    np.testing.assert_array_equal(labels[:50][scene['source_indices']],
                                  scene['classes'])


def test_keypoint_flip_permutation(digits):
  images, labels = digits
  scene = dd.compose_scene(np.random.default_rng(3), images, labels,
                           image_size=64)
  size = 64
  for mask, kpts in zip(scene['ink_masks'], scene['keypoints']):
    # pylint: disable=protected-access
    flipped = dd._keypoints_from_mask(mask[:, ::-1]) / size
    expected = kpts[list(dd.KEYPOINT_FLIP_PERMUTATION)].copy()
    expected[:, 1] = 1.0 - expected[:, 1]
    np.testing.assert_allclose(flipped, expected, atol=1e-6)


def test_generate_small_dataset_deterministic_and_decodable(tmp_path):
  a, b, c = (str(tmp_path / n) for n in ('a', 'b', 'c'))
  info = dd.generate_digits_dataset(a, num_train=4, num_val=2, image_size=64,
                                    seed=7)
  dd.generate_digits_dataset(b, num_train=4, num_val=2, image_size=64,
                             seed=7)
  dd.generate_digits_dataset(c, num_train=4, num_val=2, image_size=64,
                             seed=8)
  for name in ('train.tfrecord', 'val.tfrecord', 'label_map.pbtxt',
               'dataset_info.json'):
    with open(os.path.join(a, name), 'rb') as fa, open(
        os.path.join(b, name), 'rb') as fb:
      assert fa.read() == fb.read(), name
  with open(os.path.join(a, 'train.tfrecord'), 'rb') as fa, open(
      os.path.join(c, 'train.tfrecord'), 'rb') as fc:
    assert fa.read() != fc.read()

  assert json.load(open(os.path.join(a, 'dataset_info.json'))) == info
  assert info['keypoint_flip_permutation'] == [0, 1, 3, 2, 4]
  assert info['num_train'] == 4 and info['num_val'] == 2
  assert label_map_util.get_label_map_dict(
      os.path.join(a, 'label_map.pbtxt')) == {str(d): d + 1 for d in range(10)}

  decoder = tf_example_decoder.TfExampleDecoder(num_keypoints=5)
  examples = [decoder.decode(r) for r in
              tf.data.TFRecordDataset(os.path.join(a, 'train.tfrecord'))]
  assert len(examples) == 4
  total = 0
  for ex in examples:
    assert ex[_I.image].shape == (64, 64, 3)
    boxes = ex[_I.groundtruth_boxes].numpy()
    kpts = ex[_I.groundtruth_keypoints].numpy()
    classes = ex[_I.groundtruth_classes].numpy()
    assert np.all((classes >= 0) & (classes < 10))
    np.testing.assert_array_equal(
        ex[_I.groundtruth_text].numpy(), [str(c).encode() for c in classes])
    assert ex[_I.groundtruth_keypoint_visibilities].numpy().all()
    assert np.all(kpts[..., 0] >= boxes[:, None, 0])
    assert np.all(kpts[..., 0] <= boxes[:, None, 2])
    assert np.all(kpts[..., 1] >= boxes[:, None, 1])
    assert np.all(kpts[..., 1] <= boxes[:, None, 3])
    total += len(classes)
  assert total == info['num_train_boxes']


def test_train_and_val_scenes_use_disjoint_sources(digits):
  train_pool, val_pool = dd.split_source_indices(digits[1])
  used = {}
  for split in ('train', 'val'):
    used[split] = set()
    for scene, _ in dd.generate_split(split, 5, image_size=64, digits=digits):
      used[split].update(scene['source_indices'].tolist())
  assert used['train'] <= set(train_pool.tolist())
  assert used['val'] <= set(val_pool.tolist())
  assert not used['train'] & used['val']


def test_overwrite_refusal(tmp_path):
  out = str(tmp_path / 'd')
  dd.generate_digits_dataset(out, num_train=1, num_val=1, image_size=32)
  before = open(os.path.join(out, 'train.tfrecord'), 'rb').read()
  with pytest.raises(FileExistsError, match='train.tfrecord'):
    dd.generate_digits_dataset(out, num_train=2, num_val=1, image_size=32,
                               seed=1)
  assert open(os.path.join(out, 'train.tfrecord'), 'rb').read() == before
  info = dd.generate_digits_dataset(out, num_train=2, num_val=1,
                                    image_size=32, seed=1, overwrite=True)
  assert info['num_train'] == 2
  assert sorted(os.listdir(out)) == ['dataset_info.json', 'label_map.pbtxt',
                                     'train.tfrecord', 'val.tfrecord']


def test_digit_size_and_count_options(tmp_path, digits):
  # The small-digits variant: sides 16-20 px in 96 px scenes, 1-2 digits.
  # An ink box is at most the resized side, and MNIST ink spans at least
  # about half of the 28 px frame in height.
  out = str(tmp_path / 'small')
  info = dd.generate_digits_dataset(out, num_train=6, num_val=0,
                                    image_size=96, digit_size_range=(16, 20),
                                    num_digits_range=(1, 2))
  assert info['digit_size_range'] == [16, 20]
  assert info['digits_per_image'] == [1, 2]
  for scene, _ in dd.generate_split('train', 6, image_size=96,
                                    digits=digits, digit_size_range=(16, 20),
                                    num_digits_range=(1, 2)):
    assert 1 <= len(scene['classes']) <= 2
    heights = (scene['boxes'][:, 2] - scene['boxes'][:, 0]) * 96
    widths = (scene['boxes'][:, 3] - scene['boxes'][:, 1]) * 96
    assert np.all(heights <= 20) and np.all(widths <= 20)
    assert np.all(heights >= 8)
  for bad in ((3, 10), (20, 16), (16, 97)):
    with pytest.raises(ValueError, match='digit_size_range'):
      dd.generate_digits_dataset(str(tmp_path / 'bad'), num_train=1,
                                 num_val=0, image_size=96,
                                 digit_size_range=bad)
  with pytest.raises(ValueError, match='num_digits_range'):
    dd.generate_digits_dataset(str(tmp_path / 'bad'), num_train=1,
                               num_val=0, num_digits_range=(0, 2))
  assert not os.path.exists(str(tmp_path / 'bad'))
