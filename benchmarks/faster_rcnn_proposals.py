"""Inference time and accuracy of two-stage detectors vs the number of
proposals (Huang et al. 2017, Sec. 4.5 and Fig. 9: "fewer proposals save much
time at little mAP cost").

For each trained Faster R-CNN / R-FCN checkpoint, and each proposal count,
the model is rebuilt with `inference_max_proposals` set to that count (no
retraining: the first stage keeps the top proposals after NMS), timed at
batch 1 on the eval images (median ms per image, preprocessing and
post-processing included, plus the network alone), and evaluated with COCO
metrics on the config's eval input. All counts are measured in one run, so
their ratios are comparable.

  python benchmarks/faster_rcnn_proposals.py \
      --configs=configs/faster_rcnn_mobilenet_v2_digits.config \
      --checkpoints=runs/faster_rcnn_mobilenet_v2_digits \
      --proposals=300,100,50,20,10 --timed_images=100 \
      --results_json=runs/proposals.json

`--checkpoints` entries are checkpoint prefixes or model directories (the
newest checkpoint is used). Prints a table per config; writes the JSON and,
with --report_md, a Markdown report.
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf

from od_meta.benchmark import measure
from od_meta.benchmark import timing
from od_meta.builders import image_resizer_builder
from od_meta.eval import eval_loop
from od_meta.export import exporter
from od_meta.training import train_loop
from od_meta.utils import config_util
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', None, 'Faster R-CNN / R-FCN pipeline configs.')
flags.DEFINE_list('checkpoints', None, 'One checkpoint prefix or model '
                  'directory per config.')
flags.DEFINE_list('proposals', ['300', '100', '50', '20', '10'],
                  'Proposal counts to measure.')
flags.DEFINE_integer('timed_images', 100, 'Images timed per proposal count.')
flags.DEFINE_integer('warmup_images', 5, 'Untimed warm-up images.')
flags.DEFINE_integer('max_eval_examples', 0, 'Cap on evaluated images (0: '
                     'the whole eval input).')
flags.DEFINE_string('results_json', None, 'Where the results go (JSON).')
flags.DEFINE_string('report_md', None, 'Optional Markdown report.')
flags.mark_flag_as_required('configs')
flags.mark_flag_as_required('checkpoints')

METRICS = ('DetectionBoxes_Precision/mAP@.50IOU',
           'DetectionBoxes_Precision/mAP')


def resolve_checkpoint(path):
  """A checkpoint prefix, or the newest checkpoint of a directory.

  Raises:
    ValueError: if there is no checkpoint there.
  """
  if os.path.isdir(path):
    newest = tf.train.latest_checkpoint(path)
    if not newest:
      raise ValueError(f'--checkpoints: no checkpoint in directory {path}')
    return newest
  if not tf.io.gfile.glob(path + '.index'):
    raise ValueError(f'--checkpoints: {path} is neither a directory nor a '
                     'checkpoint prefix')
  return path


def measure_proposals(config_path, checkpoint, proposals, *, num_images,
                      num_warmup, max_eval_examples=0):
  """Rows {proposals, timing, metrics} for one config and checkpoint.

  Raises:
    ValueError: if the config is not a two-stage (faster_rcnn) model.
  """
  base = config_util.get_configs_from_pipeline_file(config_path)
  if base['model'].WhichOneof('model') != 'faster_rcnn':
    raise ValueError(f'{config_path}: model is '
                     f'{base["model"].WhichOneof("model")!r}, not faster_rcnn')
  images, source = measure.read_images(base, num_images)
  resizer = image_resizer_builder.build(
      config_util.get_image_resizer_config(base['model']))
  rows = []
  for count in proposals:
    configs = config_util.get_configs_from_pipeline_file(config_path)
    configs['model'].faster_rcnn.inference_max_proposals = int(count)
    model = exporter.build_restored_model(configs, checkpoint)
    stats = timing.time_inference(model, images, num_images=num_images,
                                  num_warmup=num_warmup,
                                  image_resizer_fn=resizer)
    input_fn = train_loop.build_input_fn(configs, is_training=False)
    metrics = eval_loop.evaluate_model(
        model, input_fn(None),
        categories=eval_loop.categories_from_config(configs),
        eval_config=configs['eval_config'],
        max_examples=max_eval_examples or None)
    row = {
        'proposals': int(count),
        'timing': timing.times_to_dict(stats),
        'metrics': {k: float(metrics[k]) for k in METRICS if k in metrics},
    }
    rows.append(row)
    print(f'{os.path.basename(config_path)} proposals={count}: '
          f'{stats["total"].median_ms:.1f} ms/image (network '
          f'{stats["network"].median_ms:.1f} ms), mAP@.50IOU '
          f'{row["metrics"].get(METRICS[0], float("nan")):.3f}', flush=True)
  return {'config': config_path, 'checkpoint': checkpoint,
          'images': source, 'rows': rows}


def to_markdown(results, device):
  """Markdown tables of the results (one per config)."""
  lines = ['# Inference time vs number of proposals', '',
           f'Device: {device.get("device", "?")}, TensorFlow '
           f'{device.get("tf_version", "?")}. Median of batch-1 '
           'calls per image; total includes resizing, preprocessing and '
           'post-processing.', '']
  for result in results:
    rows = result['rows']
    reference = rows[0]['timing']['total']['median_ms'] if rows else None
    lines += [f'## {os.path.basename(result["config"])}', '',
              f'Checkpoint `{result["checkpoint"]}`; {result["images"]}.', '',
              '| proposals | total ms/image | network ms | time vs first '
              '| mAP@.50IOU | mAP |',
              '|---:|---:|---:|---:|---:|---:|']
    for row in rows:
      total = row['timing']['total']['median_ms']
      lines.append(
          f'| {row["proposals"]} | {total:.1f} | '
          f'{row["timing"]["network"]["median_ms"]:.1f} | '
          f'{total / reference:.2f} | '
          f'{row["metrics"].get(METRICS[0], float("nan")):.3f} | '
          f'{row["metrics"].get(METRICS[1], float("nan")):.3f} |')
    lines.append('')
  return '\n'.join(lines)


def main(argv):
  del argv
  if len(FLAGS.configs) != len(FLAGS.checkpoints):
    raise app.UsageError('--configs and --checkpoints need one entry each')
  proposals = [int(p) for p in FLAGS.proposals]
  if any(p < 1 for p in proposals):
    raise app.UsageError('--proposals must be positive integers')
  for path in (FLAGS.results_json, FLAGS.report_md):
    if path and os.path.exists(path):
      raise app.UsageError(f'{path} exists; not overwriting it')
  device = timing.device_description()
  results = []
  for config_path, checkpoint in zip(FLAGS.configs, FLAGS.checkpoints):
    results.append(measure_proposals(
        config_path, resolve_checkpoint(checkpoint), proposals,
        num_images=FLAGS.timed_images, num_warmup=FLAGS.warmup_images,
        max_eval_examples=FLAGS.max_eval_examples))
  report = to_markdown(results, device)
  print(report)
  if FLAGS.results_json:
    with open(FLAGS.results_json, 'w') as f:
      json.dump({'device': device, 'results': results}, f, indent=2)
  if FLAGS.report_md:
    with open(FLAGS.report_md, 'w') as f:
      f.write(report + '\n')


if __name__ == '__main__':
  app.run(main)
