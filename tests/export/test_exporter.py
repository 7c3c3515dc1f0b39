"""Tests of od_meta.export.exporter and scripts/exporter_main.py.

One tiny SSD (MobileNetV2 x0.35, 64x64 fixed-shape resizer, 3 feature maps)
is trained for 2 steps on 8 generated digits scenes once per module; the
exports share it. The image_tensor export is written by exporter_main.py in
a subprocess (end to end), the three others in process.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import image_resizer_builder
from od_meta.data import digits_dataset
from od_meta.data import tf_example_util
from od_meta.export import exporter
from od_meta.training import train_loop
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_CONFIG = os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config')
_BIN = os.path.dirname(sys.executable)

_OUTPUT_DTYPES = {
    'detection_boxes': (tf.float32, 3),
    'detection_scores': (tf.float32, 2),
    'detection_classes': (tf.float32, 2),
    'num_detections': (tf.float32, 1),
    'detection_multiclass_scores': (tf.float32, 3),
    'detection_anchor_indices': (tf.float32, 2),
    'raw_detection_boxes': (tf.float32, 3),
    'raw_detection_scores': (tf.float32, 3),
}
# export_config.signature_name set for one export (default elsewhere).
_SIGNATURE_NAMES = {'encoded_image_string_tensor': 'detect'}
_NUM_CLASSES = 10
_MAX_DETECTIONS = 20
# 3 feature maps of a 64x64 input: 8x8 (stride 8), 4x4, 2x2; 5 anchors each
# (aspect ratios 1, 0.75, 0.5, 0.35 + the interpolated scale):
# (64 + 16 + 4) * 5 = 420 anchors.
_NUM_ANCHORS = 420


def _tiny_configs(data_dir):
  configs = config_util.get_configs_from_pipeline_file(_CONFIG)
  return config_util.merge_external_params_with_configs(configs, {
      'model.ssd.image_resizer':
          'fixed_shape_resizer { height: 64 width: 64 }',
      'model.ssd.feature_extractor.num_layers': 3,
      'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3,
      'model.ssd.post_processing.batch_non_max_suppression.'
      'max_total_detections': _MAX_DETECTIONS,
      'model.ssd.post_processing.batch_non_max_suppression.'
      'max_detections_per_class': _MAX_DETECTIONS,
      'train_config.batch_size': 2,
      'train_input_path': os.path.join(data_dir, 'train.tfrecord'),
      'eval_input_path': os.path.join(data_dir, 'val.tfrecord'),
      'label_map_path': os.path.join(data_dir, 'label_map.pbtxt'),
  })


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(configs, model_dir) of a 2-step training run."""
  root = tmp_path_factory.mktemp('export')
  data_dir = str(root / 'data')
  digits_dataset.generate_digits_dataset(data_dir, num_train=8, num_val=4,
                                         image_size=64)
  configs = _tiny_configs(data_dir)
  # Augmentation only slows the 2 steps down.
  configs['train_config'].ClearField('data_augmentation_options')
  model_dir = str(root / 'model_dir')
  train_loop.train_loop(configs, model_dir, num_train_steps=2,
                        record_summaries=False, print_fn=lambda *_: None)
  return configs, model_dir


@pytest.fixture(scope='module')
def framework_model(trained):
  """The trained model restored in od_meta (the reference)."""
  configs, model_dir = trained
  return exporter.build_restored_model(
      configs, exporter.latest_checkpoint(model_dir))


class _Background:
  """A subprocess started now and waited for in a test."""

  def __init__(self, args, **kwargs):
    self._process = subprocess.Popen(  # pylint: disable=consider-using-with
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **kwargs)
    self._result = None

  def result(self):
    """(returncode, stdout, stderr)."""
    if self._result is None:
      try:
        stdout, stderr = self._process.communicate(timeout=300)
      except subprocess.TimeoutExpired:
        self._process.kill()
        stdout, stderr = self._process.communicate()
      self._result = (self._process.returncode, stdout, stderr)
    return self._result


