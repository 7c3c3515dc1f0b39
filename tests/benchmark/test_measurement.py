"""Tests for od_meta.benchmark.timing, flops and memory (no real detector).

A fake `DetectionModel`-like module (preprocess: x / 255, predict: one
convolution, postprocess: max score) exercises the timed `tf.function`s;
golden FLOP counts follow tfprof's registry (MatMul and Conv2D: 2 x
multiply-adds).
"""

import sys

import numpy as np
import pytest
import tensorflow as tf

from od_meta.benchmark import flops
from od_meta.benchmark import memory
from od_meta.benchmark import study
from od_meta.benchmark import timing


class _FakeDetector(tf.Module):
  """preprocess / predict / postprocess like a DetectionModel, 1 conv."""

  def __init__(self):
    super().__init__()
    self.kernel = tf.Variable(tf.ones([3, 3, 3, 4]) / 27.0)
    self.calls = {'predict': 0}

  def preprocess(self, images, true_image_shapes):
    return images / 255.0, true_image_shapes

  def predict(self, preprocessed, true_image_shapes, training=False):
    del training
    self.calls['predict'] += 1  # Counts traces (Python side effect).
    return {'features': tf.nn.conv2d(preprocessed, self.kernel, 1, 'SAME'),
            'shapes': true_image_shapes}

  def postprocess(self, prediction_dict, true_image_shapes):
    del true_image_shapes
    scores = tf.reduce_max(prediction_dict['features'], axis=[1, 2, 3])
    return {'detection_scores': scores[:, tf.newaxis],
            'num_detections': tf.ones_like(scores)}


def _clock(durations):
  """A clock whose k-th (start, stop) pair is durations[k] seconds apart."""
  reads = []
  now = 0.0
  for duration in durations:
    reads += [now, now + duration]
    now += duration
  return iter(reads).__next__


def test_summarize_golden():
  stats = timing.summarize([4.0, 1.0, 3.0, 2.0], num_warmup=2)
  # median of 1,2,3,4 = 2.5; mean 2.5; p10 = 1 + 0.3 * 1 = 1.3 (linear).
  assert stats.median_ms == 2.5 and stats.mean_ms == 2.5
  assert stats.p10_ms == pytest.approx(1.3)
  assert stats.p90_ms == pytest.approx(3.7)
  assert (stats.min_ms, stats.num_timed, stats.num_warmup) == (1.0, 4, 2)
  with pytest.raises(ValueError, match='empty'):
    timing.summarize([])
  with pytest.raises(ValueError, match='non-finite'):
    timing.summarize([1.0, float('nan')])


def test_time_calls_skips_warmup_with_a_fake_clock():
  clock = _clock([1.0, 2.0, 3.0, 4.0, 5.0])
  calls = []
  stats = timing.time_calls(lambda x: calls.append(x), [(1,), (2,)],
                            num_timed=3, num_warmup=2, clock=clock)
  # Calls last 1, 2, 3, 4, 5 s; the first two are warm-up -> 3, 4, 5 s.
  assert stats.median_ms == pytest.approx(4000.0)
  assert stats.min_ms == pytest.approx(3000.0)
  assert calls == [1, 2, 1, 2, 1]  # Inputs are cycled.
  with pytest.raises(ValueError, match='inputs is empty'):
    timing.time_calls(lambda: None, [], num_timed=1)
  with pytest.raises(ValueError, match='num_timed'):
    timing.time_calls(lambda: None, [()], num_timed=0)


