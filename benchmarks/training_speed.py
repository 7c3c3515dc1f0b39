r"""Training throughput of one config in float32, mixed precision and XLA.

Each mode trains the config from scratch for --num_steps steps through
`train_loop.train_loop` (the same code path as model_main.py, under the
strategy it would pick: MirroredStrategy over all GPUs, the default strategy
on CPU), one after the other in one process, so the ratios come from one run
on one machine. Printed per mode, and written to --output_json and, with
--output_md, as a markdown table:

  * images/s and steps/s over the steps after the first (the first step
    traces and compiles; its time is given apart);
  * peak memory: the GPU allocator's peak on GPU, the process's peak RSS on
    CPU (reset before each mode where the kernel allows it);
  * the loss curve (total loss every --log_every_n steps) and the mean of
    its last quarter, to compare the modes' training within noise;
  * steps skipped by loss scaling (float16) and whether XLA compiled.

Modes: fp32, bf16 (train_config.use_bfloat16), fp16
(train_config.mixed_precision, dynamic loss scaling), xla (jit_compile with
padded groundtruth), fp16_xla, bf16_xla.

    python benchmarks/training_speed.py \
      --pipeline_config_path=configs/ssd_mobilenet_v2_digits.config \
      --modes=fp32,bf16 --num_steps=200 --output_json=/tmp/speed.json

On a GPU machine, the issue-16 check (docs/benchmarks/gpu_training.md):

    python benchmarks/training_speed.py --modes=fp32,fp16,xla,fp16_xla \
      --pipeline_config_path=configs/ssd_mobilenet_v2_digits.config \
      --num_steps=300 --output_md=docs/benchmarks/gpu_training.md
"""

import json
import math
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_string('pipeline_config_path', None, 'Pipeline config file.')
flags.DEFINE_list('modes', ['fp32', 'bf16'], 'Modes to run, in order.')
flags.DEFINE_integer('num_steps', 200, 'Training steps per mode.')
flags.DEFINE_integer('log_every_n', 10, 'Steps between loss-curve points.')
flags.DEFINE_integer('batch_size', None, 'Global batch override.')
flags.DEFINE_string('output_json', None, 'Where the results go (JSON).')
flags.DEFINE_string('output_md', None, 'Markdown table appended here.')
flags.DEFINE_multi_string('config_override', [],
                          'Dotted overrides, e.g. train_config.batch_size=8.')
FLAGS = flags.FLAGS

MODES = {
    'fp32': {},
    'bf16': {'train_config.use_bfloat16': True},
    'fp16': {'train_config.mixed_precision': True},
    'xla': {'train_config.jit_compile': True,
            'train_config.unpad_groundtruth_tensors': False},
    'fp16_xla': {'train_config.mixed_precision': True,
                 'train_config.jit_compile': True,
                 'train_config.unpad_groundtruth_tensors': False},
    'bf16_xla': {'train_config.use_bfloat16': True,
                 'train_config.jit_compile': True,
                 'train_config.unpad_groundtruth_tensors': False},
}


def _overrides():
  result = {}
  for item in FLAGS.config_override:
    key, _, value = item.partition('=')
    result[key.strip()] = value.strip()
  return result


