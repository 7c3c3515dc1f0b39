"""Converts COCO-format JSON (instances or person_keypoints) to TFRecords.

Output: TF OD API tf.Examples (see `tf_example_util.build_tf_example`), the
same keys as the TF OD API's `dataset_tools/create_coco_tf_record.py`:
  * boxes: COCO `bbox = [x, y, w, h]` in pixels becomes normalized
    `[y / H, x / W, (y + h) / H, (x + w) / W]`;
  * classes: COCO category ids (sparse, e.g. 1..90) are mapped once to
    contiguous 1-based label-map ids in increasing category-id order, and the
    label map is written next to the output (`<output_path>_label_map.pbtxt`
    unless `label_map_path` is given);
  * keypoints (`include_keypoints=True`): COCO `[x1, y1, v1, ...]` in pixels
    becomes normalized (y / H, x / W) with visibility v (0 not labelled,
    1 labelled occluded, 2 visible);
  * image/source_id is the COCO image id, image/object/area COCO's `area`
    (pixels; the box area when absent), image/object/is_crowd `iscrowd`.

Validation, each problem reported with the file and reason:
  * per annotation (the annotation is left out, the image is kept, as in the
    TF OD API converter): unknown category, missing/non-finite bbox, zero or
    negative width/height or area, a box outside the image (no clipping),
    malformed keypoints or a labelled keypoint outside the image, an
    annotation whose image_id is not in `images`;
  * per image (the image and its annotations are left out): missing,
    empty or undecodable image file, decoded size different from the JSON's
    width/height.
`on_error='skip'` (default) leaves out and reports; `'reject'` raises
`ConversionError` at the first problem (nothing is written: outputs go to
`.partial` files that are removed). Malformed annotations are never kept.
"""

import json
import math
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from od_meta.data import label_map_util
from od_meta.data import tf_example_util as util


def _is_number(v):
  return (isinstance(v, (int, float)) and not isinstance(v, bool)
          and math.isfinite(v))


def _load_json(path):
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'annotations file {path} does not exist')
  with tf.io.gfile.GFile(path, 'r') as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise util.ConversionError(f'{path}: not valid JSON ({e})') from None
  if not isinstance(data, dict):
    raise util.ConversionError(f'{path}: expected a JSON object at top level')
  for key in ('images', 'categories'):
    if not isinstance(data.get(key), list):
      raise util.ConversionError(f'{path}: missing or non-list {key!r}')
  if not isinstance(data.get('annotations', []), list):
    raise util.ConversionError(f"{path}: 'annotations' must be a list")
  return data


def _categories(data, path, include_keypoints):
  """Returns (sorted categories, {coco id: label id}, K, keypoint names)."""
  cats = data['categories']
  if not cats:
    raise util.ConversionError(f'{path}: no categories')
  seen_ids, seen_names = set(), set()
  for cat in cats:
    if not isinstance(cat, dict) or not isinstance(cat.get('id'), int) or (
        not isinstance(cat.get('name'), str) or not cat['name']):
      raise util.ConversionError(
          f"{path}: each category needs an integer 'id' and a non-empty "
          f"'name', got {cat!r}")
    if cat['id'] in seen_ids:
      raise util.ConversionError(f"{path}: duplicate category id {cat['id']}")
    if cat['name'] in seen_names:
      raise util.ConversionError(
          f"{path}: duplicate category name {cat['name']!r}")
    seen_ids.add(cat['id'])
    seen_names.add(cat['name'])
  cats = sorted(cats, key=lambda c: c['id'])
  id_map = {cat['id']: i + 1 for i, cat in enumerate(cats)}
  num_keypoints, keypoint_names = 0, None
  if include_keypoints:
    with_kpts = [c for c in cats if c.get('keypoints')]
    if not with_kpts:
      raise util.ConversionError(
          f"{path}: include_keypoints is set but no category lists "
          "'keypoints' (use a person_keypoints file)")
    keypoint_names = list(with_kpts[0]['keypoints'])
    num_keypoints = len(keypoint_names)
    for c in with_kpts:
      if len(c['keypoints']) != num_keypoints:
        raise util.ConversionError(
            f"{path}: categories {with_kpts[0]['name']!r} and {c['name']!r} "
            'have different numbers of keypoints; a record holds one K')
  return cats, id_map, num_keypoints, keypoint_names


