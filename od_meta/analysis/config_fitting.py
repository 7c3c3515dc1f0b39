"""Fits a pipeline config's input size and anchors to a dataset.

The config side of `scripts/analyze_dataset.py`: which fields hold the
input size and the anchors of each meta-architecture, the candidate anchor
generators to search (built from the data's box shapes by
`anchor_fitting`), and the proposed pipeline config written with a comment
saying what changed and why.

Searched fields:
  * `ssd.anchor_generator.ssd_anchor_generator`: `min_scale`, `max_scale`
    (linear scales over `num_layers`, Liu et al. 2016 Eq. 4) and
    `aspect_ratios` (the config's, or the IoU k-means ones);
  * `ssd.anchor_generator.multiscale_anchor_generator` (RetinaNet):
    `anchor_scale` and `aspect_ratios`;
  * `faster_rcnn.first_stage_anchor_generator.grid_anchor_generator`:
    `scales` (k-means sizes over the base anchor size) and `aspect_ratios`.
Anchor-free detectors (CenterNet, TTFNet, FCOS) get only an input size.

Anchor density: a candidate whose anchors on some level are smaller than
`min_anchor_size_in_strides` x that level's stride is not searched. Such
anchors do not tile their level (gaps between neighbours; S3FD, Zhang et
al. 2017, Sec. 3.1, "equal-proportion interval principle", sets the anchor
scale to 4x the stride), and the matched share rewards them anyway: small
anchors on coarse levels match small boxes at IoU 0.5 from features too
coarse to localize them. Measured on the small digits (README): the
unconstrained search at 128 px raised the matched share 0.13 -> 0.32 and
lowered mAP@.50IOU 0.80 -> 0.67.
"""

import copy
import inspect
import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from od_meta.analysis import anchor_fitting
from od_meta.anchor_generators import multiple_grid_anchor_generator
from od_meta.protos import anchor_generator_pb2
from od_meta.utils import config_util

_ANCHOR_FIELDS = {
    'ssd': 'anchor_generator',
    'faster_rcnn': 'first_stage_anchor_generator',
}


def anchor_generator_path(model_config) -> Optional[str]:
  """Dotted path of the model's anchor generator ('model.ssd.anchor_generator.
  ssd_anchor_generator'), or None for anchor-free meta-architectures."""
  arch = config_util.get_meta_architecture(model_config)
  field = _ANCHOR_FIELDS.get(arch)
  if field is None:
    return None
  generator = getattr(getattr(model_config, arch), field)
  kind = generator.WhichOneof('anchor_generator_oneof')
  path = f'model.{arch}.{field}'
  return f'{path}.{kind}' if kind else path


def anchor_generator_config(model_config):
  """The model's `AnchorGenerator` message, or None (anchor-free)."""
  arch = config_util.get_meta_architecture(model_config)
  field = _ANCHOR_FIELDS.get(arch)
  if field is None:
    return None
  return getattr(getattr(model_config, arch), field)


def image_resizer_path(model_config) -> str:
  """Dotted path of the model's image resizer."""
  arch = config_util.get_meta_architecture(model_config)
  resizer = config_util.get_image_resizer_config(model_config)
  kind = resizer.WhichOneof('image_resizer_oneof')
  return f'model.{arch}.image_resizer' + (f'.{kind}' if kind else '')


def fields_to_change(model_config) -> List[str]:
  """The fields a user changes when the detector cannot match the data's
  boxes: the anchor sizes / shapes and the input size."""
  out = []
  path = anchor_generator_path(model_config)
  if path is not None:
    if path.endswith('ssd_anchor_generator'):
      out.append(f'{path}.min_scale / max_scale / aspect_ratios')
    elif path.endswith('multiscale_anchor_generator'):
      out.append(f'{path}.anchor_scale / aspect_ratios')
    elif path.endswith('grid_anchor_generator'):
      out.append(f'{path}.scales / aspect_ratios')
    else:
      out.append(path)
  out.append(image_resizer_path(model_config))
  return out


def input_size(model_config) -> Tuple[int, int]:
  """(height, width) the resizer targets: fixed_shape_resizer's size,
  keep_aspect_ratio_resizer's (min_dimension, max_dimension); (0, 0) for
  resizers without one."""
  resizer = config_util.get_image_resizer_config(model_config)
  kind = resizer.WhichOneof('image_resizer_oneof')
  if kind == 'fixed_shape_resizer':
    return (resizer.fixed_shape_resizer.height,
            resizer.fixed_shape_resizer.width)
  if kind == 'keep_aspect_ratio_resizer':
    return (resizer.keep_aspect_ratio_resizer.min_dimension,
            resizer.keep_aspect_ratio_resizer.max_dimension)
  return (0, 0)


