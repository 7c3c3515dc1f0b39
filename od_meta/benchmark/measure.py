"""Measures one configuration's inference in a fresh process.

    python -m od_meta.benchmark.measure --pipeline_config=P \
        [--checkpoint=C] [--num_images=500] [--num_warmup=10] \
        --output_json=OUT.json

Builds the model of pipeline config P (restoring checkpoint C when given,
else with freshly initialized weights), reads up to --num_images images of
its first eval input (TFRecord of TF OD API tf.Examples; random images of
the model's input size when that input cannot be read), then writes to
OUT.json (Huang et al. 2017, Sec. 3.5 and 4.1.7-4.1.8):

  * timing: batch-1 median / mean / p10 / p90 ms of the total inference
    (resize + preprocess + predict + postprocess), the network (predict) and
    the post-processing, over num_images calls after num_warmup (`timing`);
  * memory: the resident size before the model was built (baseline, the
    TensorFlow runtime), after building and restoring it, and the peak
    during the timed inference; on GPU, TensorFlow's allocator peak
    (`memory`);
  * the host's 1-minute load average around the timing and its CPU count
    (a load above the CPU count means other processes competed);
  * FLOPs of the inference and of the network at batch 1 (tfprof), and the
    parameter counts (`flops`);
  * device, TF version, the images used.

It is run by `study.py` through `memory.run_child`, one process per
configuration, so peaks do not mix. This module manipulates configs (it
reads the pipeline config); the measuring itself lives in timing / memory /
flops.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

from od_meta.benchmark import memory

# Resident size of the process before TensorFlow and the model are loaded.
_RSS_AT_START = memory.current_rss_bytes()

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from od_meta.benchmark import flops as flops_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from od_meta.benchmark import timing  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('pipeline_config', None, 'Pipeline config file.')
flags.DEFINE_string('checkpoint', None, 'Checkpoint prefix to restore '
                    '(default: freshly initialized weights).')
flags.DEFINE_integer('num_images', 500, 'Timed images (batch 1).')
flags.DEFINE_integer('num_warmup', 10, 'Untimed calls before timing.')
flags.DEFINE_string('output_json', None, 'Where the JSON result goes.')
flags.DEFINE_boolean('jit_compile', False, 'Time the XLA-compiled inference '
                     'functions (those XLA cannot compile run as plain '
                     'graphs; result["jit_compile"] says which).')


def _load_average():
  """1-minute load average of the host (0.0 where unknown)."""
  try:
    return float(os.getloadavg()[0])
  except (AttributeError, OSError):
    return 0.0


def _num_cpus():
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def read_images(configs, num_images):
  """Up to num_images decoded images `[H, W, 3]` uint8 of the eval input.

  Returns:
    (list of numpy arrays, description str). Falls back to random images of
    the model's input size (description says so) when the eval input is
    missing or unreadable.
  """
  # pylint: disable=g-import-not-at-top
  from od_meta.training import train_loop
  # pylint: enable=g-import-not-at-top
  paths = []
  readers = configs.get('eval_input_configs') or []
  if readers and readers[0].HasField('tf_record_input_reader'):
    paths = list(readers[0].tf_record_input_reader.input_path)
  files = [f for p in paths for f in tf.io.gfile.glob(p)]
  if files:
    try:
      images = []
      for record in tf.data.TFRecordDataset(files).take(num_images):
        parsed = tf.io.parse_single_example(
            record, {'image/encoded': tf.io.FixedLenFeature((), tf.string)})
        image = tf.io.decode_image(parsed['image/encoded'], channels=3,
                                   expand_animations=False)
        images.append(image.numpy())
      if images:
        return images, f'{len(images)} images of {",".join(files)}'
    except (tf.errors.OpError, ValueError) as e:
      print(f'cannot read the eval input ({e}); timing random images',
            file=sys.stderr)
  height, width = train_loop.image_size_for_building(configs)
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for _ in range(min(num_images, 16))]
  return images, f'{len(images)} random {height}x{width} images'


def measure(pipeline_config, checkpoint, num_images, num_warmup,
            jit_compile=False):
  """Builds, times and profiles one configuration; returns the result dict.

  With `jit_compile`, the timed functions are XLA-compiled where XLA can
  compile them (`timing.make_inference_functions`).

  Raises:
    ValueError: on a bad config or a checkpoint that does not match it.
  """
  # pylint: disable=g-import-not-at-top
  from od_meta.builders import image_resizer_builder
  from od_meta.builders import model_builder
  from od_meta.export import exporter
  from od_meta.training import train_loop
  from od_meta.utils import config_util
  # pylint: enable=g-import-not-at-top
  result = {'pipeline_config': pipeline_config, 'checkpoint': checkpoint}
  result.update(timing.device_description())
  configs = config_util.get_configs_from_pipeline_file(pipeline_config)
  images, source = read_images(configs, num_images)
  result['images'] = source
  on_gpu = bool(tf.config.list_physical_devices('GPU'))
  baseline = memory.current_rss_bytes()
  start = time.time()
  if checkpoint:
    model = exporter.build_restored_model(configs, checkpoint)
  else:
    model = model_builder.build(configs['model'], is_training=False)
    height, width = train_loop.image_size_for_building(configs)
    train_loop.build_model_variables(model, height, width)
  result['build_time_s'] = time.time() - start
  after_build = memory.current_rss_bytes()
  resizer = image_resizer_builder.build(
      config_util.get_image_resizer_config(configs['model']))
  peaks = {}

  def reset():
    peaks['reset'] = memory.reset_peak_rss()
    if on_gpu:
      memory.reset_gpu_peak()

  def read():
    peaks['rss'] = memory.peak_rss_bytes()
    if on_gpu:
      info = memory.gpu_memory_info()
      peaks['gpu'] = info['peak'] if info else None

  load_before = _load_average()
  jit_report = {}
  stats = timing.time_inference(model, images, num_images=num_images,
                                num_warmup=num_warmup,
                                image_resizer_fn=resizer,
                                after_warmup=reset, after_timing=read,
                                jit_compile=jit_compile,
                                jit_report=jit_report)
  result['timing'] = timing.times_to_dict(stats)
  result['jit_compile'] = {'requested': bool(jit_compile),
                           'functions': jit_report}
  # Other processes competing for the CPU make timings unreliable.
  result['load_average_1m'] = max(load_before, _load_average())
  result['num_cpus'] = _num_cpus()
  result['memory'] = {
      'kind': 'gpu_allocator_peak' if on_gpu else 'cpu_peak_rss',
      'rss_at_start_bytes': _RSS_AT_START,
      'rss_baseline_bytes': baseline,
      'rss_after_build_bytes': after_build,
      'peak_rss_bytes': peaks.get('rss'),
      'peak_rss_reset_before_inference': bool(peaks.get('reset')),
      'gpu_peak_bytes': peaks.get('gpu'),
  }
  # FLOPs at batch 1 on the resized size of the first image.
  resized, _ = resizer(tf.constant(images[0], tf.float32))
  height, width = int(resized.shape[0]), int(resized.shape[1])
  functions = timing.make_inference_functions(model, None)
  spec = tf.TensorSpec([1, height, width, 3], tf.float32)
  total_flops = flops_lib.count_flops(
      functions['total'].get_concrete_function(spec))
  preprocessed, true_shapes = functions['preprocess'](
      tf.zeros([1, height, width, 3], tf.float32))
  network_flops = flops_lib.count_flops(
      functions['network'].get_concrete_function(
          tf.TensorSpec(preprocessed.shape, preprocessed.dtype),
          tf.TensorSpec(true_shapes.shape, true_shapes.dtype)))
  result['flops'] = {
      'input_height': height, 'input_width': width,
      'total_flops': total_flops, 'network_flops': network_flops,
      'num_parameters': flops_lib.count_parameters(model),
      'num_trainable_parameters': flops_lib.count_parameters(
          model, trainable_only=True),
  }
  return result


def main(argv):
  del argv
  if not FLAGS.pipeline_config or not FLAGS.output_json:
    raise app.UsageError('--pipeline_config and --output_json are required')
  if FLAGS.num_images < 1 or FLAGS.num_warmup < 0:
    raise app.UsageError('--num_images must be >= 1 and --num_warmup >= 0')
  result = measure(FLAGS.pipeline_config, FLAGS.checkpoint,
                   FLAGS.num_images, FLAGS.num_warmup,
                   jit_compile=FLAGS.jit_compile)
  tmp = FLAGS.output_json + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, FLAGS.output_json)


if __name__ == '__main__':
  app.run(main)
