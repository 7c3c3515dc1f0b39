"""The ATSS experiment on our data: does the anchor-based / anchor-free gap
close when both use the same rule for positive samples?

Zhang et al. 2020 (ATSS, Sec. 3) find that RetinaNet and FCOS differ mainly in
how they define positives: with the same assignment the two reach the same
accuracy. This script trains, at the same backbone, input size, batch, steps
and schedule (the shipped digits configs; only the rule for positives and
the detector's own head / regression differ):

  retinanet_mobilenet_v2_fpn_digits       RetinaNet, Argmax IoU 0.5 / 0.4
  retinanet_atss_mobilenet_v2_fpn_digits  RetinaNet, ATSS
  fcos_mobilenet_v2_fpn_digits            FCOS, its own rule (size ranges,
                                          center sampling)
  fcos_atss_mobilenet_v2_fpn_digits       FCOS, ATSS
  retinanet_fcos_rule_mobilenet_v2_fpn_digits
                                          RetinaNet, FCOS's rule (the
                                          paper's Table 2 experiment)

evaluates each final checkpoint with COCO metrics on the config's eval
input, counts the positives per groundtruth box each rule gives on training
batches, and reports the gaps.

  python benchmarks/atss_assignment.py --output_dir=runs/atss \
      [--num_train_steps=1500] [--configs=a.config,b.config]

Resumable: a config whose O/<name>/result.json exists is not retrained; an
interrupted one continues from its newest checkpoint. Writes
O/results.json and O/report.md (commit them to docs/benchmarks/).
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

# pylint: disable=g-import-not-at-top,wrong-import-position
from od_meta.builders import model_builder
from od_meta.core import box_list
from od_meta.core import standard_fields as fields
from od_meta.core import target_assigner as target_assigner_lib
from od_meta.data import inputs
from od_meta.eval import eval_loop
from od_meta.training import train_loop
from od_meta.utils import config_util
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', [
    'configs/retinanet_mobilenet_v2_fpn_digits.config',
    'configs/retinanet_atss_mobilenet_v2_fpn_digits.config',
    'configs/fcos_mobilenet_v2_fpn_digits.config',
    'configs/fcos_atss_mobilenet_v2_fpn_digits.config',
    'configs/retinanet_fcos_rule_mobilenet_v2_fpn_digits.config',
], 'Pipeline configs, in the order of the report.')
flags.DEFINE_string('output_dir', None, 'Where runs and the report go.')
flags.DEFINE_integer('num_train_steps', 1500,
                     'Steps per run; also the cosine schedule length.')
flags.DEFINE_integer('positive_batches', 4,
                     'Training batches over which positives per box are '
                     'counted.')
flags.DEFINE_float('noise', 0.015,
                   'Run-to-run spread of mAP@.50IOU on digits (the default '
                   'job\'s); differences below it are called noise.')
flags.mark_flag_as_required('output_dir')

METRICS = ('DetectionBoxes_Precision/mAP@.50IOU',
           'DetectionBoxes_Precision/mAP',
           'DetectionBoxes_Precision/mAP@.75IOU',
           'DetectionBoxes_Recall/AR@100')


def configs_for(path, num_steps):
  """The config of `path` trained for `num_steps` (cosine schedule cut to
  the same length), with 3 checkpoints kept."""
  configs = config_util.get_configs_from_pipeline_file(path)
  train = configs['train_config']
  train.num_steps = num_steps
  train.checkpoint_every_n = max(num_steps // 3, 1)
  optimizer = getattr(train.optimizer, train.optimizer.WhichOneof('optimizer'))
  rate = optimizer.learning_rate
  if rate.WhichOneof('learning_rate') == 'cosine_decay_learning_rate':
    cosine = rate.cosine_decay_learning_rate
    cosine.total_steps = num_steps
    cosine.warmup_steps = min(cosine.warmup_steps, num_steps // 10)
  configs['eval_config'].num_visualizations = 0
  return configs


def positives_per_box(configs, num_batches):
  """Positives per valid groundtruth box on training batches (the rule's
  sample count, ATSS Sec. 3): (mean over all levels, share of boxes with
  none, list of means per level finest first)."""
  model = model_builder.build(configs['model'], is_training=True)
  dataset = train_loop.build_input_fn(configs, is_training=True)(None)
  positives, boxes, empty = 0.0, 0.0, 0.0
  per_level = None
  for features, labels in dataset.take(num_batches):
    model.provide_groundtruth(**inputs.provide_groundtruth_kwargs(labels))
    preprocessed, true_shapes = model.preprocess(
        features[fields.InputDataFields.image],
        features[fields.InputDataFields.true_image_shape])
    prediction = model.predict(preprocessed, true_shapes)
    gt_boxlists, gt_classes, gt_weights = model._groundtruth_in_frame(  # pylint: disable=protected-access
        preprocessed, true_shapes)
    targets = target_assigner_lib.batch_assign_targets(
        model._target_assigner, box_list.BoxList(prediction['anchors']),  # pylint: disable=protected-access
        gt_boxlists, gt_classes, gt_weights_batch=gt_weights,
        levels=model.anchor_levels,
        image_shape=tuple(preprocessed.shape[1:3]))
    level_index = target_assigner_lib.anchor_level_indices(
        model.anchor_levels).numpy()
    if per_level is None:
      per_level = np.zeros(len(model.anchor_levels))
    for level in range(len(per_level)):
      per_level[level] += float(
          (targets.matches.numpy()[:, level_index == level] >= 0).sum())
    for i, gt in enumerate(gt_boxlists):
      n = int(gt.num_boxes())
      matches = targets.matches[i].numpy()
      counts = np.bincount(matches[matches >= 0], minlength=n)[:n]
      positives += counts.sum()
      boxes += n
      empty += float((counts == 0).sum())
  return (positives / max(boxes, 1.0), empty / max(boxes, 1.0),
          [float(v) / max(boxes, 1.0) for v in per_level])


def run_one(path, output_dir, num_steps, positive_batches):
  """Trains (or resumes), evaluates and counts positives for one config."""
  name = os.path.splitext(os.path.basename(path))[0]
  model_dir = os.path.join(output_dir, name)
  result_path = os.path.join(model_dir, 'result.json')
  configs = configs_for(path, num_steps)
  if os.path.exists(result_path):
    with open(result_path) as f:
      print(f'[{name}] done earlier: {result_path}', flush=True)
      out = json.load(f)
    if 'positives_per_box_by_level' not in out:  # Results of older versions.
      out['positives_per_box_by_level'] = positives_per_box(
          configs, positive_batches)[2]
      with open(result_path, 'w') as f:
        json.dump(out, f, indent=2)
    return out
  print(f'[{name}] training to step {num_steps}', flush=True)
  start = time.time()
  result = train_loop.train_loop(configs, model_dir, record_summaries=False,
                                 log_every_n=100)
  train_wall = time.time() - start
  checkpoint = tf.train.latest_checkpoint(model_dir)
  _, metrics = eval_loop.evaluate_checkpoint(
      configs, checkpoint, model_dir, print_fn=lambda *a, **k: None)
  per_box, without, by_level = positives_per_box(configs, positive_batches)
  out = {
      'name': name, 'config': path, 'steps': num_steps,
      'train_wall_time_s_this_session': train_wall,
      'steps_per_s': result.steps_run / max(result.wall_time_s, 1e-9),
      'metrics': {k: float(metrics[k]) for k in METRICS},
      'positives_per_box': per_box, 'boxes_without_positive': without,
      'positives_per_box_by_level': by_level,
  }
  with open(result_path, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'[{name}] ' + ', '.join(f'{k} {v:.4f}' for k, v in
                                 out['metrics'].items()), flush=True)
  return out


def verdict(gap_own, gap_shared, noise, shared='ATSS'):
  """Plain-words reading of the two anchor-free minus anchor-based gaps:
  each detector with its own rule, and both with the `shared` rule."""
  if abs(gap_shared) <= noise and abs(gap_own) > noise:
    return ('the gap closes: it is above the noise with each detector\'s own '
            f'rule and within it with {shared} in both, as the paper finds')
  if abs(gap_shared) <= noise and abs(gap_own) <= noise:
    return 'no gap to close: both gaps are within the noise on our data'
  if abs(gap_shared) < abs(gap_own):
    return f'the gap narrows with {shared} in both but stays above the noise'
  return f'the gap does not close with {shared} in both on our data'


def main(argv):
  del argv
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  runs = [run_one(p, FLAGS.output_dir, FLAGS.num_train_steps,
                  FLAGS.positive_batches) for p in FLAGS.configs]
  key = METRICS[0]
  lines = [
      '# ATSS on our data: anchor-based vs anchor-free at the same sampling',
      '', f'`python benchmarks/atss_assignment.py --output_dir=... '
      f'--num_train_steps={FLAGS.num_train_steps}`: {FLAGS.num_train_steps} '
      'steps of batch 32 per config from scratch, cosine schedule of the same '
      'length, validation set of the embedded digits data.', '',
      '| config | mAP@.50IOU | mAP | mAP@.75IOU | AR@100 | positives / box '
      '| by level, finest first | boxes without positive | steps/s |',
      '|---|---|---|---|---|---|---|---|---|']
  for r in runs:
    m = r['metrics']
    lines.append(
        f"| {r['name']} | {m[METRICS[0]]:.3f} | {m[METRICS[1]]:.3f} | "
        f"{m[METRICS[2]]:.3f} | {m[METRICS[3]]:.3f} | "
        f"{r['positives_per_box']:.1f} | "
        f"{' / '.join(f'{v:.2f}' for v in r['positives_per_box_by_level'])}"
        f" | {r['boxes_without_positive']:.1%} | "
        f"{r['steps_per_s']:.2f} |")
  by_name = {r['name']: r for r in runs}
  names = ('retinanet_mobilenet_v2_fpn_digits',
           'retinanet_atss_mobilenet_v2_fpn_digits',
           'fcos_mobilenet_v2_fpn_digits',
           'fcos_atss_mobilenet_v2_fpn_digits')
  results = {'runs': runs, 'noise': FLAGS.noise}
  if all(n in by_name for n in names):
    value = [by_name[n]['metrics'][key] for n in names]
    gap_iou = value[2] - value[0]
    gap_atss = value[3] - value[1]
    reading = verdict(gap_iou, gap_atss, FLAGS.noise)
    results.update(gap_own_rules=gap_iou, gap_atss=gap_atss, verdict=reading)
    lines += [
        '', f'FCOS minus RetinaNet, {key}: {gap_iou:+.3f} with each its own '
        f'rule (size ranges vs Argmax IoU), {gap_atss:+.3f} when both use '
        f'ATSS. ATSS changes RetinaNet by {value[1] - value[0]:+.3f} and FCOS '
        f'by {value[3] - value[2]:+.3f}. With a run-to-run spread of about '
        f'{FLAGS.noise}: {reading}.']
    fcos_rule = 'retinanet_fcos_rule_mobilenet_v2_fpn_digits'
    if fcos_rule in by_name:
      gap_rule = value[2] - by_name[fcos_rule]['metrics'][key]
      rule_reading = verdict(gap_iou, gap_rule, FLAGS.noise,
                             shared='FCOS\'s rule')
      results.update(gap_fcos_rule=gap_rule, verdict_fcos_rule=rule_reading)
      lines += [
          '', f'With FCOS\'s rule in both (the paper\'s Table 2: RetinaNet '
          f'given FCOS\'s positives), FCOS minus RetinaNet is {gap_rule:+.3f}: '
          f'{rule_reading}.']
  report = '\n'.join(lines) + '\n'
  with open(os.path.join(FLAGS.output_dir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(FLAGS.output_dir, 'report.md'), 'w') as f:
    f.write(report)
  print(report)


if __name__ == '__main__':
  app.run(main)