def _check_annotation(ann, width, height, id_map, kpt_cats, num_keypoints):
  """Returns (reason or None, parsed fields)."""
  if not isinstance(ann, dict):
    return 'annotation is not a JSON object', None
  cat = ann.get('category_id')
  if cat not in id_map:
    return f'unknown category_id {cat!r}', None
  bbox = ann.get('bbox')
  if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or
      not all(_is_number(v) for v in bbox)):
    return f'bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}', None
  x, y, w, h = (float(v) for v in bbox)
  if w <= 0 or h <= 0:
    return f'zero or negative box area: bbox {list(bbox)} (w={w}, h={h})', None
  if x < 0 or y < 0 or x + w > width or y + h > height:
    return (f'box [x, y, w, h] = {list(bbox)} extends outside the '
            f'{width}x{height} image'), None
  area = ann.get('area', w * h)
  if not _is_number(area) or area <= 0:
    return f'zero, negative or invalid area {area!r}', None
  iscrowd = ann.get('iscrowd', 0)
  if iscrowd not in (0, 1, True, False):
    return f'iscrowd must be 0 or 1, got {iscrowd!r}', None
  fields = {
      'box': [y / height, x / width, (y + h) / height, (x + w) / width],
      'label': id_map[cat], 'area': float(area), 'is_crowd': int(iscrowd),
  }
  if num_keypoints:
    kpts = np.zeros([num_keypoints, 2], np.float64)
    vis = np.zeros([num_keypoints], np.int64)
    raw = ann.get('keypoints')
    if cat in kpt_cats and raw is not None:
      if (not isinstance(raw, list) or len(raw) != 3 * num_keypoints or
          not all(_is_number(v) for v in raw)):
        return (f'keypoints must be {3 * num_keypoints} finite numbers '
                f'[x, y, v] * {num_keypoints}'), None
      raw = np.asarray(raw, np.float64).reshape(num_keypoints, 3)
      if not np.all(np.isin(raw[:, 2], (0, 1, 2))):
        return 'keypoint visibilities must be 0, 1 or 2', None
      vis = raw[:, 2].astype(np.int64)
      lab = vis > 0
      if np.any(lab & ((raw[:, 0] < 0) | (raw[:, 0] > width) |
                       (raw[:, 1] < 0) | (raw[:, 1] > height))):
        bad = int(np.argmax(lab & ((raw[:, 0] < 0) | (raw[:, 0] > width) |
                                   (raw[:, 1] < 0) | (raw[:, 1] > height))))
        return (f'labelled keypoint {bad} at (x={raw[bad, 0]}, '
                f'y={raw[bad, 1]}) lies outside the {width}x{height} '
                'image'), None
      kpts = np.where(lab[:, None],
                      np.stack([raw[:, 1] / height, raw[:, 0] / width], -1),
                      0.0)
    fields['keypoints'] = kpts
    fields['visibility'] = vis
  return None, fields


