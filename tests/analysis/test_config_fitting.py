"""Tests of od_meta.analysis.config_fitting (the config side of
scripts/analyze_dataset.py)."""

import os

import numpy as np
import pytest

from od_meta.analysis import config_fitting as cf
from od_meta.protos import anchor_generator_pb2
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _model(name):
  return config_util.get_configs_from_pipeline_file(
      os.path.join(_REPO, 'configs', name))['model']


def _anchor_generator(text):
  message = anchor_generator_pb2.AnchorGenerator()
  config_util.parse_text_proto(text, message)
  return message


def test_field_paths_per_meta_architecture():
  ssd = _model('ssd_mobilenet_v2_digits.config')
  assert cf.anchor_generator_path(ssd) == (
      'model.ssd.anchor_generator.ssd_anchor_generator')
  assert cf.fields_to_change(ssd) == [
      'model.ssd.anchor_generator.ssd_anchor_generator.min_scale / '
      'max_scale / aspect_ratios',
      'model.ssd.image_resizer.fixed_shape_resizer']
  retina = _model('retinanet_mobilenet_v2_fpn_digits.config')
  assert cf.fields_to_change(retina)[0] == (
      'model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale '
      '/ aspect_ratios')
  frcnn = _model('faster_rcnn_mobilenet_v2_digits.config')
  assert cf.anchor_generator_path(frcnn) == (
      'model.faster_rcnn.first_stage_anchor_generator.grid_anchor_generator')
  centernet = _model('centernet_resnet18_digits.config')
  assert cf.anchor_generator_path(centernet) is None
  assert cf.anchor_generator_config(centernet) is None
  assert cf.fields_to_change(centernet) == [
      cf.image_resizer_path(centernet)]


def test_scale_input_size_fixed_and_keep_aspect_ratio():
  ssd = _model('ssd_mobilenet_v2_digits.config')
  assert cf.input_size(ssd) == (128, 128)
  change = cf.scale_input_size(ssd, 1.54, 32)  # 197.1 -> 224
  assert change == 'fixed_shape_resizer 128x128 -> 224x224'
  assert cf.input_size(ssd) == (224, 224)
  frcnn = _model('faster_rcnn_mobilenet_v2_digits.config')
  resizer = frcnn.faster_rcnn.image_resizer
  resizer.keep_aspect_ratio_resizer.min_dimension = 100
  resizer.keep_aspect_ratio_resizer.max_dimension = 150
  assert cf.scale_input_size(frcnn, 2.0, 32) == (
      'keep_aspect_ratio_resizer min/max dimension 100/150 -> 224/320')
  resizer.identity_resizer.SetInParent()
  assert cf.input_size(frcnn) == (0, 0)
  with pytest.raises(ValueError, match='identity_resizer has no target'):
    cf.scale_input_size(frcnn, 2.0, 32)


_SHAPES = np.array([[10.0, 5.0], [12.0, 8.0], [9.0, 7.0], [11.0, 9.0]] * 5)


def test_ssd_candidates_respect_anchor_density():
  # 4 levels of strides 8..64 on a 128 px input: level l's anchors (scale
  # x 128 px) must reach its stride, so min_scale >= 8 / 128 = 0.0625 and
  # max_scale >= 64 / 128 = 0.5 (linear scales between stay above the
  # doubling strides).
  generator = _anchor_generator(
      'ssd_anchor_generator { num_layers: 4 min_scale: 0.1 max_scale: 0.5 '
      'aspect_ratios: 1.0 aspect_ratios: 0.5 }')
  free = cf.anchor_candidates(generator, _SHAPES, (128, 128))
  dense = cf.anchor_candidates(generator, _SHAPES, (128, 128),
                               level_strides=[8, 16, 32, 64])
  assert free[0].description == "the config's own"
  assert free[0].config == generator
  assert len(dense) < len(free)
  for candidate in dense[1:]:
    g = candidate.config.ssd_anchor_generator
    assert g.min_scale * 128 >= 8 - 1e-3
    assert g.max_scale * 128 >= 64 - 1e-3
    assert not g.scales
  # The smallest allowed values are candidates themselves.
  assert any(abs(c.config.ssd_anchor_generator.min_scale - 0.063) < 1e-6
             for c in dense[1:])
  assert all(abs(c.config.ssd_anchor_generator.max_scale - 0.5) <= 1e-3
             for c in dense[1:])
  # k-means ratios (2 clusters of these tall shapes) join the config's.
  ratio_sets = {tuple(c.config.ssd_anchor_generator.aspect_ratios)
                for c in free[1:]}
  assert (1.0, 0.5) in ratio_sets and len(ratio_sets) == 2
  # Without strides (or with 0) the rule is off.
  assert len(cf.anchor_candidates(
      generator, _SHAPES, (128, 128), level_strides=[8, 16, 32, 64],
      min_anchor_size_in_strides=0.0)) > len(dense)


def test_multiscale_and_grid_candidates():
  multiscale = _anchor_generator(
      'multiscale_anchor_generator { min_level: 3 max_level: 5 '
      'anchor_scale: 4.0 aspect_ratios: 1.0 scales_per_octave: 1 }')
  candidates = cf.anchor_candidates(multiscale, _SHAPES, (128, 128),
                                    min_anchor_size_in_strides=2.0)
  scales = [c.config.multiscale_anchor_generator.anchor_scale
            for c in candidates[1:]]
  assert min(scales) == 2.0 and 1.5 not in scales
  grid = _anchor_generator(
      'grid_anchor_generator { height: 64 width: 64 scales: 0.5 scales: 1.0 '
      'aspect_ratios: 1.0 }')
  candidates = cf.anchor_candidates(grid, _SHAPES, (128, 128))
  assert candidates[0].config == grid
  # k-means sizes over the 64 px base: the shapes' sqrt areas are 7-11 px.
  kmeans_scales = {tuple(c.config.grid_anchor_generator.scales)
                   for c in candidates[1:]} - {(0.5, 1.0)}
  (scales,) = kmeans_scales
  assert all(0.1 < s < 0.18 for s in scales)
  # Stride 16: 0.1-0.18 x 64 px = 7-11 px anchors are too sparse.
  dense = cf.anchor_candidates(grid, _SHAPES, (128, 128), level_strides=[16])
  assert all(tuple(c.config.grid_anchor_generator.scales) == (0.5, 1.0)
             for c in dense)


def test_unsearched_kind_raises():
  with pytest.raises(ValueError, match='is not searched'):
    cf.anchor_candidates(anchor_generator_pb2.AnchorGenerator(), _SHAPES,
                         (64, 64))


def test_proposal_header_is_a_comment_block():
  header = cf.proposal_header(
      'configs/a.config', ['data/x.tfrecord'], ['model.ssd.x: 1 -> 2'],
      {'matched_share': 0.1, 'mean_best_iou': 0.3},
      {'matched_share': 0.8, 'mean_best_iou': 0.6, 'num_boxes': 10})
  lines = header.rstrip('\n').splitlines()
  assert all(line.startswith('#') for line in lines)
  assert '#   * model.ssd.x: 1 -> 2' in lines
  assert '#   before 0.100 (mean best anchor IoU 0.300), after 0.800 (mean ' \
         'best anchor IoU 0.600).' in lines
  assert header.endswith('\n\n')
