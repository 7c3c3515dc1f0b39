"""Drawing boxes, labels, scores and keypoints on images (numpy + PIL).

Pure numpy / Pillow, outside the graph: the training loop converts the
uint8 results to summaries with `tf.summary.image`. Mirrors the TF Object
Detection API's `utils/visualization_utils.py` (labels 'name: 87%', one color
per class, side-by-side detections | groundtruth evaluation images), with
PIL.ImageDraw instead of its TF py_func wrappers.

Coordinate frame: boxes are float `[ymin, xmin, ymax, xmax]` NORMALIZED to
[0, 1] of the image being drawn on; keypoints are normalized (y, x).
"""

import functools

import numpy as np
from PIL import Image
from PIL import ImageColor
from PIL import ImageDraw
from PIL import ImageFont

from od_meta.core import standard_fields as fields

# Class colors (a subset of the TF OD API's STANDARD_COLORS, chosen to be
# distinguishable on natural images); color = STANDARD_COLORS[id % len].
STANDARD_COLORS = (
    'AliceBlue', 'Chartreuse', 'Aqua', 'Aquamarine', 'Azure', 'Beige',
    'Bisque', 'BlanchedAlmond', 'BlueViolet', 'BurlyWood', 'CadetBlue',
    'AntiqueWhite', 'Chocolate', 'Coral', 'CornflowerBlue', 'Cornsilk',
    'Crimson', 'Cyan', 'DarkCyan', 'DarkGoldenRod', 'DarkGrey', 'DarkKhaki',
    'DarkOrange', 'DarkOrchid', 'DarkSalmon', 'DarkSeaGreen',
    'DarkTurquoise', 'DarkViolet', 'DeepPink', 'DeepSkyBlue', 'DodgerBlue',
    'FireBrick', 'FloralWhite', 'ForestGreen', 'Fuchsia', 'Gainsboro',
    'GhostWhite', 'Gold', 'GoldenRod', 'Salmon', 'Tan', 'HoneyDew', 'HotPink',
    'IndianRed', 'Ivory', 'Khaki', 'Lavender', 'LavenderBlush', 'LawnGreen',
    'LemonChiffon', 'LightBlue', 'LightCoral', 'LightCyan', 'LightGreen',
    'LightPink', 'LightSalmon', 'LightSeaGreen', 'LightSkyBlue',
    'LightSlateGray', 'LightSteelBlue', 'LightYellow', 'Lime', 'LimeGreen',
    'Linen', 'Magenta', 'MediumAquaMarine', 'MediumOrchid', 'MediumPurple',
    'MediumSeaGreen', 'MediumSlateBlue', 'MediumSpringGreen',
    'MediumTurquoise', 'MediumVioletRed', 'MintCream', 'MistyRose',
    'Moccasin', 'NavajoWhite', 'OldLace', 'Olive', 'OliveDrab', 'Orange',
    'OrangeRed', 'Orchid', 'PaleGoldenRod', 'PaleGreen', 'PaleTurquoise',
    'PaleVioletRed', 'PapayaWhip', 'PeachPuff', 'Peru', 'Pink', 'Plum',
    'PowderBlue', 'Purple', 'Red', 'RosyBrown', 'RoyalBlue', 'SaddleBrown',
    'Green', 'SandyBrown', 'SeaGreen', 'SeaShell', 'Sienna', 'Silver',
    'SkyBlue', 'SlateBlue', 'SlateGray', 'SlateGrey', 'Snow', 'SpringGreen',
    'SteelBlue', 'GreenYellow', 'Teal', 'Thistle', 'Tomato', 'Turquoise',
    'Violet', 'Wheat', 'White', 'WhiteSmoke', 'Yellow', 'YellowGreen')


@functools.lru_cache(maxsize=None)
def _font():
  return ImageFont.load_default()


def _to_rgb(color):
  return ImageColor.getrgb(color) if isinstance(color, str) else tuple(color)