def _script(*flags, **kwargs):
  return _Background(
      [sys.executable, os.path.join(_REPO, 'scripts', 'exporter_main.py'),
       *flags], **kwargs)


_NO_OD_META = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    serve = loaded.signatures['serving_default']
    out = serve(input_tensor=tf.zeros([2, 50, 70, 3], tf.float32))
    assert out['detection_boxes'].shape == (2, int(sys.argv[2]), 4)
    assert out['detection_classes'].dtype == tf.float32
    assert 'od_meta' not in sys.modules, 'od_meta was imported'
    print('OK', int(out['num_detections'][0]))
    """)


@pytest.fixture(scope='module')
def exports(trained, tmp_path_factory):
  """Writes the four exports and starts the subprocess checks.

  To stay fast on 2 cores, the subprocesses (exporter_main.py end to end and
  its two error cases, the od_meta-free load, saved_model_cli) run while the
  in-process exports are written.

  Returns:
    dict: input type -> export directory, plus 'processes': name ->
    `_Background`, and 'error_dir' (a non-empty directory the script must
    leave alone).
  """
  configs, model_dir = trained
  root = tmp_path_factory.mktemp('exports')
  config_path = os.path.join(model_dir, 'pipeline.config')
  error_dir = root / 'user_dir'
  error_dir.mkdir()
  (error_dir / 'keep.txt').write_text('user data')
  empty = root / 'no_checkpoints'
  empty.mkdir()
  processes = {
      # No --input_type: export_config.input_type of the override is used;
      # the override also fixes the image size of the signature.
      'script': _script(
          '--config_override=export_config { input_type: "image_tensor" '
          'input_shape: [-1, 48, 80, 3] }',
          f'--pipeline_config_path={config_path}',
          f'--trained_checkpoint_dir={model_dir}',
          f'--output_directory={root / "image_tensor"}', cwd=str(root)),
      'missing_checkpoint': _script(
          f'--pipeline_config_path={config_path}',
          f'--trained_checkpoint_dir={empty}',
          f'--output_directory={root / "never"}', cwd=str(root)),
      'existing_output': _script(
          f'--pipeline_config_path={config_path}',
          f'--trained_checkpoint_dir={model_dir}',
          f'--output_directory={error_dir}', cwd=str(root)),
  }
  dirs = {'image_tensor': str(root / 'image_tensor')}
  for input_type in ('float_image_tensor', 'encoded_image_string_tensor',
                     'tf_example'):
    out = root / input_type
    overwrite = input_type == 'tf_example'
    if overwrite:
      # overwrite=True replaces a non-empty directory (an older export).
      out.mkdir()
      (out / 'stale.txt').write_text('old export')
    override = None
    if input_type == 'encoded_image_string_tensor':
      override = {'export_config.signature_name': _SIGNATURE_NAMES[
          input_type]}
    exporter.export_inference_graph(input_type, configs, model_dir,
                                    str(out), overwrite=overwrite,
                                    config_override=override)
    dirs[input_type] = str(out)
    if input_type == 'float_image_tensor':
      saved_model = os.path.join(str(out), 'saved_model')
      env = dict(os.environ)
      env.pop('PYTHONPATH', None)
      processes['no_od_meta'] = _Background(
          [sys.executable, '-c', _NO_OD_META, saved_model,
           str(_MAX_DETECTIONS)], cwd='/', env=env)
      cli = os.path.join(_BIN, 'saved_model_cli')
      assert os.path.exists(cli), f'{cli} is missing from the venv'
      processes['saved_model_cli'] = _Background(
          [cli, 'show', '--all', '--dir', saved_model])
  dirs['processes'] = processes
  dirs['error_dir'] = str(error_dir)
  yield dirs
  for process in processes.values():
    process.result()


_LOADED = {}


def _export_dir(exports, input_type):
  """The export directory; waits for exporter_main.py for image_tensor."""
  if input_type == 'image_tensor':
    returncode, _, stderr = exports['processes']['script'].result()
    assert returncode == 0, stderr[-3000:]
  return exports[input_type]


def _signature(exports, input_type):
  """The serving_default function, loaded once per export."""
  export_dir = _export_dir(exports, input_type)
  if export_dir not in _LOADED:
    _LOADED[export_dir] = tf.saved_model.load(
        os.path.join(export_dir, 'saved_model'))
  return _LOADED[export_dir].signatures[_SIGNATURE_NAMES.get(
      input_type, 'serving_default')]


def _image(height, width, seed):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
  # A bright digit-like block so that scores are not all equal.
  image[height // 4:height // 2, width // 3:width // 2] = 255
  return image


def _framework_detections(model, images):
  """od_meta's preprocess -> predict -> postprocess on uint8 [B,H,W,3]."""
  preprocessed, true_shapes = model.preprocess(
      tf.cast(tf.convert_to_tensor(images), tf.float32))
  predictions = model.predict(preprocessed, true_shapes, training=False)
  return {k: v.numpy() for k, v in
          model.postprocess(predictions, true_shapes).items()}


