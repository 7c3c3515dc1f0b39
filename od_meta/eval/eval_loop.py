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

import contextlib
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
from od_meta.training import precision
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


# (model, strategy) -> its traced eval step, so continuous evaluation of many
# checkpoints traces once.
_EVAL_STEPS = weakref.WeakKeyDictionary()

# Private feature key of the padded multi-replica eval batches: True for the
# real images, False for the copies that fill the last batch.
_VALID = '__eval_valid__'


def _eval_step_fn(detection_model, strategy=None):
  """The model's eval step: losses and detections from one forward pass.

  Without a multi-replica `strategy` the step takes a batch and returns
  (losses, detections). With one, it takes a distributed batch, runs each
  replica's slice and returns (losses averaged over the replicas,
  per-replica detections).
  """
  steps = _EVAL_STEPS.setdefault(detection_model, {})
  key = id(strategy) if strategy is not None else None
  if key in steps:
    return steps[key]

  def replica_step(features, labels):
    losses, predictions, true_shapes = train_loop.compute_losses(
        detection_model, features, labels, training=False,
        return_predictions=True)
    detections = detection_model.postprocess(predictions, true_shapes)
    return losses, detections

  if strategy is None:
    eval_step = tf.function(replica_step)
  else:
    @tf.function
    def eval_step(features, labels):
      losses, detections = strategy.run(replica_step, args=(features, labels))
      losses = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in losses.items()}
      return losses, detections

  steps[key] = eval_step
  return eval_step


def uses_replicas(strategy) -> bool:
  """True when evaluation splits its batches over the strategy's replicas.

  MultiWorkerMirroredStrategy is excluded: every worker would see only its
  own share of the eval set, so each worker evaluates the whole set on its
  own (the chief's metrics are the ones written).
  """
  return (strategy is not None and strategy.num_replicas_in_sync > 1 and
          not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))


def _pad_batches(dataset, batch_size):
  """Pads every batch to `batch_size` images by repeating its last image.

  The copies are flagged False in `features[_VALID]` and dropped before the
  evaluators see them; they only weigh in the last batch's eval losses.
  """
  def pad(features, labels):
    count = tf.shape(features[_INPUT.image])[0]
    extra = batch_size - count

    def fill(t):
      if not isinstance(t, tf.Tensor) or t.shape.rank == 0:
        return t
      return tf.concat([t, tf.repeat(t[-1:], extra, axis=0)], axis=0)

    features = {k: fill(v) for k, v in features.items()}
    labels = {k: fill(v) for k, v in labels.items()}
    features[_VALID] = tf.range(batch_size) < count
    return features, labels

  return dataset.map(pad)


def _local_numpy(strategy, value):
  """Concatenates a per-replica value's local results as one numpy array."""
  if strategy is None:
    return value.numpy()
  parts = strategy.experimental_local_results(value)
  return np.concatenate([p.numpy() for p in parts], axis=0)