def _as_uint8_image(image, name='image'):
  """uint8 [H, W, 3] copy of `image` ([H, W], [H, W, 1] or [H, W, 3])."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3 or image.shape[2] not in (1, 3):
    raise ValueError(f'{name} must have shape [H, W, 3] (or [H, W, 1]), got '
                     f'{image.shape}')
  if image.dtype != np.uint8:
    image = np.clip(np.nan_to_num(image.astype(np.float64)), 0, 255)
    image = np.round(image).astype(np.uint8)
  if image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  return np.array(image, dtype=np.uint8, copy=True)


def _label_text(class_id, score, category_index, skip_labels, skip_scores):
  parts = []
  if not skip_labels:
    category = category_index.get(int(class_id)) if category_index else None
    parts.append(str(category['name']) if category and 'name' in category
                 else 'N/A')
  if score is not None and not skip_scores:
    parts.append(f'{int(round(100 * score))}%')
  return ': '.join(parts)


def _draw_label(draw, text, left, top, bottom_limit, color):
  """Draws `text` on a filled box above (or, at the top edge, below) `top`."""
  if not text:
    return
  font = _font()
  x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
  width, height = x1 - x0 + 4, y1 - y0 + 4
  if top - height >= 0:
    box_top = top - height
  else:
    box_top = min(top, max(bottom_limit - height, 0))
  draw.rectangle([left, box_top, left + width, box_top + height], fill=color)
  draw.text((left + 2 - x0, box_top + 2 - y0), text, fill='black', font=font)


def draw_bounding_boxes_on_image_array(image, boxes, classes, scores,
                                       category_index, min_score_thresh=0.3,
                                       max_boxes=20, keypoints=None,
                                       color=None, line_thickness=2,
                                       skip_scores=False, skip_labels=False,
                                       keypoint_radius=2, keypoint_edges=None):
  """Draws boxes with 'name: score%' labels (and keypoints) on an image.

  Boxes are drawn in decreasing score order; at most `max_boxes` boxes with
  score >= `min_score_thresh` are drawn (all boxes, in the given order, when
  `scores` is None, e.g. for groundtruth). Boxes are clipped to the image.

  Args:
    image: uint8 [H, W, 3] (also [H, W] / [H, W, 1]; other dtypes are clipped
      to [0, 255] and cast). Not modified.
    boxes: float [N, 4] normalized [ymin, xmin, ymax, xmax] (N may be 0);
      rows with non-finite values are skipped.
    classes: int [N] keys of `category_index` (the caller picks 0-based or
      label-map ids; they only need to match `category_index`). Ids missing
      from `category_index` are labeled 'N/A'.
    scores: float [N] or None.
    category_index: dict id -> {'id': id, 'name': str} (TF OD API style), or
      None (labels 'N/A').
    min_score_thresh: boxes with a smaller score are not drawn.
    max_boxes: the most boxes drawn.
    keypoints: optional float [N, K, 2] normalized (y, x); NaN keypoints are
      skipped; drawn for the boxes that are drawn.
    color: a PIL color name or RGB tuple for every box; default: one color per
      class id (`STANDARD_COLORS[id % len]`).
    line_thickness: box outline width in pixels.
    skip_scores: if True, labels hold only the class name.
    skip_labels: if True, labels hold only the score.
    keypoint_radius: keypoint dot radius in pixels.
    keypoint_edges: optional list of (start, end) keypoint indices (0-based)
      joined by a line within each instance (a skeleton; TF OD API
      `eval_config.keypoint_edge`); edges with a non-finite end are skipped.

  Returns:
    uint8 [H, W, 3], a new array.

  Raises:
    ValueError: if the image or the array shapes are malformed.
  """
  image = _as_uint8_image(image)
  height, width = image.shape[:2]
  boxes = np.asarray(boxes, dtype=np.float64).reshape([-1, 4]) if np.size(
      boxes) else np.zeros([0, 4])
  num = boxes.shape[0]
  classes = np.asarray(classes).reshape([-1])
  if classes.shape[0] != num:
    raise ValueError(f'classes has {classes.shape[0]} entries for {num} boxes')
  if scores is not None:
    scores = np.asarray(scores, dtype=np.float64).reshape([-1])
    if scores.shape[0] != num:
      raise ValueError(f'scores has {scores.shape[0]} entries for {num} boxes')
  if keypoints is not None:
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if num == 0:
      keypoints = keypoints.reshape([0, 0, 2])
    if keypoints.ndim != 3 or keypoints.shape[0] != num or (
        keypoints.shape[2] != 2):
      raise ValueError(f'keypoints must have shape [{num}, K, 2], got '
                       f'{keypoints.shape}')
  edges = [(int(a), int(b)) for a, b in (keypoint_edges or [])]
  if edges and keypoints is not None and num:
    bad = [e for e in edges if not all(0 <= k < keypoints.shape[1] for k in e)]
    if bad:
      raise ValueError(f'keypoint edges {bad} refer to keypoints outside '
                       f'0..{keypoints.shape[1] - 1}')

  valid = np.all(np.isfinite(boxes), axis=1)
  if scores is not None:
    valid &= np.isfinite(scores) & (scores >= min_score_thresh)
    order = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf),
                       kind='stable')
  else:
    order = np.arange(num)
  order = [i for i in order if valid[i]][:max(int(max_boxes), 0)]
  if not order:
    return image

  pil_image = Image.fromarray(image)
  draw = ImageDraw.Draw(pil_image)
  scale = np.array([height, width, height, width], np.float64)
  for i in order:
    class_id = int(classes[i])
    box_color = (_to_rgb(color) if color is not None else
                 _to_rgb(STANDARD_COLORS[class_id % len(STANDARD_COLORS)]))
    ymin, xmin, ymax, xmax = np.clip(boxes[i] * scale, 0,
                                     [height - 1, width - 1] * 2)
    if ymax < ymin or xmax < xmin:
      continue
    draw.rectangle([xmin, ymin, xmax, ymax], outline=box_color,
                   width=max(int(line_thickness), 1))
    text = _label_text(class_id, None if scores is None else scores[i],
                       category_index, skip_labels, skip_scores)
    _draw_label(draw, text, xmin, ymin, height, box_color)
    if keypoints is not None:
      for a, b in edges:
        (ya, xa), (yb, xb) = keypoints[i][a], keypoints[i][b]
        if np.all(np.isfinite([ya, xa, yb, xb])):
          draw.line([xa * width, ya * height, xb * width, yb * height],
                    fill=box_color, width=max(int(line_thickness), 1))
      for y, x in keypoints[i]:
        if not (np.isfinite(y) and np.isfinite(x)):
          continue
        py, px = y * height, x * width
        draw.ellipse([px - keypoint_radius, py - keypoint_radius,
                      px + keypoint_radius, py + keypoint_radius],
                     fill=box_color, outline=box_color)
  return np.asarray(pil_image, dtype=np.uint8).copy()


def draw_side_by_side_image_arrays(image, detection_boxes, detection_classes,
                                   detection_scores, groundtruth_boxes,
                                   groundtruth_classes, category_index,
                                   detection_keypoints=None,
                                   groundtruth_keypoints=None,
                                   min_score_thresh=0.2, max_boxes=20,
                                   line_thickness=2, keypoint_edges=None):
  """Detections (left) and groundtruth (right) of one image, side by side.

  Args:
    image: uint8 [H, W, 3].
    detection_boxes: float [D, 4] normalized yxyx.
    detection_classes: int [D], keys of `category_index`.
    detection_scores: float [D].
    groundtruth_boxes: float [M, 4] normalized yxyx.
    groundtruth_classes: int [M], keys of `category_index`.
    category_index: dict id -> {'id', 'name'}.
    detection_keypoints: optional float [D, K, 2] normalized (y, x).
    groundtruth_keypoints: optional float [M, K, 2] normalized (y, x).
    min_score_thresh: detections below it are not drawn.
    max_boxes: the most boxes drawn on each side.
    line_thickness: box outline width in pixels.
    keypoint_edges: optional (start, end) keypoint index pairs drawn as lines.

  Returns:
    uint8 [H, 2W, 3]: detections with scores on the left, every groundtruth
    box (no scores) on the right, as the TF OD API's evaluation images.

  Raises:
    ValueError: if shapes are malformed.
  """
  left = draw_bounding_boxes_on_image_array(
      image, detection_boxes, detection_classes, detection_scores,
      category_index, min_score_thresh=min_score_thresh, max_boxes=max_boxes,
      keypoints=detection_keypoints, line_thickness=line_thickness,
      keypoint_edges=keypoint_edges)
  right = draw_bounding_boxes_on_image_array(
      image, groundtruth_boxes, groundtruth_classes, None, category_index,
      max_boxes=max_boxes, keypoints=groundtruth_keypoints,
      line_thickness=line_thickness, keypoint_edges=keypoint_edges)
  return np.concatenate([left, right], axis=1)


def draw_side_by_side_evaluation_image(eval_dict, category_index,
                                       image_index=0, label_id_offset=1,
                                       min_score_thresh=0.2, max_boxes=20,
                                       line_thickness=2, keypoint_edges=None):
  """Side-by-side evaluation image of one image of an od_meta eval dict.

  The image is `original_image` (cropped to `original_image_spatial_shape`
  when given, since a batch pads to its largest image) or else `image`
  (cropped to `true_image_shape` when given, the valid window of a padded
  batch). Boxes are normalized to that window, per od_meta's convention.

  Args:
    eval_dict: dict of numpy arrays (or eager tensors) with standard_fields
      keys, batched ([B, ...]) or for one image (image of rank 3):
      'original_image' or 'image' ([B,] H, W, 3), 'detection_boxes'
      ([B,] D, 4), 'detection_scores', 'detection_classes' (0-based),
      optional 'num_detections', 'groundtruth_boxes' ([B,] M, 4),
      'groundtruth_classes' (0-based), optional 'num_groundtruth_boxes',
      'detection_keypoints', 'groundtruth_keypoints',
      'original_image_spatial_shape', 'true_image_shape'.
    category_index: dict label-map id -> {'id', 'name'}.
    image_index: which image of the batch.
    label_id_offset: added to the 0-based classes to get `category_index`
      keys (1 for label-map ids; 0 if `category_index` is 0-based).
    min_score_thresh: detections below it are not drawn.
    max_boxes: the most boxes drawn on each side.
    line_thickness: box outline width in pixels.
    keypoint_edges: optional (start, end) keypoint index pairs drawn as lines.

  Returns:
    uint8 [H, 2W, 3].

  Raises:
    ValueError: if a required key is missing or shapes are malformed.
  """
  inp, det = fields.InputDataFields, fields.DetectionResultFields
  if inp.original_image in eval_dict:
    image_key, shape_key = inp.original_image, inp.original_image_spatial_shape
  elif inp.image in eval_dict:
    image_key, shape_key = inp.image, inp.true_image_shape
  else:
    raise ValueError("eval_dict needs 'original_image' or 'image'")
  for key in (det.detection_boxes, det.detection_scores,
              det.detection_classes, inp.groundtruth_boxes,
              inp.groundtruth_classes):
    if key not in eval_dict:
      raise ValueError(f'eval_dict is missing {key!r}')
  batched = np.asarray(eval_dict[image_key]).ndim == 4

  def get(key, default=None):
    if key not in eval_dict or eval_dict[key] is None:
      return default
    value = np.asarray(eval_dict[key])
    return value[image_index] if batched else value

  image = get(image_key)
  window = get(shape_key)
  if window is not None:
    window = np.asarray(window).reshape([-1]).astype(int)
    image = image[:window[0], :window[1]]

  def rows(boxes_key, num_key, *keys):
    values = [get(k) for k in (boxes_key,) + keys]
    num = get(num_key)
    if num is not None:
      n = int(np.asarray(num).reshape([]))
      values = [None if v is None else v[:n] for v in values]
    return values

  det_boxes, det_scores, det_classes, det_kp = rows(
      det.detection_boxes, det.num_detections, det.detection_scores,
      det.detection_classes, det.detection_keypoints)
  gt_boxes, gt_classes, gt_kp = rows(
      inp.groundtruth_boxes, inp.num_groundtruth_boxes,
      inp.groundtruth_classes, inp.groundtruth_keypoints)
  if gt_classes.ndim == 2:  # one-hot.
    gt_classes = np.argmax(gt_classes, axis=-1)
  det_classes = np.round(np.asarray(det_classes, np.float64)).astype(
      np.int64) + label_id_offset
  gt_classes = np.asarray(gt_classes).astype(np.int64) + label_id_offset
  return draw_side_by_side_image_arrays(
      image, det_boxes, det_classes, det_scores, gt_boxes, gt_classes,
      category_index, detection_keypoints=det_kp,
      groundtruth_keypoints=gt_kp, min_score_thresh=min_score_thresh,
      max_boxes=max_boxes, line_thickness=line_thickness,
      keypoint_edges=keypoint_edges)
