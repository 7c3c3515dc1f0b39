r"""Trains or evaluates an od_meta detector described by a pipeline config.

Training (ends with an evaluation of the final checkpoint when the config has
an eval_input_reader; with eval_config.eval_every_n_steps it also evaluates
every n steps, keeps the best checkpoint in model_dir/best/ and can stop
early, see eval.proto):

    python scripts/model_main.py \
      --pipeline_config_path=configs/ssd_mobilenet_v2_digits.config \
      --model_dir=runs/ssd_digits [--num_train_steps=N] \
      [--checkpoint_every_n=K] [--record_summaries]

Evaluation of the newest checkpoint in a directory (with --eval_timeout,
continuous evaluation: wait up to that many seconds for each new one):

    python scripts/model_main.py --pipeline_config_path=... \
      --model_dir=runs/ssd_digits --checkpoint_dir=runs/ssd_digits \
      [--eval_timeout=3600]

Training runs under MirroredStrategy over all visible GPUs, the default
strategy on CPU, or MultiWorkerMirroredStrategy when TF_CONFIG names several
workers (--strategy overrides the choice).
"""

import sys

from absl import app
from absl import flags

flags.DEFINE_string('pipeline_config_path', None,
                    'Path to a TrainEvalPipelineConfig text proto.')
flags.DEFINE_string('model_dir', None,
                    'Directory for checkpoints, summaries and eval metrics.')
flags.DEFINE_integer('num_train_steps', None,
                     'Total training steps (default train_config.num_steps).')
flags.DEFINE_integer('checkpoint_every_n', None,
                     'Steps between checkpoints (default '
                     'train_config.checkpoint_every_n).')
flags.DEFINE_boolean('record_summaries', True,
                     'Write TensorBoard summaries of training.')
flags.DEFINE_string('checkpoint_dir', None,
                    'If set, evaluate checkpoints from this directory '
                    'instead of training.')
flags.DEFINE_integer('eval_timeout', None,
                     'With --checkpoint_dir: seconds to wait for a new '
                     'checkpoint (continuous evaluation). Unset: evaluate '
                     'the newest checkpoint once.')
flags.DEFINE_boolean('eval_after_training', True,
                     'Evaluate the final checkpoint when training ends.')
flags.DEFINE_string('strategy', 'auto',
                    'auto, default, mirrored, multi_worker_mirrored or '
                    'one_device.')
flags.DEFINE_integer('log_every_n', 100, 'Steps between progress lines.')
flags.DEFINE_multi_string('config_override', [],
                          'Dotted overrides, e.g. train_config.batch_size=8.')

FLAGS = flags.FLAGS


def _overrides():
  result = {}
  for item in FLAGS.config_override:
    if '=' not in item:
      raise app.UsageError(f'--config_override {item!r}: expected key=value')
    key, value = item.split('=', 1)
    result[key.strip()] = value.strip()
  return result


def main(argv):
  del argv
  if not FLAGS.pipeline_config_path:
    raise app.UsageError('--pipeline_config_path is required')
  if not FLAGS.model_dir:
    raise app.UsageError('--model_dir is required')
  # Imported here so that --help and flag errors do not load TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from od_meta.eval import eval_loop  # pylint: disable=g-import-not-at-top
  from od_meta.training import distribute_utils  # pylint: disable=g-import-not-at-top
  from od_meta.training import run_folder  # pylint: disable=g-import-not-at-top
  from od_meta.training import train_loop  # pylint: disable=g-import-not-at-top
  from od_meta.utils import config_checks  # pylint: disable=g-import-not-at-top
  from od_meta.utils import config_util  # pylint: disable=g-import-not-at-top

  try:
    configs = config_util.get_configs_from_pipeline_file(
        FLAGS.pipeline_config_path)
    if FLAGS.config_override:
      configs = config_util.merge_external_params_with_configs(
          configs, _overrides())
  except (OSError, ValueError) as e:
    print(f'model_main: {e}', file=sys.stderr)
    return 2
  try:
    # Before anything is built or the run folder touched.
    config_checks.check_pipeline(configs,
                                 training=not FLAGS.checkpoint_dir,
                                 evaluation=bool(
                                     FLAGS.checkpoint_dir or
                                     FLAGS.eval_after_training or
                                     configs['eval_config'].eval_every_n_steps))
  except ValueError as e:
    print(f'model_main: {FLAGS.pipeline_config_path}: {e}', file=sys.stderr)
    return 2

  if FLAGS.checkpoint_dir:
    if FLAGS.eval_timeout:
      eval_loop.evaluate_continuously(configs, FLAGS.checkpoint_dir,
                                      FLAGS.model_dir,
                                      timeout=FLAGS.eval_timeout)
      return 0
    latest = tf.train.latest_checkpoint(FLAGS.checkpoint_dir)
    if latest is None:
      print(f'model_main: no checkpoint in {FLAGS.checkpoint_dir}',
            file=sys.stderr)
      return 2
    eval_loop.evaluate_checkpoint(configs, latest, FLAGS.model_dir)
    return 0

  if FLAGS.num_train_steps is not None and FLAGS.num_train_steps <= 0:
    print(f'model_main: --num_train_steps must be a positive number of steps, '
          f'got {FLAGS.num_train_steps}', file=sys.stderr)
    return 2
  try:
    strategy = distribute_utils.get_strategy(FLAGS.strategy)
  except ValueError as e:
    raise app.UsageError(f'--strategy: {e}') from e
  print(f'Training under {type(strategy).__name__} with '
        f'{strategy.num_replicas_in_sync} replica(s)')
  evaluator = None
  if FLAGS.eval_after_training or configs['eval_config'].eval_every_n_steps:
    if configs.get('eval_input_configs'):
      evaluator = eval_loop.InTrainingEvaluator(configs, FLAGS.model_dir,
                                                strategy=strategy)
  try:
    train_loop.check_settings(configs, evaluator is not None)
  except ValueError as e:
    print(f'model_main: {FLAGS.pipeline_config_path}: {e}', file=sys.stderr)
    return 2
  try:
    result = train_loop.train_loop(
        configs, FLAGS.model_dir, num_train_steps=FLAGS.num_train_steps,
        checkpoint_every_n=FLAGS.checkpoint_every_n,
        record_summaries=FLAGS.record_summaries, strategy=strategy,
        log_every_n=FLAGS.log_every_n, evaluator=evaluator,
        evaluate_final=FLAGS.eval_after_training)
  except run_folder.RunFolderLockedError as e:
    print(f'model_main: {e}', file=sys.stderr)
    return 2
  extra = ''
  if result.skipped_steps:
    extra = (f', {result.skipped_steps} steps skipped by loss scaling '
             '(non-finite gradients)')
  print(f'Training done: step {result.final_step}, {result.steps_run} steps '
        f'in {result.wall_time_s:.1f}s{extra}, checkpoint '
        f'{result.checkpoint_path}')
  if result.best_checkpoint:
    print(f'Best checkpoint: {result.best_checkpoint} (step '
          f'{result.best_step}, {configs["eval_config"].best_metric} '
          f'{result.best_value:.4f})')
  print(f'Training stopped: {result.stop_reason}')
  return 0


if __name__ == '__main__':
  app.run(main)