def _detection_order(result, index):
  """Detections by decreasing score; ties (whose order NMS leaves open) by
  anchor index and class, which identify a detection."""
  return np.lexsort((result['detection_classes'][index],
                     result['detection_anchor_indices'][index],
                     -np.round(result['detection_scores'][index], 4)))


def _assert_same_detections(served, expected, index=0, expected_index=0):
  np.testing.assert_allclose(served['num_detections'][index],
                             expected['num_detections'][expected_index])
  mine = _detection_order(served, index)
  theirs = _detection_order(expected, expected_index)
  for key in ('detection_boxes', 'detection_scores',
              'detection_multiclass_scores'):
    np.testing.assert_allclose(served[key][index][mine],
                               expected[key][expected_index][theirs],
                               atol=2e-5, rtol=1e-4, err_msg=key)
  for key in ('raw_detection_boxes', 'raw_detection_scores'):
    np.testing.assert_allclose(served[key][index],
                               expected[key][expected_index],
                               atol=2e-5, rtol=1e-4, err_msg=key)
  # Label-map ids: 0-based class + 1.
  np.testing.assert_array_equal(
      served['detection_classes'][index][mine],
      expected['detection_classes'][expected_index][theirs] + 1.0)
  np.testing.assert_array_equal(
      served['detection_anchor_indices'][index][mine],
      expected['detection_anchor_indices'][expected_index][theirs].astype(
          np.float32))


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize('input_type', sorted(exporter.INPUT_TYPES))
def test_signature_inputs_and_outputs(exports, input_type):
  serve = _signature(exports, input_type)
  _, inputs = serve.structured_input_signature
  assert list(inputs) == ['input_tensor']
  spec = inputs['input_tensor']
  dtype, _ = exporter.INPUT_TYPES[input_type]
  assert spec.dtype == dtype
  expected_rank = 4 if 'image_tensor' in input_type else 1
  assert spec.shape.rank == expected_rank
  if input_type == 'image_tensor':  # export_config.input_shape
    assert spec.shape.as_list() == [None, 48, 80, 3]
  loaded = _LOADED[exports[input_type]]
  assert list(loaded.signatures) == [
      _SIGNATURE_NAMES.get(input_type, 'serving_default')]
  outputs = serve.structured_outputs
  assert set(outputs) == set(_OUTPUT_DTYPES)
  for key, (dtype, rank) in _OUTPUT_DTYPES.items():
    assert outputs[key].dtype == dtype, key
    assert outputs[key].shape.rank == rank, key