def evaluate_model(detection_model, dataset, *, categories, eval_config,
                   step=0, summary_writer=None, max_examples=None,
                   keypoint_config=None, strategy=None):
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
    strategy: the `tf.distribute` strategy the model's variables live in.
      With several (local) replicas, each batch of eval_config.batch_size
      images is split across them (the batch size must be a multiple of the
      number of replicas; the last batch is padded with copies of its last
      image, which are not evaluated).

  Returns:
    dict of float: the evaluators' metrics and the mean eval losses
    ('Loss/...').

  Raises:
    ValueError: if the dataset is empty, the evaluators reject the data, or
      eval_config.batch_size is not a multiple of the number of replicas.
  """
  if not uses_replicas(strategy):
    strategy = None
  if strategy is not None:
    replicas = strategy.num_replicas_in_sync
    if eval_config.batch_size % replicas:
      raise ValueError(
          f'eval_config.batch_size {eval_config.batch_size} must be a '
          f'multiple of the {replicas} replicas to evaluate under '
          f'{type(strategy).__name__}')
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
    dataset = strategy.experimental_distribute_dataset(
        _pad_batches(dataset, eval_config.batch_size).with_options(options))
  evaluators = coco_evaluation.get_evaluators(
      list(eval_config.metrics_set), categories,
      keypoint_config=keypoint_config,
      include_metrics_per_category=eval_config.include_metrics_per_category,
      all_metrics_per_category=eval_config.all_metrics_per_category)
  category_index = label_map_util.create_category_index(categories)
  eval_step = _eval_step_fn(detection_model, strategy)
  loss_sums, num_batches, num_images = {}, 0, 0
  images = []
  max_examples = max_examples or eval_config.num_examples or None
  for features, labels in dataset:
    losses, detections = eval_step(features, labels)
    for name, value in losses.items():
      loss_sums[name] = loss_sums.get(name, 0.0) + float(value.numpy())
    num_batches += 1
    valid = (_local_numpy(strategy, features[_VALID])
             if strategy is not None else None)

    def host(value):
      array = _local_numpy(strategy, value)
      return array if valid is None else array[valid]

    eval_dict = {k: host(v) for k, v in detections.items()}
    for key in (_INPUT.source_id, _INPUT.original_image_spatial_shape,
                _INPUT.true_image_shape):
      eval_dict[key] = host(features[key])
    for key in (_INPUT.groundtruth_boxes, _INPUT.groundtruth_classes,
                _INPUT.num_groundtruth_boxes, _INPUT.groundtruth_is_crowd,
                _INPUT.groundtruth_area, _INPUT.groundtruth_keypoints,
                _INPUT.groundtruth_keypoint_visibilities):
      if key in labels:
        eval_dict[key] = host(labels[key])
    for evaluator in evaluators:
      evaluator.add_eval_dict(eval_dict)
    batch = eval_dict[_INPUT.source_id].shape[0]
    if len(images) < eval_config.num_visualizations:
      if _INPUT.original_image in features:
        eval_dict[_INPUT.original_image] = host(
            features[_INPUT.original_image]).astype(np.uint8)
      eval_dict[_INPUT.image] = host(features[_INPUT.image]).astype(np.uint8)
      for i in range(batch):
        if len(images) >= eval_config.num_visualizations:
          break
        images.append(visualization.draw_side_by_side_evaluation_image(
            eval_dict, category_index, image_index=i,
            min_score_thresh=eval_config.min_score_threshold,
            max_boxes=eval_config.max_num_boxes_to_visualize,
            keypoint_edges=[(e.start, e.end)
                            for e in eval_config.keypoint_edge]))
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


def build_eval_model(configs, strategy=None):
  """Builds the model for evaluation and creates its variables.

  The model is built under the training's precision policy
  (`train_config.mixed_precision` / `use_bfloat16`), so it computes what the
  trained one did, and inside `strategy.scope()` when a strategy is given.

  Returns:
    (detection_model, input_fn) where `input_fn(input_context)` gives the
    batched eval dataset (keeping the decoded images when
    eval_config.retain_original_images and visualizations are asked for).
  """
  policy = precision.policy_name(configs['train_config'].mixed_precision,
                                 configs['train_config'].use_bfloat16)
  eval_config = configs['eval_config']
  scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
  with scope, precision.policy_scope(policy):
    detection_model = model_builder.build(configs['model'], is_training=False)
    input_fn = train_loop.build_input_fn(
        configs, is_training=False,
        retain_original_image=bool(eval_config.retain_original_images and
                                   eval_config.num_visualizations))
    height, width = train_loop.image_size_for_building(configs,
                                                       input_fn(None))
    train_loop.build_model_variables(detection_model, height, width)
  return detection_model, input_fn


def evaluate_checkpoint(configs, checkpoint_path, model_dir, *,
                        detection_model=None, input_fn=None,
                        summary_writer=None, print_fn=print, strategy=None):
  """Restores `checkpoint_path` and evaluates it on the eval input.

  Args:
    configs: configs dict of the pipeline.
    checkpoint_path: a checkpoint prefix written by the training loop.
    model_dir: where eval summaries and eval/metrics.json go.
    detection_model, input_fn: reuse an already built model / input (for
      continuous evaluation); built when None.
    summary_writer: optional writer (default: model_dir/eval).
    print_fn: where the metrics table goes.
    strategy: the strategy `detection_model` was built under (see
      `evaluate_model`); with `detection_model` None the model is built
      under it.

  Returns:
    (step, metrics dict).
  """
  if detection_model is None:
    detection_model, input_fn = build_eval_model(configs, strategy)
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
      keypoint_config=keypoint_configs_from_config(configs) or None,
      strategy=strategy)
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

  Stops after the checkpoint at train_config.num_steps, after
  eval_config.max_evals evaluations (0: no limit), or when no new
  checkpoint appears within `timeout` seconds (None: wait forever).

  Returns:
    list of (step, metrics) of the evaluations run.
  """
  detection_model, input_fn = build_eval_model(configs)
  writer = tf.summary.create_file_writer(os.path.join(model_dir, 'eval'))
  num_steps = configs['train_config'].num_steps
  max_evals = configs['eval_config'].max_evals
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
    if max_evals and len(results) >= max_evals:
      logging.info('Ran eval_config.max_evals evaluations; evaluation done.')
      break
  return results


class InTrainingEvaluator:
  """Evaluates the checkpoints of a running training, under its strategy.

  `train_loop.train_loop(..., evaluator=InTrainingEvaluator(...))` calls it
  with each checkpoint to evaluate (every eval_config.eval_every_n_steps and
  at the end). The eval model is built on the first call, inside the
  training strategy's scope and precision policy, and reused; metrics go to
  `model_dir/eval` (TensorBoard) and `model_dir/eval/metrics.json` as for
  `evaluate_checkpoint`.

  Args:
    configs: the pipeline configs dict (needs an eval_input_reader).
    model_dir: the training's model_dir.
    strategy: the training's `tf.distribute` strategy (None: default).
    print_fn: where the metrics table goes.

  Call:
    checkpoint_path: str, a checkpoint prefix. Returns (step, metrics).
  """

  def __init__(self, configs, model_dir, strategy=None, print_fn=print):
    if not configs.get('eval_input_configs'):
      raise ValueError('evaluation during training needs an '
                       'eval_input_reader in the pipeline config')
    self._configs = configs
    self._model_dir = model_dir
    self._strategy = strategy
    self._print_fn = print_fn
    self._model = None
    self._input_fn = None
    self._writer = None

  def __call__(self, checkpoint_path):
    if self._model is None:
      self._model, self._input_fn = build_eval_model(self._configs,
                                                     self._strategy)
      self._writer = tf.summary.create_file_writer(
          os.path.join(self._model_dir, 'eval'))
    return evaluate_checkpoint(
        self._configs, checkpoint_path, self._model_dir,
        detection_model=self._model, input_fn=self._input_fn,
        summary_writer=self._writer, print_fn=self._print_fn,
        strategy=self._strategy)
