"""tf.data input pipeline: TFRecords of tf.Examples -> (features, labels).

    dataset = build_dataset(['data/train-*.tfrecord'], decoder,
                            batch_size=8, is_training=True,
                            preprocess_fn=functools.partial(
                                preprocessor.preprocess,
                                preprocess_options=[...]),
                            image_resizer_fn=functools.partial(
                                image_resizer.fixed_shape_resizer,
                                height=300, width=300))

Per example: decode -> (training only) augmentation on the decoded dict ->
image resizer -> per-box fields padded / truncated to `max_number_of_boxes`.
Then padded batching: images of different sizes (e.g. keep-aspect-ratio
resizing) are zero-padded at the bottom/right to the largest in the batch and
`true_image_shape` says which window is valid. Groundtruth boxes stay
normalized to that true window (DESIGN.md; TF OD API convention).

Element structure (B = per-replica batch size, M = max_number_of_boxes,
K = num_keypoints):

  features = {
    'image': float32 [B, H, W, 3], values in [0, 255],
    'true_image_shape': int32 [B, 3],
    'original_image_spatial_shape': int32 [B, 2] (decoded image H, W),
    'source_id': string [B],
    'hash': int64 [B], a hash of source_id in [0, 2**31) (HASH_KEY),
    'original_image': uint8 [B, H0, W0, 3] (only if retain_original_image;
        zero padded to the largest in the batch),
  }
  labels = {
    'groundtruth_boxes': float32 [B, M, 4] normalized yxyx,
    'groundtruth_classes': int32 [B, M], 0-based, -1 on padded rows,
    'groundtruth_weights': float32 [B, M], 0 on padded rows,
    'groundtruth_is_crowd': bool [B, M], 'groundtruth_difficult': bool [B, M],
    'groundtruth_area': float32 [B, M],
    'groundtruth_keypoints': float32 [B, M, K, 2] normalized (y, x) (K > 0),
    'groundtruth_keypoint_visibilities': bool [B, M, K] (K > 0),
    'num_groundtruth_boxes': int32 [B],
  }

Examples with more than M boxes keep their first M boxes (decoder order),
silently; `num_groundtruth_boxes` is then M.

Source: TF OD API `object_detection/inputs.py` (train_input / eval_input,
pad_input_data_to_static_shapes) and `builders/dataset_builder.py`.
"""

import tensorflow as tf

from od_meta.core import standard_fields
from od_meta.data import image_resizer
from od_meta.data import preprocessor

fields = standard_fields.InputDataFields

HASH_KEY = 'hash'
HASH_BINS = 1 << 31

LABEL_FIELDS = (
    fields.groundtruth_boxes,
    fields.groundtruth_classes,
    fields.groundtruth_weights,
    fields.groundtruth_is_crowd,
    fields.groundtruth_area,
    fields.groundtruth_difficult,
    fields.groundtruth_keypoints,
    fields.groundtruth_keypoint_visibilities,
)


def _list_files(input_files):
  if isinstance(input_files, (str, bytes)):
    input_files = [input_files]
  input_files = list(input_files or [])
  if not input_files:
    raise ValueError('build_dataset: input_files is empty')
  filenames = []
  for pattern in input_files:
    matched = tf.io.gfile.glob(pattern)
    if not matched:
      raise ValueError(
          f'build_dataset: input_files pattern {pattern!r} matches no file')
    filenames.extend(sorted(matched))
  return filenames