def test_image_tensor_matches_framework(exports, framework_model):
  serve = _signature(exports, 'image_tensor')
  images = np.stack([_image(48, 80, 0), _image(48, 80, 1)])
  served = {k: v.numpy() for k, v in
            serve(input_tensor=tf.constant(images)).items()}
  assert served['detection_boxes'].shape == (2, _MAX_DETECTIONS, 4)
  assert served['detection_scores'].shape == (2, _MAX_DETECTIONS)
  assert served['detection_multiclass_scores'].shape == (
      2, _MAX_DETECTIONS, _NUM_CLASSES)
  assert served['raw_detection_boxes'].shape == (2, _NUM_ANCHORS, 4)
  assert served['raw_detection_scores'].shape == (2, _NUM_ANCHORS,
                                                  _NUM_CLASSES)
  assert served['num_detections'].shape == (2,)
  expected = _framework_detections(framework_model, images)
  for i in range(2):
    _assert_same_detections(served, expected, i, i)
  classes = served['detection_classes'][0, :int(served['num_detections'][0])]
  assert classes.size > 0
  assert classes.min() >= 1 and classes.max() <= _NUM_CLASSES
  boxes = served['detection_boxes']
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0


def test_float_image_tensor_matches_framework(exports, framework_model):
  serve = _signature(exports, 'float_image_tensor')
  image = _image(64, 64, 2)[np.newaxis]
  served = {k: v.numpy() for k, v in
            serve(input_tensor=tf.constant(image, tf.float32)).items()}
  _assert_same_detections(served, _framework_detections(framework_model,
                                                        image))


def test_encoded_images_of_different_sizes(exports, framework_model):
  """One request, two PNG/JPEG images of different sizes."""
  serve = _signature(exports, 'encoded_image_string_tensor')
  small, large = _image(40, 56, 3), _image(72, 50, 4)
  png = tf.io.encode_png(small).numpy()
  jpeg = tf.io.encode_jpeg(large, quality=95).numpy()
  served = {k: v.numpy() for k, v in
            serve(input_tensor=tf.constant([png, jpeg])).items()}
  assert served['detection_boxes'].shape == (2, _MAX_DETECTIONS, 4)
  # PNG is lossless: same pixels as the uint8 image.
  _assert_same_detections(
      served, _framework_detections(framework_model, small[np.newaxis]), 0)
  decoded = tf.io.decode_jpeg(jpeg, channels=3).numpy()[np.newaxis]
  _assert_same_detections(
      served, _framework_detections(framework_model, decoded), 1)


def test_tf_example_matches_framework(exports, framework_model):
  serve = _signature(exports, 'tf_example')
  image = _image(60, 44, 5)
  example = tf_example_util.build_tf_example(
      encoded_image=tf.io.encode_png(image).numpy(), image_format='png',
      height=60, width=44, boxes=np.zeros([0, 4]), class_labels=[])
  served = {k: v.numpy() for k, v in serve(input_tensor=tf.constant(
      [example.SerializeToString()] * 2)).items()}
  expected = _framework_detections(framework_model, image[np.newaxis])
  _assert_same_detections(served, expected, 0)
  _assert_same_detections(served, expected, 1)


def test_overwrite_replaced_the_old_directory(exports):
  out = exports['tf_example']
  assert sorted(os.listdir(out)) == ['checkpoint', 'pipeline.config',
                                     'saved_model']
  # No temporary or backup sibling is left behind.
  assert [n for n in os.listdir(os.path.dirname(out))
          if n.startswith('.')] == []


def test_wrong_dtype_is_a_clear_error(exports):
  serve = _signature(exports, 'image_tensor')
  with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
    serve(input_tensor=tf.zeros([1, 48, 80, 3], tf.float32))
  with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
    serve(input_tensor=tf.zeros([1, 32, 32], tf.uint8))


def test_undecodable_bytes_raise_invalid_argument(exports):
  serve = _signature(exports, 'encoded_image_string_tensor')
  with pytest.raises(tf.errors.InvalidArgumentError):
    serve(input_tensor=tf.constant([b'not an image']))


def test_saved_model_runs_without_od_meta(exports):
  """A Python that never imports od_meta loads and runs the export."""
  returncode, stdout, stderr = exports['processes']['no_od_meta'].result()
  assert returncode == 0, stderr[-3000:]
  assert stdout.startswith('OK')


