"""The training loop behind `scripts/model_main.py`.

One pipeline config drives it: the model, optimizer and input pipeline are
built from the config's messages, and the train step runs as a
`tf.function` inside a `tf.distribute` strategy (see `distribute_utils`).
The loss of each replica is divided by the number of replicas before its
gradients are taken, so the gradients summed by the all-reduce are those of
the global batch (`train_config.batch_size` is the *global* batch size).

Checkpoints (`tf.train.CheckpointManager`) go to `model_dir` every
`checkpoint_every_n` steps and at the end; a rerun with the same `model_dir`
resumes from the newest one. TensorBoard summaries go to `model_dir/train`.

`train_loop` also applies the precision policy (`precision`), XLA
compilation of the replica step (`train_config.jit_compile`), sync batch
norm, and, given an evaluator, periodic evaluation with best-checkpoint
keeping and early stopping (`best_checkpoint`).
"""

import contextlib
import dataclasses
import math
import os
import time
from typing import Optional

from absl import logging
import tensorflow as tf

from od_meta.analysis import config_fitting
from od_meta.analysis import coverage
from od_meta.builders import dataset_builder
from od_meta.builders import image_resizer_builder
from od_meta.builders import model_builder
from od_meta.builders import optimizer_builder
from od_meta.builders import preprocessor_builder
from od_meta.core import standard_fields as fields
from od_meta.data import inputs
from od_meta.feature_extractors import batch_norm
from od_meta.training import best_checkpoint
from od_meta.training import distribute_utils
from od_meta.training import precision
from od_meta.training import run_folder
from od_meta.utils import config_util

_FINE_TUNE_TYPES = ('detection', 'feature_extractor', 'classification')


@dataclasses.dataclass
class TrainResult:
  """What `train_loop` did.

  Attributes:
    final_step: int, the global step at the end.
    checkpoint_path: str, the newest checkpoint.
    final_losses: dict of float, the last step's losses.
    wall_time_s: float, seconds spent in the loop (building excluded).
    steps_run: int, steps run by this call (0 when already done).
    stop_reason: str, why training stopped ('reached N steps' or the early
      stopping reason).
    evaluations: list of (step, metrics dict), the evaluations run.
    best_checkpoint: str or None, the checkpoint kept in model_dir/best/.
    best_step: int or None, its step.
    best_value: float or None, its eval_config.best_metric.
    skipped_steps: int, steps skipped by loss scaling (non-finite
      gradients).
    precision_policy: str, the Keras policy trained under.
    jit_compiled: bool, whether the train step ran XLA-compiled.
    first_step_s: float or None, seconds of the first step (tracing and
      compilation included), excluded from the steps/s figures.
  """
  final_step: int
  checkpoint_path: str
  final_losses: dict
  wall_time_s: float
  steps_run: int
  stop_reason: str = ''
  evaluations: list = dataclasses.field(default_factory=list)
  best_checkpoint: Optional[str] = None
  best_step: Optional[int] = None
  best_value: Optional[float] = None
  skipped_steps: int = 0
  precision_policy: str = 'float32'
  jit_compiled: bool = False
  first_step_s: Optional[float] = None


