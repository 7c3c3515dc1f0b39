"""Evaluation of checkpoints: COCO metrics, eval losses and eval images.

`evaluate_checkpoint` restores one checkpoint into a freshly built model,
runs the eval input through `preprocess` / `predict` / `postprocess` (one
`tf.function`, post-processing in the graph), feeds the detections to the
evaluators named by `eval_config.metrics_set`, and writes:

  * the metrics, printed and as TensorBoard scalars under `model_dir/eval`;
  * `eval_config.num_visualizations` side-by-side images (detections left,
    groundtruth right) as TensorBoard images;
  * one line `{"step": ..., "metrics": {...}}` appended to
    `model_dir/eval/metrics.json` (JSON Lines: one object per evaluation).

`evaluate_continuously` waits for new checkpoints, as the TF OD API's
continuous evaluation does.
"""

import json
import os
import time
import weakref

from absl import logging
import numpy as np
import tensorflow as tf

from od_meta.builders import model_builder
from od_meta.core import standard_fields as fields
from od_meta.data import label_map_util
from od_meta.eval import coco_evaluation
from od_meta.training import train_loop
from od_meta.utils import config_util
from od_meta.utils import visualization

METRICS_FILE = 'metrics.json'

_INPUT = fields.InputDataFields
_DET = fields.DetectionResultFields


def categories_from_config(configs, input_config=None):
  """COCO-style categories `[{'id': label-map id, 'name': str}]`.

  From the eval input's label map when it has one, else '0'..'C-1' with ids
  1..C.
  """
  if input_config is None and configs.get('eval_input_configs'):
    input_config = configs['eval_input_configs'][0]
  num_classes = config_util.get_number_of_classes(configs['model'])
  if input_config is not None and input_config.label_map_path:
    label_map = label_map_util.load_labelmap(input_config.label_map_path)
    categories = label_map_util.convert_label_map_to_categories(
        label_map, use_display_name=input_config.use_display_name)
    return [c for c in categories if c['id'] <= num_classes]
  return [{'id': i + 1, 'name': str(i)} for i in range(num_classes)]


def keypoint_configs_from_config(configs, input_config=None):
  """Keypoint evaluator settings from `eval_config.parameterized_metric`.

  Each `coco_keypoint_metrics { class_label: "person"
  keypoint_label_to_sigmas { key: "nose" value: 0.026 } ... }` names a
  label-map item; its keypoints (`keypoints { id: 0 label: "nose" }`, ordered
  by id) and their OKS sigmas form one evaluator. An empty class_label means
  every label-map item that lists keypoints (one evaluator per class), as for
  the embedded digits, whose ten classes all carry the same 5 keypoints.

  Returns:
    list of dicts for `coco_evaluation.get_evaluators(keypoint_config=...)`
    (empty when the config has no coco_keypoint_metrics).

  Raises:
    ValueError: naming the field, when the eval input has no label map, the
      class has no keypoints, or a keypoint has no sigma (and K != 17).
  """
  metrics = [m.coco_keypoint_metrics
             for m in configs['eval_config'].parameterized_metric
             if m.HasField('coco_keypoint_metrics')]
  if not metrics:
    return []
  if input_config is None and configs.get('eval_input_configs'):
    input_config = configs['eval_input_configs'][0]
  if input_config is None or not input_config.label_map_path:
    raise ValueError('eval_config.parameterized_metric.coco_keypoint_metrics '
                     'needs eval_input_reader.label_map_path (its items list '
                     'the keypoints)')
  path = input_config.label_map_path
  num_classes = config_util.get_number_of_classes(configs['model'])
  items = [i for i in label_map_util.load_labelmap(path)
           if int(i['id']) <= num_classes]
  result = []
  for metric in metrics:
    chosen = [i for i in items if i.get('keypoints') and (
        not metric.class_label or i.get('name') == metric.class_label)]
    if not chosen:
      raise ValueError(
          f'{path}: no label-map item with keypoints named '
          f'{metric.class_label!r} (eval_config.parameterized_metric.'
          'coco_keypoint_metrics.class_label)')
    for item in chosen:
      keypoints = sorted(item['keypoints'], key=lambda k: int(k['id']))
      names = [k.get('label', str(k['id'])) for k in keypoints]
      sigmas = dict(metric.keypoint_label_to_sigmas)
      missing = [n for n in names if n not in sigmas]
      config = {'category_id': int(item['id']), 'keypoint_names': names}
      if missing and len(names) != 17:
        raise ValueError(
            'eval_config.parameterized_metric.coco_keypoint_metrics.'
            f'keypoint_label_to_sigmas has no sigma for {missing}')
      if not missing:
        config['keypoint_sigmas'] = [sigmas[n] for n in names]
      result.append(config)
  return result