def test_saved_model_cli_lists_the_signature(exports):
  returncode, stdout, stderr = exports['processes'][
      'saved_model_cli'].result()
  assert returncode == 0, stderr[-3000:]
  assert "signature_def['serving_default']" in stdout
  assert 'input_tensor' in stdout
  assert 'detection_boxes' in stdout


def test_script_wrote_the_three_parts(exports):
  returncode, stdout, stderr = exports['processes']['script'].result()
  assert returncode == 0, stderr[-3000:]
  assert 'Exported' in stdout
  out = exports['image_tensor']
  assert sorted(os.listdir(out)) == ['checkpoint', 'pipeline.config',
                                     'saved_model']
  configs = config_util.get_configs_from_pipeline_file(
      os.path.join(out, 'pipeline.config'))
  assert configs['export_config'].input_type == 'image_tensor'
  assert configs['model'].ssd.image_resizer.fixed_shape_resizer.height == 64


@pytest.mark.parametrize('name,message', [
    ('missing_checkpoint', 'no checkpoint in directory'),
    ('existing_output', 'not empty'),
])
def test_script_errors_exit_with_status_2(exports, name, message):
  returncode, _, stderr = exports['processes'][name].result()
  assert returncode == 2, stderr[-3000:]
  assert 'exporter_main: ' in stderr and message in stderr
  assert os.listdir(exports['error_dir']) == ['keep.txt']


def test_exported_checkpoint_restores_into_od_meta(exports, framework_model):
  exported_configs = config_util.get_configs_from_pipeline_file(
      os.path.join(exports['float_image_tensor'], 'pipeline.config'))
  path = exporter.latest_checkpoint(
      os.path.join(exports['float_image_tensor'], 'checkpoint'))
  assert os.path.basename(path) == 'ckpt-0'
  model = exporter.build_restored_model(exported_configs, path)
  # Same build order, so the variable lists correspond one to one.
  assert len(model.variables) == len(framework_model.variables)
  # (The int64 Keras seed-generator state is an RNG counter, not a weight.)
  num_compared = 0
  for restored, expected in zip(model.variables, framework_model.variables):
    assert restored.shape == expected.shape, expected.path
    if 'float' in str(expected.dtype):
      np.testing.assert_array_equal(restored.numpy(), expected.numpy(),
                                    err_msg=expected.path)
      num_compared += 1
  assert num_compared > 100


def test_refuses_non_empty_output_directory(trained, tmp_path):
  configs, model_dir = trained
  out = tmp_path / 'exported'
  out.mkdir()
  (out / 'keep.txt').write_text('user data')
  with pytest.raises(FileExistsError, match='overwrite'):
    exporter.export_inference_graph('image_tensor', configs, model_dir,
                                    str(out))
  assert os.listdir(out) == ['keep.txt']
  assert sorted(os.listdir(tmp_path)) == ['exported']


def test_failed_export_leaves_nothing(trained, tmp_path):
  configs, model_dir = trained
  out = tmp_path / 'exported'
  # 3 classes do not match the 10-class checkpoint.
  with pytest.raises(ValueError, match='does not match'):
    exporter.export_inference_graph(
        'image_tensor', configs, model_dir, str(out),
        config_override='model { ssd { num_classes: 3 } }')
  assert os.listdir(tmp_path) == []


def test_missing_checkpoint_names_the_directory(trained, tmp_path):
  configs, _ = trained
  empty = tmp_path / 'no_checkpoints'
  empty.mkdir()
  with pytest.raises(ValueError, match='no_checkpoints'):
    exporter.export_inference_graph('image_tensor', configs, str(empty),
                                    str(tmp_path / 'out'))
  assert not (tmp_path / 'out').exists()


def test_unknown_input_type_lists_valid_ones(trained, tmp_path):
  configs, model_dir = trained
  with pytest.raises(ValueError, match='encoded_image_string_tensor'):
    exporter.export_inference_graph('jpeg_tensor', configs, model_dir,
                                    str(tmp_path / 'out'))


