r"""Exports a trained od_meta detector as a SavedModel for TF Serving.

As the TF Object Detection API's exporter_main_v2.py:

    python scripts/exporter_main.py \
      --input_type=image_tensor \
      --pipeline_config_path=runs/ssd_digits/pipeline.config \
      --trained_checkpoint_dir=runs/ssd_digits \
      --output_directory=exported/ssd_digits [--overwrite] \
      [--config_override='model { ssd { post_processing { ... } } }'] \
      [--config_override=export_config.signature_name=detect]

writes exported/ssd_digits/{saved_model/, checkpoint/, pipeline.config}
from the newest checkpoint of --trained_checkpoint_dir; pass
--trained_checkpoint_dir=runs/ssd_digits/best for the best checkpoint kept by
evaluation during training (eval_config.eval_every_n_steps). A model trained
under mixed precision is exported under the same policy, with float32
outputs.
--input_type is one of image_tensor (uint8 [batch, H, W, 3]),
float_image_tensor (float32 [batch, H, W, 3] in [0, 255]),
encoded_image_string_tensor (string [batch] JPEG/PNG bytes) and tf_example
(string [batch] serialized tf.Examples); default: the config's
export_config.input_type (itself 'image_tensor' by default).
--config_override takes a text-format TrainEvalPipelineConfig fragment (as
the TF OD API) or a dotted key=value override (as model_main.py); it may be
repeated. Errors (no checkpoint, an existing non-empty output directory, a
bad config) print one line to stderr and exit with status 2.
"""

import os
import re
import sys

from absl import app
from absl import flags

flags.DEFINE_string('input_type', None,
                    'image_tensor, float_image_tensor, '
                    'encoded_image_string_tensor or tf_example (default: '
                    'export_config.input_type of the config).')
flags.DEFINE_string('pipeline_config_path', None,
                    'Path to the TrainEvalPipelineConfig text proto.')
flags.DEFINE_string('trained_checkpoint_dir', None,
                    'Directory with the training checkpoints (the newest '
                    'one is exported).')
flags.DEFINE_string('output_directory', None,
                    'Where saved_model/, checkpoint/ and pipeline.config go.')
flags.DEFINE_multi_string('config_override', [],
                          'Text-format pipeline fragment, or dotted '
                          'key=value override; repeatable.')
flags.DEFINE_boolean('overwrite', False,
                     'Replace a non-empty --output_directory.')

FLAGS = flags.FLAGS

_DOTTED = re.compile(r'^\s*[A-Za-z_][\w.\[\]-]*\s*=')


def _overrides(values):
  """Splits --config_override values into (text format, dotted dict)."""
  text, dotted = [], {}
  for value in values:
    if _DOTTED.match(value):
      key, item = value.split('=', 1)
      dotted[key.strip()] = item.strip()
    else:
      text.append(value)
  return '\n'.join(text), dotted


def _precheck():
  """Errors found without TensorFlow (local paths only); None if none.

  The exporter checks the same again; doing it here first makes the common
  mistakes fail in a second instead of after loading TensorFlow.
  """
  out = FLAGS.output_directory
  if ('://' not in out and os.path.isdir(out) and os.listdir(out) and
      not FLAGS.overwrite):
    return (f'output_directory {out!r} exists and is not empty; pass '
            '--overwrite to replace it')
  checkpoint_dir = FLAGS.trained_checkpoint_dir
  if ('://' not in checkpoint_dir and
      not os.path.isfile(os.path.join(checkpoint_dir, 'checkpoint'))):
    return (f'trained_checkpoint_dir: no checkpoint in directory '
            f'{checkpoint_dir!r} (expected the model_dir of a training run, '
            'with a "checkpoint" file)')
  return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for name in ('pipeline_config_path', 'trained_checkpoint_dir',
               'output_directory'):
    if not getattr(FLAGS, name):
      raise app.UsageError(f'--{name} is required')
  error = _precheck()
  if error:
    print(f'exporter_main: {error}', file=sys.stderr)
    return 2
  # Imported here so that --help and flag errors do not load TensorFlow.
  from od_meta.export import exporter  # pylint: disable=g-import-not-at-top
  from od_meta.utils import config_util  # pylint: disable=g-import-not-at-top

  try:
    configs = config_util.get_configs_from_pipeline_file(
        FLAGS.pipeline_config_path)
    text, dotted = _overrides(FLAGS.config_override)
    if dotted:
      configs = config_util.merge_external_params_with_configs(configs,
                                                               dotted)
    result = exporter.export_inference_graph(
        FLAGS.input_type, configs, FLAGS.trained_checkpoint_dir,
        FLAGS.output_directory, config_override=text or None,
        overwrite=FLAGS.overwrite)
  except (OSError, ValueError, AssertionError) as e:
    print(f'exporter_main: {e}', file=sys.stderr)
    return 2
  print(f'Exported {result["restored_checkpoint"]} '
        f'({result["input_type"]}, signature '
        f'{result["signature_name"]!r}) to {FLAGS.output_directory}')
  return 0


if __name__ == '__main__':
  app.run(main)