# model -> its traced eval step, so continuous evaluation of many checkpoints
# traces once.
_EVAL_STEPS = weakref.WeakKeyDictionary()


def _eval_step_fn(detection_model):
  """The model's eval step: losses and detections from one forward pass."""
  if detection_model in _EVAL_STEPS:
    return _EVAL_STEPS[detection_model]

  @tf.function
  def eval_step(features, labels):
    losses, predictions, true_shapes = train_loop.compute_losses(
        detection_model, features, labels, training=False,
        return_predictions=True)
    detections = detection_model.postprocess(predictions, true_shapes)
    return losses, detections

  _EVAL_STEPS[detection_model] = eval_step
  return eval_step


def evaluate_model(detection_model, dataset, *, categories, eval_config,
                   step=0, summary_writer=None, max_examples=None,
                   keypoint_config=None):
  """Runs `dataset` through the model and computes the metrics.

  Args:
    detection_model: a built `DetectionModel` (weights restored).
    dataset: batched `(features, labels)` eval dataset (finite).
    categories: COCO-style categories (label-map ids).
    eval_config: an `EvalConfig` message.
    step: global step recorded with the summaries.
    summary_writer: optional `tf.summary` writer.
    max_examples: optional cap on the number of images evaluated.
    keypoint_config: passed to `coco_evaluation.get_evaluators`.

  Returns:
    dict of float: the evaluators' metrics and the mean eval losses
    ('Loss/...').

  Raises:
    ValueError: if the dataset is empty or the evaluators reject the data.
  """
  evaluators = coco_evaluation.get_evaluators(
      list(eval_config.metrics_set), categories,
      keypoint_config=keypoint_config,
      include_metrics_per_category=eval_config.include_metrics_per_category,
      all_metrics_per_category=eval_config.all_metrics_per_category)
  category_index = label_map_util.create_category_index(categories)
  eval_step = _eval_step_fn(detection_model)
  loss_sums, num_batches, num_images = {}, 0, 0
  images = []
  max_examples = max_examples or eval_config.num_examples or None
  for features, labels in dataset:
    losses, detections = eval_step(features, labels)
    for name, value in losses.items():
      loss_sums[name] = loss_sums.get(name, 0.0) + float(value.numpy())
    num_batches += 1
    eval_dict = {k: v.numpy() for k, v in detections.items()}
    eval_dict.update({
        _INPUT.source_id: features[_INPUT.source_id].numpy(),
        _INPUT.original_image_spatial_shape:
            features[_INPUT.original_image_spatial_shape].numpy(),
        _INPUT.true_image_shape: features[_INPUT.true_image_shape].numpy(),
    })
    for key in (_INPUT.groundtruth_boxes, _INPUT.groundtruth_classes,
                _INPUT.num_groundtruth_boxes, _INPUT.groundtruth_is_crowd,
                _INPUT.groundtruth_area, _INPUT.groundtruth_keypoints,
                _INPUT.groundtruth_keypoint_visibilities):
      if key in labels:
        eval_dict[key] = labels[key].numpy()
    for evaluator in evaluators:
      evaluator.add_eval_dict(eval_dict)
    batch = eval_dict[_INPUT.source_id].shape[0]
    for i in range(batch):
      if len(images) >= eval_config.num_visualizations:
        break
      eval_dict[_INPUT.image] = features[_INPUT.image].numpy().astype(
          np.uint8)
      images.append(visualization.draw_side_by_side_evaluation_image(
          eval_dict, category_index, image_index=i))
    num_images += batch
    if max_examples and num_images >= max_examples:
      break
  if num_batches == 0:
    raise ValueError('the eval input produced no examples')
  metrics = {}
  for evaluator in evaluators:
    metrics.update(evaluator.evaluate())
  metrics.update({name: total / num_batches
                  for name, total in loss_sums.items()})
  if summary_writer is not None:
    with summary_writer.as_default():
      for name, value in metrics.items():
        tf.summary.scalar(name, value, step=step)
      for i, image in enumerate(images):
        tf.summary.image(f'eval_side_by_side_{i}', image[np.newaxis],
                         step=step)
    summary_writer.flush()
  return metrics


