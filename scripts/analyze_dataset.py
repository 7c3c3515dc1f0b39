r"""Box statistics of a dataset, and a config fitted to it.

    python scripts/analyze_dataset.py --input_path=data/digits_small/train.tfrecord \
      [--label_map_path=data/digits_small/label_map.pbtxt] \
      [--pipeline_config_path=configs/ssd_mobilenet_v2_digits_small.config] \
      --output_dir=runs/analysis_small \
      [--output_config=configs/my_fitted.config] [--keep_input_size]

Without a config: per class and overall, the box width / height / area /
sqrt(area) / aspect-ratio distributions in source pixels, objects per image
and the COCO small / medium / large shares, printed and written to
`output_dir/dataset_analysis.json`, with PNG histograms beside it.

With `--pipeline_config_path`: the same at the config's input size, and the
share of groundtruth boxes that the config's target assigner can match
(anchors at the matcher's IoU threshold, forced matches not counted; FCOS /
ATSS / SAPD rules; heatmap peaks for CenterNet / TTFNet), per feature-map
level, measured on the config's own input pipeline over `--coverage_images`
images. With `--output_config`, also a proposal: an input size that lifts
the small objects to the finest feature level's stride (unless
`--keep_input_size`), and anchors from the data (IoU k-means aspect ratios,
a search over the anchor generator's scales), written as a ready config
whose header says what changed and why. An existing file is never
overwritten unless `--overwrite`.

Bad input (a missing or unreadable record file, a record without the TF OD
API keys, no boxes) prints one line naming the file and record and exits 2.
"""

import json
import math
import os
import sys

from absl import app
from absl import flags

flags.DEFINE_multi_string('input_path', [],
                          'TFRecord file or glob (repeatable); default the '
                          'config\'s train_input_reader input_path.')
flags.DEFINE_string('label_map_path', None,
                    'Label map for class names; default the config\'s.')
flags.DEFINE_string('pipeline_config_path', None,
                    'A pipeline config: adds input-size statistics, the '
                    'matched share and, with --output_config, a proposal.')
flags.DEFINE_string('output_dir', None,
                    'Directory for dataset_analysis.json and the PNGs.')
flags.DEFINE_string('output_config', None,
                    'Write the proposed pipeline config here.')
flags.DEFINE_bool('overwrite', False,
                  'Replace existing output files.')
flags.DEFINE_integer('max_images', None,
                     'Statistics over at most this many records.')
flags.DEFINE_integer('coverage_images', 512,
                     'Images run through the model for the matched share.')
flags.DEFINE_bool('keep_input_size', False,
                  'Propose anchors only, at the config\'s input size.')
flags.DEFINE_float('small_object_percentile', 10.0,
                   'Which percentile of sqrt(box area) the input size '
                   'proposal lifts.')
flags.DEFINE_float('min_object_size_in_strides', 2.0,
                   'Size that percentile should reach, in units of the '
                   'finest feature level\'s stride.')
flags.DEFINE_float('max_upscale', 1.0,
                   'Largest proposed input side over the source images\' '
                   '(median longer side): 1 never asks for more pixels than '
                   'the source has; upscaling still helps small objects '
                   '(Faster R-CNN resizes 640 px COCO images to 800) at '
                   'quadratic cost.')
flags.DEFINE_float('min_anchor_size_in_strides', 1.0,
                   'Anchor density: candidate anchors on every level are at '
                   'least this x the level\'s stride (S3FD\'s '
                   'equal-proportion interval principle); 0 disables.')
flags.DEFINE_integer('max_input_size', 1024,
                     'Never propose an input side above this, pixels.')
flags.DEFINE_integer('input_size_multiple', 32,
                     'Proposed input sides are multiples of this.')

FLAGS = flags.FLAGS
_JSON_NAME = 'dataset_analysis.json'


class UserError(Exception):
  """A problem with the user's input: one line, exit code 2."""


def _print_distribution_table(title, block):
  print(f'  {title}')
  print(f'    {"":14s} {"p5":>8s} {"p25":>8s} {"median":>8s} {"p75":>8s} '
        f'{"p95":>8s}')
  for name in ('height', 'width', 'sqrt_area', 'aspect_ratio'):
    d = block[name]
    print(f'    {name:14s} ' + ' '.join(f'{d[k]:8.2f}' for k in
                                       ('p5', 'p25', 'p50', 'p75', 'p95')))


def _class_names(label_map_path):
  from od_meta.data import label_map_util  # pylint: disable=g-import-not-at-top
  if not label_map_path:
    return {}
  try:
    mapping = label_map_util.get_label_map_dict(label_map_path)
  except (OSError, ValueError) as e:
    raise UserError(f'--label_map_path: {e}') from None
  return {v: k for k, v in mapping.items()}


