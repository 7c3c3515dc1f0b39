"""Converts PASCAL VOC XML annotations to TFRecords.

Output: TF OD API tf.Examples (see `tf_example_util.build_tf_example`), as
the TF OD API's `dataset_tools/create_pascal_tf_record.py` writes them:
  * boxes: `<bndbox>` pixel coordinates divided by the image size, i.e.
    normalized `[ymin / H, xmin / W, ymax / H, xmax / W]` (VOC's 1-based
    inclusive corners are used as they are, exactly like the TF OD API);
  * classes: `<name>` looked up in the given label map (1-based ids);
  * image/object/difficult from `<difficult>`, image/source_id and
    image/filename from `<filename>`.

Images are looked up as `image_dir/<filename>`; when that file does not exist
and `<filename>` has no extension, `<xml stem>.jpg`, `.jpeg` and `.png` are
tried.

Validation, each problem reported with the file and reason:
  * per object (left out, image kept): unknown class, missing or
    non-numeric coordinates, zero or negative width/height, a box outside
    the image (no clipping);
  * per file (image left out): unreadable XML, missing, empty or
    undecodable image, `<size>` different from the decoded image.
`on_error='skip'` (default) leaves out and reports; `'reject'` raises
`ConversionError` at the first problem (no output is left behind).
"""

import math
import os
from typing import Optional
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow as tf

from od_meta.data import label_map_util
from od_meta.data import tf_example_util as util


def _text(elem, tag):
  child = elem.find(tag)
  return None if child is None or child.text is None else child.text.strip()


def _number(elem, tag):
  value = _text(elem, tag)
  if value is None:
    raise ValueError(f'missing <{tag}>')
  try:
    number = float(value)
  except ValueError:
    raise ValueError(f'<{tag}> is not a number: {value!r}') from None
  if not math.isfinite(number):
    raise ValueError(f'<{tag}> is not finite: {value!r}')
  return number


def _xml_files(annotations_dir, set_file):
  if set_file:
    if not tf.io.gfile.exists(set_file):
      raise FileNotFoundError(f'set file {set_file} does not exist')
    with tf.io.gfile.GFile(set_file, 'r') as f:
      # VOC ImageSets/Main/<class>_trainval.txt lines may carry a 2nd column.
      ids = [line.split()[0] for line in f if line.strip()]
    return [os.path.join(annotations_dir, i + '.xml') for i in ids]
  return sorted(tf.io.gfile.glob(os.path.join(annotations_dir, '*.xml')))


def _image_path(image_dir, filename, xml_path):
  path = os.path.join(image_dir, filename)
  if tf.io.gfile.exists(path) or os.path.splitext(filename)[1]:
    return path
  stem = os.path.splitext(os.path.basename(xml_path))[0]
  for ext in ('.jpg', '.jpeg', '.png'):
    candidate = os.path.join(image_dir, stem + ext)
    if tf.io.gfile.exists(candidate):
      return candidate
  return path