def test_time_inference_on_a_fake_detector():
  model = _FakeDetector()
  images = [np.full([8, 6, 3], 255, np.uint8), np.zeros([8, 6, 3], np.uint8)]
  events = []

  def resizer(image):  # [H, W, 3] -> 4x4, like a fixed_shape_resizer.
    return tf.image.resize(image, [4, 4]), tf.constant([4, 4, 3])

  # Interleaved rounds (total, network, postprocess): one warm-up round of
  # 100 s each, then 3 timed rounds.
  clock = _clock([100.0, 100.0, 100.0, 10.0, 6.0, 3.0, 20.0, 7.0, 4.0,
                  30.0, 8.0, 5.0])
  stats = timing.time_inference(
      model, images, num_images=3, num_warmup=1, image_resizer_fn=resizer,
      after_warmup=lambda: events.append('warm'),
      after_timing=lambda: events.append('timed'), clock=clock)
  assert set(stats) == {'total', 'network', 'postprocess'}
  # Medians: total (10, 20, 30) -> 20 s; network (6, 7, 8) -> 7 s;
  # postprocess (3, 4, 5) -> 4 s.
  assert stats['total'].median_ms == pytest.approx(20000.0)
  assert stats['network'].median_ms == pytest.approx(7000.0)
  assert stats['postprocess'].median_ms == pytest.approx(4000.0)
  assert stats['total'].num_timed == 3 and stats['total'].num_warmup == 1
  assert events == ['warm', 'timed']
  # Traced once in 'total' and once in 'network' (fixed shapes: no retrace).
  assert model.calls['predict'] == 2
  real = timing.time_inference(model, images, num_images=2, num_warmup=0)
  assert all(s.median_ms >= 0 and s.num_timed == 2 for s in real.values())
  with pytest.raises(ValueError, match=r'images\[0\] must be'):
    timing.time_inference(model, [np.zeros([4, 4])], num_images=1)
  with pytest.raises(ValueError, match='num_images'):
    timing.time_inference(model, images, num_images=0)


def test_inference_functions_give_the_detector_outputs():
  model = _FakeDetector()
  functions = timing.make_inference_functions(model)
  image = tf.fill([1, 4, 4, 3], 255.0)
  # All ones after preprocess, conv with 1/27 weights: interior = 1.
  out = functions['total'](image)
  np.testing.assert_allclose(out['detection_scores'].numpy(), [[1.0]],
                             rtol=1e-6)
  preprocessed, shapes = functions['preprocess'](image)
  np.testing.assert_array_equal(shapes.numpy(), [[4, 4, 3]])
  predictions = functions['network'](preprocessed, shapes)
  out2 = functions['postprocess'](predictions, shapes)
  np.testing.assert_allclose(out2['detection_scores'].numpy(), [[1.0]],
                             rtol=1e-6)


def test_device_description():
  info = timing.device_description()
  assert info['tf_version'] == tf.__version__
  assert info['device'].startswith(('CPU: ', 'GPU: '))


def test_flops_golden():
  @tf.function
  def matmul(x):
    return tf.matmul(x, tf.ones([4, 3]))

  # MatMul [1, 4] x [4, 3]: 2 * 1 * 4 * 3 = 24.
  assert flops.count_flops(matmul.get_concrete_function(
      tf.TensorSpec([1, 4], tf.float32))) == 24

  kernel = tf.Variable(tf.ones([3, 3, 2, 4]))

  @tf.function
  def conv(x):
    return tf.nn.conv2d(x, kernel, 1, 'SAME')

  # Conv2D SAME, [1, 8, 8, 2] -> [1, 8, 8, 4]: 2 * (3 * 3 * 2) * 256 = 9216.
  assert flops.count_flops(conv.get_concrete_function(
      tf.TensorSpec([1, 8, 8, 2], tf.float32))) == 9216

  @tf.function
  def nested(x):
    return conv(x) + 0.0  # A call op: frozen and inlined first.

  assert flops.count_flops(nested.get_concrete_function(
      tf.TensorSpec([1, 8, 8, 2], tf.float32))) >= 9216
  with pytest.raises(ValueError, match='ConcreteFunction'):
    flops.count_flops(conv)


def test_count_parameters():
  layer = tf.keras.layers.Dense(3)
  layer.build([None, 4])
  assert flops.count_parameters(layer) == 4 * 3 + 3
  norm = tf.keras.layers.BatchNormalization()
  norm.build([None, 5])
  # gamma, beta trainable (10); moving mean / variance not (10 more).
  assert flops.count_parameters(norm, trainable_only=True) == 10
  assert flops.count_parameters(norm) == 20
  with pytest.raises(ValueError, match='variables'):
    flops.count_parameters(object())
  assert flops.gflops(2_000_000_000) == 2.0 and flops.gflops(None) is None