def compute_losses(detection_model, features, labels, *, training,
                   add_regularization_loss=True, return_predictions=False,
                   unpad_groundtruth=True):
  """Runs the model on a batch and returns its loss dict.

  Args:
    detection_model: a `DetectionModel`.
    features: dict with `image` float32 `[B, H, W, 3]` in [0, 255] (already
      resized by the input pipeline) and `true_image_shape` int32 `[B, 3]`.
    labels: padded groundtruth dict from `inputs.build_dataset`.
    training: bool, run the network in training mode.
    add_regularization_loss: add the Keras layers' weight-decay losses as
      'Loss/regularization_loss'.
    return_predictions: also return the prediction dict and true image
      shapes, so evaluation can postprocess them without a second forward
      pass.
    unpad_groundtruth: cut the padded groundtruth to each image's box count
      (train_config.unpad_groundtruth_tensors), or keep the padding rows
      with weight 0 (static shapes, needed by XLA).

  Returns:
    dict of float32 scalars: the model's 'Loss/...' terms and
    'Loss/total_loss'; with `return_predictions`, the tuple
    `(losses, prediction_dict, true_image_shapes)`.
  """
  detection_model.provide_groundtruth(
      **inputs.provide_groundtruth_kwargs(labels, unpad=unpad_groundtruth))
  preprocessed, true_shapes = detection_model.preprocess(
      features[fields.InputDataFields.image],
      features[fields.InputDataFields.true_image_shape])
  prediction_dict = detection_model.predict(preprocessed, true_shapes,
                                            training=training)
  losses = dict(detection_model.loss(prediction_dict, true_shapes))
  if add_regularization_loss:
    regularization = detection_model.losses
    if regularization:
      losses['Loss/regularization_loss'] = tf.add_n(
          [tf.cast(r, tf.float32) for r in regularization])
  losses['Loss/total_loss'] = tf.add_n(list(losses.values()))
  if return_predictions:
    return losses, prediction_dict, true_shapes
  return losses


def build_input_fn(configs, *, is_training, batch_size=None,
                   input_config=None, retain_original_image=False):
  """Returns `fn(input_context) -> tf.data.Dataset` for a config.

  Args:
    configs: dict from `config_util.get_configs_from_pipeline_file`.
    is_training: training input (train_input_config, augmentation) or eval.
    batch_size: global batch size; default train_config.batch_size in
      training and eval_config.batch_size otherwise.
    input_config: the InputReader to read; default the train input or the
      first eval input.
    retain_original_image: keep the decoded image (for eval visualizations).
  """
  model_config = configs['model']
  resizer_fn = image_resizer_builder.build(
      config_util.get_image_resizer_config(model_config))
  if input_config is None:
    if is_training:
      input_config = configs['train_input_config']
    else:
      if not configs.get('eval_input_configs'):
        raise ValueError('the pipeline config has no eval_input_reader')
      input_config = configs['eval_input_configs'][0]
  if batch_size is None:
    batch_size = (configs['train_config'].batch_size if is_training else
                  configs['eval_config'].batch_size)
  preprocess_fn = None
  if is_training:
    preprocess_fn = preprocessor_builder.build_preprocess_fn(
        configs['train_config'].data_augmentation_options)

  def input_fn(input_context=None):
    return dataset_builder.build(
        input_config, batch_size=int(batch_size), is_training=is_training,
        image_resizer_fn=resizer_fn, preprocess_fn=preprocess_fn,
        input_context=input_context,
        retain_original_image=retain_original_image,
        max_number_of_boxes=(configs['train_config'].max_number_of_boxes
                             if is_training else None))

  return input_fn


def build_model_variables(detection_model, image_height, image_width):
  """Creates the model's variables with one forward pass on zeros.

  Keras 3 layers create variables on first call and `tf.train.Checkpoint`
  cannot restore into variables that do not exist yet, so this runs before
  any restore.
  """
  images = tf.zeros([1, image_height, image_width, 3], tf.float32)
  true_shapes = tf.constant([[image_height, image_width, 3]], tf.int32)
  preprocessed, true_shapes = detection_model.preprocess(images, true_shapes)
  detection_model.predict(preprocessed, true_shapes, training=False)


def image_size_for_building(configs, dataset=None):
  """(height, width) of a batch the model will see; used to build it."""
  size = config_util.get_spatial_image_size(
      config_util.get_image_resizer_config(configs['model']))
  if size[0] > 0 and size[1] > 0:
    return size[0], size[1]
  if dataset is not None:
    spec = dataset.element_spec[0][fields.InputDataFields.image]
    if spec.shape[1] is not None and spec.shape[2] is not None:
      return int(spec.shape[1]), int(spec.shape[2])
  resizer = config_util.get_image_resizer_config(configs['model'])
  if resizer.WhichOneof('image_resizer_oneof') == 'keep_aspect_ratio_resizer':
    side = resizer.keep_aspect_ratio_resizer.min_dimension
    return side, side
  return 256, 256