def convert_coco(annotations_file: str, image_dir: str, output_path: str, *,
                 num_shards: int = 1, on_error: str = 'skip',
                 include_keypoints: bool = False,
                 label_map_path: Optional[str] = None,
                 overwrite: bool = False) -> util.ConversionSummary:
  """Converts a COCO JSON file and its images to TFRecord file(s).

  Args:
    annotations_file: COCO JSON (`instances_*.json` or
      `person_keypoints_*.json`).
    image_dir: directory holding the images' `file_name`s.
    output_path: output TFRecord path; with num_shards > 1 the files are
      `<output_path>-0000i-of-0000n` (TF OD API naming).
    num_shards: number of output shards (>= 1).
    on_error: 'skip' (report and leave out) or 'reject' (raise).
    include_keypoints: write image/object/keypoint/* (K from the categories'
      'keypoints' lists; objects of categories without keypoints get K
      unlabelled keypoints).
    label_map_path: where to write the label map (default
      `<output_path>_label_map.pbtxt`).
    overwrite: replace existing output files (default: refuse).

  Returns:
    `tf_example_util.ConversionSummary` (label_map maps COCO category id to
    label-map id).

  Raises:
    FileNotFoundError: annotations file or image_dir missing.
    FileExistsError: an output exists and overwrite is False.
    ConversionError: malformed JSON structure (duplicate category or image
      ids, ...), or any problem when on_error='reject'.
    ValueError: bad num_shards or on_error.
  """
  util.check_on_error(on_error)
  if not tf.io.gfile.isdir(image_dir):
    raise FileNotFoundError(f'image_dir {image_dir} does not exist')
  data = _load_json(annotations_file)
  cats, id_map, num_keypoints, keypoint_names = _categories(
      data, annotations_file, include_keypoints)
  kpt_cats = {c['id'] for c in cats if c.get('keypoints')}
  label_map_path = label_map_path or output_path + '_label_map.pbtxt'
  paths = util.output_tfrecord_paths(output_path, num_shards)
  util.check_can_write(paths + [label_map_path], overwrite)

  summary = util.ConversionSummary()
  summary.label_map = dict(id_map)
  images = {}
  for image in data['images']:
    if not isinstance(image, dict) or 'id' not in image or not isinstance(
        image.get('file_name'), str):
      raise util.ConversionError(f"{annotations_file}: each image needs 'id' "
                                 f"and 'file_name', got {image!r}")
    if image['id'] in images:
      raise util.ConversionError(
          f"{annotations_file}: duplicate image id {image['id']!r}")
    images[image['id']] = image
  per_image = {image_id: [] for image_id in images}
  for ann in data.get('annotations', []):
    image_id = ann.get('image_id') if isinstance(ann, dict) else None
    if image_id not in per_image:
      summary.num_annotations_skipped += 1
      util.report_problem(summary, on_error, util.ConversionProblem(
          annotations_file, f'image_id {image_id!r} is not in images',
          annotation=ann.get('id') if isinstance(ann, dict) else None))
      continue
    per_image[image_id].append(ann)

  with util.open_tfrecord_writers(paths, overwrite=overwrite) as writers:
    for image_id, image in images.items():
      anns = per_image[image_id]
      image_path = os.path.join(image_dir, image['file_name'])
      try:
        encoded, fmt, height, width = util.load_image_file(image_path)
        for key, actual in (('height', height), ('width', width)):
          if key in image and image[key] != actual:
            raise util.ImageFileError(
                f'image {key} is {actual} but the annotations file says '
                f'{image[key]!r}')
      except util.ImageFileError as e:
        summary.num_images_skipped += 1
        summary.num_annotations_skipped += len(anns)
        util.report_problem(summary, on_error, util.ConversionProblem(
            image_path, str(e), skipped='image'))
        continue
      rows = []
      for ann in anns:
        reason, fields = _check_annotation(ann, width, height, id_map,
                                           kpt_cats, num_keypoints)
        if reason is not None:
          summary.num_annotations_skipped += 1
          util.report_problem(summary, on_error, util.ConversionProblem(
              image_path, reason, annotation=ann.get('id')))
          continue
        rows.append(fields)
      kwargs = {}
      if num_keypoints:
        kwargs['keypoints'] = np.reshape(
            [r['keypoints'] for r in rows], [len(rows), num_keypoints, 2])
        kwargs['keypoint_visibilities'] = np.reshape(
            [r['visibility'] for r in rows], [len(rows), num_keypoints])
      example = util.build_tf_example(
          encoded_image=encoded, image_format=fmt, height=height,
          width=width, boxes=np.reshape([r['box'] for r in rows], [-1, 4]),
          class_labels=[r['label'] for r in rows],
          class_texts=[cats[r['label'] - 1]['name'] for r in rows],
          filename=image['file_name'], source_id=str(image_id),
          is_crowd=[r['is_crowd'] for r in rows],
          area=[r['area'] for r in rows], **kwargs)
      writers[summary.num_images_written % len(writers)].write(
          example.SerializeToString())
      summary.num_images_written += 1
      summary.num_annotations_written += len(rows)

  keypoints = None
  if num_keypoints:
    keypoints = {c['name']: keypoint_names for c in cats
                 if c['id'] in kpt_cats}
  label_map_util.write_label_map(label_map_path, [c['name'] for c in cats],
                                 keypoints=keypoints, overwrite=overwrite)
  summary.output_paths = paths
  summary.label_map_path = label_map_path
  return summary
