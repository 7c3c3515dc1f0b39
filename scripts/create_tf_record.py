r"""Converts a COCO or PASCAL VOC dataset to TF OD API TFRecords.

COCO (writes `<output_path>_label_map.pbtxt` next to the records):

  python scripts/create_tf_record.py --format=coco \
      --annotations_file=annotations/instances_train2017.json \
      --image_dir=train2017 --output_path=data/coco_train.record \
      [--num_shards=10] [--on_error=skip|reject] [--include_keypoints] \
      [--label_map_output_path=...] [--overwrite]

PASCAL VOC:

  python scripts/create_tf_record.py --format=voc \
      --annotations_dir=VOC2012/Annotations --image_dir=VOC2012/JPEGImages \
      --label_map_path=pascal_label_map.pbtxt --output_path=data/voc.record \
      [--set=VOC2012/ImageSets/Main/trainval.txt] [--ignore_difficult_instances]

Prints the summary (counts written / skipped and every problem with its file
and reason). Exits with status 1 and a message on missing inputs, outputs
that already exist (without --overwrite), or the first problem with
--on_error=reject.
"""

import os
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_enum('format', None, ['coco', 'voc'], 'Input dataset format.')
flags.DEFINE_string('annotations_file', None, 'COCO JSON file (coco).')
flags.DEFINE_string('annotations_dir', None, 'Directory of XML files (voc).')
flags.DEFINE_string('image_dir', None, 'Directory of the images.')
flags.DEFINE_string('label_map_path', None,
                    'voc: label map of the class names (required).')
flags.DEFINE_string('label_map_output_path', None,
                    'coco: where to write the label map (default '
                    '<output_path>_label_map.pbtxt).')
flags.DEFINE_string('set', None,
                    'voc: optional file listing the ids to convert.')
flags.DEFINE_string('output_path', None, 'Output TFRecord path (prefix when '
                    'sharded).')
flags.DEFINE_integer('num_shards', 1, 'Number of output shards.')
flags.DEFINE_enum('on_error', 'skip', ['skip', 'reject'],
                  'skip: leave bad annotations/images out and report them; '
                  'reject: stop at the first one.')
flags.DEFINE_bool('include_keypoints', False, 'coco: write keypoints.')
flags.DEFINE_bool('ignore_difficult_instances', False,
                  'voc: leave out objects marked difficult.')
flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')


def _fail(message):
  print(f'create_tf_record: error: {message}', file=sys.stderr)
  return 1


def main(argv):
  if len(argv) > 1:
    return _fail(f'unexpected arguments {argv[1:]}')
  required = ['format', 'image_dir', 'output_path']
  if FLAGS.format == 'coco':
    required.append('annotations_file')
  elif FLAGS.format == 'voc':
    required += ['annotations_dir', 'label_map_path']
  missing = [f'--{name}' for name in required if not getattr(FLAGS, name)]
  if missing:
    return _fail(f'missing required flag(s) {", ".join(missing)}')
  inputs = [('--image_dir', FLAGS.image_dir, os.path.isdir)]
  if FLAGS.format == 'coco':
    inputs.append(('--annotations_file', FLAGS.annotations_file,
                   os.path.isfile))
  else:
    inputs += [('--annotations_dir', FLAGS.annotations_dir, os.path.isdir),
               ('--label_map_path', FLAGS.label_map_path, os.path.isfile)]
    if FLAGS.set:
      inputs.append(('--set', FLAGS.set, os.path.isfile))
  for flag, path, exists in inputs:
    if '://' not in path and not exists(path):
      return _fail(f'{flag}: {path} does not exist')

  # Imported here so that the checks above answer without loading TensorFlow.
  # pylint: disable=g-import-not-at-top
  from od_meta.data import coco_converter
  from od_meta.data import tf_example_util
  from od_meta.data import voc_converter
  # pylint: enable=g-import-not-at-top
  try:
    if FLAGS.format == 'coco':
      summary = coco_converter.convert_coco(
          FLAGS.annotations_file, FLAGS.image_dir, FLAGS.output_path,
          num_shards=FLAGS.num_shards, on_error=FLAGS.on_error,
          include_keypoints=FLAGS.include_keypoints,
          label_map_path=FLAGS.label_map_output_path,
          overwrite=FLAGS.overwrite)
    else:
      summary = voc_converter.convert_voc(
          FLAGS.annotations_dir, FLAGS.image_dir, FLAGS.label_map_path,
          FLAGS.output_path, set_file=FLAGS.set,
          num_shards=FLAGS.num_shards, on_error=FLAGS.on_error,
          ignore_difficult_instances=FLAGS.ignore_difficult_instances,
          overwrite=FLAGS.overwrite)
  except (FileNotFoundError, FileExistsError,
          tf_example_util.ConversionError, ValueError) as e:
    return _fail(str(e))
  print(summary)
  return 0


if __name__ == '__main__':
  app.run(main)