def scale_input_size(model_config, scale: float, multiple: int) -> str:
  """Multiplies the resizer's size by `scale` (each side rounded up to
  `multiple`) in place; returns a description of the change.

  Raises:
    ValueError: for resizers without a target size (identity,
      pad_to_multiple, conditional_shape).
  """
  resizer = config_util.get_image_resizer_config(model_config)
  kind = resizer.WhichOneof('image_resizer_oneof')
  if kind == 'fixed_shape_resizer':
    r = resizer.fixed_shape_resizer
    old = f'{r.height}x{r.width}'
    r.height = anchor_fitting.round_up_to_multiple(r.height * scale, multiple)
    r.width = anchor_fitting.round_up_to_multiple(r.width * scale, multiple)
    return f'fixed_shape_resizer {old} -> {r.height}x{r.width}'
  if kind == 'keep_aspect_ratio_resizer':
    r = resizer.keep_aspect_ratio_resizer
    old = f'{r.min_dimension}/{r.max_dimension}'
    r.min_dimension = anchor_fitting.round_up_to_multiple(
        r.min_dimension * scale, multiple)
    r.max_dimension = anchor_fitting.round_up_to_multiple(
        r.max_dimension * scale, multiple)
    return (f'keep_aspect_ratio_resizer min/max dimension {old} -> '
            f'{r.min_dimension}/{r.max_dimension}')
  raise ValueError(f'{image_resizer_path(model_config)} has no target size '
                   'to scale')


class AnchorCandidate(NamedTuple):
  """One anchor generator to try: its message and a short description."""
  config: anchor_generator_pb2.AnchorGenerator
  description: str

  def __str__(self):
    return self.description


def _fmt(values):
  return '[' + ', '.join(f'{v:g}' for v in values) + ']'


def anchor_candidates(generator_config, box_shapes: np.ndarray,
                      input_hw: Tuple[int, int], *,
                      level_strides=None,
                      min_anchor_size_in_strides: float = 1.0,
                      kmeans_seed: int = 0) -> List[AnchorCandidate]:
  """Anchor generators to search for one config, from the data.

  Args:
    generator_config: the config's `AnchorGenerator` message (unchanged).
    box_shapes: float `[B, 2]` box (height, width) at the input, pixels.
    input_hw: the padded input (height, width), pixels.
    level_strides: the stride of each anchor level, input pixels (from the
      model's `GroundtruthCoverage.level_strides`); None skips the density
      rule.
    min_anchor_size_in_strides: the density rule (module docstring): every
      level's anchors (sqrt area of the scale) at least this x its stride.
    kmeans_seed: seed of `anchor_fitting.iou_kmeans`.

  Returns:
    list of `AnchorCandidate`, the config's own first (kept even when it
    breaks the density rule, as the reference).

  Raises:
    ValueError: for an anchor generator kind that is not searched.
  """
  kind = generator_config.WhichOneof('anchor_generator_oneof')
  own = AnchorCandidate(copy.deepcopy(generator_config), 'the config\'s own')
  side = math.sqrt(input_hw[0] * input_hw[1])
  sizes = np.sqrt(box_shapes[:, 0] * box_shapes[:, 1])
  candidates = [own]

  if kind == 'ssd_anchor_generator':
    cfg = generator_config.ssd_anchor_generator
    ratio_sets = _aspect_ratio_sets(
        list(cfg.aspect_ratios) or list(inspect.signature(
            multiple_grid_anchor_generator.create_ssd_anchors).parameters[
                'aspect_ratios'].default), box_shapes, kmeans_seed)
    low = float(np.percentile(sizes, 5)) / side
    high = float(np.percentile(sizes, 95)) / side
    mins = anchor_fitting.geometric_candidates(
        low, (0.6, 0.8, 1.0, 1.25, 1.5, 2.0))
    maxs = anchor_fitting.geometric_candidates(
        high, (0.8, 1.0, 1.3, 1.6, 2.0, 2.5, 3.2, 4.0))
    strides = _known_strides(level_strides, cfg.num_layers)
    if strides:
      # The smallest scales the density rule allows on the finest and the
      # coarsest level (linear scales over levels whose strides double stay
      # above the rule in between once both ends do).
      mins = sorted(set(mins) | {_ceil3(min_anchor_size_in_strides *
                                        strides[0] / side)})
      maxs = sorted(set(maxs) | {_ceil3(min_anchor_size_in_strides *
                                        strides[-1] / side)})
    for ratios in ratio_sets:
      for min_scale in mins:
        for max_scale in maxs:
          if max_scale <= min_scale:
            continue
          scales = multiple_grid_anchor_generator.ssd_scales(
              cfg.num_layers, min_scale, max_scale)
          if not _dense_enough([s * side for s in scales], level_strides,
                               min_anchor_size_in_strides):
            continue
          new = copy.deepcopy(generator_config)
          g = new.ssd_anchor_generator
          g.min_scale, g.max_scale = min_scale, max_scale
          del g.scales[:]
          del g.aspect_ratios[:]
          g.aspect_ratios.extend(ratios)
          candidates.append(AnchorCandidate(
              new, f'min_scale {min_scale:g}, max_scale {max_scale:g}, '
              f'aspect_ratios {_fmt(ratios)}'))
    return candidates

  if kind == 'multiscale_anchor_generator':
    cfg = generator_config.multiscale_anchor_generator
    # [0.5, 1.0, 2.0]: the builder's default for an empty list.
    ratio_sets = _aspect_ratio_sets(
        list(cfg.aspect_ratios) or [0.5, 1.0, 2.0], box_shapes, kmeans_seed)
    for ratios in ratio_sets:
      for anchor_scale in (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0):
        # Level l's smallest anchor is anchor_scale x its stride.
        if anchor_scale < min_anchor_size_in_strides:
          continue
        new = copy.deepcopy(generator_config)
        g = new.multiscale_anchor_generator
        g.anchor_scale = anchor_scale
        del g.aspect_ratios[:]
        g.aspect_ratios.extend(ratios)
        candidates.append(AnchorCandidate(
            new, f'anchor_scale {anchor_scale:g}, aspect_ratios '
            f'{_fmt(ratios)}'))
    return candidates

  if kind == 'grid_anchor_generator':
    cfg = generator_config.grid_anchor_generator
    scales = list(cfg.scales) or [0.5, 1.0, 2.0]
    ratios = list(cfg.aspect_ratios) or [0.5, 1.0, 2.0]
    base = math.sqrt(cfg.height * cfg.width)
    k_s = min(len(scales), len(box_shapes))
    size_centroids = anchor_fitting.iou_kmeans(
        np.stack([sizes, sizes], axis=1), k_s, seed=kmeans_seed)
    kmeans_scales = sorted({round(float(c[0]) / base, 3)
                            for c in size_centroids})
    for s_set in (scales, kmeans_scales):
      for r_set in _aspect_ratio_sets(ratios, box_shapes, kmeans_seed):
        if s_set is scales and r_set is ratios:
          continue
        if not _dense_enough([min(s_set) * base], level_strides,
                             min_anchor_size_in_strides):
          continue
        new = copy.deepcopy(generator_config)
        g = new.grid_anchor_generator
        del g.scales[:]
        g.scales.extend(s_set)
        del g.aspect_ratios[:]
        g.aspect_ratios.extend(r_set)
        candidates.append(AnchorCandidate(
            new, f'scales {_fmt(s_set)}, aspect_ratios {_fmt(r_set)}'))
    return candidates

  raise ValueError(f'anchor generator {kind!r} is not searched')