def restore_fine_tune_checkpoint(detection_model, checkpoint_path,
                                 checkpoint_type):
  """Restores weights from `train_config.fine_tune_checkpoint`.

  Args:
    detection_model: a built `DetectionModel`.
    checkpoint_path: a checkpoint prefix (or a directory: its newest
      checkpoint).
    checkpoint_type: 'detection' (a whole od_meta detection model),
      'feature_extractor' / 'classification' (only the feature extractor of
      an od_meta detection checkpoint).

  Raises:
    ValueError: on an unknown type or a path with no checkpoint.
  """
  checkpoint_type = checkpoint_type or 'detection'
  if checkpoint_type not in _FINE_TUNE_TYPES:
    raise ValueError(
        f'train_config.fine_tune_checkpoint_type {checkpoint_type!r} is not '
        f'one of {", ".join(_FINE_TUNE_TYPES)}')
  if tf.io.gfile.isdir(checkpoint_path):
    latest = tf.train.latest_checkpoint(checkpoint_path)
    if latest is None:
      raise ValueError(f'train_config.fine_tune_checkpoint: no checkpoint in '
                       f'directory {checkpoint_path}')
    checkpoint_path = latest
  if not tf.io.gfile.exists(checkpoint_path + '.index'):
    raise ValueError(f'train_config.fine_tune_checkpoint: {checkpoint_path} '
                     'is not a checkpoint (no .index file)')
  restore_map = detection_model.restore_map(checkpoint_type)
  if checkpoint_type == 'detection':
    ckpt = tf.train.Checkpoint(**restore_map)
  else:
    ckpt = tf.train.Checkpoint(model=tf.train.Checkpoint(**restore_map))
  status = ckpt.restore(checkpoint_path)
  status.expect_partial()
  status.assert_existing_objects_matched()
  logging.info('Restored %s weights from %s', checkpoint_type,
               checkpoint_path)


def _save_pipeline_config(configs, model_dir):
  """Writes model_dir/pipeline.config, keeping a differing earlier one."""
  path = os.path.join(model_dir, config_util.PIPELINE_CONFIG_NAME)
  text = config_util.config_to_text(
      config_util.create_pipeline_proto_from_configs(configs))
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      if f.read() == text:
        return
    backup = f'{path}.{time.strftime("%Y%m%d-%H%M%S")}.bak'
    tf.io.gfile.copy(path, backup)
    logging.warning('model_dir has a different pipeline.config; the old one '
                    'is kept as %s', backup)
  config_util.save_pipeline_config(configs, model_dir, overwrite=True)


def check_groundtruth_coverage(detection_model, configs, dataset,
                               print_fn=print):
  """The start-up check of `train_config.min_matched_share`.

  Runs the model (inference mode) on the first
  `train_config.matched_share_check_batches` batches of `dataset` and asks
  its target assigner which groundtruth boxes get a positive anchor or
  location (`DetectionModel.groundtruth_coverage`). Prints one line with the
  share; below `min_matched_share` the line is a warning naming the fields
  to change and `scripts/analyze_dataset.py`.

  Args:
    detection_model: the built model.
    configs: the pipeline configs dict.
    dataset: a non-distributed `tf.data.Dataset` of training batches.
    print_fn: where the line goes.

  Returns:
    the `coverage.CoverageResult`, or None when the check is disabled or
    the meta-architecture has no coverage rule.
  """
  train_config = configs['train_config']
  threshold = float(train_config.min_matched_share)
  num_batches = int(train_config.matched_share_check_batches)
  if threshold <= 0 or num_batches <= 0:
    return None
  results = []
  try:
    for features, labels in dataset.take(num_batches):
      results.append(coverage.coverage_of_batch(detection_model, features,
                                                labels))
  except NotImplementedError:
    return None
  if not results:
    return None
  result = coverage.merge(results)
  if result.num_boxes == 0:
    return result
  levels = ', '.join(
      f'stride {s:g}: {share:.2f}'
      for s, share in zip(result.level_strides, result.level_shares()))
  line = (f'{result.matched_share:.1%} of the {result.num_boxes} groundtruth '
          f'boxes in the first {len(results)} training batches have a '
          'positive anchor / location under the target assigner (mean best '
          f'anchor IoU {result.mean_best_iou:.2f}; share of boxes per level: '
          f'{levels})')
  if result.matched_share < threshold:
    model_config = configs['model']
    print_fn(
        f'WARNING: only {line}, below train_config.min_matched_share '
        f'{threshold:g}: boxes without a positive give no box-regression '
        'target. Change '
        f'{" and ".join(config_fitting.fields_to_change(model_config))}, '
        'or run scripts/analyze_dataset.py --pipeline_config_path=<this '
        'config> --output_dir=<dir> --output_config=<new config> for a '
        'config fitted to the data.')
  else:
    print_fn(f'Groundtruth coverage: {line}.')
  return result


