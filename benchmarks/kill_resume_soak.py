r"""Kill -9 soak of training: random SIGKILLs, resumes, and what survives.

Trains a tiny SSD (the default digits config at 64x64, 3 feature maps,
batch 4, a checkpoint every --checkpoint_every_n steps) with
`scripts/model_main.py` in a child process, kills it with SIGKILL at a
random moment after its first training step (so some kills land inside a
checkpoint write), restarts it on the same --model_dir, and checks after
every kill and restart:

  * the restart resumes from the newest complete checkpoint, and that
    checkpoint is at most one checkpoint interval behind the last step the
    killed run printed;
  * every checkpoint in the folder reads back and holds only finite values;
  * no `ckpt-N_temp` folder survives a restart (the run-folder guard removes
    it, and says so), and the lock left by the killed process is taken over.

Prints one line per kill and a summary; exit status 1 if any check failed.

    python benchmarks/kill_resume_soak.py --kills=20 --output_dir=runs/soak
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def define_flags():
  """The script's flags (defined when run, so that importing its helpers,
  as the tests do, adds no global absl flag)."""
  flags.DEFINE_string('output_dir', None,
                      'Where the data, config and run go.')
  flags.DEFINE_integer('kills', 20, 'Number of SIGKILLs.')
  flags.DEFINE_integer('checkpoint_every_n', 1, 'Steps between checkpoints.')
  flags.DEFINE_float('min_wait_s', 0.2, 'Least time after the first step.')
  flags.DEFINE_float('max_wait_s', 4.0, 'Most time after the first step.')
  flags.DEFINE_integer('seed', 0, 'Random seed of the kill times.')

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEP = re.compile(r'^step (\d+)/')
_RESUME = re.compile(r'^Resuming from (\S+) at step (\d+)')


def write_config(output_dir):
  """Generates the data and the tiny config; returns the config path."""
  # pylint: disable=g-import-not-at-top
  from od_meta.data import digits_dataset
  from od_meta.utils import config_util
  # pylint: enable=g-import-not-at-top
  data = os.path.join(output_dir, 'data')
  if not os.path.exists(os.path.join(data, 'train.tfrecord')):
    digits_dataset.generate_digits_dataset(data, num_train=16, num_val=0,
                                           image_size=64)
  configs = config_util.get_configs_from_pipeline_file(
      os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config'))
  configs = config_util.merge_external_params_with_configs(configs, {
      'model.ssd.image_resizer':
          'fixed_shape_resizer { height: 64 width: 64 }',
      'model.ssd.feature_extractor.num_layers': 3,
      'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3,
      'train_config.batch_size': 4,
      'train_config.num_steps': 100000,
      'train_config.min_matched_share': 0,
      'train_config.max_to_keep': 3,
      'eval_config.eval_every_n_steps': 0,
      'train_input_path': os.path.join(data, 'train.tfrecord'),
      'label_map_path': os.path.join(data, 'label_map.pbtxt'),
  })
  configs['eval_input_configs'] = []
  config_util.save_pipeline_config(configs, output_dir, overwrite=True)
  return os.path.join(output_dir, config_util.PIPELINE_CONFIG_NAME)


def check_checkpoints(model_dir):
  """Problems with the checkpoints in model_dir (empty list: none)."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow as tf
  # pylint: enable=g-import-not-at-top
  problems = []
  state = tf.train.get_checkpoint_state(model_dir)
  paths = list(state.all_model_checkpoint_paths) if state else []
  for path in paths:
    try:
      reader = tf.train.load_checkpoint(path)
      values = {name: np.asarray(reader.get_tensor(name))
                for name in reader.get_variable_to_shape_map()}
    except (tf.errors.OpError, ValueError, IndexError) as e:
      problems.append(f'{path} unreadable: {str(e).splitlines()[0]}')
      continue
    for name, value in values.items():
      if np.issubdtype(value.dtype, np.floating) and not np.all(
          np.isfinite(value)):
        problems.append(f'{path}: {name} is not finite')
  return problems