def _ceil3(value):
  """A 3-decimal scale >= value (round(value + 0.0005, 3); exact multiples
  of 0.001 may gain 0.001), so that it still meets the rule."""
  return round(value + 5e-4, 3)


def _aspect_ratio_sets(current, box_shapes, kmeans_seed):
  """[the config's aspect ratios, the IoU k-means ones (as many, when they
  differ)]."""
  centroids = anchor_fitting.iou_kmeans(
      box_shapes, min(len(current), len(box_shapes)), seed=kmeans_seed)
  kmeans_ratios = anchor_fitting.aspect_ratios_from_shapes(centroids)
  if kmeans_ratios == sorted(current):
    return [current]
  return [current, kmeans_ratios]


def _known_strides(level_strides, num_levels):
  """The strides as floats when there is one finite stride per level, else
  None (the density rule is then not applied)."""
  if level_strides is None:
    return None
  strides = [float(v) for v in level_strides]
  if len(strides) != num_levels or not all(math.isfinite(v)
                                           for v in strides):
    return None
  return strides


def _dense_enough(anchor_sizes, level_strides, min_size_in_strides):
  """Whether each level's anchor size (pixels) reaches the density rule."""
  strides = _known_strides(level_strides, len(anchor_sizes))
  if strides is None:
    return True
  return all(size >= min_size_in_strides * stride - 1e-6
             for size, stride in zip(anchor_sizes, strides))


def set_anchor_generator(model_config, generator_config):
  """Replaces the model's anchor generator message in place."""
  anchor_generator_config(model_config).CopyFrom(generator_config)


def proposal_header(source_config_path: str, input_paths, changes: List[str],
                    before: Dict[str, float], after: Dict[str, float]) -> str:
  """The comment block written above a proposed config.

  Args:
    source_config_path: the config the proposal started from.
    input_paths: the records analyzed.
    changes: one line per changed field, with the reason.
    before, after: {'matched_share': ..., 'mean_best_iou': ...,
      'num_boxes': ...} of the original and the proposed config.
  """
  lines = [
      f'Proposed by scripts/analyze_dataset.py from {source_config_path}',
      f'for {", ".join(input_paths)}.',
      '',
      'What changed and why:',
  ]
  lines += [f'  * {c}' for c in changes] or ['  * nothing: the config '
                                             'already matches the data']
  lines += [
      '',
      f'Groundtruth boxes matched by the target assigner '
      f'({int(after.get("num_boxes", 0))} boxes):',
      f'  before {before["matched_share"]:.3f} (mean best anchor IoU '
      f'{before["mean_best_iou"]:.3f}), after {after["matched_share"]:.3f} '
      f'(mean best anchor IoU {after["mean_best_iou"]:.3f}).',
      'Everything else is the source config, re-printed without its '
      'comments.',
  ]
  return ''.join(f'# {line}'.rstrip() + '\n' for line in lines) + '\n'