def _format_eta(seconds):
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s'


# A run whose gradients stay non-finite this many steps in a row under loss
# scaling has diverged (the loss scale has been halved as many times).
MAX_CONSECUTIVE_SKIPPED_STEPS = 100

# XLA compilation failures: the train step uses an op XLA cannot compile or
# a shape it cannot bound.
_XLA_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
               tf.errors.InternalError)


def nonfinite_variables(model):
  """Paths of the model's float variables holding a NaN or an Inf.

  Batch-norm moving statistics included: a divergent step can leave an
  infinite moving variance behind a still finite loss.
  """
  return [v.path for v in model.variables
          if tf.as_dtype(v.dtype).is_floating and
          not bool(tf.reduce_all(tf.math.is_finite(v)).numpy())]


def _numeric(tensors):
  """The non-string entries of a feature or label dict."""
  return {k: v for k, v in tensors.items() if v.dtype != tf.string}


def _is_xla_failure(error):
  """True when an error comes from XLA compilation, not from the data."""
  message = error.message
  return 'XLA' in message or 'tf2xla' in message or (
      'compile-time constant' in message)


def _xla_failure_reason(error):
  """The informative line of an XLA compilation error, shortened."""
  lines = [line.strip() for line in error.message.splitlines()
           if line.strip()]
  for key in ('Detected unsupported operations', 'compile-time constant',
              'XLA', 'Unsupported'):
    for line in lines:
      if key in line:
        return line[:400]
  return (lines[0] if lines else type(error).__name__)[:400]


def check_settings(configs, has_evaluator):
  """Checks the precision and in-training evaluation fields.

  Raises:
    ValueError: naming the field, when both precision flags are set, early
      stopping is asked for without periodic evaluation or a metric, or
      periodic evaluation without an eval_input_reader.
  """
  precision.policy_name(configs['train_config'].mixed_precision,
                        configs['train_config'].use_bfloat16)
  eval_config = configs['eval_config']
  if eval_config.early_stopping_patience:
    if not eval_config.eval_every_n_steps:
      raise ValueError('eval_config.early_stopping_patience needs '
                       'eval_config.eval_every_n_steps > 0')
    if not eval_config.best_metric:
      raise ValueError('eval_config.early_stopping_patience needs '
                       'eval_config.best_metric')
  if eval_config.early_stopping_min_delta < 0:
    raise ValueError('eval_config.early_stopping_min_delta must be >= 0, got '
                     f'{eval_config.early_stopping_min_delta}')
  if eval_config.eval_every_n_steps and not has_evaluator:
    if not configs.get('eval_input_configs'):
      raise ValueError('eval_config.eval_every_n_steps needs an '
                       'eval_input_reader')


