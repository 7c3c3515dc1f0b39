"""Builds the batched tf.data input pipeline of an `InputReader`
(protos/input_reader.proto).

The dataset yields `(features, labels)` as `od_meta.data.inputs.build_dataset`
documents: images float32 `[B, H, W, 3]` in [0, 255] with their true shapes,
groundtruth boxes normalized `[ymin, xmin, ymax, xmax]` padded to
`max_number_of_boxes` rows, 0-based class ids (-1 on padded rows).
"""

import tensorflow as tf

from od_meta.builders import builder_utils
from od_meta.data import inputs
from od_meta.data import tf_example_decoder
from od_meta.protos import input_reader_pb2


def build_decoder(input_reader_config):
  """Returns the `TfExampleDecoder` an `InputReader` describes."""
  return tf_example_decoder.TfExampleDecoder(
      label_map_path=input_reader_config.label_map_path or None,
      num_keypoints=input_reader_config.num_keypoints,
      use_display_name=input_reader_config.use_display_name)


def build(input_reader_config, *, batch_size, is_training,
          image_resizer_fn=None, preprocess_fn=None, input_context=None,
          seed=None, retain_original_image=False, max_number_of_boxes=None):
  """Returns the `tf.data.Dataset` of an `InputReader` message.

  Args:
    input_reader_config: an `InputReader` message.
    batch_size: int > 0, the global batch size (train_config.batch_size or
      eval_config.batch_size).
    is_training: bool; training shuffles (unless `shuffle: false`), repeats
      and applies `preprocess_fn`.
    image_resizer_fn: from `image_resizer_builder.build` (the model's
      resizer).
    preprocess_fn: from `preprocessor_builder.build_preprocess_fn`.
    input_context: optional `tf.distribute.InputContext`.
    seed: optional int for shuffling.
    retain_original_image: bool, keep the decoded image for visualization.
    max_number_of_boxes: groundtruth rows per image; default the reader's
      `max_number_of_boxes` (training passes train_config's, as the TF OD
      API does).

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if no input is configured, or a pattern matches no file
      (the error names the pattern).
  """
  builder_utils.check_message_type(input_reader_config,
                                   input_reader_pb2.InputReader,
                                   'dataset_builder')
  builder_utils.which_oneof(input_reader_config, 'input_reader')
  paths = list(input_reader_config.tf_record_input_reader.input_path)
  if not paths:
    raise ValueError(
        f'InputReader {input_reader_config.name!r}: '
        'tf_record_input_reader.input_path is empty')
  drop_remainder = (input_reader_config.drop_remainder
                    if input_reader_config.HasField('drop_remainder') else None)
  prefetch = (input_reader_config.num_prefetch_batches
              if input_reader_config.num_prefetch_batches > 0 else
              tf.data.AUTOTUNE)
  return inputs.build_dataset(
      paths, build_decoder(input_reader_config),
      batch_size=batch_size,
      is_training=is_training,
      preprocess_fn=preprocess_fn,
      image_resizer_fn=image_resizer_fn,
      max_number_of_boxes=(max_number_of_boxes or
                           input_reader_config.max_number_of_boxes),
      num_keypoints=input_reader_config.num_keypoints,
      shuffle=input_reader_config.shuffle and is_training,
      shuffle_buffer_size=input_reader_config.shuffle_buffer_size,
      filenames_shuffle_buffer_size=(
          input_reader_config.filenames_shuffle_buffer_size),
      num_readers=input_reader_config.num_readers,
      num_epochs=input_reader_config.num_epochs,
      sample_1_of_n_examples=input_reader_config.sample_1_of_n_examples,
      drop_remainder=drop_remainder,
      input_context=input_context,
      seed=seed,
      retain_original_image=retain_original_image,
      prefetch_buffer_size=prefetch)