def test_peak_rss_and_reset():
  peak = memory.peak_rss_bytes()
  current = memory.current_rss_bytes()
  assert peak > 0
  if current is not None:
    assert peak >= current
  if memory.reset_peak_rss():
    after = memory.peak_rss_bytes()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched.
    assert memory.peak_rss_bytes() >= after + 32 * 1024 * 1024
    del block
  assert memory.gpu_memory_info() is None or 'peak' in memory.gpu_memory_info()


def test_run_child_reports_the_error():
  with pytest.raises(memory.ChildProcessFailed) as error:
    memory.run_child('json.tool', ['/no/such/file'], timeout_s=60)
  assert error.value.returncode not in (0, None)
  assert 'json.tool exited with status' in str(error.value)
  assert sys.executable  # The child ran with this interpreter.


def test_fill_measurement_units():
  row = {}
  study.fill_measurement(row, {
      'device': 'CPU: x', 'tf_version': '2.20.0',
      'timing': {'total': {'median_ms': 10.0, 'p90_ms': 12.0, 'num_timed': 5,
                           'num_warmup': 2},
                 'network': {'median_ms': 6.0},
                 'postprocess': {'median_ms': 3.0}},
      'memory': {'kind': 'cpu_peak_rss', 'peak_rss_bytes': 300 * 2**20,
                 'rss_baseline_bytes': 200 * 2**20},
      'flops': {'total_flops': 3e9, 'network_flops': 2e9,
                'num_parameters': 7, 'num_trainable_parameters': 5}})
  # other = 10 - 6 - 3 = 1 ms; share = 3 / 10; memory = 300 - 200 MiB.
  assert row['time_other_ms'] == pytest.approx(1.0)
  assert row['postprocess_share'] == pytest.approx(0.3)
  assert (row['memory_mb'], row['peak_memory_mb']) == (100.0, 300.0)
  assert (row['gflops'], row['gflops_network']) == (3.0, 2.0)
  assert (row['timing_images'], row['timing_warmup']) == (5, 2)


class _HostPostprocessDetector(_FakeDetector):
  """A fake detector whose postprocess calls back into Python (no XLA)."""

  def postprocess(self, prediction_dict, true_image_shapes):
    out = super().postprocess(prediction_dict, true_image_shapes)
    host = tf.numpy_function(lambda x: x, [out['detection_scores']],
                             tf.float32)
    return dict(out, detection_scores=tf.reshape(host, [-1, 1]))


def test_jit_compiled_inference_and_fallback():
  model = _HostPostprocessDetector()
  functions = timing.make_inference_functions(model, jit_compile=True)
  assert all(s['compiled'] is None
             for s in timing.jit_status(functions).values())
  image = tf.fill([1, 4, 4, 3], 255.0)
  preprocessed, shapes = functions['preprocess'](image)
  predictions = functions['network'](preprocessed, shapes)
  out = functions['postprocess'](predictions, shapes)
  np.testing.assert_allclose(out['detection_scores'].numpy(), [[1.0]],
                             rtol=1e-6)
  np.testing.assert_allclose(functions['total'](image)['detection_scores'],
                             [[1.0]], rtol=1e-6)
  status = timing.jit_status(functions)
  # The convolution compiles; the host callback cannot, and says why.
  assert status['network'] == {'compiled': True, 'reason': ''}
  for name in ('postprocess', 'total'):
    assert status[name]['compiled'] is False
    assert 'PyFunc' in status[name]['reason'], status[name]
  report = {}
  timing.time_inference(model, [np.zeros([4, 4, 3], np.uint8)],
                        num_images=1, num_warmup=1, jit_compile=True,
                        jit_report=report)
  assert report['network']['compiled'] and not report['total']['compiled']
  row = {}
  study.fill_measurement(row, {'jit_compile': {
      'requested': True, 'functions': report}})
  assert row['jit_compiled'] == 'network'
