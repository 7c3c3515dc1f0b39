"""Exports a trained detector as a SavedModel that TF Serving loads.

The od_meta counterpart of the TF Object Detection API's
`object_detection/exporter_lib_v2.py` (`exporter_main_v2.py`):

    exporter.export_inference_graph(
        'image_tensor', 'runs/ssd/pipeline.config', 'runs/ssd',
        'exported/ssd')

writes

    exported/ssd/saved_model/     the SavedModel (one serving signature)
    exported/ssd/checkpoint/      ckpt-0.* + 'checkpoint': a
                                  `tf.train.Checkpoint(model=...)` of the
                                  exported weights, restorable by od_meta
    exported/ssd/pipeline.config  the (overridden) pipeline config, text

Serving signature (default name 'serving_default', `ExportConfig.
signature_name`), one input named `input_tensor`:

  * 'image_tensor': uint8 `[batch, H, W, 3]`;
  * 'float_image_tensor': float32 `[batch, H, W, 3]`, values in [0, 255];
  * 'encoded_image_string_tensor': string `[batch]` of JPEG/PNG/GIF/BMP
    bytes; the images of one request may have different sizes;
  * 'tf_example': string `[batch]` of serialized `tf.train.Example`s whose
    image/encoded holds the image (TF OD API keys).

Each image is resized with the model's `image_resizer` inside the graph;
images that the resizer leaves with different sizes (keep_aspect_ratio
without padding, identity) are zero-padded at the bottom/right to the
largest one and their true shapes are carried, as the input pipeline does.

Outputs, with the TF OD API's names (all float32):

  * detection_boxes `[batch, max_detections, 4]`: `[ymin, xmin, ymax, xmax]`
    normalized to [0, 1] of the *input* image;
  * detection_scores `[batch, max_detections]`;
  * detection_classes `[batch, max_detections]`: label-map ids, i.e. the
    model's 0-based class + 1 (`LABEL_ID_OFFSET`), as the TF OD API;
  * num_detections `[batch]` (valid rows; the rest is zero padding);
  * detection_multiclass_scores `[batch, max_detections, num_classes]`;
  * detection_anchor_indices `[batch, max_detections]` (float32 as in the
    TF OD API);
  * raw_detection_boxes `[batch, num_anchors, 4]` (normalized, input image)
    and raw_detection_scores `[batch, num_anchors, num_classes]`, before
    non-max suppression;
  * detection_keypoints `[batch, max_detections, K, 2]` normalized (y, x)
    and detection_keypoint_scores `[batch, max_detections, K]`, when the
    model predicts keypoints.

The SavedModel holds only TensorFlow ops and variables: loading and running
it needs TensorFlow, not od_meta.
"""

import os
import shutil
import tempfile

from absl import logging
import tensorflow as tf

from od_meta.builders import image_resizer_builder
from od_meta.builders import model_builder
from od_meta.core import standard_fields as fields
from od_meta.data import tf_example_decoder
from od_meta.protos import pipeline_pb2
from od_meta.training import precision
from od_meta.training import train_loop
from od_meta.utils import config_util

# Added to the model's 0-based classes to give label-map ids (TF OD API).
LABEL_ID_OFFSET = 1

INPUT_NAME = 'input_tensor'
SAVED_MODEL_DIR = 'saved_model'
CHECKPOINT_DIR = 'checkpoint'

_DET = fields.DetectionResultFields

# Postprocess keys exported (when present), in the TF OD API's names.
_OUTPUT_KEYS = (
    _DET.detection_boxes,
    _DET.detection_scores,
    _DET.detection_classes,
    _DET.num_detections,
    _DET.detection_multiclass_scores,
    _DET.detection_anchor_indices,
    _DET.raw_detection_boxes,
    _DET.raw_detection_scores,
    _DET.detection_keypoints,
    _DET.detection_keypoint_scores,
)


def _image_spec(dtype, input_shape):
  """`[batch, H, W, 3]` spec; -1 entries of input_shape are dynamic."""
  shape = [None, None, None, 3]
  if input_shape:
    shape = [None if int(d) < 0 else int(d) for d in input_shape[:3]] + [3]
  return tf.TensorSpec(shape, dtype, name=INPUT_NAME)


def _string_spec(dtype, input_shape):
  """`[batch]` string spec; only input_shape[0] (the batch) is used."""
  del dtype
  batch = None
  if input_shape and int(input_shape[0]) >= 0:
    batch = int(input_shape[0])
  return tf.TensorSpec([batch], tf.string, name=INPUT_NAME)