def convert_voc(annotations_dir: str, image_dir: str, label_map_path: str,
                output_path: str, *, set_file: Optional[str] = None,
                num_shards: int = 1, on_error: str = 'skip',
                ignore_difficult_instances: bool = False,
                use_display_name: bool = False,
                overwrite: bool = False) -> util.ConversionSummary:
  """Converts a directory of VOC XML files and their images to TFRecords.

  Args:
    annotations_dir: directory of `<id>.xml` files.
    image_dir: directory holding the images named by `<filename>`.
    label_map_path: label map whose names are the VOC class names.
    output_path: output TFRecord path; with num_shards > 1 the files are
      `<output_path>-0000i-of-0000n`.
    set_file: optional list of ids (VOC `ImageSets/Main/trainval.txt`), one
      per line; default: every `*.xml` in annotations_dir, sorted.
    num_shards: number of output shards (>= 1).
    on_error: 'skip' (report and leave out) or 'reject' (raise).
    ignore_difficult_instances: leave out objects with `<difficult>1`
      (counted as skipped, not reported as problems).
    use_display_name: look names up by the label map's display_name.
    overwrite: replace existing output files (default: refuse).

  Returns:
    `tf_example_util.ConversionSummary`.

  Raises:
    FileNotFoundError: a missing directory, label map or set file.
    FileExistsError: an output exists and overwrite is False.
    ConversionError: any problem when on_error='reject', or no XML files.
    ValueError: bad on_error / num_shards; label map errors.
  """
  util.check_on_error(on_error)
  for name, d in (('annotations_dir', annotations_dir),
                  ('image_dir', image_dir)):
    if not tf.io.gfile.isdir(d):
      raise FileNotFoundError(f'{name} {d} does not exist')
  name_to_id = label_map_util.get_label_map_dict(
      label_map_path, use_display_name=use_display_name)
  xml_files = _xml_files(annotations_dir, set_file)
  if not xml_files:
    raise util.ConversionError(f'no annotation files found in '
                               f'{annotations_dir}')
  paths = util.output_tfrecord_paths(output_path, num_shards)
  util.check_can_write(paths, overwrite)
  summary = util.ConversionSummary()

  def problem(file, reason, annotation=None, skipped='annotation'):
    util.report_problem(summary, on_error, util.ConversionProblem(
        file, reason, annotation=annotation, skipped=skipped))

  with util.open_tfrecord_writers(paths, overwrite=overwrite) as writers:
    for xml_path in xml_files:
      try:
        if not tf.io.gfile.exists(xml_path):
          raise ValueError('annotation file is missing')
        with tf.io.gfile.GFile(xml_path, 'rb') as f:
          root = ET.fromstring(f.read())
      except (ValueError, ET.ParseError) as e:
        summary.num_images_skipped += 1
        problem(xml_path, f'cannot read annotation XML: {e}', skipped='image')
        continue
      objects = root.findall('object')
      filename = _text(root, 'filename')
      if not filename:
        summary.num_images_skipped += 1
        summary.num_annotations_skipped += len(objects)
        problem(xml_path, 'no <filename>', skipped='image')
        continue
      image_path = _image_path(image_dir, filename, xml_path)
      try:
        encoded, fmt, height, width = util.load_image_file(image_path)
        size = root.find('size')
        if size is not None:
          for tag, actual in (('height', height), ('width', width)):
            value = _text(size, tag)
            if value is not None and value.isdigit() and int(value) != actual:
              raise util.ImageFileError(
                  f'image {tag} is {actual} but {xml_path} says {value}')
      except util.ImageFileError as e:
        summary.num_images_skipped += 1
        summary.num_annotations_skipped += len(objects)
        problem(image_path, str(e), skipped='image')
        continue

      boxes, labels, texts, difficult = [], [], [], []
      for index, obj in enumerate(objects):
        name = _text(obj, 'name')
        is_difficult = _text(obj, 'difficult') in ('1', 'true', 'True')
        if ignore_difficult_instances and is_difficult:
          summary.num_annotations_skipped += 1
          continue
        reason = None
        if name not in name_to_id:
          reason = f'unknown class {name!r} (not in {label_map_path})'
        else:
          try:
            bndbox = obj.find('bndbox')
            if bndbox is None:
              raise ValueError('missing <bndbox>')
            xmin, ymin, xmax, ymax = (_number(bndbox, t) for t in
                                      ('xmin', 'ymin', 'xmax', 'ymax'))
            if xmax <= xmin or ymax <= ymin:
              reason = (f'zero or negative box area: xmin={xmin}, '
                        f'xmax={xmax}, ymin={ymin}, ymax={ymax}')
            elif xmin < 0 or ymin < 0 or xmax > width or ymax > height:
              reason = (f'box xmin={xmin}, ymin={ymin}, xmax={xmax}, '
                        f'ymax={ymax} extends outside the {width}x{height} '
                        'image')
          except ValueError as e:
            reason = f'bad <bndbox>: {e}'
        if reason is not None:
          summary.num_annotations_skipped += 1
          problem(xml_path, reason, annotation=f'object {index} ({name})')
          continue
        boxes.append([ymin / height, xmin / width, ymax / height,
                      xmax / width])
        labels.append(name_to_id[name])
        texts.append(name)
        difficult.append(int(is_difficult))
      example = util.build_tf_example(
          encoded_image=encoded, image_format=fmt, height=height,
          width=width, boxes=np.reshape(boxes, [-1, 4]),
          class_labels=labels, class_texts=texts, filename=filename,
          source_id=filename, difficult=difficult,
          is_crowd=[0] * len(labels))
      writers[summary.num_images_written % len(writers)].write(
          example.SerializeToString())
      summary.num_images_written += 1
      summary.num_annotations_written += len(labels)
  summary.output_paths = paths
  summary.label_map_path = label_map_path
  return summary