def _best_keeper(configs, model_dir):
  eval_config = configs['eval_config']
  if not eval_config.best_metric:
    return None
  mode = eval_config.MetricMode.Name(eval_config.best_metric_mode).lower()
  return best_checkpoint.BestCheckpointKeeper(
      model_dir, eval_config.best_metric, mode,
      early_stopping_patience=eval_config.early_stopping_patience,
      early_stopping_min_delta=eval_config.early_stopping_min_delta)


def train_loop(configs, model_dir, *, num_train_steps: Optional[int] = None,
               checkpoint_every_n: Optional[int] = None,
               record_summaries: bool = True, strategy=None,
               log_every_n: int = 100, print_fn=print, evaluator=None,
               evaluate_final: bool = True):
  """Trains the model a pipeline config describes.

  Precision: `train_config.mixed_precision` builds the model under Keras'
  `mixed_float16` policy with dynamic loss scaling (steps with non-finite
  gradients are skipped and counted), `train_config.use_bfloat16` under
  `mixed_bfloat16` (see `precision`). `train_config.jit_compile` compiles
  each replica's train step with XLA, falling back to the plain graph with
  a printed reason when XLA cannot compile it. `train_config.sync_batch_norm`
  all-reduces the batch-norm statistics over the replicas.

  Evaluation: with an `evaluator`, a checkpoint is saved and evaluated
  every eval_config.eval_every_n_steps steps and at the end; the best one by
  eval_config.best_metric is kept in `model_dir/best/`
  (`best_checkpoint.BestCheckpointKeeper`) and training stops early after
  eval_config.early_stopping_patience evaluations without improvement.

  Progress lines (every `log_every_n` steps) give the losses, the learning
  rate, steps/s and the ETA measured without the first step (which traces
  and compiles the step function) and without evaluation time. Scalar
  summaries go to model_dir/train every train_config.summary_every_n steps.

  Args:
    configs: dict from `config_util.get_configs_from_pipeline_file`.
    model_dir: directory for checkpoints, summaries and pipeline.config.
    num_train_steps: total steps (global step to reach); default
      train_config.num_steps.
    checkpoint_every_n: steps between checkpoints; default
      train_config.checkpoint_every_n.
    record_summaries: write TensorBoard summaries to model_dir/train.
    strategy: a `tf.distribute.Strategy`; default `get_strategy()`.
    log_every_n: steps between progress lines.
    print_fn: where progress lines go.
    evaluator: None, or a callable `checkpoint_path -> (step, metrics)`
      (e.g. `eval_loop.InTrainingEvaluator`).
    evaluate_final: with an evaluator, evaluate the final checkpoint too.

  Returns:
    a `TrainResult`.

  Raises:
    ValueError: if no number of steps is configured, checkpoint_every_n or
      log_every_n is < 1, an eval_config field is inconsistent, both
      precision flags are set, the loss becomes NaN or infinite (checked at
      every step, before any checkpoint of that step; the message gives the
      step), or, under loss scaling, the gradients stay non-finite for
      `MAX_CONSECUTIVE_SKIPPED_STEPS` steps.
  """
  train_config = configs['train_config']
  if num_train_steps is not None and int(num_train_steps) <= 0:
    raise ValueError(f'--num_train_steps must be a positive number of steps, '
                     f'got {num_train_steps}')
  num_train_steps = int(num_train_steps or train_config.num_steps)
  if num_train_steps <= 0:
    raise ValueError('set train_config.num_steps or --num_train_steps to a '
                     'positive number of steps')
  checkpoint_every_n = int(checkpoint_every_n or
                           train_config.checkpoint_every_n or 1000)
  if checkpoint_every_n < 1 or int(log_every_n) < 1:
    raise ValueError(f'checkpoint_every_n ({checkpoint_every_n}) and '
                     f'log_every_n ({log_every_n}) must be >= 1')
  summary_every_n = int(train_config.summary_every_n or log_every_n)
  check_settings(configs, evaluator is not None)
  policy = precision.policy_name(train_config.mixed_precision,
                                 train_config.use_bfloat16)
  strategy = strategy or distribute_utils.get_strategy()
  tf.io.gfile.makedirs(model_dir)
  chief = distribute_utils.is_chief(strategy)
  with contextlib.ExitStack() as guards:
    if chief:
      guards.enter_context(run_folder.RunFolderLock(model_dir, print_fn))
      for path in run_folder.remove_stale_temp_checkpoints(model_dir):
        print_fn(f'Removed {path}, left by an interrupted checkpoint write')
    input_fn = build_input_fn(configs, is_training=True)
    dataset = strategy.distribute_datasets_from_function(input_fn)
    height, width = image_size_for_building(configs, input_fn(None))
    with strategy.scope(), precision.policy_scope(policy):
      detection_model = model_builder.build(configs['model'], is_training=True)
      base_optimizer, learning_rate = optimizer_builder.build(
          train_config.optimizer,
          global_clipnorm=train_config.gradient_clipping_by_norm or None)
      build_model_variables(detection_model, height, width)
      if train_config.sync_batch_norm:
        num_synced = batch_norm.synchronize_batch_norms(detection_model)
        print_fn(f'Sync batch norm: {num_synced} batch norm layers all-reduce '
                 f'their statistics over {strategy.num_replicas_in_sync} '
                 'replica(s)')
      optimizer = precision.wrap_optimizer(base_optimizer, policy)
      trainable = _trainable_variables(detection_model, train_config)
      optimizer.build(trainable)
      tracked = dict(model=detection_model, optimizer=base_optimizer)
      if optimizer is not base_optimizer:
        tracked['loss_scale_optimizer'] = optimizer
      checkpoint = tf.train.Checkpoint(**tracked)
    if policy != precision.FLOAT32:
      print_fn(f'Precision policy {policy}'
               + (' with dynamic loss scaling'
                  if precision.needs_loss_scaling(policy) else '')
               + '; layer compute dtypes '
               + str(precision.compute_dtypes(detection_model)))
    iterations = base_optimizer.iterations
    manager = tf.train.CheckpointManager(
        checkpoint, model_dir, max_to_keep=train_config.max_to_keep or 7,
        step_counter=iterations, checkpoint_interval=checkpoint_every_n)
    if manager.latest_checkpoint:
      status = checkpoint.restore(manager.latest_checkpoint)
      status.assert_existing_objects_matched()
      print_fn(f'Resuming from {manager.latest_checkpoint} at step '
               f'{int(iterations.numpy())}')
    elif train_config.fine_tune_checkpoint:
      restore_fine_tune_checkpoint(detection_model,
                                   train_config.fine_tune_checkpoint,
                                   train_config.fine_tune_checkpoint_type)
    else:
      extractor = getattr(detection_model, 'feature_extractor', None)
      if hasattr(extractor, 'restore_backbone_weights'):
        if extractor.restore_backbone_weights():
          print_fn(f'Loaded backbone weights from {extractor.backbone_weights}')

    # Written once the model is built and restored: a config that fails
    # before this point leaves the run folder's pipeline.config as it was.
    if chief:
      _save_pipeline_config(configs, model_dir)
    keeper = _best_keeper(configs, model_dir) if evaluator is not None else None
    if keeper is not None and keeper.previous_state_ignored:
      print_fn(f'{keeper.state_path} ranks by another metric; the best '
               f'checkpoint is now chosen by {keeper.metric}')
    eval_every_n = int(configs['eval_config'].eval_every_n_steps)

    if int(iterations.numpy()) < num_train_steps and not (
        keeper is not None and keeper.should_stop):
      check_groundtruth_coverage(detection_model, configs, input_fn(None),
                                 print_fn)

    num_replicas = strategy.num_replicas_in_sync
    add_reg = train_config.add_regularization_loss
    unpad = train_config.unpad_groundtruth_tensors
    loss_scaling = precision.needs_loss_scaling(policy)

    def step_fn(features, labels):
      with tf.GradientTape() as tape:
        losses = compute_losses(detection_model, features, labels,
                                training=True, add_regularization_loss=add_reg,
                                unpad_groundtruth=unpad)
        scaled = losses['Loss/total_loss'] / num_replicas
        if loss_scaling:
          scaled = optimizer.scale_loss(scaled)
      gradients = tape.gradient(scaled, trainable)
      optimizer.apply_gradients(zip(gradients, trainable))
      return losses

    def make_train_step(jit_compile):
      replica_step = (tf.function(step_fn, jit_compile=True) if jit_compile
                      else step_fn)

      def numeric_step(features, labels):
        # String features (source ids, file names) are not used by the step
        # and XLA cannot take them as arguments.
        return replica_step(_numeric(features), _numeric(labels))

      @tf.function
      def train_step(iterator):
        per_replica = strategy.run(numeric_step, args=next(iterator))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in per_replica.items()}

      return train_step

    jit_compile = bool(train_config.jit_compile)
    if jit_compile and unpad:
      print_fn('WARNING: train_config.jit_compile with '
               'unpad_groundtruth_tensors: true makes every image\'s box count '
               'a compile-time constant, so XLA recompiles the train step for '
               'each new combination of counts; set '
               'train_config.unpad_groundtruth_tensors: false (padded '
               'groundtruth with zero weights, as for the TF OD API on TPU)')
    train_step = make_train_step(jit_compile)
    writer = (tf.summary.create_file_writer(os.path.join(model_dir, 'train'))
              if record_summaries else tf.summary.create_noop_writer())
    iterator = iter(dataset)
    start_step = int(iterations.numpy())
    losses = {}
    evaluations = []
    skipped_steps = consecutive_skipped = 0
    first_step_s = None
    stop_reason = None
    if keeper is not None and keeper.should_stop:
      stop_reason = ('early stopping had already stopped this run: '
                     + keeper.early_stopping.reason())
    loop_start = time.time()
    window_start, window_step = loop_start, start_step

    def save(step):
      """Saves a checkpoint, after checking every variable is finite."""
      bad = nonfinite_variables(detection_model)
      if bad:
        last = {k: float(v.numpy()) for k, v in losses.items()}
        raise ValueError(
            f'not saving the checkpoint of step {step}: {len(bad)} model '
            f'variable(s) hold NaN or Inf ({", ".join(bad[:3])}'
            f'{", ..." if len(bad) > 3 else ""}) while the loss was {last}; '
            f'the newest good checkpoint is {manager.latest_checkpoint}')
      return manager.save(checkpoint_number=step, check_interval=False)

    def evaluate(path, step):
      result = evaluator(path)
      evaluations.append(result)
      if keeper is not None:
        if keeper.update(step, result[1], path):
          print_fn(f'New {keeper.summary()}')
      return result

    with writer.as_default():
      step = start_step
      while step < num_train_steps and stop_reason is None:
        previous_step = step
        try:
          losses = train_step(iterator)
        except _XLA_ERRORS as e:
          if (not jit_compile or first_step_s is not None or
              not _is_xla_failure(e)):
            raise
          reason = _xla_failure_reason(e)
          print_fn(f'XLA could not compile the train step of '
                   f'{type(detection_model).__name__} ({reason}); training '
                   'without jit_compile')
          jit_compile = False
          train_step = make_train_step(False)
          continue
        step = int(iterations.numpy())
        if first_step_s is None:
          first_step_s = time.time() - loop_start
          window_start, window_step = time.time(), step
        # The total loss is checked at every step (the step counter is read
        # anyway), so that no NaN weights are ever checkpointed.
        finite = math.isfinite(float(losses['Loss/total_loss'].numpy()))
        if step == previous_step:
          # Loss scaling skipped the update: non-finite gradients.
          skipped_steps += 1
          consecutive_skipped += 1
          if finite and consecutive_skipped < MAX_CONSECUTIVE_SKIPPED_STEPS:
            continue
          if finite:
            raise ValueError(
                f'the gradients were NaN or infinite for {consecutive_skipped} '
                f'steps in a row at step {step} (loss scale now '
                f'{precision.loss_scale(optimizer):g}): training diverged')
        consecutive_skipped = 0
        log_now = step % log_every_n == 0 or step == num_train_steps
        summarize = step % summary_every_n == 0 or step == num_train_steps
        if not finite or log_now or summarize:
          values = {k: float(v.numpy()) for k, v in losses.items()}
          if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f'the loss became NaN or infinite at step {step}: '
                             f'{values}')
          lr = float(learning_rate(step))
          if summarize:
            for name, value in values.items():
              tf.summary.scalar(name, value, step=step)
            tf.summary.scalar('learning_rate', lr, step=step)
            if loss_scaling:
              tf.summary.scalar('loss_scale', precision.loss_scale(optimizer),
                                step=step)
          if log_now:
            now = time.time()
            steps_per_sec = ((step - window_step) / (now - window_start)
                             if step > window_step else float('nan'))
            window_start, window_step = now, step
            if math.isfinite(steps_per_sec):
              tf.summary.scalar('steps_per_sec', steps_per_sec, step=step)
              rate = f'{steps_per_sec:.2f} steps/s'
            else:
              rate = f'first step {first_step_s:.1f}s (tracing)'
            eta = (num_train_steps - step) / steps_per_sec
            terms = ' '.join(
                f'{k.replace("Loss/", "", 1).replace("_loss", "")}={v:.4f}'
                for k, v in values.items() if k != 'Loss/total_loss')
            extra = ''
            if loss_scaling:
              extra = (f' loss_scale={precision.loss_scale(optimizer):g}'
                       f' skipped={skipped_steps}')
            print_fn(f'step {step}/{num_train_steps} '
                     f'loss={values["Loss/total_loss"]:.4f} ({terms}) '
                     f'lr={lr:.3g}{extra} {rate} ETA {_format_eta(eta)}')
        saved = None
        if step % checkpoint_every_n == 0:
          saved = save(step)
        if (evaluator is not None and eval_every_n and step % eval_every_n == 0
            and step < num_train_steps):
          path = saved or save(step)
          writer.flush()
          evaluate(path, step)
          if keeper is not None and keeper.should_stop:
            stop_reason = 'early stopping: ' + keeper.early_stopping.reason()
          # Evaluation time is not training time.
          window_start = time.time()
    wall = time.time() - loop_start
    final_step = int(iterations.numpy())
    path = manager.latest_checkpoint
    if path is None or not path.endswith(f'-{final_step}'):
      path = save(final_step)
    writer.flush()
    if stop_reason is None:
      stop_reason = f'reached {num_train_steps} steps'
    if (evaluator is not None and evaluate_final and
        not any(s == final_step for s, _ in evaluations)):
      evaluate(path, final_step)
    return TrainResult(
        final_step=final_step, checkpoint_path=path,
        final_losses={k: float(v.numpy()) for k, v in losses.items()},
        wall_time_s=wall, steps_run=final_step - start_step,
        stop_reason=stop_reason, evaluations=evaluations,
        best_checkpoint=keeper.best_checkpoint if keeper else None,
        best_step=keeper.best_step if keeper else None,
        best_value=keeper.best_value if keeper else None,
        skipped_steps=skipped_steps, precision_policy=policy,
        jit_compiled=jit_compile,
        first_step_s=first_step_s)


def _trainable_variables(detection_model, train_config):
  """The variables to train, honouring freeze / update patterns (regex)."""
  import re  # pylint: disable=g-import-not-at-top
  variables = detection_model.trainable_variables
  if train_config.update_trainable_variables:
    patterns = [re.compile(p) for p in train_config.update_trainable_variables]
    variables = [v for v in variables
                 if any(p.search(v.path) for p in patterns)]
  if train_config.freeze_variables:
    patterns = [re.compile(p) for p in train_config.freeze_variables]
    variables = [v for v in variables
                 if not any(p.search(v.path) for p in patterns)]
  if not variables:
    raise ValueError('no trainable variables left after freeze_variables / '
                     'update_trainable_variables')
  return variables