def _probe(configs, input_paths, max_images):
  """A CoverageProbe of the config's model over the analyzed records."""
  from od_meta.analysis import coverage  # pylint: disable=g-import-not-at-top
  from od_meta.builders import model_builder  # pylint: disable=g-import-not-at-top
  from od_meta.training import train_loop  # pylint: disable=g-import-not-at-top
  # The eval reader (no augmentation) with the analyzed records.
  source = (configs.get('eval_input_configs') or
            [configs['train_input_config']])[0]
  reader = type(source)()
  reader.CopyFrom(source)
  del reader.tf_record_input_reader.input_path[:]
  reader.tf_record_input_reader.input_path.extend(input_paths)
  reader.shuffle = False
  reader.num_epochs = 1
  reader.max_number_of_boxes = max(reader.max_number_of_boxes, 100)
  input_fn = train_loop.build_input_fn(configs, is_training=False,
                                       batch_size=16, input_config=reader)
  model = model_builder.build(configs['model'], is_training=False)
  return coverage.CoverageProbe(model, input_fn(None), max_images=max_images)


def _print_coverage(title, result, class_names0):
  summary = result.summary(class_names0)
  print(f'{title}: {summary["matched_share"]:.3f} of {summary["num_boxes"]} '
        f'boxes matched, mean best anchor IoU {summary["mean_best_iou"]:.3f}')
  for i, level in enumerate(summary['levels']):
    print(f'    level {i} (stride {level["stride"]:g} px): '
          f'{level["share_of_boxes"]:.3f} of the boxes')
  return summary


