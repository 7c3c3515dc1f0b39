"""What a detector pays outside its network: full inference / network time.

For each pipeline config (and optional checkpoint), runs
`python -m od_meta.benchmark.measure` in a fresh process (batch 1, images of
the config's eval input, median after warm-up; resize + preprocess + predict
+ postprocess against predict alone) and prints the ratio total / network
with the post-processing time, plus the machine's load during the timing
(a load above the CPU count means other processes competed and the figures
are unreliable).

  python benchmarks/inference_overhead.py \
      --configs=configs/fcos_mobilenet_v2_fpn_digits.config \
      [--checkpoints=runs/atss/fcos_mobilenet_v2_fpn_digits/ckpt-1500] \
      [--num_images=200] [--output_json=runs/overhead.json]

Checkpoints pair with configs by position ('' = fresh weights: timing does
not depend on the weights, except through the number of NMS candidates).
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', ['configs/fcos_mobilenet_v2_fpn_digits.config'],
                  'Pipeline configs.')
flags.DEFINE_list('checkpoints', [], 'Checkpoint prefixes, one per config '
                  '(empty entries: fresh weights).')
flags.DEFINE_integer('num_images', 200, 'Timed images per config.')
flags.DEFINE_integer('num_warmup', 10, 'Untimed calls first.')
flags.DEFINE_string('output_json', None, 'Optional JSON of all results.')

_REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def measure_one(config, checkpoint, num_images, num_warmup):
  """Runs od_meta.benchmark.measure in a child process; returns its dict."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'result.json')
    command = [sys.executable, '-m', 'od_meta.benchmark.measure',
               f'--pipeline_config={config}', f'--num_images={num_images}',
               f'--num_warmup={num_warmup}', f'--output_json={out}']
    if checkpoint:
      command.append(f'--checkpoint={checkpoint}')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    subprocess.run(command, check=True, cwd=_REPO, env=env,
                   stdout=subprocess.DEVNULL)
    with open(out) as f:
      return json.load(f)


def main(argv):
  del argv
  checkpoints = list(FLAGS.checkpoints) + [''] * (
      len(FLAGS.configs) - len(FLAGS.checkpoints))
  rows = []
  print('| config | total ms | network ms | postprocess ms | total / network '
        '| load (1 min) / CPUs |')
  print('|---|---|---|---|---|---|')
  for config, checkpoint in zip(FLAGS.configs, checkpoints):
    result = measure_one(config, checkpoint, FLAGS.num_images,
                         FLAGS.num_warmup)
    timing = result['timing']
    total = timing['total']['median_ms']
    network = timing['network']['median_ms']
    post = timing['postprocess']['median_ms']
    rows.append({'config': config, 'checkpoint': checkpoint,
                 'total_ms': total, 'network_ms': network,
                 'postprocess_ms': post, 'ratio': total / network,
                 'load_average_1m': result['load_average_1m'],
                 'num_cpus': result['num_cpus'],
                 'device': result.get('device')})
    print(f"| {os.path.basename(config)} | {total:.2f} | {network:.2f} | "
          f"{post:.2f} | {total / network:.3f} | "
          f"{result['load_average_1m']:.1f} / {result['num_cpus']} |",
          flush=True)
  if FLAGS.output_json:
    with open(FLAGS.output_json, 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  app.run(main)
