r"""Generates od_meta's embedded handwritten-digits detection dataset.

  python scripts/create_digits_dataset.py --output_dir=data/digits \
      [--num_train=2000] [--num_val=300] [--image_size=128] [--seed=0] \
      [--digit_size_range=MIN,MAX] [--num_digits_range=MIN,MAX] [--overwrite]

The small-digits variant (digits of 6-12 px once a 128 px config resizes the
256 px scenes; see the README's "Fitting a config to a dataset"):

  python scripts/create_digits_dataset.py --output_dir=data/digits_small \
      --image_size=256 --digit_size_range=16,34

Writes train.tfrecord, val.tfrecord, label_map.pbtxt and dataset_info.json
(see od_meta.data.digits_dataset). Exits with status 1 and a message when a
file already exists and --overwrite is not given.
"""

import json
import sys

from absl import app
from absl import flags

from od_meta.data import digits_dataset

FLAGS = flags.FLAGS
flags.DEFINE_string('output_dir', None, 'Output directory.')
flags.DEFINE_integer('num_train', 2000, 'Number of training scenes.')
flags.DEFINE_integer('num_val', 300, 'Number of validation scenes.')
flags.DEFINE_integer('image_size', 128, 'Scene side in pixels.')
flags.DEFINE_integer('seed', 0, 'Random seed (same seed, same bytes).')
flags.DEFINE_list('digit_size_range', None,
                  'MIN,MAX side in pixels a 28x28 source digit is resized to '
                  '(its ink box is about 0.7 of it); default image_size/8 to '
                  'image_size*7/16.')
flags.DEFINE_list('num_digits_range', ['2', '5'], 'MIN,MAX digits per scene.')
flags.DEFINE_bool('overwrite', False, 'Replace existing files.')


def _int_pair(name, values):
  if values is None:
    return None
  try:
    pair = tuple(int(v) for v in values)
  except ValueError:
    pair = ()
  if len(pair) != 2:
    raise ValueError(f'--{name} must be two integers MIN,MAX, got '
                     f'{",".join(values)!r}')
  return pair


def main(argv):
  if len(argv) > 1:
    print(f'create_digits_dataset: error: unexpected arguments {argv[1:]}',
          file=sys.stderr)
    return 1
  if not FLAGS.output_dir:
    print('create_digits_dataset: error: --output_dir is required',
          file=sys.stderr)
    return 1
  try:
    info = digits_dataset.generate_digits_dataset(
        FLAGS.output_dir, num_train=FLAGS.num_train, num_val=FLAGS.num_val,
        image_size=FLAGS.image_size, seed=FLAGS.seed,
        overwrite=FLAGS.overwrite,
        digit_size_range=_int_pair('digit_size_range',
                                   FLAGS.digit_size_range),
        num_digits_range=_int_pair('num_digits_range',
                                   FLAGS.num_digits_range))
  except (FileExistsError, FileNotFoundError, ValueError) as e:
    print(f'create_digits_dataset: error: {e}', file=sys.stderr)
    return 1
  print(json.dumps(info, indent=2, sort_keys=True))
  return 0


if __name__ == '__main__':
  app.run(main)