def test_bad_input_shape_is_rejected(trained, tmp_path):
  configs, model_dir = trained
  configs = config_util.merge_external_params_with_configs(
      configs, {'export_config.input_shape': [1, 64, 64]})
  with pytest.raises(ValueError, match='input_shape'):
    exporter.export_inference_graph('image_tensor', configs, model_dir,
                                    str(tmp_path / 'out'))


def test_padded_batch_for_resizers_without_fixed_size(trained,
                                                      framework_model):
  """keep_aspect_ratio without padding: the module pads to the largest."""
  configs, _ = trained
  resizer_config = config_util.get_image_resizer_config(configs['model'])
  resizer_config.Clear()
  resizer_config.keep_aspect_ratio_resizer.min_dimension = 48
  resizer_config.keep_aspect_ratio_resizer.max_dimension = 64
  resizer = image_resizer_builder.build(resizer_config)
  # Same weights; only the resizer differs (the network is convolutional).
  module = exporter.DetectionInferenceModule(
      framework_model, resizer, 'encoded_image_string_tensor',
      static_resized_size=None)
  # 40x60 -> 48x72 exceeds 64, so 60 -> 64: 43x64 (rounded); 60x40 -> 64x43.
  wide, tall = _image(40, 60, 6), _image(60, 40, 7)
  served = {k: v.numpy() for k, v in module.serve(tf.constant(
      [tf.io.encode_png(wide).numpy(),
       tf.io.encode_png(tall).numpy()])).items()}
  resized, true_shapes = [], []
  for image in (wide, tall):
    r, shape = resizer(tf.constant(image, tf.float32))
    resized.append(r.numpy())
    true_shapes.append(shape.numpy())
  assert [s[:2].tolist() for s in true_shapes] == [[43, 64], [64, 43]]
  batch = np.zeros([2, 64, 64, 3], np.float32)
  batch[0, :43, :64] = resized[0]
  batch[1, :64, :43] = resized[1]
  preprocessed, shapes = framework_model.preprocess(
      tf.constant(batch), tf.constant(np.stack(true_shapes)))
  predictions = framework_model.predict(preprocessed, shapes)
  expected = {k: v.numpy() for k, v in
              framework_model.postprocess(predictions, shapes).items()}
  for i in range(2):
    _assert_same_detections(served, expected, i, i)


# ------------------------------------------------------------ bad requests
def test_bad_requests_get_one_clear_message(exports):
  encoded = _signature(exports, 'encoded_image_string_tensor')
  png = tf.io.encode_png(_image(40, 56, 3)).numpy()
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='input_tensor: an element is not JPEG, PNG'):
    encoded(input_tensor=tf.constant([png, b'not an image at all']))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'input_tensor: expected a non-empty batch'):
    encoded(input_tensor=tf.constant([], tf.string))
  image = _signature(exports, 'image_tensor')
  # export_config.input_shape fixes 48x80 for this export; a 0-image batch:
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'input_tensor: expected a non-empty batch'):
    image(input_tensor=tf.zeros([0, 48, 80, 3], tf.uint8))
  floats = _signature(exports, 'float_image_tensor')
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'height >= 1, width >= 1'):
    floats(input_tensor=tf.zeros([1, 0, 0, 3], tf.float32))
  # A valid request still works after the failed ones.
  assert encoded(input_tensor=tf.constant([png]))['num_detections'].shape == (
      1,)


def test_is_encoded_image():
  png = tf.io.encode_png(np.zeros([2, 2, 3], np.uint8))
  jpeg = tf.io.encode_jpeg(np.zeros([2, 2, 3], np.uint8))
  for data in (png, jpeg, b'GIF89a...', b'BM\x00\x00',
               b'RIFF\x00\x00\x00\x00WEBPVP8 '):
    assert bool(exporter.is_encoded_image(tf.constant(data)))
  for data in (b'', b'hello', b'RIFF\x00\x00\x00\x00WAVE'):
    assert not bool(exporter.is_encoded_image(tf.constant(data)))
