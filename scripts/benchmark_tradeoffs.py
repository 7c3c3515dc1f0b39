"""Speed/accuracy/memory/training-time trade-off study (Huang et al. 2017).

  python scripts/benchmark_tradeoffs.py \
      --configs=configs/sweeps/digits_quick.sweep.json --output_dir=O \
      [--train_steps=N | --checkpoints=name=path,...] [--num_images=500] \
      [--quick]

--configs takes pipeline config files and/or sweep files (.json / .yaml;
see od_meta/benchmark/sweep.py). Each configuration is trained with
od_meta's training loop for --train_steps steps (default: the config's
num_steps), or its checkpoint from --checkpoints is used; then it is
evaluated (COCO mAP, mAP@.50IOU, mAP by size, at every checkpoint: the
training curve) and measured in a child process (batch-1 inference time
with and without pre/post-processing, peak memory, FLOPs, parameters).

Writes O/results.csv, O/results.json, O/*.png, O/report.md and the runs
under O/runs/<configuration>/. A configuration that fails is a 'failed' row
with its error; the study goes on.

--report_only redraws the plots and report.md from O/results.json.

--quick: --train_steps=200 --train_batch_size=8 --num_checkpoints=3
--eval_examples=200 --num_images=100 --num_warmup=5, unless given.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from od_meta.benchmark import study as study_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from od_meta.benchmark import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', None, 'Pipeline config files and/or sweep files '
                  '(.json/.yaml), comma-separated.')
flags.DEFINE_string('output_dir', None, 'Where results, plots, report.md and '
                    'runs/ go.')
flags.DEFINE_integer('train_steps', None, 'Training steps per configuration '
                     '(default: each config\'s train_config.num_steps).')
flags.DEFINE_list('checkpoints', None, 'Checkpoints to evaluate instead of '
                  'training: name=path entries, or one path per '
                  'configuration in order (a prefix or a model_dir).')
flags.DEFINE_integer('num_images', 500, 'Images timed per configuration '
                     '(batch 1).')
flags.DEFINE_integer('num_warmup', 10, 'Untimed warm-up calls.')
flags.DEFINE_integer('train_batch_size', None, 'Training batch size override '
                     '(see --lr_scaling).')
flags.DEFINE_integer('num_checkpoints', 4, 'Checkpoints per training run, each '
                     'evaluated (the training curve).')
flags.DEFINE_integer('eval_examples', 0, 'Eval images per evaluation (0: the '
                     'whole eval input).')
flags.DEFINE_list('map_fractions', ['0.5', '0.9'], 'Fractions of the final mAP '
                  'whose first reaching step / time are reported.')
flags.DEFINE_float('measure_timeout_s', 900, 'Seconds before a measurement '
                   'child process is killed.')
flags.DEFINE_enum('lr_scaling', 'sqrt', ['sqrt', 'linear', 'none'],
                  'How a cosine schedule\'s learning rates follow '
                  '--train_batch_size (batch ratio r: x sqrt(r), x r, x 1).')
flags.DEFINE_boolean('jit_compile', False, 'Time XLA-compiled inference '
                     '(tf.function(jit_compile=True)); functions XLA cannot '
                     'compile run as plain graphs and the results say '
                     'which (column jit_compiled).')
flags.DEFINE_boolean('quick', False, 'Tiny settings for a smoke study (see the '
                     'module docstring).')
flags.DEFINE_boolean('overwrite', False, 'Replace existing O/runs/<name> '
                     'directories.')
flags.DEFINE_boolean('report_only', False, 'Only redraw the plots and '
                     'rewrite report.md from O/results.json (no training or '
                     'measuring; --configs is not needed).')
flags.mark_flag_as_required('output_dir')

QUICK = {'train_steps': 200, 'train_batch_size': 8, 'num_checkpoints': 3,
         'eval_examples': 200, 'num_images': 100, 'num_warmup': 5}


def _setting(name):
  """The flag's value, or the --quick default when --quick and not given."""
  if FLAGS.quick and not FLAGS[name].present:
    return QUICK[name]
  return FLAGS[name].value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.report_only:
    try:
      result = study_lib.rerender(FLAGS.output_dir)
    except (ValueError, FileNotFoundError) as e:
      print(f'benchmark_tradeoffs: error: {e}', file=sys.stderr)
      return 2
    print(f'Rewrote {result["report"]} from {len(result["rows"])} rows.')
    return 0
  if not FLAGS.configs:
    raise app.UsageError('--configs is required (unless --report_only)')
  try:
    configurations = sweep.configurations_from_paths(FLAGS.configs)
    checkpoints = study_lib.parse_checkpoints(
        FLAGS.checkpoints or [], [c.name for c in configurations])
    fractions = [float(f) for f in FLAGS.map_fractions]
    train_steps = _setting('train_steps')
    if checkpoints and not FLAGS['train_steps'].present:
      train_steps = None if len(checkpoints) == len(configurations) else (
          train_steps)
    settings = study_lib.StudySettings(
        output_dir=FLAGS.output_dir, train_steps=train_steps,
        train_batch_size=_setting('train_batch_size'),
        num_checkpoints=_setting('num_checkpoints'),
        eval_examples=_setting('eval_examples'),
        num_images=_setting('num_images'),
        num_warmup=_setting('num_warmup'), map_fractions=fractions,
        checkpoints=checkpoints,
        measure_timeout_s=FLAGS.measure_timeout_s,
        overwrite=FLAGS.overwrite, lr_scaling=FLAGS.lr_scaling,
        jit_compile=FLAGS.jit_compile)
    result = study_lib.run_study(configurations, settings,
                                 print_fn=lambda s: print(s, flush=True))
  except (ValueError, FileNotFoundError) as e:
    print(f'benchmark_tradeoffs: error: {e}', file=sys.stderr)
    return 2
  failed = sum(r['status'] != 'ok' for r in result['rows'])
  print(f'Done in {result["wall_time_s"]:.0f} s: '
        f'{len(result["rows"]) - failed} ok, {failed} failed.\n'
        f'  {result["results_csv"]}\n  {result["results_json"]}\n'
        f'  {result["report"]}', flush=True)
  return 0


if __name__ == '__main__':
  app.run(main)