def append_metrics(model_dir, step, metrics):
  """Appends `{"step": step, "metrics": metrics}` to eval/metrics.json."""
  eval_dir = os.path.join(model_dir, 'eval')
  tf.io.gfile.makedirs(eval_dir)
  record = {'step': int(step),
            'metrics': {k: float(v) for k, v in sorted(metrics.items())}}
  path = os.path.join(eval_dir, METRICS_FILE)
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps(record) + '\n')
  return path


def read_metrics(model_dir):
  """Returns the list of records in `model_dir/eval/metrics.json`."""
  path = os.path.join(model_dir, 'eval', METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


def build_eval_model(configs):
  """Builds the model for evaluation and creates its variables."""
  detection_model = model_builder.build(configs['model'], is_training=False)
  input_fn = train_loop.build_input_fn(configs, is_training=False)
  height, width = train_loop.image_size_for_building(configs, input_fn(None))
  train_loop.build_model_variables(detection_model, height, width)
  return detection_model, input_fn


def evaluate_checkpoint(configs, checkpoint_path, model_dir, *,
                        detection_model=None, input_fn=None,
                        summary_writer=None, print_fn=print):
  """Restores `checkpoint_path` and evaluates it on the eval input.

  Args:
    configs: configs dict of the pipeline.
    checkpoint_path: a checkpoint prefix written by the training loop.
    model_dir: where eval summaries and eval/metrics.json go.
    detection_model, input_fn: reuse an already built model / input (for
      continuous evaluation); built when None.
    summary_writer: optional writer (default: model_dir/eval).
    print_fn: where the metrics table goes.

  Returns:
    (step, metrics dict).
  """
  if detection_model is None:
    detection_model, input_fn = build_eval_model(configs)
  if configs['eval_config'].use_moving_averages:
    raise ValueError('eval_config.use_moving_averages is not supported yet; '
                     'set it to false')
  checkpoint = tf.train.Checkpoint(model=detection_model)
  status = checkpoint.restore(checkpoint_path)
  status.expect_partial()
  status.assert_existing_objects_matched()
  step = _step_of(checkpoint_path)
  if summary_writer is None:
    summary_writer = tf.summary.create_file_writer(
        os.path.join(model_dir, 'eval'))
  start = time.time()
  metrics = evaluate_model(
      detection_model, input_fn(None),
      categories=categories_from_config(configs),
      eval_config=configs['eval_config'], step=step,
      summary_writer=summary_writer,
      keypoint_config=keypoint_configs_from_config(configs) or None)
  append_metrics(model_dir, step, metrics)
  print_fn(f'Evaluation of {checkpoint_path} (step {step}, '
           f'{time.time() - start:.1f}s):')
  for name in sorted(metrics):
    print_fn(f'  {name}: {metrics[name]:.4f}')
  return step, metrics


def _step_of(checkpoint_path):
  try:
    return int(checkpoint_path.rsplit('-', 1)[-1])
  except ValueError:
    return 0


def evaluate_continuously(configs, checkpoint_dir, model_dir, *, timeout=None,
                          print_fn=print):
  """Evaluates every new checkpoint in `checkpoint_dir` until `timeout`.

  Stops after the checkpoint at train_config.num_steps, or when no new
  checkpoint appears within `timeout` seconds (None: wait forever).

  Returns:
    list of (step, metrics) of the evaluations run.
  """
  detection_model, input_fn = build_eval_model(configs)
  writer = tf.summary.create_file_writer(os.path.join(model_dir, 'eval'))
  num_steps = configs['train_config'].num_steps
  results = []
  for path in tf.train.checkpoints_iterator(
      checkpoint_dir, timeout=timeout,
      min_interval_secs=configs['eval_config'].eval_interval_secs or 0):
    step, metrics = evaluate_checkpoint(
        configs, path, model_dir, detection_model=detection_model,
        input_fn=input_fn, summary_writer=writer, print_fn=print_fn)
    results.append((step, metrics))
    if num_steps and step >= num_steps:
      logging.info('Reached train_config.num_steps; evaluation done.')
      break
  return results
