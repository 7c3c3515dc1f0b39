"""TTFNet vs CenterNet training time on our data (TTFNet paper's claim).

Trains each config with od_meta's own training loop for the same number of
steps (same backbone, input size, batch and learning-rate schedule in the
shipped digits configs), checkpointing every --eval_every steps, then
evaluates every checkpoint on the config's eval input and reports, for a
common validation mAP@.50IOU target, the training steps and wall time each
detector needed to reach it.

  python benchmarks/ttfnet_vs_centernet.py --output_dir=runs/ttf_vs_cn \
      [--num_train_steps=1200] [--eval_every=200] [--target=0.9]

The target defaults to 0.95 x the lower of the two runs' best values, so both
reach it. Writes O/<name>/ (checkpoints), O/results.json and O/report.md, and
prints the table. An existing O/<name> is never overwritten.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from od_meta.benchmark import training_curves  # pylint: disable=g-import-not-at-top,wrong-import-position
from od_meta.eval import eval_loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from od_meta.training import train_loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from od_meta.utils import config_util  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', ['configs/centernet_resnet18_digits.config',
                              'configs/ttfnet_resnet18_digits.config'],
                  'Pipeline configs to compare (comma-separated).')
flags.DEFINE_string('output_dir', None, 'Where runs and the report go.')
flags.DEFINE_integer('num_train_steps', 1200,
                     'Steps per run; also the cosine schedule length.')
flags.DEFINE_integer('eval_every', 200, 'Steps between evaluated checkpoints.')
flags.DEFINE_float('target', None, 'Metric target; default 0.95 x the lower '
                   'best value of the runs.')
flags.DEFINE_string('metric', 'DetectionBoxes_Precision/mAP@.50IOU',
                    'Metric the target applies to.')
flags.mark_flag_as_required('output_dir')


def _configs_for(path, num_steps, eval_every):
  configs = config_util.get_configs_from_pipeline_file(path)
  train = configs['train_config']
  train.num_steps = num_steps
  train.checkpoint_every_n = eval_every
  train.max_to_keep = num_steps // eval_every + 2
  schedule = train.optimizer.WhichOneof('optimizer')
  learning_rate = getattr(train.optimizer, schedule).learning_rate
  if learning_rate.WhichOneof('learning_rate') == 'cosine_decay_learning_rate':
    learning_rate.cosine_decay_learning_rate.total_steps = num_steps
  return configs


def run_one(path, output_dir, num_steps, eval_every, metric):
  """Trains and evaluates one config; returns its result dict."""
  name = os.path.splitext(os.path.basename(path))[0]
  model_dir = os.path.join(output_dir, name)
  if os.path.exists(model_dir) and os.listdir(model_dir):
    raise ValueError(f'{model_dir} exists and is not empty; choose another '
                     '--output_dir (runs are never overwritten)')
  configs = _configs_for(path, num_steps, eval_every)
  print(f'[{name}] training {num_steps} steps, checkpoint every '
        f'{eval_every}', flush=True)
  start = time.time()
  result = train_loop.train_loop(configs, model_dir, record_summaries=False,
                                 log_every_n=eval_every)
  train_wall = time.time() - start
  model, input_fn = eval_loop.build_eval_model(configs)
  curve = []
  for step, checkpoint, wall in training_curves.checkpoint_times(model_dir,
                                                                 start):
    _, metrics = eval_loop.evaluate_checkpoint(
        configs, checkpoint, model_dir, detection_model=model,
        input_fn=input_fn, print_fn=lambda *a, **k: None)
    curve.append(training_curves.CurvePoint(step, wall, metrics[metric]))
    print(f'[{name}] step {step:5d}  {wall:7.1f} s  {metric} '
          f'{metrics[metric]:.4f}', flush=True)
  return {'name': name, 'config': path, 'train_wall_time_s': train_wall,
          'steps_per_s': result.steps_run / max(result.wall_time_s, 1e-9),
          'curve': curve}


def main(argv):
  del argv
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  runs = [run_one(p, FLAGS.output_dir, FLAGS.num_train_steps,
                  FLAGS.eval_every, FLAGS.metric) for p in FLAGS.configs]
  target = FLAGS.target
  if target is None:
    target = training_curves.common_target([r['curve'] for r in runs])
  lines = [f'# Training time to reach {FLAGS.metric} >= {target:.4f}', '',
           f'{FLAGS.num_train_steps} steps per run, evaluated every '
           f'{FLAGS.eval_every} steps; wall times include model building.',
           '', '| config | steps/s | best | steps to target | '
           'wall time to target (s) | total train time (s) |',
           '|---|---|---|---|---|---|']
  results = {'metric': FLAGS.metric, 'target': target, 'runs': []}
  for run in runs:
    reached = training_curves.first_reaching(run['curve'], target)
    best = max(p.value for p in run['curve'])
    lines.append(
        f"| {run['name']} | {run['steps_per_s']:.2f} | {best:.4f} | "
        f"{reached.step if reached else 'not reached'} | "
        f"{f'{reached.wall_time_s:.0f}' if reached else '-'} | "
        f"{run['train_wall_time_s']:.0f} |")
    results['runs'].append({
        'name': run['name'], 'config': run['config'],
        'steps_per_s': run['steps_per_s'], 'best': best,
        'train_wall_time_s': run['train_wall_time_s'],
        'steps_to_target': reached.step if reached else None,
        'wall_time_to_target_s': reached.wall_time_s if reached else None,
        'curve': [vars(p) for p in run['curve']]})
  lines += ['', '## Curves', '', '| config | step | wall (s) | value |',
            '|---|---|---|---|']
  for run in runs:
    for p in run['curve']:
      lines.append(f"| {run['name']} | {p.step} | {p.wall_time_s:.0f} | "
                   f'{p.value:.4f} |')
  report = '\n'.join(lines) + '\n'
  with open(os.path.join(FLAGS.output_dir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(FLAGS.output_dir, 'report.md'), 'w') as f:
    f.write(report)
  print(report)


if __name__ == '__main__':
  app.run(main)