def _propose(configs, probe, dataset, input_h, input_w, result_before,
             class_names0):
  """Returns (proposed pipeline configs, change lines, coverage after)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from od_meta.analysis import anchor_fitting  # pylint: disable=g-import-not-at-top
  from od_meta.analysis import box_statistics  # pylint: disable=g-import-not-at-top
  from od_meta.analysis import config_fitting  # pylint: disable=g-import-not-at-top
  from od_meta.builders import anchor_generator_builder  # pylint: disable=g-import-not-at-top
  from od_meta.builders import image_resizer_builder  # pylint: disable=g-import-not-at-top
  from od_meta.utils import config_util  # pylint: disable=g-import-not-at-top
  proposed = config_util.create_configs_from_pipeline_proto(
      config_util.create_pipeline_proto_from_configs(configs))
  model_config = proposed['model']
  changes = []
  after = result_before

  # 1. Input size.
  box_h, box_w = dataset.pixel_sizes(input_h, input_w)
  finest = float(np.nanmin(result_before.level_strides))
  if not math.isfinite(finest):
    finest = float(FLAGS.input_size_multiple) / 4
  current = max(config_fitting.input_size(model_config)) or int(
      np.median(input_h))
  source_side = float(np.median(np.maximum(dataset.image_heights,
                                           dataset.image_widths)))
  max_scale = 1.0 if FLAGS.keep_input_size else min(
      max(FLAGS.max_upscale * source_side / max(current, 1), 1.0),
      FLAGS.max_input_size / max(current, 1))
  proposal = anchor_fitting.propose_input_scale(
      np.sqrt(box_h * box_w), finest,
      percentile=FLAGS.small_object_percentile,
      min_size_in_strides=FLAGS.min_object_size_in_strides,
      max_scale=max_scale)
  percentile = (f'the {FLAGS.small_object_percentile:g}th-percentile object '
                f'(sqrt area {proposal.small_object_size:.1f} px')
  if FLAGS.keep_input_size:
    if proposal.limited_by_source:
      changes.append(
          f'caution: {percentile}) is below {proposal.target_size:g} px '
          f'({FLAGS.min_object_size_in_strides:g} x the finest stride) and '
          '--keep_input_size keeps the input: on the small digits (README, '
          '"Fitting a config to a dataset") anchors alone raised the '
          'matched share but lowered mAP; the input size is what helped')
      print(f'  {changes[-1]}')
  elif proposal.scale > 1.0 + 1e-6:
    try:
      change = config_fitting.scale_input_size(
          model_config, proposal.scale, FLAGS.input_size_multiple)
    except ValueError as e:
      print(f'  input size not changed: {e}')
    else:
      changes.append(
          f'{config_fitting.image_resizer_path(model_config)}: {change}: '
          f'{percentile} at the old input) is below '
          f'{FLAGS.min_object_size_in_strides:g} x the finest level\'s '
          f'stride ({finest:g} px)' +
          (f' (capped at --max_upscale {FLAGS.max_upscale:g} x the source '
           'resolution)' if proposal.limited_by_source else ''))
      print(f'  {changes[-1]}')
      input_h, input_w = box_statistics.input_image_sizes(
          dataset, image_resizer_builder.build(
              config_util.get_image_resizer_config(model_config)))
      probe = _probe(proposed, FLAGS.input_path, FLAGS.coverage_images)
      after = probe.coverage()
      _print_coverage('  at the new input size, the config\'s anchors',
                      after, class_names0)
  elif proposal.limited_by_source:
    print(f'  input size kept: {percentile}) is below '
          f'{proposal.target_size:g} px '
          f'({FLAGS.min_object_size_in_strides:g} x the finest stride, '
          f'{finest:g} px), but a larger input would exceed --max_upscale '
          f'({FLAGS.max_upscale:g} x the source resolution) or '
          '--max_input_size; raise them, or use a feature extractor with a '
          'finer first level')
  else:
    print(f'  input size kept: {percentile}) already reaches '
          f'{proposal.target_size:g} px')

  # 2. Anchors.
  generator_config = config_fitting.anchor_generator_config(model_config)
  if generator_config is None:
    print('  anchors: none to fit (anchor-free detector); only the input '
          'size is proposed')
    return proposed, changes, after
  box_h, box_w = dataset.pixel_sizes(input_h, input_w)
  try:
    candidates = config_fitting.anchor_candidates(
        generator_config, np.stack([box_h, box_w], axis=1), probe.input_shape,
        level_strides=after.level_strides,
        min_anchor_size_in_strides=FLAGS.min_anchor_size_in_strides)
  except ValueError as e:
    print(f'  anchors not searched: {e}')
    return proposed, changes, after
  print(f'  searching {len(candidates)} anchor generators '
        f'({config_fitting.anchor_generator_path(model_config)}):')
  # The config's own anchors (the first candidate) were just measured.
  results = {id(candidates[0]): after}

  def score(candidate):
    if id(candidate) not in results:
      results[id(candidate)] = probe.coverage(
          anchor_generator_builder.build(candidate.config))
    result = results[id(candidate)]
    return anchor_fitting.CoverageScore(
        result.matched_share, result.mean_best_iou, result.num_anchors)

  best, best_score, scored = anchor_fitting.grid_search(candidates, score,
                                                        log_fn=print)
  if best is candidates[0]:
    print('  anchors kept: the config\'s own scored best')
    return proposed, changes, after
  config_fitting.set_anchor_generator(model_config, best.config)
  changes.append(
      f'{config_fitting.anchor_generator_path(model_config)}: '
      f'{best.description}, the best of {len(candidates)} '
      'generators (scales around the data\'s box sizes x the config\'s '
      'and the IoU k-means aspect ratios; anchors at least '
      f'{FLAGS.min_anchor_size_in_strides:g} x their level\'s stride): '
      f'matched share {best_score.matched_share:.3f} against '
      f'{scored[0][1].matched_share:.3f} for the config\'s own anchors at '
      'this input size')
  print(f'  {changes[-1]}')
  return proposed, changes, results[id(best)]


def _check_builds(configs):
  """Builds the proposed model and runs one forward pass on zeros."""
  from od_meta.builders import model_builder  # pylint: disable=g-import-not-at-top
  from od_meta.training import train_loop  # pylint: disable=g-import-not-at-top
  model = model_builder.build(configs['model'], is_training=False)
  height, width = train_loop.image_size_for_building(configs)
  train_loop.build_model_variables(model, height, width)


def run():
  """The analysis; raises UserError for bad input."""
  from od_meta.analysis import box_statistics  # pylint: disable=g-import-not-at-top
  from od_meta.analysis import config_fitting  # pylint: disable=g-import-not-at-top
  from od_meta.builders import image_resizer_builder  # pylint: disable=g-import-not-at-top
  from od_meta.utils import config_util  # pylint: disable=g-import-not-at-top

  if not FLAGS.output_dir:
    raise UserError('--output_dir is required')
  if FLAGS.output_config and not FLAGS.pipeline_config_path:
    raise UserError('--output_config needs --pipeline_config_path')
  json_path = os.path.join(FLAGS.output_dir, _JSON_NAME)
  for path in (json_path, FLAGS.output_config):
    if path and os.path.exists(path) and not FLAGS.overwrite:
      raise UserError(f'{path} exists; pass --overwrite to replace it')

  configs = None
  if FLAGS.pipeline_config_path:
    try:
      configs = config_util.get_configs_from_pipeline_file(
          FLAGS.pipeline_config_path)
    except (OSError, ValueError) as e:
      raise UserError(str(e)) from None
  if not FLAGS.input_path:
    if configs is None:
      raise UserError('--input_path is required without '
                      '--pipeline_config_path')
    FLAGS.input_path = list(
        configs['train_input_config'].tf_record_input_reader.input_path)
    if not FLAGS.input_path:
      raise UserError(f'{FLAGS.pipeline_config_path}: train_input_reader has '
                      'no input_path; pass --input_path')
  label_map_path = FLAGS.label_map_path or (
      configs['train_input_config'].label_map_path if configs else None)
  class_names = _class_names(label_map_path)

  try:
    dataset = box_statistics.read_groundtruth(FLAGS.input_path,
                                              max_images=FLAGS.max_images)
  except box_statistics.DatasetError as e:
    raise UserError(str(e)) from None
  input_h = input_w = None
  if configs is not None:
    input_h, input_w = box_statistics.input_image_sizes(
        dataset, image_resizer_builder.build(
            config_util.get_image_resizer_config(configs['model'])))
  summary = box_statistics.summarize(dataset, input_h, input_w, class_names)

  print(f'{", ".join(FLAGS.input_path)}: {summary["num_images"]} images, '
        f'{summary["num_boxes"]} boxes '
        f'({summary["num_invalid_boxes"]} invalid left out), '
        f'{summary["objects_per_image"]["mean"]:.2f} objects per image')
  for path, index, reason in dataset.invalid[:5]:
    print(f'  invalid box: {path}: record {index}: {reason}')
  shares = summary['overall']['coco_sizes']
  print(f'COCO sizes (source pixels): small {shares["small"]:.3f}, medium '
        f'{shares["medium"]:.3f}, large {shares["large"]:.3f}')
  _print_distribution_table('boxes, source pixels',
                            summary['overall']['source'])
  if input_h is not None:
    _print_distribution_table(
        f'boxes at the config\'s input ({int(input_h[0])}x{int(input_w[0])} '
        'for the first image), pixels', summary['overall']['input'])

  report = {'input_paths': FLAGS.input_path, 'statistics': summary}
  if configs is not None:
    model_config = configs['model']
    report['pipeline_config_path'] = FLAGS.pipeline_config_path
    probe = _probe(configs, FLAGS.input_path, FLAGS.coverage_images)
    class_names0 = {k - 1: v for k, v in class_names.items()}
    try:
      before = probe.coverage()
    except NotImplementedError as e:
      raise UserError(f'{FLAGS.pipeline_config_path}: {e}') from None
    print('Groundtruth boxes the config\'s target assigner can match '
          f'({probe.num_images} images of the config\'s input pipeline):')
    report['coverage'] = _print_coverage('  the config as given', before,
                                         class_names0)
    report['coverage']['fields_to_change'] = config_fitting.fields_to_change(
        model_config)
    if FLAGS.output_config:
      print('Proposal:')
      proposed, changes, after = _propose(
          configs, probe, dataset, input_h, input_w, before, class_names0)
      _check_builds(proposed)
      report['proposal'] = {
          'output_config': FLAGS.output_config, 'changes': changes,
          'coverage': after.summary(class_names0)}
      header = config_fitting.proposal_header(
          FLAGS.pipeline_config_path, FLAGS.input_path, changes,
          {'matched_share': before.matched_share,
           'mean_best_iou': before.mean_best_iou},
          {'matched_share': after.matched_share,
           'mean_best_iou': after.mean_best_iou,
           'num_boxes': after.num_boxes})
      text = config_util.config_to_text(
          config_util.create_pipeline_proto_from_configs(proposed))
      directory = os.path.dirname(os.path.abspath(FLAGS.output_config))
      os.makedirs(directory, exist_ok=True)
      tmp = FLAGS.output_config + '.tmp'
      with open(tmp, 'w') as f:
        f.write(header + text)
      os.replace(tmp, FLAGS.output_config)
      print(f'Proposed config: {FLAGS.output_config} (matched share '
            f'{before.matched_share:.3f} -> {after.matched_share:.3f})')

  os.makedirs(FLAGS.output_dir, exist_ok=True)
  anchor_sizes = probe.anchor_sizes() if configs is not None else None
  pngs = box_statistics.plot_histograms(
      dataset, FLAGS.output_dir, input_heights=input_h, input_widths=input_w,
      anchor_sizes=anchor_sizes)
  report['histograms'] = pngs
  with open(json_path, 'w') as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write('\n')
  print(f'Wrote {json_path} and {len(pngs)} histograms')


def main(argv):
  if len(argv) > 1:
    print(f'analyze_dataset: error: unexpected arguments {argv[1:]}',
          file=sys.stderr)
    return 2
  try:
    run()
  except UserError as e:
    print(f'analyze_dataset: error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  app.run(main)