def temp_folders(model_dir):
  if not os.path.isdir(model_dir):
    return []
  return sorted(n for n in os.listdir(model_dir) if '_temp' in n)


def start(config, model_dir, every_n):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
  return subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, os.path.join(_REPO, 'scripts', 'model_main.py'),
       f'--pipeline_config_path={config}', f'--model_dir={model_dir}',
       f'--checkpoint_every_n={every_n}', '--log_every_n=1',
       '--eval_after_training=false', '--record_summaries=false',
       '--alsologtostderr=false'],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def run_until_killed(config, model_dir, every_n, wait_s):
  """Starts a trainer, SIGKILLs it wait_s after its first step.

  Returns:
    (lines printed, last step printed, resume step or None).
  """
  proc = start(config, model_dir, every_n)
  lines, last_step, resumed, killed_at = [], 0, None, None
  while True:
    line = proc.stdout.readline()
    if not line:
      break
    line = line.rstrip('\n')
    lines.append(line)
    match = _RESUME.match(line)
    if match:
      resumed = int(match.group(2))
    match = _STEP.match(line)
    if match:
      last_step = int(match.group(1))
      if killed_at is None:
        killed_at = time.time() + wait_s
    if killed_at is not None and time.time() >= killed_at:
      proc.send_signal(signal.SIGKILL)
      break
  # Lines already written before the kill are still readable.
  for line in proc.stdout:
    line = line.rstrip('\n')
    lines.append(line)
    match = _STEP.match(line)
    if match:
      last_step = max(last_step, int(match.group(1)))
  proc.wait()
  return lines, last_step, resumed


def main(argv):
  del argv
  if not FLAGS.output_dir:
    raise app.UsageError('--output_dir is required')
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  config = write_config(FLAGS.output_dir)
  model_dir = os.path.join(FLAGS.output_dir, 'run')
  rng = random.Random(FLAGS.seed)
  every_n = FLAGS.checkpoint_every_n
  failures, lost, takeovers, temps_removed = [], [], 0, 0
  previous_last = None
  for kill in range(FLAGS.kills + 1):
    final = kill == FLAGS.kills
    wait = rng.uniform(FLAGS.min_wait_s, FLAGS.max_wait_s)
    lines, last_step, resumed = run_until_killed(
        config, model_dir, every_n, 1.0 if final else wait)
    text = '\n'.join(lines)
    if 'Traceback' in text:
      failures.append(f'run {kill}: traceback:\n' + text[-2000:])
    takeovers += text.count('WARNING: taking over')
    temps_removed += text.count('left by an interrupted checkpoint write')
    if previous_last is not None:
      if resumed is None:
        failures.append(f'run {kill}: did not resume')
      else:
        gap = previous_last - resumed
        lost.append(gap)
        if gap > every_n:
          failures.append(f'run {kill}: resumed at {resumed}, '
                          f'{gap} steps behind the killed run')
    problems = check_checkpoints(model_dir)
    failures.extend(f'run {kill}: {p}' for p in problems)
    print(f'run {kill}: resumed at {resumed}, killed after step {last_step} '
          f'({wait:.1f} s after the first step); temp folders now '
          f'{temp_folders(model_dir)}; checkpoint problems {len(problems)}',
          flush=True)
    previous_last = last_step
  left = temp_folders(model_dir)
  print(f'\n{FLAGS.kills} kills: {len(lost)} resumes; steps lost per kill '
        f'(last printed - resumed): max {max(lost) if lost else 0}, mean '
        f'{sum(lost) / max(len(lost), 1):.1f} (checkpoint every {every_n}); '
        f'{takeovers} stale locks taken over; {temps_removed} temp folders '
        f'removed at restart; temp folders left after the soak (the last run '
        f'was killed too): {left}; failures: {len(failures)}')
  for failure in failures:
    print('FAILED ' + failure)
  return 1 if failures else 0


if __name__ == '__main__':
  define_flags()
  sys.exit(app.run(main))