def _fill_defaults(tensor_dict, num_keypoints):
  """Adds per-box fields missing from the decoder output; casts dtypes."""
  out = dict(tensor_dict)
  if fields.groundtruth_boxes not in out:
    out[fields.groundtruth_boxes] = tf.zeros([0, 4], tf.float32)
  boxes = tf.cast(out[fields.groundtruth_boxes], tf.float32)
  out[fields.groundtruth_boxes] = tf.reshape(boxes, [-1, 4])
  n = tf.shape(boxes)[:1]
  if fields.groundtruth_classes not in out:
    raise ValueError('build_dataset: the decoder output has no '
                     f'{fields.groundtruth_classes!r}')
  defaults = {
      fields.groundtruth_weights: (tf.ones, tf.float32),
      fields.groundtruth_is_crowd: (tf.zeros, tf.bool),
      fields.groundtruth_area: (tf.zeros, tf.float32),
      fields.groundtruth_difficult: (tf.zeros, tf.bool),
  }
  for key, (fn, dtype) in defaults.items():
    if key in out:
      out[key] = tf.cast(out[key], dtype)
    else:
      out[key] = fn(n, dtype)
  out[fields.groundtruth_classes] = tf.cast(out[fields.groundtruth_classes],
                                            tf.int32)
  if num_keypoints > 0:
    for key in (fields.groundtruth_keypoints,
                fields.groundtruth_keypoint_visibilities):
      if key not in out:
        raise ValueError(f'build_dataset: num_keypoints={num_keypoints} but '
                         f'the decoder output has no {key!r}')
    kp = tf.cast(out[fields.groundtruth_keypoints], tf.float32)
    if kp.shape.rank == 3 and kp.shape[1] is not None and (
        kp.shape[1] != num_keypoints):
      raise ValueError(f'build_dataset: num_keypoints={num_keypoints} but the '
                       f'decoder gives {kp.shape[1]} keypoints per box')
    out[fields.groundtruth_keypoints] = tf.reshape(kp, [-1, num_keypoints, 2])
    out[fields.groundtruth_keypoint_visibilities] = tf.reshape(
        tf.cast(out[fields.groundtruth_keypoint_visibilities], tf.bool),
        [-1, num_keypoints])
  else:
    out.pop(fields.groundtruth_keypoints, None)
    out.pop(fields.groundtruth_keypoint_visibilities, None)
  out.pop(fields.num_groundtruth_boxes, None)
  return out