# input type -> (input dtype, spec fn).
INPUT_TYPES = {
    'image_tensor': (tf.uint8, _image_spec),
    'float_image_tensor': (tf.float32, _image_spec),
    'encoded_image_string_tensor': (tf.string, _string_spec),
    'tf_example': (tf.string, _string_spec),
}


def _check_input_type(input_type):
  if input_type not in INPUT_TYPES:
    raise ValueError(
        f'input_type {input_type!r} is not one of '
        f'{", ".join(sorted(INPUT_TYPES))}')


def _check_input_shape(input_type, input_shape):
  """Validates `ExportConfig.input_shape` for `input_type`."""
  if not input_shape:
    return
  if input_type in ('image_tensor', 'float_image_tensor'):
    if len(input_shape) != 4 or input_shape[3] not in (3, -1):
      raise ValueError(
          'export_config.input_shape must be [batch, height, width, 3] '
          f'(-1 for a dynamic dimension) for {input_type}, got '
          f'{list(input_shape)}')
  elif len(input_shape) not in (1, 4):
    raise ValueError(
        'export_config.input_shape must be [batch] or [batch, height, '
        f'width, 3] (only batch is used; -1 for dynamic) for {input_type}, '
        f'got {list(input_shape)}')
  if any(int(d) == 0 or int(d) < -1 for d in input_shape):
    raise ValueError('export_config.input_shape: dimensions must be > 0 or '
                     f'-1, got {list(input_shape)}')


_MAGIC_NUMBERS = (b'\xff\xd8\xff', b'\x89PNG', b'GIF8', b'BM')


def is_encoded_image(encoded):
  """bool scalar: the string starts with a JPEG / PNG / GIF / BMP / WebP
  header (the formats `tf.io.decode_image` reads)."""
  # Padded so that the header slices exist for any string length.
  head = tf.strings.substr(tf.strings.join([encoded, b'\x00' * 12]), 0, 12)
  webp = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), b'RIFF'),
                        tf.equal(tf.strings.substr(head, 8, 4), b'WEBP'))
  return tf.reduce_any([
      tf.equal(tf.strings.substr(head, 0, len(magic)), magic)
      for magic in _MAGIC_NUMBERS] + [webp])


def _decode_rgb(encoded):
  image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8,
                             expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _nonempty_image(image):
  with tf.control_dependencies([tf.debugging.assert_positive(
      tf.shape(image)[:2],
      message='input_tensor: a decoded image has no pixels (height or '
      'width 0)')]):
    return tf.identity(image)