def run_mode(configs, mode, num_steps, log_every_n, strategy):
  """Trains one mode from scratch; returns its figures."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from od_meta.benchmark import memory
  from od_meta.training import train_loop
  from od_meta.utils import config_util
  # pylint: enable=g-import-not-at-top
  on_gpu = bool(tf.config.list_physical_devices('GPU'))
  configs = config_util.merge_external_params_with_configs(
      configs, dict(MODES[mode], **{'train_config.min_matched_share': 0}))
  if on_gpu:
    memory.reset_gpu_peak()
  else:
    memory.reset_peak_rss()
  lines = []
  with tempfile.TemporaryDirectory() as model_dir:
    result = train_loop.train_loop(
        configs, model_dir, num_train_steps=num_steps,
        checkpoint_every_n=num_steps, log_every_n=log_every_n,
        record_summaries=False, strategy=strategy, print_fn=lines.append)
  if on_gpu:
    info = memory.gpu_memory_info()
    peak = info['peak'] if info else None
  else:
    peak = memory.peak_rss_bytes()
  curve = []
  for line in lines:
    if line.startswith('step ') and 'loss=' in line:
      step = int(line.split()[1].split('/')[0])
      curve.append((step, float(line.split('loss=')[1].split()[0])))
  timed_s = result.wall_time_s - (result.first_step_s or 0.0)
  steps_per_s = (result.steps_run - 1) / timed_s if timed_s > 0 else math.nan
  batch = configs['train_config'].batch_size
  tail = [loss for _, loss in curve[-max(1, len(curve) // 4):]]
  return {
      'mode': mode, 'policy': result.precision_policy,
      'jit_compiled': result.jit_compiled,
      'steps': result.steps_run, 'batch_size': batch,
      'first_step_s': result.first_step_s,
      'steps_per_s': steps_per_s, 'images_per_s': steps_per_s * batch,
      'peak_memory_mb': peak / 2 ** 20 if peak else None,
      'memory_kind': 'gpu_allocator_peak' if on_gpu else 'cpu_peak_rss',
      'skipped_steps': result.skipped_steps,
      'loss_curve': curve,
      'final_loss_mean': sum(tail) / len(tail) if tail else math.nan,
      'notes': [line for line in lines if 'XLA could not' in line],
  }


def markdown(results, header):
  """The results as a markdown table (ratios against the first mode)."""
  base = results[0]['images_per_s'] if results else math.nan
  rows = [header, '',
          '| mode | policy | XLA | images/s | x first | first step s | '
          'peak MB | skipped | last-quarter loss |',
          '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
  for r in results:
    rows.append(
        f"| {r['mode']} | {r['policy']} | {r['jit_compiled']} | "
        f"{r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f} | "
        f"{r['first_step_s']:.1f} | "
        f"{(r['peak_memory_mb'] or float('nan')):.0f} | "
        f"{r['skipped_steps']} | {r['final_loss_mean']:.3f} |")
  return '\n'.join(rows) + '\n'


def main(argv):
  del argv
  if not FLAGS.pipeline_config_path:
    raise app.UsageError('--pipeline_config_path is required')
  unknown = [m for m in FLAGS.modes if m not in MODES]
  if unknown:
    raise app.UsageError(f'--modes: unknown {unknown}; choose from '
                         f'{", ".join(MODES)}')
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from od_meta.benchmark import timing
  from od_meta.training import distribute_utils
  from od_meta.utils import config_util
  # pylint: enable=g-import-not-at-top
  configs = config_util.get_configs_from_pipeline_file(
      FLAGS.pipeline_config_path)
  overrides = _overrides()
  if FLAGS.batch_size:
    overrides['train_config.batch_size'] = FLAGS.batch_size
  if overrides:
    configs = config_util.merge_external_params_with_configs(configs,
                                                             overrides)
  strategy = distribute_utils.get_strategy()
  device = timing.device_description()
  results = []
  for mode in FLAGS.modes:
    start = time.time()
    figures = run_mode(configs, mode, FLAGS.num_steps, FLAGS.log_every_n,
                       strategy)
    results.append(figures)
    print(f"{mode}: {figures['images_per_s']:.1f} images/s "
          f"({figures['steps_per_s']:.2f} steps/s, first step "
          f"{figures['first_step_s']:.1f} s), peak "
          f"{figures['peak_memory_mb'] or float('nan'):.0f} MB "
          f"({figures['memory_kind']}), skipped {figures['skipped_steps']}, "
          f"XLA {figures['jit_compiled']}, last-quarter loss "
          f"{figures['final_loss_mean']:.3f} ({time.time() - start:.0f} s)",
          flush=True)
    for note in figures['notes']:
      print('  ' + note)
  header = (f"### {os.path.basename(FLAGS.pipeline_config_path)}, "
            f"{FLAGS.num_steps} steps, global batch "
            f"{results[0]['batch_size']}, {type(strategy).__name__} x "
            f"{strategy.num_replicas_in_sync}, {device.get('device')}, "
            f"TF {tf.__version__}")
  table = markdown(results, header)
  print(table)
  if FLAGS.output_json:
    with open(FLAGS.output_json, 'w', encoding='utf-8') as f:
      json.dump({'device': device, 'config': FLAGS.pipeline_config_path,
                 'results': results}, f, indent=1)
  if FLAGS.output_md:
    with open(FLAGS.output_md, 'a', encoding='utf-8') as f:
      f.write('\n' + table)
  return 0


if __name__ == '__main__':
  sys.exit(app.run(main))