def build_dataset(input_files, decoder, *, batch_size, is_training,
                  preprocess_fn=None, image_resizer_fn=None,
                  max_number_of_boxes=100, num_keypoints=0,
                  shuffle_buffer_size=2048, filenames_shuffle_buffer_size=100,
                  num_readers=4, num_parallel_calls=tf.data.AUTOTUNE,
                  repeat=None, seed=None, drop_remainder=None,
                  input_context=None, retain_original_image=False,
                  prefetch_buffer_size=tf.data.AUTOTUNE, shuffle=None,
                  num_epochs=0, sample_1_of_n_examples=1):
  """Builds the batched `(features, labels)` dataset (module docstring).

  Args:
    input_files: glob pattern or list of patterns of TFRecord files.
    decoder: object with `decode(serialized) -> dict` (e.g.
      `TfExampleDecoder`) or a callable doing the same; the dict uses
      `InputDataFields` keys (image uint8 [H, W, 3], normalized boxes...).
    batch_size: positive int, the GLOBAL batch size; with `input_context`
      each pipeline batches `input_context.get_per_replica_batch_size`.
    is_training: bool; training shuffles, repeats, augments and drops the
      last partial batch by default.
    preprocess_fn: optional `dict -> dict` augmentation (e.g.
      `functools.partial(preprocessor.preprocess, preprocess_options=...)`),
      applied to the decoded dict (image float32 [0, 255]) in training only.
    image_resizer_fn: `image [H, W, 3] -> (float32 [H', W', 3], int32 [3])`,
      see `image_resizer`; default `identity_resizer`.
    max_number_of_boxes: positive int M, groundtruth rows per image.
    num_keypoints: int K >= 0; K > 0 requires keypoints from the decoder.
    shuffle_buffer_size: records in the shuffle buffer (training).
    filenames_shuffle_buffer_size: files in the file shuffle buffer.
    num_readers: files read in parallel (interleave cycle length).
    num_parallel_calls: parallelism of decode / map.
    repeat: bool; default `is_training`.
    seed: optional int for file / record shuffling and deterministic order.
    drop_remainder: bool; default `is_training`.
    input_context: optional `tf.distribute.InputContext`: files (or records,
      when there are fewer files than pipelines) are sharded by
      `input_pipeline_id` over `num_input_pipelines`.
    retain_original_image: bool, add the decoded uint8 image as
      `features['original_image']` (for visualization).
    prefetch_buffer_size: batches to prefetch.
    shuffle: bool; shuffle files and records. Default `is_training`.
    num_epochs: int >= 0; with `repeat`, read the data this many times
      (0 = forever).
    sample_1_of_n_examples: int >= 1; keep every n-th record (after
      sharding), e.g. to evaluate on a subset.

  Returns:
    tf.data.Dataset of `(features, labels)` dicts.

  Raises:
    ValueError: if a pattern matches no file, batch_size or
      max_number_of_boxes is not positive, num_keypoints is negative or the
      decoder output lacks required fields.
  """
  if not isinstance(batch_size, int) or batch_size <= 0:
    raise ValueError(f'build_dataset: batch_size must be a positive int, got '
                     f'{batch_size!r}')
  if int(max_number_of_boxes) <= 0:
    raise ValueError('build_dataset: max_number_of_boxes must be positive, '
                     f'got {max_number_of_boxes}')
  if int(num_keypoints) < 0:
    raise ValueError(f'build_dataset: num_keypoints must be >= 0, got '
                     f'{num_keypoints}')
  num_keypoints = int(num_keypoints)
  if int(num_epochs) < 0:
    raise ValueError(f'build_dataset: num_epochs must be >= 0, got {num_epochs}')
  if int(sample_1_of_n_examples) < 1:
    raise ValueError('build_dataset: sample_1_of_n_examples must be >= 1, got '
                     f'{sample_1_of_n_examples}')
  shuffle = is_training if shuffle is None else bool(shuffle)
  repeat = is_training if repeat is None else repeat
  drop_remainder = is_training if drop_remainder is None else drop_remainder
  image_resizer_fn = image_resizer_fn or image_resizer.identity_resizer
  decode_fn = decoder.decode if hasattr(decoder, 'decode') else decoder
  if not callable(decode_fn):
    raise ValueError('build_dataset: decoder must have a decode method or be '
                     'callable')

  filenames = _list_files(input_files)
  per_replica_batch = batch_size
  shard_records = False
  files = tf.data.Dataset.from_tensor_slices(filenames)
  if input_context is not None:
    per_replica_batch = input_context.get_per_replica_batch_size(batch_size)
    if input_context.num_input_pipelines > 1:
      if len(filenames) >= input_context.num_input_pipelines:
        files = files.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
      else:
        shard_records = True
  if shuffle:
    files = files.shuffle(filenames_shuffle_buffer_size, seed=seed)
  deterministic = (not shuffle) or seed is not None
  cycle_length = max(1, min(int(num_readers), len(filenames)))
  if cycle_length > 1:
    records = files.interleave(
        tf.data.TFRecordDataset, cycle_length=cycle_length,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  else:
    records = files.flat_map(tf.data.TFRecordDataset)
  if shard_records:
    records = records.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
  if int(sample_1_of_n_examples) > 1:
    records = records.shard(int(sample_1_of_n_examples), 0)
  if shuffle:
    records = records.shuffle(shuffle_buffer_size, seed=seed)
  if repeat:
    records = records.repeat(int(num_epochs) or None)

  def _process(serialized):
    decoded = dict(decode_fn(serialized))
    if fields.image not in decoded:
      raise ValueError(f'build_dataset: the decoder output has no '
                       f'{fields.image!r}')
    original_image = decoded[fields.image]
    tensor_dict = _fill_defaults(decoded, num_keypoints)
    tensor_dict[fields.image] = tf.cast(original_image, tf.float32)
    if is_training and preprocess_fn is not None:
      tensor_dict = dict(preprocess_fn(tensor_dict))
      tensor_dict[fields.groundtruth_boxes] = tf.reshape(
          tensor_dict[fields.groundtruth_boxes], [-1, 4])
      if num_keypoints > 0:
        tensor_dict[fields.groundtruth_keypoints] = tf.reshape(
            tensor_dict[fields.groundtruth_keypoints], [-1, num_keypoints, 2])
        tensor_dict[fields.groundtruth_keypoint_visibilities] = tf.reshape(
            tensor_dict[fields.groundtruth_keypoint_visibilities],
            [-1, num_keypoints])
    image, true_shape = image_resizer_fn(tensor_dict[fields.image])
    image = tf.cast(image, tf.float32)
    if fields.original_image_spatial_shape in decoded:
      original_shape = tf.cast(
          tf.reshape(decoded[fields.original_image_spatial_shape], [2]),
          tf.int32)
    else:
      original_shape = tf.shape(original_image)[:2]
    source_id = tf.reshape(
        decoded.get(fields.source_id, tf.constant('')), [])
    features = {
        fields.image: image,
        fields.true_image_shape: tf.reshape(tf.cast(true_shape, tf.int32),
                                            [3]),
        fields.original_image_spatial_shape: original_shape,
        fields.source_id: source_id,
        HASH_KEY: tf.strings.to_hash_bucket_fast(source_id, HASH_BINS),
    }
    if retain_original_image:
      features[fields.original_image] = tf.cast(original_image, tf.uint8)
    padded = preprocessor.pad_to_fixed_size(tensor_dict, max_number_of_boxes)
    labels = {k: padded[k] for k in LABEL_FIELDS if k in padded}
    labels[fields.num_groundtruth_boxes] = padded[
        fields.num_groundtruth_boxes]
    return features, labels

  if num_parallel_calls is None:
    dataset = records.map(_process)
  else:
    dataset = records.map(_process, num_parallel_calls=num_parallel_calls,
                          deterministic=deterministic)
  dataset = dataset.padded_batch(per_replica_batch,
                                 drop_remainder=drop_remainder)
  if prefetch_buffer_size:
    dataset = dataset.prefetch(prefetch_buffer_size)
  return dataset


def unbatch_groundtruth(labels):
  """Splits batched labels into per-image tensors cut to their box counts.

  Args:
    labels: dict as produced by `build_dataset` (`[B, M, ...]` fields plus
      `num_groundtruth_boxes` int32 `[B]`), with a static batch size B
      (eager tensors, or a dataset built with drop_remainder=True).

  Returns:
    dict field name -> list of B tensors `[N_i, ...]` (every label field but
    `num_groundtruth_boxes`).

  Raises:
    ValueError: if `num_groundtruth_boxes` is missing or B is not static.
  """
  if fields.num_groundtruth_boxes not in labels:
    raise ValueError('unbatch_groundtruth: labels have no '
                     f'{fields.num_groundtruth_boxes!r}')
  num_boxes = labels[fields.num_groundtruth_boxes]
  batch = num_boxes.shape[0]
  if batch is None:
    raise ValueError('unbatch_groundtruth: the batch size of '
                     f'{fields.num_groundtruth_boxes!r} must be static; build '
                     'the dataset with drop_remainder=True')
  counts = tf.unstack(num_boxes, num=batch)
  out = {}
  for key, value in labels.items():
    if key == fields.num_groundtruth_boxes:
      continue
    out[key] = [t[:counts[i]] for i, t in
                enumerate(tf.unstack(value, num=batch))]
  return out


def unstack_padded_groundtruth(labels):
  """Splits batched labels into per-image tensors that keep their padding.

  The TF OD API's `unpad_groundtruth_tensors: false` (its TPU / XLA path):
  every image keeps `M` rows, so every shape is static, and the padding rows
  get groundtruth weight 0, which the target assigners read as "matches
  nothing" (no positive, no heatmap peak, no loss).

  Args:
    labels: as for `unbatch_groundtruth`.

  Returns:
    dict field name -> list of B tensors `[M, ...]`, with
    `groundtruth_weights` (given weights, or ones, times the row mask).

  Raises:
    ValueError: as `unbatch_groundtruth`.
  """
  if fields.num_groundtruth_boxes not in labels:
    raise ValueError('unstack_padded_groundtruth: labels have no '
                     f'{fields.num_groundtruth_boxes!r}')
  num_boxes = labels[fields.num_groundtruth_boxes]
  batch = num_boxes.shape[0]
  if batch is None:
    raise ValueError('unstack_padded_groundtruth: the batch size of '
                     f'{fields.num_groundtruth_boxes!r} must be static')
  out = {key: tf.unstack(value, num=batch) for key, value in labels.items()
         if key != fields.num_groundtruth_boxes}
  boxes = labels[fields.groundtruth_boxes]
  mask = tf.sequence_mask(num_boxes, tf.shape(boxes)[1], dtype=tf.float32)
  weights = labels.get(fields.groundtruth_weights)
  weights = mask if weights is None else tf.cast(weights, tf.float32) * mask
  out[fields.groundtruth_weights] = tf.unstack(weights, num=batch)
  return out


def provide_groundtruth_kwargs(labels, unpad=True):
  """Per-image groundtruth as keyword arguments of provide_groundtruth.

  Usage: `model.provide_groundtruth(**provide_groundtruth_kwargs(labels))`.
  Maps boxes, classes, weights, keypoints, keypoint_visibilities and
  is_crowd to `groundtruth_<name>_list`; other fields are left out.

  Args:
    labels: padded, batched labels from `build_dataset`.
    unpad: cut each image's rows to its box count (`unbatch_groundtruth`,
      train_config.unpad_groundtruth_tensors: true), or keep the padding
      with zero weights (`unstack_padded_groundtruth`; static shapes, for
      XLA).

  Raises:
    ValueError: as `unbatch_groundtruth`.
  """
  lists = (unbatch_groundtruth(labels) if unpad else
           unstack_padded_groundtruth(labels))
  names = (fields.groundtruth_boxes, fields.groundtruth_classes,
           fields.groundtruth_weights, fields.groundtruth_keypoints,
           fields.groundtruth_keypoint_visibilities,
           fields.groundtruth_is_crowd)
  return {f'{name}_list': lists[name] for name in names if name in lists}