class DetectionInferenceModule(tf.Module):
  """A `tf.Module` whose `serve` runs one input type through a detector.

  Args:
    detection_model: a built `DetectionModel` (weights restored) whose
      `preprocess(images, true_image_shapes)` accepts already-resized images
      with their true shapes (as train_loop uses it).
    image_resizer_fn: the model's resizer, `[H, W, 3] -> (float32
      [H', W', 3], int32 [3])`.
    input_type: one of `INPUT_TYPES`.
    input_shape: optional static input shape (see ExportConfig.input_shape).
    static_resized_size: (height, width) of every resized image when the
      resizer guarantees one (fixed_shape, padded keep_aspect_ratio), else
      None.

  Attributes:
    serve: the `tf.function` with a one-tensor `input_signature` named
      'input_tensor' returning the output dict documented in this module.

  Raises:
    ValueError: on an unknown input type or a bad input shape.
  """

  def __init__(self, detection_model, image_resizer_fn, input_type, *,
               input_shape=None, static_resized_size=None):
    super().__init__(name='detection_inference')
    _check_input_type(input_type)
    _check_input_shape(input_type, input_shape)
    self.model = detection_model
    self._resizer_fn = image_resizer_fn
    self._input_type = input_type
    self._static_size = static_resized_size
    if input_type == 'tf_example':
      self._decoder = tf_example_decoder.TfExampleDecoder()
    dtype, spec_fn = INPUT_TYPES[input_type]
    signature = [spec_fn(dtype, input_shape)]
    self.serve = tf.function(self._serve, input_signature=signature)

  # ------------------------------------------------------------ decoding
  def _images_from_input(self, input_tensor):
    """Returns (resized float32 [B, H', W', 3], true shapes int32 [B, 3]).

    Bad inputs fail with an `InvalidArgumentError` whose message starts
    with 'input_tensor:' (an empty batch, an image without pixels, bytes
    that are not a JPEG / PNG / GIF / BMP image), not with a kernel's error
    deep in the graph.
    """
    if self._input_type in ('image_tensor', 'float_image_tensor'):
      images = tf.cast(input_tensor, tf.float32)
      shape = tf.shape(images)
      with tf.control_dependencies([
          tf.debugging.assert_positive(
              shape[:3], message='input_tensor: expected a non-empty batch '
              'of images [batch >= 1, height >= 1, width >= 1, 3]')]):
        images = tf.identity(images)
      return self._resize_batch(images, lambda image: image)
    with tf.control_dependencies([
        tf.debugging.assert_positive(
            tf.shape(input_tensor)[:1],
            message='input_tensor: expected a non-empty batch [batch >= 1]')]):
      input_tensor = tf.identity(input_tensor)
    if self._input_type == 'encoded_image_string_tensor':
      def decode(encoded):
        with tf.control_dependencies([tf.debugging.Assert(
            is_encoded_image(encoded),
            ['input_tensor: an element is not JPEG, PNG, GIF, BMP or WebP '
             'image bytes; its first bytes are',
             tf.strings.substr(encoded, 0, 8)])]):
          encoded = tf.identity(encoded)
        return _nonempty_image(tf.cast(_decode_rgb(encoded), tf.float32))
    else:
      def decode(serialized):
        decoded = self._decoder.decode(serialized)
        return _nonempty_image(
            tf.cast(decoded[fields.InputDataFields.image], tf.float32))
    return self._resize_batch(input_tensor, decode)

  def _resize_batch(self, elems, decode_fn):
    """Decodes and resizes each element; stacks them, padding if needed."""
    def resize(elem):
      resized, true_shape = self._resizer_fn(decode_fn(elem))
      return resized, tf.cast(true_shape, tf.int32)

    if self._static_size is not None:
      height, width = self._static_size
      resized, true_shapes = tf.map_fn(
          resize, elems,
          fn_output_signature=(tf.TensorSpec([height, width, 3], tf.float32),
                               tf.TensorSpec([3], tf.int32)))
      return resized, true_shapes

    # Resized sizes may differ: flatten each image into a ragged row, then
    # zero-pad every image at the bottom/right to the largest size.
    def resize_flat(elem):
      resized, true_shape = resize(elem)
      return tf.reshape(resized, [-1]), tf.shape(resized), true_shape

    flat, shapes, true_shapes = tf.map_fn(
        resize_flat, elems,
        fn_output_signature=(
            tf.RaggedTensorSpec([None], tf.float32, ragged_rank=0),
            tf.TensorSpec([3], tf.int32), tf.TensorSpec([3], tf.int32)))
    max_hw = tf.reduce_max(
        tf.concat([shapes[:, :2], tf.zeros([1, 2], tf.int32)], axis=0),
        axis=0)

    def pad(index):
      shape = shapes[index]
      image = tf.reshape(flat[index], shape)
      return tf.pad(image, [[0, max_hw[0] - shape[0]],
                            [0, max_hw[1] - shape[1]], [0, 0]])

    resized = tf.map_fn(
        pad, tf.range(tf.shape(shapes)[0]),
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
    return resized, true_shapes

  # ------------------------------------------------------------- serving
  def _serve(self, input_tensor):
    resized, true_shapes = self._images_from_input(input_tensor)
    return self.run_model(resized, true_shapes)

  def run_model(self, resized, true_shapes):
    """preprocess -> predict -> postprocess; the export's output dict.

    Args:
      resized: float32 `[B, H', W', 3]` resized images in [0, 255].
      true_shapes: int32 `[B, 3]` true shapes of the resized images.

    Returns:
      dict of float32 tensors named as in the module docstring; classes
      shifted by `LABEL_ID_OFFSET`.
    """
    preprocessed, true_shapes = self.model.preprocess(resized, true_shapes)
    predictions = self.model.predict(preprocessed, true_shapes,
                                     training=False)
    detections = self.model.postprocess(predictions, true_shapes)
    return postprocess_to_outputs(detections)


def postprocess_to_outputs(detections):
  """Maps a `postprocess` dict to the exported outputs.

  Keeps the keys of `_OUTPUT_KEYS` that are present, casts them to float32
  and adds `LABEL_ID_OFFSET` to detection_classes (0-based -> label-map id).

  Raises:
    ValueError: if a required key (boxes, scores, classes, num_detections)
      is missing.
  """
  required = (_DET.detection_boxes, _DET.detection_scores,
              _DET.detection_classes, _DET.num_detections)
  missing = [k for k in required if k not in detections]
  if missing:
    raise ValueError(f'the model\'s postprocess output lacks {missing}')
  outputs = {}
  for key in _OUTPUT_KEYS:
    if key in detections:
      outputs[key] = tf.cast(detections[key], tf.float32)
  outputs[_DET.detection_classes] += float(LABEL_ID_OFFSET)
  return outputs


# ---------------------------------------------------------------- configs
def _as_configs(pipeline_config, config_override):
  """Returns a configs dict from a config proto / dict / path + overrides.

  `config_override` may be a text-format string (merged as
  `text_format.Merge`, like the TF OD API's --config_override) or a dict of
  dotted overrides (`config_util.merge_external_params_with_configs`).
  """
  if isinstance(pipeline_config, (str, os.PathLike)):
    configs = config_util.get_configs_from_pipeline_file(pipeline_config)
  elif isinstance(pipeline_config, pipeline_pb2.TrainEvalPipelineConfig):
    configs = config_util.create_configs_from_pipeline_proto(pipeline_config)
  elif isinstance(pipeline_config, dict):
    configs = config_util.merge_external_params_with_configs(pipeline_config)
  else:
    raise ValueError(
        'pipeline_config must be a TrainEvalPipelineConfig, a configs dict '
        f'or a path, got {type(pipeline_config).__name__}')
  if config_override:
    if isinstance(config_override, dict):
      configs = config_util.merge_external_params_with_configs(
          configs, config_override)
    elif isinstance(config_override, str):
      proto = config_util.create_pipeline_proto_from_configs(configs)
      config_util.parse_text_proto(config_override, proto,
                                   path='<config_override>', merge=True)
      configs = config_util.create_configs_from_pipeline_proto(proto)
    else:
      raise ValueError('config_override must be a text-format string or a '
                       'dict of dotted overrides, got '
                       f'{type(config_override).__name__}')
  return configs


def latest_checkpoint(trained_checkpoint_dir):
  """Newest checkpoint prefix in a directory.

  Raises:
    ValueError: naming the directory when it holds no checkpoint.
  """
  trained_checkpoint_dir = os.fspath(trained_checkpoint_dir)
  path = None
  if tf.io.gfile.isdir(trained_checkpoint_dir):
    path = tf.train.latest_checkpoint(trained_checkpoint_dir)
  if path is None:
    raise ValueError(f'trained_checkpoint_dir: no checkpoint in directory '
                     f'{trained_checkpoint_dir!r} (expected the model_dir '
                     'of a training run, with a "checkpoint" file)')
  return path


def build_restored_model(configs, checkpoint_path):
  """Builds the model (is_training=False), creates and restores variables.

  The model is built under the training's precision policy
  (`train_config.mixed_precision` / `use_bfloat16`): its layers compute in
  float16 / bfloat16 as in training, while its outputs, box decoding and
  NMS stay float32, so the exported signature's outputs are float32.

  Returns:
    the `DetectionModel`.

  Raises:
    ValueError: when the checkpoint does not hold the model's variables
      (`assert_existing_objects_matched` failed: a config that does not
      match the checkpoint); the message names the checkpoint.
  """
  policy = precision.policy_name(configs['train_config'].mixed_precision,
                                 configs['train_config'].use_bfloat16)
  with precision.policy_scope(policy):
    detection_model = model_builder.build(configs['model'], is_training=False)
    height, width = train_loop.image_size_for_building(configs)
    train_loop.build_model_variables(detection_model, height, width)
  try:
    status = tf.train.Checkpoint(model=detection_model).restore(
        checkpoint_path)
    status.expect_partial()
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    detail = str(e)
    if len(detail) > 600:
      detail = detail[:600] + '...'
    raise ValueError(
        f'checkpoint {checkpoint_path} does not match the model of the '
        f'pipeline config (was it trained with this config?): {detail}'
    ) from None
  return detection_model


def _prepare_output_directory(output_directory, overwrite):
  """Checks the output directory; returns the temporary sibling to fill."""
  if os.path.exists(output_directory):
    if not os.path.isdir(output_directory):
      raise FileExistsError(f'output_directory {output_directory!r} exists '
                            'and is not a directory')
    if os.listdir(output_directory) and not overwrite:
      raise FileExistsError(
          f'output_directory {output_directory!r} exists and is not empty; '
          'pass overwrite=True (--overwrite) to replace it')
  parent = os.path.dirname(output_directory) or '.'
  os.makedirs(parent, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(
      prefix=f'.{os.path.basename(output_directory)}.tmp-', dir=parent)
  # mkdtemp makes the directory 0700; give it the permissions of a plain
  # os.makedirs (0777 minus the umask) so that a server can read the export.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp_dir, 0o777 & ~umask)
  return tmp_dir


def _move_into_place(tmp_dir, output_directory):
  """Renames tmp_dir to output_directory, replacing what was there."""
  backup = None
  if os.path.exists(output_directory):
    backup = tempfile.mkdtemp(
        prefix=f'.{os.path.basename(output_directory)}.old-',
        dir=os.path.dirname(output_directory) or '.')
    os.rmdir(backup)
    os.rename(output_directory, backup)
  try:
    os.rename(tmp_dir, output_directory)
  except OSError:
    if backup is not None:
      os.rename(backup, output_directory)
    raise
  if backup is not None:
    shutil.rmtree(backup, ignore_errors=True)


# ----------------------------------------------------------------- export
def export_inference_graph(input_type, pipeline_config, trained_checkpoint_dir,
                           output_directory, *, config_override=None,
                           overwrite=False):
  """Exports the newest checkpoint of a training run as a SavedModel.

  Args:
    input_type: one of 'image_tensor', 'float_image_tensor',
      'encoded_image_string_tensor', 'tf_example'; None or '' takes
      `export_config.input_type` (default 'image_tensor').
    pipeline_config: a `TrainEvalPipelineConfig`, a configs dict
      (`config_util.get_configs_from_pipeline_file`) or a path to one.
    trained_checkpoint_dir: directory holding the checkpoints of
      `train_loop` (its newest one is exported).
    output_directory: where saved_model/, checkpoint/ and pipeline.config
      go. Written atomically: everything goes to a temporary sibling
      directory that is renamed at the end, so a failed export leaves
      nothing behind (and an existing export untouched).
    config_override: optional text-format `TrainEvalPipelineConfig` string
      merged into the config, or a dict of dotted overrides
      (`config_util.merge_external_params_with_configs`).
    overwrite: replace a non-empty output_directory. Default False.

  Returns:
    dict with 'saved_model' (path), 'checkpoint' (the checkpoint prefix
    written), 'pipeline_config' (path), 'restored_checkpoint' (the training
    checkpoint exported), 'input_type' and 'signature_name'.

  Raises:
    ValueError: unknown input type (the message lists the valid ones), bad
      export_config.input_shape, a bad config, no checkpoint in
      trained_checkpoint_dir (the message names it), a checkpoint that does
      not match the config's model, or use_moving_averages (not supported
      yet).
    FileExistsError: output_directory exists, is not empty and not
      `overwrite`.
  """
  configs = _as_configs(pipeline_config, config_override)
  export_config = configs['export_config']
  input_type = input_type or export_config.input_type or 'image_tensor'
  _check_input_type(input_type)
  input_shape = list(export_config.input_shape)
  _check_input_shape(input_type, input_shape)
  signature_name = export_config.signature_name or 'serving_default'
  if (configs['train_config'].optimizer.use_moving_average and
      export_config.use_moving_averages):
    raise ValueError(
        'exporting moving-average weights is not supported yet; set '
        'export_config.use_moving_averages: false to export the raw weights')
  checkpoint_path = latest_checkpoint(trained_checkpoint_dir)
  output_directory = os.path.abspath(os.fspath(output_directory))
  # Fail on an existing export before the (slow) build.
  tmp_dir = _prepare_output_directory(output_directory, overwrite)
  try:
    detection_model = build_restored_model(configs, checkpoint_path)
    resizer_config = config_util.get_image_resizer_config(configs['model'])
    size = config_util.get_spatial_image_size(resizer_config)
    module = DetectionInferenceModule(
        detection_model, image_resizer_builder.build(resizer_config),
        input_type, input_shape=input_shape,
        static_resized_size=tuple(size) if min(size) > 0 else None)
    concrete = module.serve.get_concrete_function()
    tf.saved_model.save(module, os.path.join(tmp_dir, SAVED_MODEL_DIR),
                        signatures={signature_name: concrete})
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=detection_model),
        os.path.join(tmp_dir, CHECKPOINT_DIR), max_to_keep=1)
    ckpt_name = os.path.basename(manager.save(checkpoint_number=0))
    configs = dict(configs)
    export_config = type(export_config)()
    export_config.CopyFrom(configs['export_config'])
    export_config.input_type = input_type
    configs['export_config'] = export_config
    config_util.save_pipeline_config(configs, tmp_dir)
    _move_into_place(tmp_dir, output_directory)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  logging.info('Exported %s (%s) to %s', checkpoint_path, input_type,
               output_directory)
  return {
      'saved_model': os.path.join(output_directory, SAVED_MODEL_DIR),
      'checkpoint': os.path.join(output_directory, CHECKPOINT_DIR,
                                 ckpt_name),
      'pipeline_config': os.path.join(output_directory,
                                      config_util.PIPELINE_CONFIG_NAME),
      'restored_checkpoint': checkpoint_path,
      'input_type': input_type,
      'signature_name': signature_name,
  }
